"""Any OpenAI-compatible chat-completions server, through ``openai``'s async client.

Streams with ``stream_options.include_usage`` (the provider's token counts); retries with
jittered backoff only before the first token arrives (429, 5xx, timeouts, connection errors);
a 4xx is final. After the first token nothing is retried: the caller turns the failure into an
SSE ``error`` event (or ``502`` for a JSON answer).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any, TypeVar

import httpx2  # what openai's client reads response bodies with (and raises while reading)
import openai
import structlog
from django.conf import settings

from chatbot_site.providers import retry_after
from conversations.llm import Completion, Delta, LLMError, LLMRequest
from knowledge.parsers import clean_text

log = structlog.get_logger(__name__)
T = TypeVar("T")


# aiohttp stops reading a response's socket once more than max(4, read_bufsize // 16) chunks of
# its body wait unread, and reads on once at most half of them do. The body is read in pieces of
# up to 16 kB all the same (its byte watermarks rise to match); what this buys is a paced relay
# (LLM_STREAM_BATCH_SECONDS) of a provider that sends a token per chunk: the tokens that come
# while it waits stay in the kernel and arrive in one read, instead of each waking the event loop.
AIOHTTP_READ_BUFSIZE = 64


def _aiohttp_client() -> httpx2.AsyncClient:
    """openai's own aiohttp client (its ``aiohttp`` extra), with the session it would make but
    for ``read_bufsize``. aiohttp parses HTTP/1.1 in C: a provider call cost 1.0 ms of CPU against
    1.4-1.5 ms with httpx2's h11, a piece of a burst 10-11 µs against 16-20 (``bench.llm_client``,
    BENCHMARKS.md)."""
    import aiohttp

    try:  # what DefaultAioHttpClient uses, not a public name of openai's
        from openai._vendor.httpx_aiohttp import AiohttpTransport
    except ImportError:  # moved by a later openai: its public client, aiohttp's own buffer
        log.warning("llm_aiohttp_transport_not_found")
        return openai.DefaultAioHttpClient()

    limits = openai.DEFAULT_CONNECTION_LIMITS
    ssl_context = httpx2.create_ssl_context()

    def session() -> aiohttp.ClientSession:  # made on the first request, in the running loop
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=limits.max_connections or 0,
                keepalive_timeout=limits.keepalive_expiry,
                ssl=ssl_context,
            ),
            read_bufsize=AIOHTTP_READ_BUFSIZE,
        )

    # Timeouts are the SDK's, per request (AsyncOpenAI's `timeout`).
    return openai.DefaultAioHttpClient(transport=AiohttpTransport(client=session))


TURN_TIMED_OUT = "The language model provider did not finish its answer in time."
NO_EVENTS = "The language model provider did not stream an answer."
MALFORMED = "The language model provider sent malformed data."
# The provider's finish reasons a turn keeps: max_tokens reached, and its own moderation cut
# the answer (the client should know the answer is not whole).
_FINISH_REASONS = frozenset({"length", "content_filter"})


async def _in_time(deadline: float, awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result, or an ``LLMError`` once the turn's deadline (loop time) passed."""
    timeout = asyncio.timeout_at(deadline)
    try:
        async with timeout:
            return await awaitable
    except TimeoutError as exc:
        if not timeout.expired():  # not ours
            raise
        raise LLMError(TURN_TIMED_OUT, transient=False) from exc


# The longest Retry-After a question waits for: a person is waiting for the answer. Longer, and
# the turn fails at once (502 with the provider's Retry-After) instead of asking again early.
MAX_RETRY_AFTER_SECONDS = 20.0


def _can_wait(seconds: float, deadline: float) -> bool:
    loop_time = asyncio.get_running_loop().time()
    return seconds <= MAX_RETRY_AFTER_SECONDS and loop_time + seconds < deadline


def _transient(exc: Exception) -> tuple[bool, int | None]:
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return status == 429 or status >= 500, status
    # A response body is read with the HTTP client's own errors, not the SDK's.
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | httpx2.TransportError):
        return True, None
    return False, None


