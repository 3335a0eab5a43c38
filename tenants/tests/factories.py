from __future__ import annotations

from typing import TypeVar

import factory
from django.db.models import Model

from tenants.keys import generate_key
from tenants.models import ActorType, ApiKey, AuditLog, Role, Tenant

T = TypeVar("T", bound=Model)


class ModelFactory(factory.django.DjangoModelFactory[T]):
    """Writes through ``_default_manager`` (``all_tenants``): ``objects`` is tenant-scoped."""

    class Meta:
        abstract = True

    @classmethod
    def _get_manager(cls, model_class):
        return model_class._default_manager


class TenantFactory(ModelFactory[Tenant]):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())


class ApiKeyFactory(ModelFactory[ApiKey]):
    """``key.plaintext`` holds the secret, as the one response that creates a key would."""

    class Meta:
        model = ApiKey

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"key {n}")
    role = Role.ADMIN

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        new = generate_key()
        kwargs.setdefault("prefix", new.prefix)
        kwargs.setdefault("key_hash", new.hash)
        key = super()._create(model_class, *args, **kwargs)
        key.plaintext = new.plaintext
        return key


class AuditLogFactory(ModelFactory[AuditLog]):
    class Meta:
        model = AuditLog

    tenant = factory.SubFactory(TenantFactory)
    actor_type = ActorType.SYSTEM
    actor_label = "tests"
    action = "test.action"
