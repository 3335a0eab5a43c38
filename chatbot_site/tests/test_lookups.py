"""``Lookup``: one statement, the same instances the ORM would build, joined rows cached."""

from __future__ import annotations

import pytest

from bots.models import Bot
from chatbot_site.lookups import Lookup
from tenants.models import ApiKey, AuditLog

pytestmark = pytest.mark.django_db


def test_a_row_and_its_joined_rows_in_one_query(world, django_assert_num_queries):
    lookup: Lookup[ApiKey] = Lookup(ApiKey, 't0."prefix" = %s', related=("tenant",))
    expected = ApiKey.all_tenants.select_related("tenant").get(pk=world.a.chat_key.pk)
    with django_assert_num_queries(1):
        key = lookup.get(expected.prefix)
        assert key is not None
        assert key.tenant.slug == world.a.tenant.slug  # cached: no second query
    assert [(f.attname, getattr(key, f.attname)) for f in ApiKey._meta.concrete_fields] == [
        (f.attname, getattr(expected, f.attname)) for f in ApiKey._meta.concrete_fields
    ]
    assert key == expected and not key._state.adding and key._state.db == "default"
    key.name = "renamed"
    key.save(update_fields=["name"])  # a loaded instance, as the ORM's
    assert ApiKey.all_tenants.get(pk=key.pk).name == "renamed"


def test_no_row_is_none_and_a_null_key_leaves_the_relation_none(world, django_assert_num_queries):
    lookup: Lookup[Bot] = Lookup(Bot, 't0."tenant_id" = %s AND t0."id" = %s', related=("scope",))
    assert lookup.get(world.b.tenant.pk, world.a.bot.pk) is None  # another tenant's bot
    Bot.objects.for_tenant(world.a.tenant).filter(pk=world.a.bot.pk).update(scope=None)
    with django_assert_num_queries(1):
        bot = lookup.get(world.a.tenant.pk, world.a.bot.pk)
        assert bot is not None and bot.scope is None


def test_fields_the_orm_would_convert_are_refused():
    with pytest.raises(TypeError, match=r"AuditLog\.changes needs a converter"):  # a JSONField
        Lookup(AuditLog, "true").get()
    with pytest.raises(TypeError, match="not a foreign key"):
        Lookup(ApiKey, "true", related=("name",)).get()