class OpenAILLM:
    name = "openai"

    def __init__(self) -> None:
        # Each loop's client, and the async generator that closes it when the loop shuts down
        # (held here: the loop's own set of async generators is weak).
        self._clients: dict[
            asyncio.AbstractEventLoop, tuple[openai.AsyncOpenAI, AsyncGenerator[None, None]]
        ] = {}

    async def client(self) -> openai.AsyncOpenAI:
        """The client of the running event loop: an async HTTP client belongs to the loop it
        first ran on. It is closed when that loop shuts down (``asyncio.run``, and so asgiref's
        ``async_to_sync``: a loop per call in the test client and management commands); the
        server's loop keeps its client, and its pooled connections, for the process's life."""
        loop = asyncio.get_running_loop()
        if loop in self._clients:
            return self._clients[loop][0]
        client = openai.AsyncOpenAI(
            api_key=settings.OPENAI_API_KEY or "not-set",
            base_url=settings.OPENAI_BASE_URL or None,
            timeout=settings.LLM_TIMEOUT_SECONDS,
            max_retries=0,  # retries are ours, and only before the first token
            http_client=_aiohttp_client() if settings.LLM_HTTP_CLIENT == "aiohttp" else None,
        )
        closer = self._close_at_shutdown(loop, client)
        await anext(closer)  # now one of the loop's async generators, closed at its shutdown
        self._clients[loop] = (client, closer)
        return client

    async def _close_at_shutdown(
        self, loop: asyncio.AbstractEventLoop, client: openai.AsyncOpenAI
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self._clients.pop(loop, None)
            await client.close()

    async def _open(
        self, request: LLMRequest, pace: float, deadline: float
    ) -> tuple[Any, _Events, list[bytes] | None]:
        """The response, its events and the first of them that begin the answer (a token, a
        finish, usage) — retried while none was received: the role chunk a provider sends
        before its first token does not count."""
        attempt = 0
        while True:
            manager = (await self.client()).chat.completions.with_streaming_response.create(
                model=request.model,
                # The body goes as `extra_body`, which replaces this empty list in the JSON sent,
                # and is merged after the SDK's typed transform of the arguments: that walk cost
                # 0.7 ms of CPU per turn for six messages (measured), more with history, and
                # 110 µs against 66 with the options left to `extra_body` too (in process).
                messages=[],
                stream=True,
                extra_body={
                    "messages": request.messages,
                    "temperature": request.temperature,
                    "max_tokens": request.max_tokens,
                    "stream_options": {"include_usage": True},
                },
            )
            events: _Events | None = None
            try:
                response = await _in_time(deadline, manager.__aenter__())
                events = _Events(response.iter_bytes(), pace=pace, deadline=deadline)
                first: list[bytes] = []
                while (batch := await events.next_batch()) is not None:
                    first += batch
                    if any(_begins_answer(payload) for payload in batch):
                        break
                if not first:  # not an event stream: a JSON completion, an error page
                    raise LLMError(NO_EVENTS, transient=False)
                return manager, events, first
            except (openai.OpenAIError, httpx2.TransportError, LLMError) as exc:
                if events is not None:
                    await _close(manager, events)
                if isinstance(exc, LLMError):
                    raise
                transient, status = _transient(exc)
                wait = retry_after(exc) if transient else None
                if (
                    not transient
                    or attempt >= settings.LLM_MAX_RETRIES
                    or (wait is not None and not _can_wait(wait, deadline))
                ):
                    raise LLMError(
                        _describe(exc), transient=transient, status=status, retry_after=wait
                    ) from exc
                delay = settings.LLM_RETRY_BASE_SECONDS * 2**attempt
                delay *= 0.5 + random.random()  # noqa: S311 - jitter, not security
                delay = max(delay, wait or 0.0)  # asking sooner only earns another 429
                log.warning("llm_retry", attempt=attempt + 1, status=status, delay_s=delay)
                attempt += 1
                await _in_time(deadline, asyncio.sleep(delay))
            except BaseException:
                if events is not None:
                    await _close(manager, events)
                raise

    async def stream(
        self, request: LLMRequest, *, pace: float = 0.0
    ) -> AsyncGenerator[Delta | Completion, None]:
        # The response body is read as raw Server-Sent Events and parsed with json: building
        # the SDK's pydantic chunk objects cost ~0.3 ms of CPU per piece (measured). The
        # events that arrived together go on as one piece: a fast provider's burst is guarded,
        # filtered and relayed once, not once per token.
        # The whole answer, retries included, within LLM_TURN_TIMEOUT_SECONDS: the read timeout
        # alone lets a provider that sends a token a minute hold a turn for hours.
        deadline = asyncio.get_running_loop().time() + settings.LLM_TURN_TIMEOUT_SECONDS
        manager, events, batch = await self._open(request, pace, deadline)
        finish_reason = "stop"
        model = request.model
        prompt_tokens = completion_tokens = None
        room = request.max_tokens * MAX_CHARS_PER_TOKEN  # characters the answer may still take
        try:
            while batch is not None:
                text: list[str] = []
                for payload in batch:
                    try:
                        chunk = _parse(payload)
                    except LLMError:
                        if text:  # what came before the failure is the answer so far
                            yield Delta("".join(text))
                        raise
                    if isinstance(named := chunk.get("model"), str) and 0 < len(named) <= 100:
                        model = named
                    usage = chunk.get("usage")
                    if usage:
                        prompt_tokens = usage.get("prompt_tokens")
                        completion_tokens = usage.get("completion_tokens")
                    content, reason = _contents(chunk)
                    text += content
                    if reason:  # tool calls and reasons of the provider's own are a stop
                        finish_reason = reason if reason in _FINISH_REASONS else "stop"
                if text:
                    piece = "".join(text)
                    room -= len(piece)
                    if room < 0:  # a provider that ignores max_tokens: the answer stops here
                        yield Delta(piece[:room])
                        finish_reason, prompt_tokens, completion_tokens = "length", None, None
                        break
                    yield Delta(piece)
                batch = await events.next_batch()
        except LLMError:
            raise
        except Exception as exc:  # the provider or the connection, mid-stream: never retried
            raise LLMError(_describe(exc), transient=False) from exc
        finally:
            await _close(manager, events)
        yield Completion(
            finish_reason=finish_reason,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )


# An answer of max_tokens tokens is at most this many characters long (English runs 4 a token):
# a provider that ignores max_tokens streamed and stored a 10 MB answer it billed as 7 tokens.
MAX_CHARS_PER_TOKEN = 16
MAX_EVENT_BYTES = 1 << 20  # one event's line; a chat chunk is well under a kilobyte
MAX_HELD_EVENTS = 4096  # read ahead of the relay at most this many events (~1 MB)
# After [DONE], what is left of the body (a chunked body's last, empty chunk) is read, so that
# the connection goes back to the client's pool instead of being closed: a new connection (and
# TLS handshake) per turn otherwise. A provider that does not end the body soon is cut off.
DRAIN_SECONDS = 0.5
DRAIN_BYTES = 1 << 16


class _Events:
    """The provider's event stream: the ``data:`` payloads read since the last batch, handed
    over together.

    A reader task reads the body as the HTTP client hands it over: all a network read brought
    at once for a plain body, one chunk (one event) per read for a chunked one — which is what
    providers send. A read that suspends went to the network; one that does not was served from
    what the client already holds, and the reader takes all of that before the relay wakes up,
    so the events of one network read go on as one piece (guarded, filtered and relayed once,
    not once per token), and the reader goes on reading while the relay writes.

    With ``pace``, a provider that trickles (two network reads in a row that bring one event
    each: a token at a time) is from then on read at most every ``pace`` seconds, so that it
    costs an event-loop wake-up per ``pace``, not per token: after a network read the next one
    waits until ``pace`` has passed since the last wait ended. What the client already holds is
    never waited for, so pacing delays a piece by at most ``pace`` (plus one gap of the
    provider's) and never slows the stream down; a provider that sends faster than it is read
    (its events arrive together) is never paced.

    ``deadline`` (loop time): past it, a wait for events is an ``LLMError``. One timer per
    stream wakes the relay then, not a timeout armed and cancelled around every batch."""

    def __init__(
        self, chunks: AsyncIterator[bytes], *, pace: float = 0.0, deadline: float | None = None
    ) -> None:
        self._chunks = chunks
        self._deadline = deadline
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._expired = False
        self._rest = b""
        self._done = False  # [DONE] or the end of the body was read
        self._pace = pace
        self._pacing = False
        self._trickles = 0  # network reads in a row that brought at most one event
        self._fetched: int | None = None  # events since the last network read (None: none yet)
        self._wait_after = False  # the last read went to the network: pace the next one
        self._waited_until = 0.0
        self._held: list[bytes] = []  # read, not yet handed over
        self._failure: Exception | None = None
        self._ended = False  # the reader stopped: the body is read, or reading it failed
        self._reader: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None  # the relay waits for events
        self._room: asyncio.Future[None] | None = None  # the reader waits for the relay
        self._draining = False  # everything is handed over; the rest of the body is read
        self._body_read = False  # to its end

    async def next_batch(self) -> list[bytes] | None:
        """The next non-empty list of payloads, or None once ``[DONE]`` or the end is read."""
        loop = asyncio.get_running_loop()
        if self._reader is None:
            self._reader = loop.create_task(self._read_all())
        while not self._held:
            if self._ended:
                if self._failure is not None:
                    raise self._failure
                return None
            if self._deadline is not None:
                if self._expired or loop.time() >= self._deadline:
                    raise LLMError(TURN_TIMED_OUT, transient=False)
                if self._deadline_timer is None:
                    self._deadline_timer = loop.call_at(self._deadline, self._expire)
            self._wakeup = loop.create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        batch, self._held = self._held, []
        _resolve(self._room)
        return batch

    def _expire(self) -> None:
        self._expired = True
        _resolve(self._wakeup)

    async def aclose(self) -> None:
        """Stop reading (before the response is closed): after ``[DONE]``, once the rest of the
        body is read (at most ``DRAIN_SECONDS``); before it, at once."""
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        reader = self._reader
        if reader is None or reader.done():
            return
        if not self._draining:
            reader.cancel()
        try:
            await asyncio.wait([reader])
        finally:
            if not reader.done():  # this task was cancelled while the rest was being read
                reader.cancel()
                await asyncio.wait([reader])

    async def _read_all(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self._done:
                just_waited = False
                if self._pacing and self._wait_after:
                    if (wait := self._waited_until + self._pace - loop.time()) > 0:
                        await asyncio.sleep(wait)  # what arrives meanwhile is read at once
                    self._waited_until, just_waited = loop.time(), True
                started = loop.time()
                data, network = await self._read()
                batch = self._parse_lines(data)
                if network:
                    if self._pace and not self._pacing and self._fetched is not None:
                        # what the previous network read brought, now that it is all read
                        self._trickles = self._trickles + 1 if self._fetched <= 1 else 0
                        self._pacing = self._trickles >= 2
                    self._fetched = 0
                    # The first read after a wait that did not wait itself and was handed one
                    # event fetched what came meanwhile, and the client may hold more: read on
                    # unpaced.
                    quick = just_waited and loop.time() - started < self._pace
                    self._wait_after = not (quick and len(batch) <= 1)
                else:
                    self._wait_after = False
                self._fetched = (self._fetched or 0) + len(batch)
                if batch:
                    self._held.extend(batch)
                    _resolve(self._wakeup)
                    if len(self._held) >= MAX_HELD_EVENTS:  # a relay that does not keep up
                        self._room = loop.create_future()
                        await self._room
        except Exception as exc:  # handed to the relay, in order, after what came before it
            self._failure = exc
        finally:  # cancelled too
            self._ended = True
            _resolve(self._wakeup)
        if self._failure is None:  # everything is handed over; aclose() waits for the rest
            self._draining = True
            await self._drain()

    async def _drain(self) -> None:
        if self._body_read:
            return
        left = DRAIN_BYTES
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                async for data in self._chunks:
                    if (left := left - len(data)) < 0:
                        return
        except Exception:  # noqa: S110 - not ended in time, or broken: the connection is closed
            pass

    async def _read(self) -> tuple[bytes, bool]:
        """The next piece of the body, and whether reading it suspended (went to the network):
        a callback queued now runs only if the read gives the event loop a turn."""
        suspended = False

        def mark() -> None:
            nonlocal suspended
            suspended = True

        handle = asyncio.get_running_loop().call_soon(mark)
        try:
            data = await anext(self._chunks)
        except StopAsyncIteration:
            self._done = self._body_read = True
            data = b"\n"  # a last line that lacks its newline
        finally:
            handle.cancel()
        return data, suspended

    def _parse_lines(self, data: bytes) -> list[bytes]:
        lines = (self._rest + data).split(b"\n")
        self._rest = lines.pop()
        if len(self._rest) > MAX_EVENT_BYTES:  # a line that never ends: not an event stream
            raise LLMError(MALFORMED)
        batch: list[bytes] = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # comments, event names, blank separators
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self._done = True
                break
            batch.append(payload)
        return batch


async def _close(manager: Any, events: _Events) -> None:
    """Stop reading the response, then close it."""
    try:
        await events.aclose()
    finally:
        await manager.__aexit__(None, None, None)


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


_JSON = json.JSONDecoder()
_JSON_SPACE = " \t\n\r"


def _parse(payload: bytes) -> dict[str, Any]:
    """One event's JSON; the provider's error event or garbage is an :class:`LLMError`.

    An object's payload (``{`` and no NUL after it: UTF-8 to ``json.loads`` too) is decoded
    and read as ``json.loads`` reads it, less its encoding sniffing and decoder lookup: 30-40%
    of the parse of a token's chunk, which every relayed token costs."""
    try:
        if payload[:1] == b"{" and payload[1:2] != b"\x00":
            text = payload.decode("utf-8", "surrogatepass")
            chunk, end = _JSON.raw_decode(text)
            if end != len(text) and text[end:].strip(_JSON_SPACE):
                raise ValueError("Extra data")
        else:
            chunk = json.loads(payload)
    except ValueError:
        raise LLMError(MALFORMED) from None
    if not isinstance(chunk, dict):
        raise LLMError(MALFORMED)
    if chunk.get("error"):
        error = chunk["error"]
        message = str(error.get("message") if isinstance(error, dict) else error)
        if settings.OPENAI_API_KEY:  # a provider may echo the credentials it was sent
            message = message.replace(settings.OPENAI_API_KEY, "[OPENAI_API_KEY]")
        # Its words are the provider's (a stack trace, a path, our own key echoed back): the
        # log keeps them, the client is told what happened.
        log.warning("llm_provider_error_event", message=message[:300])
        raise LLMError("The language model provider reported an error.")
    return chunk


def _contents(chunk: dict[str, Any]) -> tuple[list[str], str | None]:
    """One chunk's pieces of text and its finish reason, if any. A chunk of another shape is
    malformed data; a NUL or half a surrogate pair in the text (which neither PostgreSQL nor
    UTF-8 can carry) is dropped or replaced."""
    text, reason = [], None
    choices = chunk.get("choices") or ()
    if not isinstance(choices, list | tuple):
        raise LLMError(MALFORMED)
    for choice in choices:
        if not isinstance(choice, dict):
            raise LLMError(MALFORMED)
        delta = choice.get("delta")
        if not isinstance(delta, dict | None):
            raise LLMError(MALFORMED)
        if content := (delta or {}).get("content"):
            if not isinstance(content, str):
                raise LLMError(MALFORMED)
            clean = content.isascii() and "\x00" not in content
            text.append(content if clean else clean_text(content))
        if (finish := choice.get("finish_reason")) is not None and not isinstance(finish, str):
            raise LLMError(MALFORMED)
        reason = finish or reason
    return text, reason


def _begins_answer(payload: bytes) -> bool:
    chunk = _parse(payload)
    text, reason = _contents(chunk)
    return bool(text or reason or chunk.get("usage"))


def _describe(exc: Exception) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"The language model provider answered {exc.status_code}."
    if _not_connected(exc):
        return "The language model provider could not be reached."
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return "The language model provider timed out."
    if isinstance(exc, openai.APIConnectionError):
        return "The language model provider could not be reached."
    if isinstance(exc, httpx2.TransportError):
        return "The connection to the language model provider broke."
    return "The language model provider failed."


def _not_connected(exc: BaseException) -> bool:
    """A connection refused or a host not resolved, under either HTTP client: openai's aiohttp
    transport raises those (aiohttp's ``ClientConnectorError``) as httpx's ``ConnectTimeout``,
    so only the cause tells them from a timeout."""
    import aiohttp

    cause: BaseException | None = exc
    for _depth in range(8):
        if cause is None:
            return False
        if isinstance(cause, aiohttp.ClientConnectorError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
