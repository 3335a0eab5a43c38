"""The late store and its spool, in process (the turns a real daphne keeps while its database is
frozen, stores at exit, or leaves to the drain when it is killed: ``test_chat_stream.py``)."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Any

import pytest
from django.db.models import Sum
from django.test import override_settings

from chatbot_site.redis import get_redis
from conversations.chat import Outcome, Turn, chat_open, chat_release
from conversations.late_spool import OWNERS, TURN, TURNS, Spool, spool
from conversations.late_store import LateStores, late_turn, late_turn_store, late_turns_drain
from conversations.models import Conversation, Message
from tenants.models import UsageDaily
from tests.world import TenantWorld, build_tenant

pytestmark = pytest.mark.django_db(transaction=True)  # the drain runs outside any transaction


def open_turn(world: TenantWorld) -> Turn:
    turn = chat_open(tenant=world.tenant, api_key=world.chat_key, bot_id=world.bot.pk,
                     session_id=None, messages=[{"role": "user", "content": "When do plans renew?"}],
                     metadata={})  # fmt: skip
    chat_release(turn)
    return turn


def answered() -> Outcome:
    return Outcome("Plans renew yearly.", [], "stop", prompt_tokens=40, completion_tokens=4)


def events(caplog: Any, name: str) -> list[dict[str, Any]]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == name]


def counted(world: TenantWorld) -> dict[str, int]:
    """The tenant's tokens and requests counted so far."""
    usage = UsageDaily.objects.for_tenant(world.tenant).aggregate(
        prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), requests=Sum("requests")
    )
    return {name: value or 0 for name, value in usage.items()}


def stored(world: TenantWorld, turn: Turn, before: dict[str, int]) -> dict[str, Any]:
    """What the database holds of the turn: its messages, and the tokens counted since
    ``before``."""
    conversation = Conversation.objects.for_tenant(world.tenant).get(pk=turn.conversation.pk)
    messages = Message.objects.for_tenant(world.tenant).filter(conversation=conversation)
    return {
        "messages": sorted(messages.values_list("role", "content")),
        "message_count": conversation.message_count,
        "usage": {name: value - before[name] for name, value in counted(world).items()},
    }


def test_a_turn_kept_once_the_process_has_stopped_trying_is_handed_to_the_drain(caplog):
    """A turn whose store failed after the exit's tries were over (a worker thread finishing
    while the process stops) went with the process: first without a word, then logged lost.
    Now it is left in the spool, and the drain stores it — once, its usage counted."""
    world = build_tenant("alpha")
    caplog.set_level(logging.INFO)
    stores = LateStores()
    stores.stop()  # nothing held: at once
    turn = open_turn(world)
    before = counted(world)
    assert stores.add(turn, answered()) is True
    handed = events(caplog, "chat_store_handed_over")
    assert len(handed) == 1 and handed[0]["message_id"] == str(turn.message_id), caplog.text
    assert handed[0]["reason"] == "shutdown" and "renew" not in str(handed[0])
    assert not events(caplog, "chat_store_abandoned")

    assert late_turns_drain()["stored"] == 1
    assert stored(world, turn, before) == {
        "messages": [("assistant", "Plans renew yearly."), ("user", "When do plans renew?")],
        "message_count": 2,
        "usage": {"prompt": 40, "completion": 4, "requests": 1},
    }
    recovered = events(caplog, "chat_store_recovered")
    assert [r["message_id"] for r in recovered] == [str(turn.message_id)]
    assert recovered[0]["already_stored"] is False
    assert get_redis().hlen(TURNS) == 0 and get_redis().hlen(OWNERS) == 0  # out of the spool
    assert late_turns_drain()["stored"] == 0  # and not stored again


def test_a_turn_stored_whose_process_died_before_unspooling_it_is_not_stored_twice(caplog):
    """A store interrupted after its COMMIT (the process killed before it removed the turn
    from the spool; a frozen database that took the COMMIT and never said so) left a stored
    turn to be stored again: the drain now finds its answer stored and writes nothing — no
    second answer or question, no tokens counted twice."""
    world = build_tenant("alpha")
    caplog.set_level(logging.INFO)
    turn = open_turn(world)
    late = late_turn(turn, answered())
    assert spool.put(late, owned=False)
    before = counted(world)
    assert late_turn_store(late) == "stored"  # committed; the removal never came
    once = stored(world, turn, before)

    assert late_turns_drain() == {
        "stored": 0, "already_stored": 1, "dropped": 0, "failed": 0, "expired": 0, "left": 0,
    }  # fmt: skip
    assert stored(world, turn, before) == once
    assert once["message_count"] == 2 and len(once["messages"]) == 2
    assert once["usage"] == {"prompt": 40, "completion": 4, "requests": 1}
    assert events(caplog, "chat_store_recovered")[0]["already_stored"] is True
    assert not events(caplog, "chat_store_abandoned")
    assert get_redis().hlen(TURNS) == 0


