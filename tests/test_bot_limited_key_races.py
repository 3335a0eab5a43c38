# mypy: disable-error-code="arg-type,misc"
"""A key limited to some bots changes a scope or dataset only while no other bot uses it
(``bots.reach``). The check ran before the change's transaction: another key could give a
second bot the object in between, and the limited key then changed or deleted an object that
bot used. Here the link is being written (not yet committed) when the limited key's change
starts: the change waits for it, sees the second bot, and is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bots.services import bot_update
from bots.tests.factories import BotFactory
from knowledge.models import BotDataset, Dataset, Document
from knowledge.services import bot_datasets_set
from knowledge.tests.test_delete_races import contend
from tenants.models import Role
from tenants.services import Actor
from tenants.tests.factories import ApiKeyFactory
from tests.world import TenantWorld, build_tenant

pytestmark = pytest.mark.django_db(transaction=True)


def give_scope(side: TenantWorld, bot: Any) -> None:
    bot_update(tenant=side.tenant, actor=Actor.system("tests"), bot=bot,
               changes={"scope": side.scope})  # fmt: skip


def give_dataset(side: TenantWorld, bot: Any) -> None:
    bot_datasets_set(tenant=side.tenant, actor=Actor.system("tests"), bot=bot,
                     datasets=[side.dataset])  # fmt: skip


def scope_patched(side: TenantWorld) -> tuple[str, str, dict[str, Any] | None]:
    return "patch", f"/v1/scopes/{side.scope.pk}", {"refusal_message": "Changed."}


def dataset_deleted(side: TenantWorld) -> tuple[str, str, dict[str, Any] | None]:
    return "delete", f"/v1/datasets/{side.dataset.pk}", None


def document_added(side: TenantWorld) -> tuple[str, str, dict[str, Any] | None]:
    body = {"records": [{"title": "Added", "text": "Added while shared."}]}
    return "post", f"/v1/datasets/{side.dataset.pk}/documents", body


def document_deleted(side: TenantWorld) -> tuple[str, str, dict[str, Any] | None]:
    return "delete", f"/v1/documents/{side.document.pk}", None


@pytest.mark.parametrize(
    ("link", "change"),
    [
        (give_scope, scope_patched),
        (give_dataset, dataset_deleted),
        (give_dataset, document_added),
        (give_dataset, document_deleted),
    ],
    ids=["scope-patch", "dataset-delete", "document-add", "document-delete"],
)
def test_a_limited_keys_change_waits_for_a_link_being_written_and_is_refused(
    link: Callable[[TenantWorld, Any], None],
    change: Callable[[TenantWorld], tuple[str, str, dict[str, Any] | None]],
):
    side = build_tenant("racy-reach")
    other = BotFactory(tenant=side.tenant, name="Other")
    limited = side.client(ApiKeyFactory(tenant=side.tenant, role=Role.ADMIN, bot_ids=[side.bot.pk]))
    limited.raise_request_exception = False
    documents = set(Document.all_tenants.filter(dataset=side.dataset).values_list("pk", flat=True))
    method, path, body = change(side)
    answers: list = []

    errors = contend(
        lambda: link(side, other),
        lambda: answers.append(getattr(limited, method)(path, body, format="json")),
    )

    assert errors == []
    assert answers[0].status_code == 403, answers[0].content
    assert answers[0].json()["error"]["code"] == "permission_denied"
    side.scope.refresh_from_db()
    assert side.scope.refusal_message != "Changed."
    assert Dataset.all_tenants.filter(pk=side.dataset.pk).exists()
    assert (
        set(Document.all_tenants.filter(dataset=side.dataset).values_list("pk", flat=True))
        == documents
    )
    if link is give_dataset:
        assert BotDataset.all_tenants.filter(bot=other, dataset=side.dataset).exists()


def test_a_bot_given_the_scope_in_the_staff_admin_is_waited_for_too():
    """The staff admin saved a bot's new scope without the links lock the API's writes take:
    a limited key's change of that scope went through while the bot was being given it."""
    from tests.staff import change_form_data, staff_client

    side = build_tenant("racy-admin")
    other = BotFactory(tenant=side.tenant, name="Other", scope=None)
    limited = side.client(ApiKeyFactory(tenant=side.tenant, role=Role.ADMIN, bot_ids=[side.bot.pk]))
    limited.raise_request_exception = False
    staff = staff_client(side.tenant)
    page = staff.get(f"/admin/bots/bot/{other.pk}/change/")
    form = change_form_data(page, scope=str(side.scope.pk))
    method, path, body = scope_patched(side)
    answers: list = []

    def give_in_admin() -> None:  # in the holder's transaction: committed when it is let go
        saved = staff.post(f"/admin/bots/bot/{other.pk}/change/", form)
        assert saved.status_code == 302, saved.content[:500]

    errors = contend(
        give_in_admin, lambda: answers.append(getattr(limited, method)(path, body, format="json"))
    )

    assert errors == []
    assert answers[0].status_code == 403, answers[0].content
    side.scope.refresh_from_db()
    assert side.scope.refusal_message != "Changed."
    other.refresh_from_db()
    assert other.scope_id == side.scope.pk
