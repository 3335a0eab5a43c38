"""A bot given a scope while another request deletes that scope: one of the two wins cleanly
(the bot has the scope and the deletion is refused, or the scope is gone and the bot keeps
its own), never a foreign key failing at commit (500s found against the served API)."""

from __future__ import annotations

import pytest

from bots.models import Bot, Scope
from bots.services import bot_update, scope_delete
from bots.tests.factories import ScopeFactory
from knowledge.tests.test_delete_races import contend
from tenants.services import Actor
from tests.world import build_tenant

pytestmark = pytest.mark.django_db(transaction=True)


def test_giving_a_bot_a_scope_deleted_meanwhile_is_a_400():
    """The scope was found, then deleted before the bot's update committed: the bot's foreign
    key failed at commit (served: 4 of 4 PATCHes racing the DELETE answered 500)."""
    side = build_tenant("racy-scope")
    doomed = ScopeFactory(tenant=side.tenant)
    doomed_id, before = doomed.pk, side.bot.scope_id
    answers: list = []

    def give() -> None:
        client = side.client()
        client.raise_request_exception = False
        body = {"scope_id": str(doomed_id)}
        answers.append(client.patch(f"/v1/bots/{side.bot.pk}", body, format="json"))

    errors = contend(
        lambda: scope_delete(tenant=side.tenant, actor=Actor.system("tests"), scope=doomed), give
    )

    assert errors == []
    assert answers[0].status_code == 400, answers[0].content
    assert answers[0].json()["error"]["details"] == {"scope_id": ["Scope not found."]}
    assert Bot.all_tenants.get(pk=side.bot.pk).scope_id == before
    assert not Scope.all_tenants.filter(pk=doomed_id).exists()


def test_deleting_a_scope_while_a_bot_is_given_it_is_a_409():
    """The deletion checked that no bot used the scope, then a bot given it committed: the
    deletion failed at commit on the bot's foreign key, a 500."""
    side = build_tenant("racy-scope-use")
    wanted = ScopeFactory(tenant=side.tenant)
    answers: list = []

    def give() -> None:
        bot_update(tenant=side.tenant, actor=Actor.system("tests"), bot=side.bot,
                   changes={"scope": wanted})  # fmt: skip

    def delete() -> None:
        client = side.client()
        client.raise_request_exception = False
        answers.append(client.delete(f"/v1/scopes/{wanted.pk}"))

    assert contend(give, delete) == []
    assert answers[0].status_code == 409, answers[0].content
    assert answers[0].json()["error"]["details"] == {"bots": [side.bot.name]}
    assert Bot.all_tenants.get(pk=side.bot.pk).scope_id == wanted.pk