def test_the_drain_leaves_a_living_process_its_turns(caplog):
    """A turn is its process's while the process lives (its lease): another process's drain
    does not take it; once the process is gone (its lease lapsed, or ended on its way out),
    the drain does."""
    world = build_tenant("alpha")
    turn = open_turn(world)
    late = late_turn(turn, answered())
    holder = Spool()  # another process, which holds the turn
    assert holder.put(late)
    assert spool.claim(10) == []
    holder.release()
    assert [t.message_id for t in spool.claim(10)] == [str(turn.message_id)]


def test_a_turn_the_spool_cannot_take_is_logged_lost_at_shutdown(caplog):
    """With Redis not answering the spool takes nothing: a turn added while the process
    stops is lost at once, with its ``chat_store_abandoned`` line and ids, as before."""
    world = build_tenant("alpha")
    caplog.set_level(logging.INFO)
    stores = LateStores()
    stores.stop()
    turn = open_turn(world)
    get_redis.cache_clear()
    try:
        with override_settings(REDIS_URL="redis://127.0.0.1:9/0"):  # nothing listens there
            assert stores.add(turn, answered()) is False
    finally:
        get_redis.cache_clear()
    lost = events(caplog, "chat_store_abandoned")
    assert len(lost) == 1, caplog.text
    assert lost[0]["reason"] == "shutdown" and lost[0]["message_id"] == str(turn.message_id)
    assert lost[0]["conversation_id"] == str(turn.conversation.pk)
    assert "renew" not in str(lost[0])


@pytest.mark.integration
def test_a_real_worker_with_beat_stores_what_a_dead_process_left(tmp_path):
    """The drain that runs whatever the API does: Celery beat's
    ``conversations.drain_late_turns``, on a real worker (as ``make run`` and docker-compose
    run them), stores a turn left in the spool by a process that is gone."""
    from tests.processes import celery_worker, child_env, wait_for

    world = build_tenant("alpha")
    turn = open_turn(world)
    before = counted(world)
    assert spool.put(late_turn(turn, answered()), owned=False)  # its process is gone
    log = tmp_path / "worker.log"
    with celery_worker(child_env(CHAT_LATE_STORE_DRAIN_SECONDS="1", LOG_LEVEL="INFO"), log,
                       beat=True):  # fmt: skip
        try:
            wait_for(
                lambda: Message.objects.for_tenant(world.tenant).filter(pk=turn.message_id),
                timeout=120,
                what="the worker's drain to store the turn",
            )
        except AssertionError:
            raise AssertionError(log.read_text()[-4000:]) from None
    assert stored(world, turn, before)["usage"] == {"prompt": 40, "completion": 4, "requests": 1}
    assert "chat_store_recovered" in log.read_text()
    assert get_redis().hlen(TURNS) == 0


def continue_turn(world: TenantWorld) -> Turn:
    """A turn on the world's stored conversation."""
    turn = chat_open(tenant=world.tenant, api_key=world.chat_key, bot_id=world.bot.pk,
                     session_id=world.conversation.pk,
                     messages=[{"role": "user", "content": "When do plans renew?"}],
                     metadata={})  # fmt: skip
    chat_release(turn)
    return turn


def test_a_turn_stored_again_after_its_conversation_was_deleted_counts_its_usage_once(caplog):
    """A kept turn whose conversation was deleted meanwhile writes no message — only its usage
    — and left nothing a second store could fail on: a process killed between that COMMIT and
    removing the turn from the spool (or a COMMIT that went through unheard) had the drain
    store it again and count its tokens twice. Now the first store's receipt stops the second:
    nothing written, counted once."""
    world = build_tenant("alpha")
    caplog.set_level(logging.INFO)
    turn = continue_turn(world)
    late = late_turn(turn, answered())
    assert spool.put(late, owned=False)
    # Deleted as the turn waited (its spool entry left: Redis did not answer the deletion).
    Conversation.objects.for_tenant(world.tenant).filter(pk=world.conversation.pk).delete()
    before = counted(world)
    # Usage counted, no message; the removal never came.
    assert late_turn_store(late) == "conversation_deleted"

    assert late_turns_drain() == {
        "stored": 0, "already_stored": 1, "dropped": 0, "failed": 0, "expired": 0, "left": 0,
    }  # fmt: skip
    assert {n: v - before[n] for n, v in counted(world).items()} == {
        "prompt": 40, "completion": 4, "requests": 1,
    }  # fmt: skip
    assert not Message.objects.for_tenant(world.tenant).filter(pk=turn.message_id).exists()
    assert get_redis().hlen(TURNS) == 0


