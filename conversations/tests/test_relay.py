"""The SSE relay: pings while idle, coalescing, errors, and cancellation reaching the source;
the events' framing."""

from __future__ import annotations

import asyncio
import json

import pytest

from conversations.chat_api import relay, sse


async def collect(source, interval: float) -> list:
    return [item async for item in relay(source, interval)]


def test_pings_only_while_idle_and_pieces_in_order():
    async def slow():
        yield "a"
        await asyncio.sleep(0.35)
        yield "b"

    items = asyncio.run(collect(slow(), 0.1))
    assert items[0] == "a" and items[-1] == "b"
    assert 2 <= items.count(None) <= 4 and len(items) == items.count(None) + 2


def test_pieces_that_arrive_together_are_coalesced():
    async def burst():
        for piece in ("x", "y", "z"):
            yield piece

    assert asyncio.run(collect(burst(), 5)) == ["xyz"]


def test_source_errors_reach_the_consumer():
    async def failing():
        yield "partial"
        await asyncio.sleep(0.01)
        raise RuntimeError("provider fell over")

    async def run():
        got = []
        with pytest.raises(RuntimeError, match="fell over"):
            async for item in relay(failing(), 5):
                got.append(item)
        return got

    assert asyncio.run(run()) == ["partial"]


def test_cancelling_the_consumer_closes_the_source():
    closed = asyncio.Event()

    async def endless():
        try:
            while True:
                yield "piece "
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    async def run() -> bool:
        async def consume():
            async for _ in relay(endless(), 5):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return closed.is_set()

    assert asyncio.run(run())


def test_a_failed_check_ends_the_relay_with_its_error_and_closes_the_source():
    """``check`` runs every interval while pieces keep coming (no idle time, so no ping):
    its error reaches the consumer, the source is closed, and nothing read after is sent."""
    closed = asyncio.Event()
    calls: list[int] = []
    read: list[str] = []

    async def endless():
        try:
            for i in range(10_000):
                read.append(f"{i} ")
                yield f"{i} "
                await asyncio.sleep(0.005)
        finally:
            closed.set()

    async def check():
        calls.append(len(read))
        return PermissionError("revoked") if len(calls) == 2 else None

    async def run() -> list:
        got = []
        with pytest.raises(PermissionError, match="revoked"):
            async for item in relay(endless(), 0.1, check):
                got.append(item)
        return got

    got = asyncio.run(run())
    assert len(calls) == 2 and closed.is_set()
    assert None not in got  # never idle: no ping, yet checked
    assert "".join(got) == "".join(read)  # everything read was sent, nothing after
    assert len(read) < 10_000


def test_an_events_data_is_one_line_however_its_lines_are_read():
    """API.md: "Each data: is one line of JSON". JSON leaves U+2028, U+2029 and U+0085 raw,
    which str.splitlines (and many log and line readers) end a line at: a passage quoting one
    split its delta's data in two. They are escaped; the JSON reads back the same."""
    content = "one\u2028two\u2029three\x85four é"
    frame = sse(7, "delta", {"content": content}).decode()
    lines = frame.splitlines()
    assert lines[:2] == ["id: 7", "event: delta"] and lines[3:] == [""]  # the blank line
    assert lines[2].startswith("data: ")
    assert json.loads(lines[2].removeprefix("data: ")) == {"content": content}
    assert "é" in lines[2]  # only those three are escaped: the rest stays as it is
