from __future__ import annotations

import datetime as dt

import pytest

from chatbot_site.errors import QuotaExceeded
from conversations.services import quota_check, usage_record
from conversations.tests.factories import ConversationFactory, UsageDailyFactory
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