def test_a_deleted_new_conversation_does_not_come_back_from_the_spool(caplog):
    """A new conversation stored by a late store whose removal from the spool never came (the
    process killed after the COMMIT), then deleted by its client: the drain stored the turn
    again and the conversation came back, its usage counted twice, and its chat text stayed in
    Redis meanwhile. Now the deletion removes the conversation's turns from the spool as it
    commits, and a store that comes all the same writes nothing (its receipt)."""
    from conversations.services import conversation_delete
    from tenants.services import Actor

    world = build_tenant("alpha")
    caplog.set_level(logging.INFO)
    turn = open_turn(world)
    late = late_turn(turn, answered())
    assert spool.put(late, owned=False)
    before = counted(world)
    assert late_turn_store(late) == "stored"
    conversation = Conversation.objects.for_tenant(world.tenant).get(pk=turn.conversation.pk)

    conversation_delete(tenant=world.tenant, actor=Actor.system("tests"),
                        conversation=conversation)  # fmt: skip
    assert not [key for key in get_redis().scan_iter("chatbot:late:*")
                if get_redis().type(key) != b"hash" or get_redis().hlen(key)]  # fmt: skip
    forgotten = events(caplog, "chat_store_forgotten")
    assert forgotten[0]["message_ids"] == [str(turn.message_id)], caplog.text
    assert late_turns_drain()["stored"] == 0
    # A store that comes all the same writes nothing.
    assert late_turn_store(late) == "already_stored"
    assert not Conversation.objects.for_tenant(world.tenant).filter(pk=conversation.pk).exists()
    assert {n: v - before[n] for n, v in counted(world).items()} == {
        "prompt": 40, "completion": 4, "requests": 1,
    }  # fmt: skip


def test_everything_the_spool_holds_expires_within_an_hour():
    """The spool held masked chat text in Redis with no expiry: a turn left by a dead process
    stayed until a drain took it — forever without Celery beat. Now every key it writes
    expires, at most ``KEEP_SECONDS`` (an hour, when a turn is abandoned anyway) after it was
    written."""
    from conversations.late_store import KEEP_SECONDS

    world = build_tenant("alpha")
    held, left = open_turn(world), open_turn(world)
    assert spool.put(late_turn(held, answered()))  # a living process's
    assert spool.put(late_turn(left, answered()), owned=False)  # a dead one's
    assert [t.message_id for t in Spool().claim(10)] == [str(left.message_id)]  # a drain's
    keys = list(get_redis().scan_iter("chatbot:late:*"))
    assert len(keys) >= 4, keys  # the two turns, their index, their owners (and leases)
    ttls = {key: get_redis().ttl(key) for key in keys}
    assert all(0 < ttl <= KEEP_SECONDS for ttl in ttls.values()), ttls


def test_a_turn_the_spool_refused_is_handed_over_at_exit_once_redis_is_back(caplog):
    """A turn kept while Redis did not answer lived in its process's memory only: a process
    stopped with it held lost it (``chat_store_abandoned``) even with Redis back by then. Now it
    is offered to the spool again — at exit, handed over to the drain — and stored once."""
    import threading

    from django.db import transaction

    from bots.models import Bot

    world = build_tenant("alpha")
    caplog.set_level(logging.INFO)
    turn = open_turn(world)
    before = counted(world)
    stores = LateStores()
    locked, release, done = threading.Event(), threading.Event(), threading.Event()

    def hold_the_bot() -> None:  # the database does not store the turn while the test runs
        from django.db import connection

        try:
            with transaction.atomic():
                list(Bot.objects.for_tenant(world.tenant).select_for_update().filter(
                    pk=world.bot.pk))  # fmt: skip
                locked.set()
                release.wait(60)
        finally:
            connection.close()
            done.set()

    holder = threading.Thread(target=hold_the_bot)
    holder.start()
    try:
        assert locked.wait(30)
        get_redis.cache_clear()
        try:
            with override_settings(REDIS_URL="redis://127.0.0.1:9/0"):  # nothing listens there
                assert stores.add(turn, answered()) is True
        finally:
            get_redis.cache_clear()
        assert events(caplog, "chat_store_deferred")[0]["spooled"] is False
        stores.stop(seconds=0)  # Redis answers again
    finally:
        release.set()
        holder.join(60)
    handed = events(caplog, "chat_store_handed_over")
    assert [h["message_id"] for h in handed] == [str(turn.message_id)], caplog.text
    assert not events(caplog, "chat_store_abandoned")

    late_turns_drain()  # (or the process's own attempt, under way when it stopped: once)
    assert stored(world, turn, before) == {
        "messages": [("assistant", "Plans renew yearly."), ("user", "When do plans renew?")],
        "message_count": 2,
        "usage": {"prompt": 40, "completion": 4, "requests": 1},
    }


