"""The provider's event stream as the network delivers it: the events each read completes are
handed over together; lines split across reads, CRLF, comments and the end are handled."""

from __future__ import annotations

import asyncio
import json
import selectors
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import openai
import pytest

from conversations.llm import Delta, LLMError, LLMRequest
from conversations.llm.openai import OpenAILLM, _Events, _parse
from tests.fake_openai import fake_openai

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    """Waits without real time passing: when nothing is ready, the clock jumps to the loop's
    next timer instead of sleeping until it."""

    now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        ready = super().select(0 if timeout is not None else None)
        if not ready and timeout:
            self.now += timeout
        return ready


class _VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is virtual (as trio's autojump clock): it advances only while
    every task waits, by exactly what the next timer asks. The pacing tests below measure gaps
    of a few milliseconds; on the real clock a busy machine (the suite's parallel workers, the
    neighbours' builds) stretched the 5 ms between a fake provider's tokens to 50 and more, and
    the reads they count grew past their bound. Their streams are in memory, no socket."""

    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)

    def time(self) -> float:
        return self._jumping.now


def run_on_virtual_clock(coroutine: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=_VirtualClockLoop) as runner:
        return runner.run(coroutine)


async def reads(*chunks: bytes) -> AsyncIterator[bytes]:
    """Each chunk from the network: reading it gives the event loop a turn."""
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


def batches(*chunks: bytes) -> list[list[str]]:
    async def collect() -> list[list[str]]:
        events, out = _Events(reads(*chunks)), []
        while (batch := await events.next_batch()) is not None:
            out.append([json.loads(payload)["c"] for payload in batch])
        return out

    return asyncio.run(collect())


def event(content: str, newline: str = "\n") -> bytes:
    return f"data: {json.dumps({'c': content}, ensure_ascii=False)}{newline}{newline}".encode()


def test_events_that_arrive_together_are_one_batch():
    assert batches(event("a") + event("b") + event("c"), event("d")) == [["a", "b", "c"], ["d"]]


def test_a_line_split_across_reads_and_a_character_split_across_them_are_joined():
    whole = event("café ☕") + event("next")
    cut = whole.index("☕".encode()) + 1  # inside the multi-byte character
    assert batches(whole[:cut], whole[cut:]) == [["café ☕", "next"]]
    assert batches(*(whole[i : i + 1] for i in range(len(whole)))) == [["café ☕"], ["next"]]


def test_comments_crlf_done_and_a_last_line_without_newline():
    stream = b": keep-alive\r\n\r\n" + event("a", "\r\n") + b"data: [DONE]\r\n\r\n" + event("x")
    assert batches(stream) == [["a"]]  # nothing after [DONE] is read
    assert batches(event("a") + b'data: {"c": "b"}') == [["a", "b"]]
    assert batches(b"", b": only a comment\n\n") == []


def test_a_line_that_never_ends_is_malformed_data_not_unbounded_memory():
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536

    async def first() -> object:
        return await _Events(endless()).next_batch()

    with pytest.raises(LLMError, match="malformed"):
        asyncio.run(first())


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"{not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"error": {"message": "overloaded"}}', "reported an error"),  # its words are logged
    ],
)
def test_garbage_and_error_events_are_llm_errors(payload, message):
    with pytest.raises(LLMError, match=message):
        _parse(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"choices":[{"delta":{"content":"word12 "},"finish_reason":null}],"model":"m"}',
        b"{}",
        b'{"a": 1}  ',
        b'{"a": 1}\t\r\n',
        b' {"a": 1}',
        b'{"a": 1} x',
        b'{"a": 1}{"b": 2}',
        b"{",
        b"",
        b"null",
        b"\xef\xbb\xbf{}",
        b'{"a": "\xff"}',
        b'{"a": "\xed\xa0\x80"}',
        b'{"a": "\\ud800"}',
        b'{"a": NaN, "b": 1e999}',
        b'{"\x00": 1}',
        '{"a": "\u00e9\u4f60"}'.encode("utf-16-le"),
        '{"a": 1}'.encode("utf-32"),
    ],
)
def test_an_event_is_read_as_json_loads_reads_it(payload):
    """The token's chunk is parsed without ``json.loads``'s encoding sniffing: the same object,
    or the same refusal, for whatever a provider sends."""
    try:
        expected = json.loads(payload)
    except ValueError:
        expected = None
    if not isinstance(expected, dict):
        with pytest.raises(LLMError, match="malformed"):
            _parse(payload)
    else:
        assert _parse(payload) == expected or repr(_parse(payload)) == repr(expected)


class Socket:
    """Bytes written every ``interval`` seconds; a read returns all that has arrived (as
    ``recv`` does), waiting for the first byte if nothing has."""

    def __init__(self, chunks: list[bytes], interval: float) -> None:
        self.buffer = bytearray()
        self.arrived = asyncio.Event()
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self.write(chunks, interval))

    async def write(self, chunks: list[bytes], interval: float) -> None:
        for chunk in chunks:
            await asyncio.sleep(interval)
            self.buffer += chunk
            self.arrived.set()
        self.closed = True
        self.arrived.set()

    def __aiter__(self) -> Socket:
        return self

    async def __anext__(self) -> bytes:
        while not self.buffer:
            if self.closed:
                raise StopAsyncIteration
            self.arrived.clear()
            await self.arrived.wait()
        data, self.buffer = bytes(self.buffer), bytearray()
        return data


@pytest.mark.parametrize("pace", [0.0, 0.05])
def test_paced_reads_relay_a_token_at_a_time_provider_in_few_pieces(pace):
    """40 tokens 5 ms apart (200 ms): paced at 50 ms, the first is read alone (it is not held
    back) and the rest in a handful of reads; every token arrives once, in order."""
    words = [f"w{i} " for i in range(40)]

    async def collect() -> list[list[str]]:
        events, out = _Events(Socket([event(w) for w in words], 0.005), pace=pace), []
        while (batch := await events.next_batch()) is not None:
            out.append([json.loads(payload)["c"] for payload in batch])
        return out

    batches_read = run_on_virtual_clock(collect())
    assert [w for batch in batches_read for w in batch] == words
    assert batches_read[0] == [words[0]]
    if pace:  # a slower machine makes the reads fewer, not more
        assert len(batches_read) <= len(words) // 2


def test_a_provider_faster_than_the_relay_is_never_held_back():
    """Events that arrive together (a fast provider, a burst) start no pacing: nothing waits."""
    words = [f"w{i} " for i in range(40)]
    chunks = [b"".join(event(w) for w in words[:1]), b"".join(event(w) for w in words[1:])]

    async def collect() -> tuple[list[str], bool]:
        events, out = _Events(Socket(chunks, 0.001), pace=60.0), list[str]()
        while (batch := await events.next_batch()) is not None:
            out.extend(json.loads(payload)["c"] for payload in batch)
        return out, events._pacing

    assert run_on_virtual_clock(collect()) == (words, False)


class ChunkedSocket(Socket):
    """The same bytes as an HTTP client reads a chunked body: a network read takes all that
    has arrived but hands over one chunk (here one event each); the rest come from what the
    client holds, without suspending. A network read yields to the event loop even when bytes
    are waiting (as anyio's does)."""

    def __init__(self, chunks: list[bytes], interval: float) -> None:
        super().__init__(chunks, interval)
        self.held: list[bytes] = []
        self.network_reads = 0

    async def __anext__(self) -> bytes:
        if not self.held:
            self.network_reads += 1
            await asyncio.sleep(0)
            data = await super().__anext__()
            self.held = [part + b"\n\n" for part in data.split(b"\n\n") if part]
        return self.held.pop(0)


def test_pacing_a_chunked_stream_never_waits_for_what_the_client_holds():
    """A token every 2 ms, paced at 50 ms, read a chunk at a time: a wait only ever comes
    before a network read, never while the client holds events (reading those one per wait
    would make 80 tokens take 4 s), and the network is read about once per 50 ms, not once
    per token."""
    words = [f"w{i} " for i in range(80)]
    pace = 0.05

    class Timed(ChunkedSocket):
        def __init__(self, chunks: list[bytes], interval: float) -> None:
            super().__init__(chunks, interval)
            self.last = 0.0
            self.held_after_wait = 0  # reads of held events long after the previous read

        async def __anext__(self) -> bytes:
            now = asyncio.get_running_loop().time()
            if self.held and self.last and now - self.last >= pace * 0.9:
                self.held_after_wait += 1
            self.last = now
            return await super().__anext__()

    async def collect() -> tuple[list[str], Timed, bool]:
        socket = Timed([event(w) for w in words], 0.002)
        events, out = _Events(socket, pace=pace), list[str]()
        while (batch := await events.next_batch()) is not None:
            out.extend(json.loads(payload)["c"] for payload in batch)
        return out, socket, events._pacing

    out, socket, pacing = run_on_virtual_clock(collect())
    assert out == words
    assert pacing
    assert socket.held_after_wait == 0
    assert socket.network_reads <= len(words) // 4  # ~160 ms of tokens, paced at 50 ms


def test_what_the_client_holds_of_a_chunked_burst_is_one_batch():
    """40 events arriving together, handed over a chunk per read: one network read, one batch
    (relayed as one piece), not 40."""
    words = [f"w{i} " for i in range(40)]

    async def collect() -> tuple[list[list[str]], int]:
        socket = ChunkedSocket([b"".join(event(w) for w in words)], 0.001)
        events, out = _Events(socket, pace=0.05), []
        while (batch := await events.next_batch()) is not None:
            out.append([json.loads(payload)["c"] for payload in batch])
        return out, socket.network_reads

    assert run_on_virtual_clock(collect()) == ([words], 2)  # the second network read finds the end


def test_a_failure_comes_after_the_events_read_before_it_and_the_reader_stops():
    async def failing() -> AsyncIterator[bytes]:
        await asyncio.sleep(0)
        yield event("a") + event("b")
        await asyncio.sleep(0)
        raise ConnectionResetError("gone")

    async def collect() -> tuple[list[list[str]], BaseException | None, bool]:
        events, out, failure = _Events(failing()), [], None
        try:
            while (batch := await events.next_batch()) is not None:
                out.append([json.loads(payload)["c"] for payload in batch])
        except ConnectionResetError as exc:
            failure = exc
        assert events._reader is not None
        return out, failure, events._reader.done()

    out, failure, stopped = run_on_virtual_clock(collect())
    assert out == [["a", "b"]]
    assert isinstance(failure, ConnectionResetError)
    assert stopped


def test_past_the_deadline_what_was_read_is_handed_over_then_waiting_is_an_error():
    async def slow() -> AsyncIterator[bytes]:
        yield event("a")
        await asyncio.sleep(0.2)  # past the deadline
        yield event("b")
        await asyncio.sleep(60)
        yield event("never")

    async def collect() -> tuple[list[list[str]], LLMError | None, bool]:
        loop = asyncio.get_running_loop()
        events = _Events(slow(), deadline=loop.time() + 0.05)
        out, failure = [], None
        try:
            while (batch := await events.next_batch()) is not None:
                out.append([json.loads(payload)["c"] for payload in batch])
                await asyncio.sleep(0.3)  # the relay is slow: "b" arrives meanwhile
        except LLMError as exc:
            failure = exc
        await events.aclose()
        assert events._reader is not None
        return out, failure, events._reader.done()

    out, failure, stopped = run_on_virtual_clock(collect())
    assert out == [["a"], ["b"]]  # read before anyone waited past the deadline
    assert failure is not None and not failure.transient
    assert str(failure) == "The language model provider did not finish its answer in time."
    assert stopped


def test_closing_stops_the_reader_of_an_endless_stream():
    async def endless() -> AsyncIterator[bytes]:
        n = 0
        while True:
            await asyncio.sleep(0.001)
            n += 1
            yield event(f"w{n}")

    async def first_then_close() -> tuple[list[bytes] | None, bool]:
        events = _Events(endless())
        batch = await events.next_batch()
        await events.aclose()
        assert events._reader is not None
        return batch, events._reader.cancelled()

    batch, cancelled = run_on_virtual_clock(first_then_close())
    assert batch and cancelled


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_turns_reuse_the_providers_connection(settings, http_client):
    """After ``[DONE]`` the rest of the chunked body is read, so the connection goes back to the
    pool: three streamed answers, one connection (not a TCP and TLS handshake per turn). The
    loop's client is closed when the loop shuts down, and a new loop gets a new one."""
    settings.LLM_HTTP_CLIENT = http_client
    request = LLMRequest(model="m", messages=[{"role": "user", "content": "hi"}], question="hi")
    llm = OpenAILLM()

    async def three() -> tuple[list[str], openai.AsyncOpenAI]:
        answers = []
        for _ in range(3):
            parts = [p.text async for p in llm.stream(request) if isinstance(p, Delta)]
            answers.append("".join(parts))
        return answers, await llm.client()

    with fake_openai() as fake:
        settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = fake.url, "sk-test"
        fake.chat_reply = "Plans renew every year [1]."
        answers, client = asyncio.run(three())
        assert answers == ["Plans renew every year [1]."] * 3
        assert fake.connections == 1
        assert client.is_closed() and llm._clients == {}
        again, other = asyncio.run(three())
        assert again == answers and other is not client and fake.connections == 2


def test_a_body_that_does_not_end_after_done_is_cut_off():
    """Everything before ``[DONE]`` is handed over at once; a provider that then never ends its
    body holds the turn up for at most DRAIN_SECONDS before the connection is dropped."""

    async def hanging() -> AsyncIterator[bytes]:
        await asyncio.sleep(0)
        yield event("a") + b"data: [DONE]\n\n"
        await asyncio.sleep(3600)
        yield b""

    async def run() -> tuple[list[bytes] | None, list[bytes] | None, float]:
        loop = asyncio.get_running_loop()
        events = _Events(hanging())
        first, end = await events.next_batch(), await events.next_batch()
        started = loop.time()
        await events.aclose()
        return first, end, loop.time() - started

    first, end, waited = run_on_virtual_clock(run())
    assert (first, end) == ([b'{"c": "a"}'], None)
    assert waited < 2
