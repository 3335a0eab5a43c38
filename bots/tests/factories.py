from __future__ import annotations

import factory

from bots.models import Bot, Scope
from tenants.tests.factories import ModelFactory, TenantFactory


class ScopeFactory(ModelFactory[Scope]):
    class Meta:
        model = Scope

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"scope {n}")
    description = "Questions about the product and its documentation."
    allowed_topics = factory.LazyFunction(lambda: ["product", "documentation"])


class BotFactory(ModelFactory[Bot]):
    class Meta:
        model = Bot

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"bot {n}")
    scope = factory.SubFactory(ScopeFactory, tenant=factory.SelfAttribute("..tenant"))