def test_the_drain_prunes_receipts_no_store_can_need_any_more():
    """Each stored turn's receipt is only needed while a second store of it can come (a turn
    is kept at most an hour): the drain deletes those older than ``RECEIPT_SECONDS``, so the
    table stays as small as two hours of turns."""
    import datetime as dt

    from conversations.late_store import RECEIPT_SECONDS
    from conversations.models import TurnReceipt

    world = build_tenant("alpha")
    old, recent = open_turn(world), open_turn(world)
    for turn in (old, recent):
        assert late_turn_store(late_turn(turn, answered())) == "stored"
    aged = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=RECEIPT_SECONDS + 60)
    TurnReceipt.all_tenants.filter(pk=old.message_id).update(created_at=aged)

    late_turns_drain()
    assert list(TurnReceipt.all_tenants.values_list("pk", flat=True)) == [recent.message_id]


@pytest.mark.parametrize("conversation", ["new", "stored"])
def test_a_deleted_bots_spooled_turn_is_dropped_with_one_line(caplog, conversation):
    """A spooled turn whose bot was deleted meanwhile (with its conversations): the drain
    creates nothing again — no conversation, no message — counts the tokens it spent (usage
    outlives a bot), leaves the spool and says so in one line, ``chat_store_dropped``. It said
    ``chat_bot_deleted`` and ``chat_store_recovered`` (two lines, the second as if stored), and
    counted it ``stored``."""
    world = build_tenant("alpha")
    caplog.set_level(logging.INFO)
    turn = open_turn(world) if conversation == "new" else continue_turn(world)
    late = late_turn(turn, answered())
    assert spool.put(late, owned=False)
    before = counted(world)
    world.bot.delete()
    caplog.clear()

    assert late_turns_drain() == {
        "stored": 0, "already_stored": 0, "dropped": 1, "failed": 0, "expired": 0, "left": 0,
    }  # fmt: skip
    lines = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    assert [line["event"] for line in lines] == ["chat_store_dropped"], caplog.text
    assert lines[0]["reason"] == "bot_deleted" and lines[0]["usage_counted"] is True
    assert lines[0]["message_id"] == str(turn.message_id)
    assert lines[0]["bot_id"] == late.bot_id
    assert not Conversation.all_tenants.filter(pk=turn.conversation.pk).exists()
    assert not Message.all_tenants.filter(pk=turn.message_id).exists()
    assert {n: v - before[n] for n, v in counted(world).items()} == {
        "prompt": 40, "completion": 4, "requests": 1,
    }  # fmt: skip
    assert get_redis().hlen(TURNS) == 0 and not get_redis().exists(TURN + late.message_id)
    caplog.clear()
    assert late_turns_drain()["dropped"] == 0  # not tried again
    assert not [r for r in caplog.records if isinstance(r.msg, dict)]


def test_a_spooled_turn_whose_tenant_is_gone_is_dropped_without_a_traceback(caplog):
    """A turn whose tenant no longer exists (tenants are deactivated, not deleted, by the
    service; by hand in the database they can be): its store fails every foreign key at COMMIT,
    and the drain logged ``chat_store_abandoned`` as an ERROR with a traceback. It writes
    nothing and is dropped with one line, as a deleted bot's; the drain's other turns are
    stored."""
    world = build_tenant("alpha")
    caplog.set_level(logging.INFO)
    kept = late_turn(open_turn(world), answered())
    orphan = dataclasses.replace(late_turn(open_turn(world), answered()),
                                 tenant_id=str(uuid.uuid4()), since=kept.since - 1)  # fmt: skip
    assert spool.put(orphan, owned=False) and spool.put(kept, owned=False)
    before = counted(world)
    caplog.clear()

    assert late_turns_drain() == {
        "stored": 1, "already_stored": 0, "dropped": 1, "failed": 0, "expired": 0, "left": 0,
    }  # fmt: skip
    lines = [r for r in caplog.records if isinstance(r.msg, dict)]
    assert [r.msg["event"] for r in lines] == ["chat_store_dropped", "chat_store_recovered"]
    assert lines[0].msg["reason"] == "tenant_deleted" and lines[0].msg["usage_counted"] is False
    assert all(r.exc_info is None for r in lines)
    assert not Message.all_tenants.filter(pk=orphan.message_id).exists()
    assert {n: v - before[n] for n, v in counted(world).items()} == {
        "prompt": 40, "completion": 4, "requests": 1,
    }  # fmt: skip
    assert get_redis().hlen(TURNS) == 0
