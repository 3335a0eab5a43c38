from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatbot_site.errors import QuotaExceeded
from conversations.apis import MESSAGES_PER_PAGE
from conversations.models import Message, MessageRole
from conversations.tests.factories import ConversationFactory, MessageFactory, UsageDailyFactory
from tenants.models import UsageDaily
from tenants.usage import quota_check, tokens_used_this_month, usage_record
from tests.plans import explain, rows_read
from tests.world import build_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def side():
    return build_tenant("acme")


def test_chat_key_sees_only_its_own_conversations(side):
    mine = side.conversation
    admins = ConversationFactory(tenant=side.tenant, bot=side.bot, api_key=side.admin_key)
    chat = side.client(side.chat_key)
    assert [c["id"] for c in chat.get("/v1/conversations").json()["data"]] == [str(mine.pk)]
    assert chat.get(f"/v1/conversations/{admins.pk}").status_code == 404
    assert chat.delete(f"/v1/conversations/{admins.pk}").status_code == 404
    listed = {c["id"] for c in side.client().get("/v1/conversations").json()["data"]}
    assert listed == {str(mine.pk), str(admins.pk)}


def test_conversation_detail_has_messages_with_usage_and_refusal(side):
    body = side.client(side.chat_key).get(f"/v1/conversations/{side.conversation.pk}").json()
    assert [m["id"] for m in body["messages"]] == [str(side.message.pk)]
    message = body["messages"][0]
    assert message["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert message["refusal"] is None


def long_conversation(side, count: int) -> list[str]:
    """``count`` more messages in the world's conversation, three a second (ties that the
    cursor's id breaks); all its message ids, oldest first."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    Message.all_tenants.bulk_create(
        Message(tenant=side.tenant, conversation=side.conversation, role=MessageRole.USER,
                content=f"question {n}", created_at=start + dt.timedelta(seconds=n // 3))
        for n in range(count)
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE conversations_message")
    ordered = Message.objects.for_tenant(side.tenant).order_by("created_at", "pk")
    return [str(pk) for pk in ordered.values_list("pk", flat=True)]


def test_a_long_conversation_is_read_a_page_of_messages_at_a_time(side):
    """Every message was in one answer: 10,000 messages were 5.5 MB and took 1.8-2.1 s."""
    every = long_conversation(side, MESSAGES_PER_PAGE)  # and the world's one
    client = side.client(side.chat_key)
    url = f"/v1/conversations/{side.conversation.pk}"
    with CaptureQueriesContext(connection) as queries:
        first = client.get(url).json()
    assert [m["id"] for m in first["messages"]] == every[:MESSAGES_PER_PAGE]
    (sql,) = [
        q["sql"] for q in queries.captured_queries if 'FROM "conversations_message"' in q["sql"]
    ]
    assert rows_read(explain(sql)) <= MESSAGES_PER_PAGE + 1  # the page, not every message
    rest = client.get(url, {"cursor": first["next_cursor"]}).json()
    assert [m["id"] for m in rest["messages"]] == every[MESSAGES_PER_PAGE:]
    assert rest["next_cursor"] is None
    assert rest["id"] == str(side.conversation.pk)  # the conversation again, its next messages

    pages, cursor = [], ""
    while True:
        body = client.get(url, {"limit": 400, "cursor": cursor}).json()
        pages.append([m["id"] for m in body["messages"]])
        if not (cursor := body["next_cursor"]):
            break
    assert [len(page) for page in pages] == [400, 400, 201]
    assert [pk for page in pages for pk in page] == every

    for limit in ("0", str(MESSAGES_PER_PAGE + 1), "all"):
        response = client.get(url, {"limit": limit})
        assert response.status_code == 400
        assert response.json()["error"]["details"] == {
            "limit": [f"Must be an integer from 1 to {MESSAGES_PER_PAGE}."]
        }
    assert client.get(url, {"cursor": "not-a-cursor"}).status_code == 400


def test_a_short_conversation_is_all_there_as_before(side):
    every = long_conversation(side, 5)
    body = side.client().get(f"/v1/conversations/{side.conversation.pk}").json()
    assert [m["id"] for m in body["messages"]] == every and body["next_cursor"] is None


def test_conversation_filters(side):
    client = side.client()
    assert client.get("/v1/conversations", {"bot_id": "not-a-uuid"}).status_code == 400
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    assert client.get("/v1/conversations", {"from": later}).json()["data"] == []
    assert len(client.get("/v1/conversations", {"bot_id": str(side.bot.pk)}).json()["data"]) == 1


def test_usage_groups_and_totals(side):
    today = dt.datetime.now(dt.UTC).date()
    usage_record(tenant=side.tenant, bot_id=side.bot.pk, api_key_id=side.chat_key.pk,
                 prompt_tokens=50, completion_tokens=5, embedding_tokens=3)  # fmt: skip
    UsageDailyFactory(tenant=side.tenant, day=today - dt.timedelta(days=1), bot_id=None,
                      api_key_id=None, prompt_tokens=10, completion_tokens=1)  # fmt: skip
    client = side.client()
    by_day = client.get("/v1/usage", {"group_by": "day"}).json()
    assert [row["day"] for row in by_day["data"]] == [str(today - dt.timedelta(days=1)), str(today)]
    assert by_day["totals"]["prompt_tokens"] == 100 + 50 + 10
    assert by_day["totals"]["requests"] == 3
    by_bot = client.get("/v1/usage", {"group_by": "bot"}).json()["data"]
    assert {row["bot_id"] for row in by_bot} == {str(side.bot.pk), None}
    assert client.get("/v1/usage", {"group_by": "week"}).status_code == 400
    assert client.get("/v1/usage", {"from": "2026-02-30"}).status_code == 400


def test_usage_as_api_md_writes_it_with_empty_parameters_is_the_default_grouping(side):
    # API.md writes `?from=&to=&group_by=day|bot|api_key`; an empty parameter is an absent one
    # on every other list (`?status=`, `?bot_id=`, `?from=`), and an empty group_by was a 400.
    client = side.client()
    by_default = client.get("/v1/usage")
    written = client.get("/v1/usage?from=&to=&group_by=")
    assert written.status_code == 200, written.content
    assert written.json() == by_default.json()
    assert "day" in written.json()["data"][0]


def test_usage_rows_are_paged_as_every_list_with_totals_for_the_whole_range(side):
    """/v1/usage had no cursor: a year by day, or a tenant's hundreds of keys, was one answer.
    Every grouping pages by its key (the ingestion's null bot or key last); totals stay the
    range's."""
    UsageDaily.objects.for_tenant(side.tenant).delete()
    start = dt.date(2025, 1, 1)
    bots = sorted(uuid.uuid4() for _ in range(4))
    for n, bot_id in enumerate(bots):
        UsageDailyFactory(tenant=side.tenant, day=start + dt.timedelta(days=n), bot_id=bot_id,
                          api_key_id=None, prompt_tokens=n + 1)  # fmt: skip
    UsageDailyFactory(tenant=side.tenant, day=start + dt.timedelta(days=4), bot_id=None,
                      api_key_id=None, prompt_tokens=5)  # fmt: skip
    client = side.client()
    days = [str(start + dt.timedelta(days=n)) for n in range(5)]
    for group_by, column, keys in (
        ("day", "day", days),
        ("bot", "bot_id", [*map(str, bots), None]),
    ):
        seen: list[str | None] = []
        params = {"from": "2025-01-01", "to": "2025-12-31", "group_by": group_by, "limit": 2}
        pages = 0
        while True:
            body = client.get("/v1/usage", params).json()
            pages += 1
            assert len(body["data"]) <= 2
            assert body["totals"]["prompt_tokens"] == 15  # the range's, on every page
            seen += [row[column] for row in body["data"]]
            if body["next_cursor"] is None:
                break
            params["cursor"] = body["next_cursor"]
        assert (seen, pages) == (keys, 3), group_by
    whole = client.get("/v1/usage", {"from": "2025-01-01", "to": "2025-12-31"}).json()
    assert len(whole["data"]) == 5 and whole["next_cursor"] is None  # under the default 50
    day_cursor = client.get(
        "/v1/usage", {"from": "2025-01-01", "to": "2025-12-31", "limit": 1}
    ).json()["next_cursor"]
    for bad in ({"cursor": "nonsense"}, {"cursor": day_cursor, "group_by": "bot"},
                {"limit": 0}, {"limit": 201}):  # fmt: skip
        response = client.get("/v1/usage", bad)
        assert response.status_code == 400, bad
        assert set(response.json()["error"]["details"]) <= {"cursor", "limit"}


def test_quota_is_enforced_and_readable(side):
    side.tenant.monthly_token_quota = 200
    side.tenant.save(update_fields=["monthly_token_quota"])
    quota_check(tenant=side.tenant)  # 120 used
    usage_record(tenant=side.tenant, bot_id=side.bot.pk, api_key_id=None, prompt_tokens=80)
    with pytest.raises(QuotaExceeded) as excinfo:
        quota_check(tenant=side.tenant)
    assert excinfo.value.status == 429 and excinfo.value.code == "quota_exceeded"
    quota = side.client().get("/v1/usage").json()["quota"]
    assert quota == {"monthly_token_quota": 200, "used_this_month": 200, "remaining": 0}


def test_usage_from_last_month_does_not_count_against_this_months_quota(side):
    side.tenant.monthly_token_quota = 1000
    side.tenant.save(update_fields=["monthly_token_quota"])
    first = dt.datetime.now(dt.UTC).date().replace(day=1)
    UsageDailyFactory(tenant=side.tenant, day=first - dt.timedelta(days=1), prompt_tokens=5000)
    quota_check(tenant=side.tenant)


def test_tokens_count_on_the_day_and_in_the_month_of_the_message_that_carries_them(side):
    """The day was read from the clock after the turn's messages were stored: an answer
    stored at 23:59:59.999 on January 31 could count on February 1 — in February's quota."""
    UsageDaily.objects.for_tenant(side.tenant).delete()
    last_moment = dt.datetime(2026, 1, 31, 23, 59, 59, 999000, tzinfo=dt.UTC)
    answer = MessageFactory(tenant=side.tenant, conversation=side.conversation,
                            role=MessageRole.ASSISTANT, prompt_tokens=70, completion_tokens=30,
                            created_at=last_moment)  # fmt: skip

    usage_record(tenant=side.tenant, bot_id=side.bot.pk, api_key_id=side.chat_key.pk,
                 prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                 at=answer.created_at)  # fmt: skip

    january = side.client().get("/v1/usage", {"from": "2026-01-01", "to": "2026-01-31"}).json()
    assert [(row["day"], row["total_tokens"]) for row in january["data"]] == [("2026-01-31", 100)]
    assert tokens_used_this_month(tenant=side.tenant, today=dt.date(2026, 1, 31)) == 100
    assert tokens_used_this_month(tenant=side.tenant, today=dt.date(2026, 2, 1)) == 0


@pytest.mark.django_db(transaction=True)
def test_deleting_a_conversation_while_a_turn_is_being_stored_deletes_that_turn_too():
    """A streamed answer is stored when it ends; a DELETE at that moment deleted the messages it
    saw, then the conversation, whose new message then failed the deletion: a 500, and the
    conversation stayed. Now the deletion waits for the turn and deletes its message too."""
    import threading
    import time

    from django.db import connection, transaction
    from django.db.models import F

    from conversations.models import Conversation, Message, MessageRole

    side = build_tenant("racing")
    conversation = side.conversation
    written, commit = threading.Event(), threading.Event()

    def a_turn_being_stored() -> None:  # what chat._store does for a stored conversation
        try:
            with transaction.atomic():
                Conversation.objects.for_tenant(side.tenant).filter(pk=conversation.pk).update(
                    message_count=F("message_count") + 1
                )
                Message.objects.for_tenant(side.tenant).create(
                    tenant=side.tenant, conversation=conversation,
                    role=MessageRole.ASSISTANT, content="the answer",
                )  # fmt: skip
                written.set()
                commit.wait(10)
        finally:
            connection.close()

    answers = []

    def delete() -> None:
        try:
            answers.append(side.client().delete(f"/v1/conversations/{conversation.pk}"))
        finally:
            connection.close()

    turn = threading.Thread(target=a_turn_being_stored)
    turn.start()
    assert written.wait(10)
    deleting = threading.Thread(target=delete)
    deleting.start()
    time.sleep(0.5)  # the DELETE is waiting for the turn's transaction
    commit.set()
    turn.join(10)
    deleting.join(10)
    assert answers[0].status_code == 204, answers[0].content
    assert not Conversation.all_tenants.filter(pk=conversation.pk).exists()
    assert not Message.all_tenants.filter(conversation_id=conversation.pk).exists()


@pytest.mark.parametrize(
    "day, first",
    [("2026-12-31", "2027-01-01"), ("2026-01-31", "2026-02-01"), ("2028-02-29", "2028-03-01"),
     ("2026-06-01", "2026-07-01")],
)  # fmt: skip
def test_a_quota_resets_on_the_first_of_the_next_month(day, first):
    from tenants.usage import next_month_start

    assert next_month_start(dt.date.fromisoformat(day)) == dt.date.fromisoformat(first)
