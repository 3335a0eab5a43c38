"""An admin key limited to some bots (``bot_ids``) reaches its bots and what they use, not the
rest of its tenant (``bots.reach``): it saw every dataset, scope and audit entry (other bots'
system prompts among them), and could change or delete datasets other bots search."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from conversations.tests.factories import ConversationFactory, UsageDailyFactory
from knowledge.models import Dataset
from knowledge.tests.factories import DocumentFactory
from tenants.models import ApiKey, Role
from tenants.services import Actor, api_key_update
from tenants.tests.factories import ApiKeyFactory
from tests.world import TenantWorld, build_tenant

pytestmark = pytest.mark.django_db


@dataclass
class Tenancy:
    """``side.bot`` (the limited key's) searches ``side.dataset`` (its own) and ``shared``; the
    other bot searches ``shared`` and ``theirs`` and follows ``their_scope``."""

    side: TenantWorld
    admin: APIClient
    limited: APIClient
    other_bot: dict[str, Any]
    shared: dict[str, Any]
    theirs: dict[str, Any]
    their_scope: dict[str, Any]
    their_document: Any
    shared_document: Any
    limited_key: Any


@pytest.fixture
def t():
    side = build_tenant("acme")
    admin = side.client()
    shared = admin.post("/v1/datasets", {"name": "shared"}, format="json").json()
    theirs = admin.post("/v1/datasets", {"name": "theirs"}, format="json").json()
    their_scope = admin.post("/v1/scopes", {"name": "their scope"}, format="json").json()
    other_bot = admin.post(
        "/v1/bots",
        {"name": "Other", "system_prompt": "The other team's secret prompt.",
         "dataset_ids": [shared["id"], theirs["id"]], "scope_id": their_scope["id"]},
        format="json",
    ).json()  # fmt: skip
    linked = admin.patch(
        f"/v1/bots/{side.bot.pk}",
        {"dataset_ids": [str(side.dataset.pk), shared["id"]]},
        format="json",
    )
    assert linked.status_code == 200
    key = ApiKeyFactory(tenant=side.tenant, role=Role.ADMIN, bot_ids=[side.bot.pk])
    return Tenancy(
        side, admin, side.client(key), other_bot, shared, theirs, their_scope,
        their_document=DocumentFactory(tenant=side.tenant, dataset=dataset(theirs)),
        shared_document=DocumentFactory(tenant=side.tenant, dataset=dataset(shared)),
        limited_key=key,
    )  # fmt: skip


def dataset(body: dict[str, Any]) -> Dataset:
    return Dataset.all_tenants.get(pk=body["id"])


def names(client: APIClient, path: str) -> set[str]:
    response = client.get(path)
    assert response.status_code == 200, response.json()
    return {row["name"] for row in response.json()["data"]}


def test_a_bot_limited_key_sees_only_the_datasets_and_scopes_its_bots_use(t):
    assert names(t.limited, "/v1/datasets") == {t.side.dataset.name, "shared"}
    assert names(t.limited, "/v1/scopes") == {t.side.scope.name}
    assert t.limited.get(f"/v1/datasets/{t.shared['id']}").status_code == 200
    assert t.limited.get(f"/v1/scopes/{t.side.scope.pk}").status_code == 200
    assert t.limited.get(f"/v1/documents/{t.shared_document.pk}").status_code == 200
    # What only the other bot uses is the same 404 as a missing object, for every verb.
    for method, path, body in (
        ("get", f"/v1/datasets/{t.theirs['id']}", None),
        ("patch", f"/v1/datasets/{t.theirs['id']}", {"description": "x"}),
        ("delete", f"/v1/datasets/{t.theirs['id']}", None),
        ("get", f"/v1/datasets/{t.theirs['id']}/documents", None),
        (
            "post",
            f"/v1/datasets/{t.theirs['id']}/documents",
            {"records": [{"title": "T", "text": "x"}]},
        ),
        ("get", f"/v1/documents/{t.their_document.pk}", None),
        ("post", f"/v1/documents/{t.their_document.pk}/reingest", None),
        ("delete", f"/v1/documents/{t.their_document.pk}", None),
        ("get", f"/v1/scopes/{t.their_scope['id']}", None),
        ("patch", f"/v1/scopes/{t.their_scope['id']}", {"description": "x"}),
        ("delete", f"/v1/scopes/{t.their_scope['id']}", None),
    ):
        answer = getattr(t.limited, method)(path, body, format="json")
        assert answer.status_code == 404, (method, path)
        assert answer.json()["error"]["code"] == "not_found"
    # The unlimited admin key still sees the tenant's all.
    assert names(t.admin, "/v1/datasets") == {t.side.dataset.name, "shared", "theirs"}
    assert t.admin.get(f"/v1/documents/{t.their_document.pk}").status_code == 200


def test_a_bot_limited_key_changes_nothing_another_bot_uses(t):
    """It could rename, re-chunk or delete the datasets other bots search, and add or delete
    their documents."""
    t.admin.patch(
        f"/v1/bots/{t.other_bot['id']}", {"scope_id": str(t.side.scope.pk)}, format="json"
    )
    for method, path, body in (
        ("patch", f"/v1/datasets/{t.shared['id']}", {"description": "x"}),
        ("delete", f"/v1/datasets/{t.shared['id']}", None),
        (
            "post",
            f"/v1/datasets/{t.shared['id']}/documents",
            {"records": [{"title": "T", "text": "x"}]},
        ),
        ("post", f"/v1/documents/{t.shared_document.pk}/reingest", None),
        ("delete", f"/v1/documents/{t.shared_document.pk}", None),
        ("patch", f"/v1/scopes/{t.side.scope.pk}", {"refusal_message": "x"}),
    ):
        answer = getattr(t.limited, method)(path, body, format="json")
        assert answer.status_code == 403, (method, path)
        assert answer.json()["error"]["code"] == "permission_denied"
    assert t.admin.get(f"/v1/documents/{t.shared_document.pk}").status_code == 200
    assert t.admin.get(f"/v1/datasets/{t.shared['id']}").json()["description"] == ""
    # What only its own bots use it manages.
    mine = f"/v1/datasets/{t.side.dataset.pk}"
    assert t.limited.patch(mine, {"description": "ours"}, format="json").status_code == 200
    added = t.limited.post(
        f"{mine}/documents", {"records": [{"title": "T", "text": "Ours."}]}, format="json"
    )
    assert added.status_code == 202
    assert t.limited.delete(f"/v1/documents/{t.side.document.pk}").status_code == 204
    assert t.admin.patch(
        f"/v1/bots/{t.other_bot['id']}", {"scope_id": t.their_scope["id"]}, format="json"
    ).status_code == 200  # fmt: skip
    assert t.limited.patch(
        f"/v1/scopes/{t.side.scope.pk}", {"refusal_message": "Ours."}, format="json"
    ).status_code == 200  # fmt: skip
    assert t.limited.delete(mine).status_code == 204


def test_a_bot_limited_key_creates_no_dataset_or_scope(t):
    """No bot of its would use them, so it could not see them once made."""
    for path in ("/v1/datasets", "/v1/scopes", "/v1/bots"):
        answer = t.limited.post(path, {"name": "mine"}, format="json")
        assert answer.status_code == 403, path
        assert answer.json()["error"]["code"] == "permission_denied"
    assert t.admin.post("/v1/datasets", {"name": "mine"}, format="json").status_code == 201


def test_a_bot_limited_key_gives_its_bots_only_datasets_and_scopes_it_reaches(t):
    """The other bot's dataset and scope are "not found", as missing ones: not linked."""
    bot = f"/v1/bots/{t.side.bot.pk}"
    refused = t.limited.patch(
        bot, {"dataset_ids": [t.theirs["id"]], "scope_id": t.their_scope["id"]}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["details"] == {
        "scope_id": ["Scope not found."],
        "dataset_ids": [f"Dataset not found: {t.theirs['id']}"],
    }
    kept = t.limited.patch(bot, {"dataset_ids": [t.shared["id"]]}, format="json")
    assert kept.status_code == 200 and kept.json()["dataset_ids"] == [t.shared["id"]]


def test_a_bot_limited_keys_audit_log_is_about_what_it_reaches(t):
    """It read every entry of the tenant: the other bot's ``bot.create`` with its system
    prompt, the datasets and scopes only other bots use, other keys, the tenant's own."""
    other_conversation = t.side.conversation.__class__.all_tenants.create(
        tenant=t.side.tenant, bot_id=t.other_bot["id"]
    )
    t.admin.delete(f"/v1/conversations/{other_conversation.pk}")
    t.limited.delete(f"/v1/conversations/{t.side.conversation.pk}")
    doomed = DocumentFactory(tenant=t.side.tenant, dataset=dataset(t.shared))
    t.admin.delete(f"/v1/documents/{doomed.pk}")
    t.admin.patch(f"/v1/bots/{t.side.bot.pk}", {"top_k": 7}, format="json")
    t.admin.post("/v1/api-keys", {"name": "everything", "role": "admin"}, format="json")
    own = t.limited.post(
        f"/v1/datasets/{t.side.dataset.pk}/documents",
        {"records": [{"title": "T", "text": "x"}]},
        format="json",
    )
    assert t.limited.delete(f"/v1/datasets/{t.side.dataset.pk}").status_code == 204

    response = t.limited.get("/v1/audit-logs", {"limit": 200})
    assert response.status_code == 200
    seen = {(e["action"], e["target_id"]) for e in response.json()["data"]}
    assert "secret prompt" not in response.content.decode()
    assert seen == {
        ("bot.create", str(t.side.bot.pk)),
        ("bot.update", str(t.side.bot.pk)),
        ("bot.update", str(t.side.bot.pk)),
        ("dataset.create", t.shared["id"]),
        ("conversation.delete", str(t.side.conversation.pk)),
        ("document.delete", str(doomed.pk)),
        # Its own writes, the dataset it deleted (no longer reached) among them.
        ("document.create", own.json()["data"][0]["id"]),
        ("dataset.delete", str(t.side.dataset.pk)),
    }
    everything = {e["target_id"] for e in t.admin.get("/v1/audit-logs").json()["data"]}
    assert {t.other_bot["id"], t.theirs["id"], str(other_conversation.pk)} <= everything


def test_a_bot_limited_key_reads_a_deleted_documents_earlier_entries(t):
    """Only the deletion named the dataset: once a document of a dataset its bots search was
    deleted, its creation, update and reingest entries were out of the key's sight."""
    url = f"/v1/datasets/{t.shared['id']}/documents"
    record = {"title": "Refunds", "text": "Refunds take five days.", "external_id": "kb-1"}
    added = t.admin.post(url, {"records": [record]}, format="json").json()["data"][0]
    t.admin.post(url, {"records": [{**record, "tags": ["faq"]}]}, format="json")
    assert t.admin.delete(f"/v1/documents/{added['id']}").status_code == 204

    entries = t.limited.get("/v1/audit-logs", {"target_id": added["id"]}).json()["data"]

    assert {e["action"] for e in entries} == {
        "document.create",
        "document.update",
        "document.delete",
    }


def test_a_bot_limited_key_makes_no_key_that_outlives_it(t):
    """Limited in time as in bots: a key that expires made a key without expiry, or lifted its
    own expiry, and so kept its reach after it ended."""
    ends = timezone.now() + dt.timedelta(days=7)
    key = ApiKeyFactory(tenant=t.side.tenant, role=Role.ADMIN, bot_ids=[t.side.bot.pk],
                        expires_at=ends)  # fmt: skip
    client = t.side.client(key)
    mine = [str(t.side.bot.pk)]
    later = (ends + dt.timedelta(days=1)).isoformat()
    for body in ({}, {"expires_at": None}, {"expires_at": later}):
        refused = client.post(
            "/v1/api-keys", {"name": "widget", "role": "chat", "bot_ids": mine, **body},
            format="json",
        )  # fmt: skip
        assert refused.status_code == 403, body
        assert list(refused.json()["error"]["details"]) == ["expires_at"]
    for body in ({"expires_at": None}, {"expires_at": later}):
        refused = client.patch(f"/v1/api-keys/{key.pk}", body, format="json")
        assert refused.status_code == 403, body
    sooner = (ends - dt.timedelta(days=1)).isoformat()
    made = client.post(
        "/v1/api-keys", {"name": "widget", "role": "chat", "bot_ids": mine, "expires_at": sooner},
        format="json",
    )  # fmt: skip
    assert made.status_code == 201
    assert (
        client.patch(f"/v1/api-keys/{key.pk}", {"name": "renamed"}, format="json").status_code
        == 200
    )
    # A bot-limited key without expiry, and an unlimited one, are not bound.
    assert t.limited.post(
        "/v1/api-keys", {"name": "w", "role": "chat", "bot_ids": mine}, format="json"
    ).status_code == 201  # fmt: skip


def test_a_bot_limited_key_allows_no_key_more_requests_than_itself(t):
    """It raised its own rate_limit_per_minute (5 to 100,000, or to null: the tenant's
    default), and made keys with a higher limit than its own: seen with make run."""
    key = ApiKeyFactory(tenant=t.side.tenant, role=Role.ADMIN, bot_ids=[t.side.bot.pk],
                        rate_limit_per_minute=50)  # fmt: skip
    client = t.side.client(key)
    mine = [str(t.side.bot.pk)]
    for body in ({}, {"rate_limit_per_minute": None}, {"rate_limit_per_minute": 51}):
        refused = client.post(
            "/v1/api-keys", {"name": "widget", "role": "chat", "bot_ids": mine, **body},
            format="json",
        )  # fmt: skip
        assert refused.status_code == 403, body
        error = refused.json()["error"]
        assert error["code"] == "permission_denied"
        assert error["details"] == {
            "rate_limit_per_minute": ["Must be at most 50 (null is the tenant's default, 100000)."]
        }
        assert client.patch(f"/v1/api-keys/{key.pk}", body, format="json").status_code == (
            200 if body == {} else 403
        )
    key.refresh_from_db()
    assert key.rate_limit_per_minute == 50
    made = client.post(
        "/v1/api-keys",
        {"name": "widget", "role": "chat", "bot_ids": mine, "rate_limit_per_minute": 50},
        format="json",
    )
    assert made.status_code == 201
    lowered = client.patch(f"/v1/api-keys/{key.pk}", {"rate_limit_per_minute": 20}, format="json")
    assert lowered.status_code == 200
    # A limited key on the tenant's default may leave its keys on it; an unlimited key is free.
    assert t.limited.post(
        "/v1/api-keys", {"name": "w", "role": "chat", "bot_ids": mine}, format="json"
    ).status_code == 201  # fmt: skip
    assert t.admin.patch(
        f"/v1/api-keys/{key.pk}", {"rate_limit_per_minute": 1000}, format="json"
    ).status_code == 200  # fmt: skip


def test_a_bot_limited_keys_usage_by_key_names_only_the_keys_it_manages(t):
    """It listed the ids and figures of every key that used its bots (the tenant's unlimited
    admin and chat keys among them): seen with make run."""
    UsageDailyFactory(tenant=t.side.tenant, bot_id=t.side.bot.pk, api_key_id=t.limited_key.pk)
    UsageDailyFactory(tenant=t.side.tenant, bot_id=t.other_bot["id"],
                      api_key_id=t.limited_key.pk)  # fmt: skip

    answer = t.limited.get("/v1/usage", {"group_by": "api_key"})

    assert answer.status_code == 200
    body = answer.json()
    assert [row["api_key_id"] for row in body["data"]] == [str(t.limited_key.pk)]
    assert body["data"][0]["requests"] == 1
    # The totals are its bots' in every grouping: the chat key's row of its bot counts there.
    by_bot = t.limited.get("/v1/usage", {"group_by": "bot"}).json()
    assert body["totals"] == by_bot["totals"] and body["totals"]["requests"] == 2
    everyone = t.admin.get("/v1/usage", {"group_by": "api_key"}).json()["data"]
    assert str(t.side.chat_key.pk) in {row["api_key_id"] for row in everyone}


@pytest.mark.parametrize(
    "path",
    ["/v1/bots", "/v1/scopes", "/v1/datasets", "/v1/api-keys", "/v1/usage", "/v1/audit-logs"],
)
def test_a_bot_limited_chat_key_reaches_no_admin_list(t, path):
    chat = t.side.client(
        ApiKeyFactory(tenant=t.side.tenant, role=Role.CHAT, bot_ids=[t.side.bot.pk])
    )
    answer = chat.get(path)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "permission_denied"


def test_a_bot_limited_key_is_shown_no_id_of_a_key_it_does_not_manage(t):
    """A conversation of its bots named the key that held it (``api_key_id``) and an audit
    entry its actor (``actor_id``, ``actor_label``, ``ip``), the tenant's unlimited keys too:
    seen with make run (the make-run key's id on a conversation of the demo bot). Now only the
    keys it manages are named; ``?actor_id=`` of another key finds none of its entries."""
    side, unlimited = t.side, t.side.admin_key
    mine = ApiKeyFactory(tenant=side.tenant, role=Role.CHAT, bot_ids=[side.bot.pk])
    ConversationFactory(tenant=side.tenant, bot=side.bot, api_key=mine)  # a key it manages
    t.admin.patch(f"/v1/bots/{side.bot.pk}", {"top_k": 7}, format="json")  # by the unlimited key
    t.limited.patch(f"/v1/bots/{side.bot.pk}", {"top_k": 6}, format="json")  # by itself

    listed = t.limited.get("/v1/conversations").json()["data"]
    assert {row["api_key_id"] for row in listed} == {None, str(mine.pk)}  # the chat key's: null
    one = t.limited.get(f"/v1/conversations/{side.conversation.pk}").json()
    assert one["api_key_id"] is None
    entries = t.limited.get("/v1/audit-logs", {"action": "bot.update"}).json()["data"]
    actors = [(e["actor_id"], e["actor_label"], e["ip"]) for e in entries]
    assert actors[0] == (str(t.limited_key.pk), t.limited_key.name, "127.0.0.1")  # its own
    assert actors[1:] == [("", "", None)] * 2  # the unlimited key's (the fixture's link, top_k)
    assert str(unlimited.pk) not in t.limited.get("/v1/audit-logs").content.decode()
    assert t.limited.get("/v1/audit-logs", {"actor_id": str(unlimited.pk)}).json()["data"] == []
    # keys without bot_ids are shown every id, as before
    assert str(unlimited.pk) in t.admin.get("/v1/audit-logs").content.decode()
    assert t.admin.get(f"/v1/conversations/{side.conversation.pk}").json()["api_key_id"] == str(
        side.chat_key.pk
    )


def test_the_keys_a_bot_limited_key_creates_share_its_rate_limit(t):
    """A limited key at 3 requests a minute made keys at 3 each, and every one had 3 more a
    minute of its own: seen with make run (the key's 3 used, its new key then got 3 more). Now
    the keys it creates (and the keys they create) take from its bucket too."""
    mine = [str(t.side.bot.pk)]
    maker = ApiKeyFactory(
        tenant=t.side.tenant, role=Role.ADMIN, bot_ids=mine, rate_limit_per_minute=3
    )  # fmt: skip  (one more each 20 s)
    client = t.side.client(maker)
    body = {"name": "made", "role": "admin", "bot_ids": mine, "rate_limit_per_minute": 3}
    made = client.post("/v1/api-keys", body, format="json")  # the maker's 1st
    assert made.status_code == 201
    child = APIClient()
    child.credentials(HTTP_AUTHORIZATION=f"Bearer {made.json()['api_key']}")
    grand = child.post("/v1/api-keys", {**body, "role": "chat"}, format="json")  # the 2nd
    assert grand.status_code == 201
    grandchild = APIClient()
    grandchild.credentials(HTTP_AUTHORIZATION=f"Bearer {grand.json()['api_key']}")

    assert grandchild.get("/v1/conversations").status_code == 200  # the 3rd of the shared 3
    refused = child.get("/v1/bots")
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"]["limit"] == 3 and error["details"]["shared"] is True
    assert "shared with the key that created this one" in error["message"]
    assert refused["RateLimit-Remaining"] == "0" and int(refused["Retry-After"]) >= 1
    assert client.get("/v1/bots").status_code == 429  # the maker's own bucket is spent too
    assert grandchild.get("/v1/conversations").status_code == 429
    # a key without bot_ids makes keys with a limit of their own, as before
    free = t.admin.post(
        "/v1/api-keys",
        {"name": "own", "role": "chat", "bot_ids": mine, "rate_limit_per_minute": 3},
        format="json",
    )
    own = APIClient()
    own.credentials(HTTP_AUTHORIZATION=f"Bearer {free.json()['api_key']}")
    assert own.get("/v1/conversations").status_code == 200
    entry = t.admin.get("/v1/audit-logs", {"target_id": made.json()["id"]}).json()["data"][0]
    assert entry["changes"]["rate_limit_shared"] is True


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_a_limit_a_tenant_wide_key_sets_is_the_keys_own_and_its_keys_follow_it(t):
    """A key made by a limited key kept sharing its creator's 3 requests a minute after a key
    without bot_ids raised its limit to 100: the raise gave it nothing. Its creator's changes
    keep it in the shared budget; a tenant-wide key's change gives it one of its own, and the
    keys it made (sharing the creator's budget through it) now share its budget instead."""
    mine = [str(t.side.bot.pk)]
    maker = ApiKeyFactory(
        tenant=t.side.tenant, role=Role.ADMIN, bot_ids=mine, rate_limit_per_minute=3
    )  # fmt: skip  (one more each 20 s)
    by_maker = t.side.client(maker)
    body = {"name": "made", "role": "admin", "bot_ids": mine, "rate_limit_per_minute": 3}
    made = by_maker.post("/v1/api-keys", body, format="json").json()  # the maker's 1st
    child = bearer(made["api_key"])
    grand = child.post("/v1/api-keys", {**body, "role": "chat"}, format="json").json()  # 2nd
    assert (made["rate_limit_shared"], grand["rate_limit_shared"]) == (True, True)
    kept = by_maker.patch(
        f"/v1/api-keys/{made['id']}", {"rate_limit_per_minute": 2}, format="json"
    )  # 3rd
    assert kept.status_code == 200 and kept.json()["rate_limit_shared"] is True
    assert by_maker.get("/v1/bots").status_code == 429  # the shared 3 are spent

    raised = t.admin.patch(
        f"/v1/api-keys/{made['id']}", {"rate_limit_per_minute": 100}, format="json"
    )
    assert raised.status_code == 200 and raised.json()["rate_limit_shared"] is False
    assert child.get("/v1/bots").status_code == 200  # its own 100, not the maker's spent 3
    assert bearer(grand["api_key"]).get("/v1/conversations").status_code == 200
    assert by_maker.get("/v1/bots").status_code == 429  # the maker's budget is as it was
    assert ApiKey.all_tenants.get(pk=grand["id"]).rate_budget_id == uuid.UUID(made["id"])
    listed = {
        row["id"]: row["rate_limit_shared"] for row in t.admin.get("/v1/api-keys").json()["data"]
    }
    assert (listed[made["id"]], listed[grand["id"]]) == (False, True)
    entries = {
        e["target_id"]: e["changes"]
        for e in t.admin.get("/v1/audit-logs", {"action": "api_key.update"}).json()["data"]
        if e["actor_id"] == str(t.side.admin_key.pk)
    }
    assert entries[made["id"]] == {"rate_limit_per_minute": 100, "rate_limit_shared": False}
    assert entries[grand["id"]] == {
        "rate_limit_shared": True, "rate_budget": "moved with its creator"
    }  # fmt: skip


def test_a_limit_a_bot_limited_key_sets_is_taken_from_its_own_budget(t):
    """A limited key at 3 requests a minute could give a key it manages, made by a key
    without bot_ids, 3 requests a minute of its own: 3 more a minute for each such key. The
    key now joins its budget, with the keys that shared the key's own."""
    mine = [str(t.side.bot.pk)]
    maker = ApiKeyFactory(
        tenant=t.side.tenant, role=Role.ADMIN, bot_ids=mine, rate_limit_per_minute=3
    )  # fmt: skip
    by_maker = t.side.client(maker)
    body = {"name": "free", "role": "admin", "bot_ids": mine, "rate_limit_per_minute": 50}
    free = t.admin.post("/v1/api-keys", body, format="json").json()
    assert free["rate_limit_shared"] is False
    by_free = bearer(free["api_key"])
    made = by_free.post("/v1/api-keys", {**body, "role": "chat"}, format="json").json()
    assert made["rate_limit_shared"] is True  # the free key's 50

    drawn = by_maker.patch(
        f"/v1/api-keys/{free['id']}", {"rate_limit_per_minute": 3}, format="json"
    )
    assert drawn.status_code == 200 and drawn.json()["rate_limit_shared"] is True  # maker's 1st
    assert bearer(made["api_key"]).get("/v1/conversations").status_code == 200  # 2nd
    assert by_free.get("/v1/bots").status_code == 200  # 3rd
    refused = by_free.get("/v1/bots")
    assert refused.status_code == 429 and refused.json()["error"]["details"]["shared"] is True
    rows = ApiKey.all_tenants.filter(pk__in=[free["id"], made["id"]])
    assert {row.rate_budget_id for row in rows} == {maker.pk}  # one hop: never a chain
    # A key's own change of its own limit leaves its budget where it is (it cannot join itself,
    # and a shared one stays shared), as the API calls it.
    for key in (maker, ApiKey.all_tenants.get(pk=free["id"])):
        budget = key.rate_budget_id
        api_key_update(
            tenant=t.side.tenant, actor=Actor.system(), key=key,
            changes={"rate_limit_per_minute": 2}, limited_by=key,
        )  # fmt: skip
        key.refresh_from_db()
        assert (key.rate_limit_per_minute, key.rate_budget_id) == (2, budget)


@pytest.mark.parametrize("kind", ["bots", "scopes", "datasets"])
def test_a_name_taken_out_of_reach_is_the_same_409_as_one_taken_within_it(t, kind):
    """Names are unique in the tenant (decided: a bot-limited key is told a name is taken, as
    any key is), so renaming its bot, scope or dataset to a name another one holds is ``409
    conflict`` whoever holds it. The answer carries the name it sent and nothing of the holder
    (no id, no details): the same answer as when the holder is one it reaches."""
    own = {"bots": t.side.bot.pk, "scopes": t.side.scope.pk, "datasets": t.side.dataset.pk}[kind]
    holder = {"bots": t.other_bot, "scopes": t.their_scope, "datasets": t.theirs}[kind]
    answers = [t.limited.patch(f"/v1/{kind}/{own}", {"name": holder["name"]}, format="json")]
    if kind == "datasets":  # and a name its own bot's other dataset holds
        answers.append(t.limited.patch(f"/v1/{kind}/{own}", {"name": "shared"}, format="json"))
    for answer, name in zip(answers, [holder["name"], "shared"], strict=False):
        assert answer.status_code == 409
        error = answer.json()["error"]
        assert (error["code"], error["details"]) == ("conflict", {})
        assert error["message"] == f"A {kind[:-1]} named {name!r} already exists."
        assert holder["id"] not in answer.content.decode()
