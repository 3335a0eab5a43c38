"""The late store's exit, in process (the turns it stores at exit: ``test_chat_stream.py``,
against a real daphne whose database is frozen)."""

from __future__ import annotations

import logging

import pytest

from conversations.chat import Outcome, chat_open, chat_release
from conversations.late_store import LateStores
from tests.world import build_tenant

pytestmark = pytest.mark.django_db


def test_a_turn_kept_once_the_process_has_stopped_trying_is_logged_lost_at_once(caplog):
    """A turn whose store failed after the exit's tries were over (a worker thread finishing
    while the process stops) was kept by a thread that never tried it, and went with the
    process without a word. Now it is lost at once, with its ``chat_store_abandoned`` line."""
    world = build_tenant("alpha")
    caplog.set_level(logging.INFO)
    stores = LateStores()
    stores.stop()  # nothing held: at once
    turn = chat_open(tenant=world.tenant, api_key=world.chat_key, bot_id=world.bot.pk,
                     session_id=None, messages=[{"role": "user", "content": "When do plans renew?"}],
                     metadata={})  # fmt: skip
    chat_release(turn)
    assert stores.add(turn, Outcome("Plans renew yearly.", [], "stop")) is False
    lost = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "chat_store_abandoned"
    ]
    assert len(lost) == 1, caplog.text
    assert lost[0]["reason"] == "shutdown" and lost[0]["message_id"] == str(turn.message_id)
    assert lost[0]["conversation_id"] == str(turn.conversation.pk)
    assert "renew" not in str(lost[0])
