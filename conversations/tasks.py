"""Celery tasks: thin, id-based, idempotent (STYLE.md §6)."""

from __future__ import annotations

from celery import shared_task


@shared_task(
    name="conversations.drain_late_turns", ignore_result=True, soft_time_limit=100, time_limit=120
)
def drain_late_turns() -> dict[str, int]:
    """Store the chat turns a dead API process left in the spool (conversations.late_store)."""
    from conversations.late_store import late_turns_drain

    return late_turns_drain()
