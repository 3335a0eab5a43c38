from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from bots.models import PII_ENTITIES, Bot
from bots.tests.factories import BotFactory, ScopeFactory
from tenants.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def test_bot_cannot_follow_another_tenants_scope():
    theirs = ScopeFactory()
    with pytest.raises(IntegrityError, match="tenant_fk"), transaction.atomic():
        BotFactory(scope=theirs, tenant=TenantFactory())
        connection.check_constraints()


def test_bot_follows_a_scope_of_its_own_tenant():
    bot = BotFactory()
    connection.check_constraints()
    assert bot.scope.tenant_id == bot.tenant_id


def test_scope_defaults_mask_every_pii_entity():
    assert ScopeFactory().pii_entities == list(PII_ENTITIES)


@pytest.mark.parametrize("value", [-0.1, 1.01])
def test_scope_min_relevance_is_between_0_and_1(value):
    with pytest.raises(IntegrityError, match="min_relevance"), transaction.atomic():
        ScopeFactory(min_relevance=value)


def test_scope_rejects_unknown_pii_entities():
    with pytest.raises(IntegrityError, match="pii"), transaction.atomic():
        ScopeFactory(pii_entities=["EMAIL", "PASSPORT"])


def test_bot_names_are_unique_per_tenant_only():
    bot = BotFactory(name="support")
    BotFactory(name="support")  # another tenant
    with pytest.raises(IntegrityError), transaction.atomic():
        BotFactory(name="support", tenant=bot.tenant, scope=None)


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", 2.5), ("top_k", 0), ("top_k", 101), ("max_output_tokens", 0)],
)
def test_bot_numeric_settings_are_range_checked(field, value):
    with pytest.raises(IntegrityError), transaction.atomic():
        BotFactory(**{field: value})


def test_scope_in_use_cannot_be_deleted_out_from_under_a_bot():
    bot = BotFactory()
    with pytest.raises(Exception, match="protected"):
        bot.scope.delete()
    assert Bot.objects.for_tenant(bot.tenant).count() == 1
