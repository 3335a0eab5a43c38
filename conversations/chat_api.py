"""``POST /v1/chat``: an async view, so that a stream holds no thread while it waits.

The request is checked and prepared in one hop to a worker thread (authentication, rate limit,
validation, quota, conversation, retrieval, prompt; a stream sends ``start`` first, then stores
the question and grounds it); the answer is then produced on the event loop — relayed piece by
piece as Server-Sent Events, or collected into one JSON body — and stored in a last hop (for a
JSON answer, the whole turn in one transaction). Errors before the stream starts are ordinary
JSON errors; after it starts they are an ``error`` event. A client that goes away cancels
generation; what was produced is stored with ``finish_reason: "cancelled"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from django.conf import settings
from django.db import DatabaseError, OperationalError
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chatbot_site.concurrency import run_sync
from chatbot_site.errors import (
    DATABASE_UNAVAILABLE,
    ApplicationError,
    UnsupportedMediaType,
    error_body,
    error_response,
    exception_handler,
    mark_logged,
    request_id_of,
)
from chatbot_site.options import options_answer
from chatbot_site.params import TagListField
from chatbot_site.parsers import UNSTORABLE_MESSAGE, has_unstorable_text, metadata_problem
from chatbot_site.pgconnection import outage
from chatbot_site.strict import StrictInput
from conversations.apis import CitationOutput, MessageOutput, RefusalOutput, UsageSerializer
from conversations.chat import (
    Outcome,
    Runner,
    Turn,
    TurnInterrupted,
    chat_failed,
    chat_finish,
    chat_ground,
    chat_open,
    chat_persist,
    chat_release,
    turn_interruption,
)
from conversations.guardrails import PolicyBlocked
from conversations.late_store import late_stores
from conversations.llm import LLMError
from conversations.models import FinishReason, Message, MessageRole
from tenants.api_base import Access, authorize
from tenants.authentication import ApiKeyAuthentication
from tenants.models import Role

log = structlog.get_logger(__name__)

MAX_MESSAGES = 100
MAX_CONTENT_CHARS = 32_000


@extend_schema_field(serializers.ChoiceField(choices=MessageRole.choices))
class MessageRoleField(serializers.CharField):
    """A CharField, for ``validate_role``'s own message for ``system``; in the schema the enum it
    accepts (it said any string, so a generated client let ``system`` through to a 400)."""


class ChatMessageInput(StrictInput):
    refuse_unknown = True
    # A message read from a conversation (GET /v1/conversations/{id}) may be sent back as is.
    echoed = frozenset(MessageOutput._declared_fields)
    role = MessageRoleField()
    content = serializers.CharField(max_length=MAX_CONTENT_CHARS, trim_whitespace=False)

    def validate_role(self, role: str) -> str:
        if role == "system":
            raise serializers.ValidationError(
                "A client cannot send 'system' messages; the bot's system prompt is set on the bot."
            )
        if role not in ("user", "assistant"):
            raise serializers.ValidationError("Must be 'user' or 'assistant'.")
        return role


class ChatFilters(StrictInput):
    """``filters`` of /v1/chat and /v1/retrieve: only chunks with one of these tags. A filter
    it does not know is a field error (``filters.<name>``): it was ignored, so a misspelt one
    (``"tag"``, ``"dataset_ids"``) searched everything the bot reaches, the answer grounded in
    what the client meant to leave out."""

    tags = TagListField(required=False, max_length=50)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(self.fields))):
            known = ", ".join(self.fields)
            raise serializers.ValidationError(
                {name: [f"Unknown filter; the filters are: {known}."] for name in unknown}
            )
        return super().to_internal_value(data)


class ChatInput(StrictInput):
    refuse_unknown = True
    bot_id = serializers.UUIDField()
    session_id = serializers.UUIDField(required=False, allow_null=True)
    # A ListField (not many=True): the schema then carries minItems/maxItems.
    messages = serializers.ListField(
        child=ChatMessageInput(), allow_empty=False, min_length=1, max_length=MAX_MESSAGES
    )
    metadata = serializers.DictField(required=False, default=dict)
    stream = serializers.BooleanField(required=False, default=False)
    filters = ChatFilters(required=False)

    def validate_messages(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        if messages[-1]["role"] != "user":
            raise serializers.ValidationError("The last message must be from the user.")
        if not messages[-1]["content"].strip():
            raise serializers.ValidationError("The last message is empty.")
        return messages

    def validate_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        if problem := metadata_problem(metadata, max_chars=16_000):
            raise serializers.ValidationError(problem)
        return metadata


@dataclass
class Prepared:
    access: Access | None = None
    turn: Turn | None = None
    stream: bool = False
    error: JsonResponse | None = None
    auth_ms: float = 0.0  # authentication and rate limit, for the Server-Timing header
    abandoned: bool = False  # the client left before the turn was opened (ChatView.post)


def _error(request: HttpRequest, exc: Exception, headers: dict[str, str]) -> JsonResponse:
    """The error's envelope with ``headers`` (the key's rate-limit headers) and those of the
    error itself (``Retry-After`` ...), which win."""
    response = exception_handler(exc, {"request": request})
    if response is None:
        raise exc
    out = JsonResponse(response.data, status=response.status_code)
    for name, value in {**headers, **dict(response.items())}.items():
        if name.lower() not in ("content-type", "content-length"):
            out[name] = value
    if getattr(response, "_has_been_logged", False):
        mark_logged(out)
    return out


def prepare(request: HttpRequest, prepared: Prepared) -> None:
    """Everything before the answer (before the ``start`` event, for a stream), in a worker
    thread, into ``prepared``. Never raises an application error: it sets it as the JSON
    response to send."""
    try:
        started = time.perf_counter()
        prepared.access = authorize(request, required_role=Role.CHAT)
        prepared.auth_ms = (time.perf_counter() - started) * 1000
        content_type = request.content_type or ""
        if content_type != "application/json":
            raise UnsupportedMediaType(f"Expected application/json, got {content_type!r}.")
        try:
            # UTF-8, as every body (chatbot_site.parsers): json.loads of the bytes guessed
            # UTF-16 and UTF-32 and skipped a BOM, which no other route takes.
            body = json.loads((request.body or b"null").decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApplicationError("Malformed request body: invalid JSON.") from None
        if has_unstorable_text(body):
            raise ApplicationError(f"Malformed request body: {UNSTORABLE_MESSAGE}")
        serializer = ChatInput(data=body)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # The body's `stream`, when it is there, decides; the Accept header only without it.
        if "stream" in body:
            prepared.stream = bool(data["stream"])
        else:
            prepared.stream = "text/event-stream" in request.headers.get("Accept", "")
        prepared.turn = chat_open(
            tenant=prepared.access.tenant,
            api_key=prepared.access.api_key,
            bot_id=data["bot_id"],
            session_id=data.get("session_id"),
            messages=[dict(m) for m in data["messages"]],
            metadata=data["metadata"],
            filter_tags=(data.get("filters") or {}).get("tags", []),
            stream=prepared.stream,
        )
        if not prepared.stream:  # a stream sends `start` first, then grounds
            chat_ground(prepared.turn)  # the turn is stored in one transaction at its end
    except Exception as exc:
        if prepared.turn is not None:  # grounding failed: the turn ends here, its tokens counted
            chat_failed(prepared.turn)
        headers = prepared.access.rate_headers if prepared.access else {}
        prepared.error = _error(request, exc, headers)
    if prepared.abandoned and prepared.turn is not None:  # nobody will answer it
        chat_release(prepared.turn)


def persist_and_ground(turn: Turn) -> None:
    """Store the question (the session ``start`` announced exists from now on), then ground
    it. (Doing both at once in two threads saved 0.7 ms p50 and cost CPU: not worth a hop.)"""
    chat_persist(turn)
    chat_ground(turn)


# One encoder for every event: json.dumps with options builds a new one per call (2.2 µs against
# 1.3 per delta event, measured).
_SSE_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# Characters JSON leaves raw that some line readers (Python's str.splitlines, editors, log
# shippers) take for line ends; escaped, every event's data is one line however it is read
# (API.md: "Each data: is one line of JSON"). SSE itself ends lines at CR and LF only, which
# JSON always escapes.
_LINE_BREAKS = re.compile("[\u0085\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def sse(event_id: int, event: str, data: dict[str, Any]) -> bytes:
    payload = _SSE_JSON.encode(data)
    if _LINE_BREAKS.search(payload):
        payload = _LINE_BREAKS.sub(_escaped, payload)
    return f"id: {event_id}\nevent: {event}\ndata: {payload}\n\n".encode()


PING = b": ping\n\n"


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


async def relay(
    source: AsyncIterator[str],
    interval: float,
    check: Callable[[], Awaitable[BaseException | None]] | None = None,
) -> AsyncIterator[str | None]:
    """``source``'s text, and ``None`` (a ping) whenever ``interval`` seconds pass without any.

    The source runs in a task of its own and hands pieces over through a deque, so relaying a
    piece creates no task or timer, and pieces that arrive while the previous one is being
    written go out together in one event. A ping task wakes only when the stream is idle.
    Cancelling the consumer (the client left) cancels the source, which closes the provider's
    stream. ``check`` is awaited every ``interval`` seconds, whatever the stream is doing: the
    error it returns ends the relay (raised to the consumer) and cancels the source."""
    items: deque[Any] = deque()
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()
    last = loop.time()

    async def produce() -> None:
        try:
            async for piece in source:
                items.append(piece)
                ready.set()
            items.append(_DONE)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            items.append(_Failure(exc))
        ready.set()

    async def ping() -> None:
        nonlocal last
        while True:
            await asyncio.sleep(max(0.0, last + interval - loop.time()))
            if loop.time() - last >= interval:
                items.append(None)
                last = loop.time()
                ready.set()

    async def watch() -> None:
        while check is not None:
            await asyncio.sleep(interval)
            if (problem := await check()) is not None:
                producer.cancel()  # nothing more is read: what is stored is what was sent
                items.append(_Failure(problem))
                ready.set()
                return

    producer = asyncio.create_task(produce())
    pinger = asyncio.create_task(ping())
    watcher = asyncio.create_task(watch())
    try:
        while True:
            while not items:
                ready.clear()
                await ready.wait()
            item = items.popleft()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            if item is not None:
                while items and isinstance(items[0], str):  # coalesce what has arrived
                    item += items.popleft()
                last = loop.time()
            yield item
    finally:
        for task in (producer, pinger, watcher):
            task.cancel()
        for task in (producer, pinger, watcher):
            with contextlib.suppress(BaseException):
                await task


async def interruption(turn: Turn) -> TurnInterrupted | None:
    """:func:`turn_interruption` off the event loop; a database that cannot say is no reason
    to end the stream (logged)."""
    try:
        return await run_sync(turn_interruption, turn)
    except DatabaseError as exc:
        if not outage.down:  # a known outage is logged once, not per stream and ping
            log.warning("chat_stream_check_failed", error=type(exc).__name__)
        return None


async def store(turn: Turn, outcome: Outcome) -> None:
    """Store the answer even if the request task is being cancelled (client gone); an attempt
    still under way after ``CHAT_LATE_STORE_WRITE_AHEAD_SECONDS`` spools the turn meanwhile
    (:class:`WriteAhead`)."""
    storing = asyncio.ensure_future(run_sync(chat_finish, turn, outcome))
    WriteAhead(turn, outcome, storing)
    await asyncio.shield(storing)


class WriteAhead:
    """A turn's first store attempt (``storing``) still under way after
    ``CHAT_LATE_STORE_WRITE_AHEAD_SECONDS`` (the database slow, or frozen: until its statement
    bound) has the turn spooled meanwhile (:meth:`LateStores.write_ahead`), and taken out again
    once the attempt has stored it, or failed for good; one that failed for the database
    (``OperationalError``) keeps it (:func:`kept_for_later`). A process killed while the
    attempt waited lost the turn. A store done before the delay (a healthy database: a few ms)
    costs one timer, no Redis round trip. Its steps run on the event loop, as callbacks: also
    when the request that awaits the store is cancelled (the client gone)."""

    __slots__ = ("loop", "outcome", "spooled", "storing", "timer", "turn")

    def __init__(self, turn: Turn, outcome: Outcome, storing: asyncio.Future[Message]) -> None:
        self.turn, self.outcome, self.storing, self.spooled = turn, outcome, storing, False
        self.loop = asyncio.get_running_loop()
        self.timer = self.loop.call_later(settings.CHAT_LATE_STORE_WRITE_AHEAD_SECONDS, self.write)
        storing.add_done_callback(self.settled)

    def write(self) -> None:
        if self.storing.done():
            return
        ahead = late_stores.write_ahead(self.turn, self.outcome)
        if ahead is None:  # the attempt has not decided what it writes yet: soon again
            self.timer = self.loop.call_later(WRITE_AHEAD_AGAIN_SECONDS, self.write)
        self.spooled = bool(ahead)

    def settled(self, storing: asyncio.Future[Message]) -> None:
        self.timer.cancel()
        if not self.spooled:
            return
        if storing.cancelled() or not isinstance(storing.exception(), OperationalError):
            late_stores.written(self.turn)


# How soon a write-ahead whose turn's store had not decided what it writes asks again.
WRITE_AHEAD_AGAIN_SECONDS = 0.05


async def store_or_log(turn: Turn, outcome: Outcome) -> None:
    """For a stream that ends in an ``error`` event anyway (or whose client is gone): a failure
    to store its turn is logged, not raised past the generator (daphne then held the
    connection open with the stream unfinished)."""
    try:
        await store(turn, outcome)
    except Exception as exc:
        store_failed(exc, turn, outcome)


def _stored(turn: Turn, outcome: Outcome, storing: asyncio.Future[None]) -> None:
    """The end of a store its stream's client did not wait for."""
    if not storing.cancelled() and isinstance(exc := storing.exception(), Exception):
        store_failed(exc, turn, outcome)


# On a JSON answer whose turn is stored once the database answers again (store_json).
STORED_HEADER = "Chat-Stored"
STORED_LATER = (
    "The database is not answering: the answer is stored in the conversation once it is back."
)


def kept_for_later(exc: Exception, turn: Turn, outcome: Outcome) -> bool:
    """Whether a turn whose store failed with ``exc`` is kept and stored once the database
    answers again (:mod:`conversations.late_store`): the database gone or past its statement
    timeout, and room to keep it. It was lost, the answer the client had read with it."""
    if not isinstance(exc, OperationalError):
        return False
    log.warning("chat_store_failed", error=type(exc).__name__)
    return late_stores.add(turn, outcome)


def store_failed(exc: Exception, turn: Turn, outcome: Outcome) -> dict[str, str]:
    """The ``error`` event of a stream whose turn could not be stored."""
    if kept_for_later(exc, turn, outcome):
        return {"code": "service_unavailable", "message": STORED_LATER}
    if isinstance(exc, OperationalError):
        return {"code": "service_unavailable", "message": "The answer could not be stored."}
    log.exception("chat_store_failed")
    return {"code": "internal_error", "message": "The answer could not be stored."}


async def store_json(turn: Turn, outcome: Outcome) -> bool:
    """Store a JSON turn; True when it is kept to be stored later (:func:`kept_for_later`), as
    a stream's is: its answer is then sent all the same, with ``Chat-Stored: later``. It was a
    ``503`` and the answer lost, which the client had paid the provider for (and which a retry
    paid for again)."""
    try:
        await store(turn, outcome)
    except Exception as exc:
        if kept_for_later(exc, turn, outcome):
            return True
        raise
    return False


def response_body(turn: Turn, outcome: Outcome) -> dict[str, Any]:
    return {
        "session_id": str(turn.conversation.pk),
        "message_id": str(turn.message_id),
        "output": outcome.output,
        "citations": outcome.citations,
        "usage": outcome.usage,
        "refusal": {"reason": turn.refusal} if turn.refusal else None,
        "model": outcome.model,
    }


def upstream_error(exc: LLMError) -> dict[str, Any]:
    """The error of a turn the language model provider failed, JSON or stream; logged here,
    once (a stream's failure was not logged at all, a JSON turn's only as Django's "Bad
    Gateway" without the cause)."""
    log.error("llm_failed", error=str(exc), status=exc.status, transient=exc.transient)
    return {"code": "upstream_error", "message": str(exc)}


async def answer_json(request: HttpRequest, turn: Turn) -> JsonResponse:
    runner = Runner(turn)
    try:
        # A slow answer is checked as a stream is (its key, tenant and bot still allowing it)
        # every SSE_PING_SECONDS; one shorter than that runs no check.
        check = functools.partial(interruption, turn)
        async for _ in relay(runner.deltas(), settings.SSE_PING_SECONDS, check):
            pass
    except TurnInterrupted as exc:  # as the stream's: what was read is stored and counted
        await store_json(turn, runner.outcome(FinishReason.CANCELLED.value))
        log.info("chat_interrupted", reason=exc.reason, conversation_id=str(turn.conversation.pk))
        refused = exc.error
        return error_response(request, refused.status, code=refused.code, message=refused.message)
    except LLMError as exc:
        await store_json(turn, runner.outcome(FinishReason.ERROR.value))
        error = upstream_error(exc)
        body = error_body(error["code"], error["message"], request_id=request_id_of(request))
        response = JsonResponse(body, status=502)
        if exc.retry_after is not None:  # when the provider said to come back
            response["Retry-After"] = str(math.ceil(exc.retry_after))
        mark_logged(response)
        return response
    except PolicyBlocked as exc:
        # The model's answer is not passed on: a bad answer from upstream, hence 502.
        await store_json(turn, runner.outcome(FinishReason.POLICY.value))
        log.warning("chat_policy_blocked", conversation_id=str(turn.conversation.pk))
        body = error_body(exc.code, exc.message, request_id=request_id_of(request))
        return mark_logged(JsonResponse(body, status=502))
    except asyncio.CancelledError:
        await store_json(turn, runner.outcome(FinishReason.CANCELLED.value))
        raise
    outcome = runner.outcome()
    later = await store_json(turn, outcome)
    response = JsonResponse(response_body(turn, outcome))
    if later:
        response[STORED_HEADER] = "later"
    return response


async def answer_stream(turn: Turn) -> AsyncIterator[bytes]:
    ids = itertools.count(1)
    runner = Runner(turn, paced=True)
    yield sse(
        next(ids),
        "start",
        {"session_id": str(turn.conversation.pk), "message_id": str(turn.message_id)},
    )
    try:
        await run_sync(persist_and_ground, turn)  # the runner reads the passages it found
        # Revoking the key (or deactivating its tenant or the bot) ends the stream within a
        # ping interval: checked that often, never per piece.
        check = functools.partial(interruption, turn)
        async for piece in relay(runner.deltas(), settings.SSE_PING_SECONDS, check):
            if piece is None:
                yield PING
            else:
                yield sse(next(ids), "delta", {"content": piece})
    except LLMError as exc:
        await store_or_log(turn, runner.outcome(FinishReason.ERROR.value))
        yield sse(next(ids), "error", {"error": upstream_error(exc)})
        return
    except PolicyBlocked as exc:
        await store_or_log(turn, runner.outcome(FinishReason.POLICY.value))
        log.warning("chat_policy_blocked", conversation_id=str(turn.conversation.pk))
        yield sse(next(ids), "error", {"error": {"code": exc.code, "message": exc.message}})
        return
    except TurnInterrupted as exc:  # stopped as if the client had left, and told why
        await store_or_log(turn, runner.outcome(FinishReason.CANCELLED.value))
        log.info("chat_interrupted", reason=exc.reason, conversation_id=str(turn.conversation.pk))
        error = {"code": exc.error.code, "message": exc.error.message}
        yield sse(next(ids), "error", {"error": error})
        return
    except (asyncio.CancelledError, GeneratorExit):
        await store_or_log(turn, runner.outcome(FinishReason.CANCELLED.value))
        log.info("chat_cancelled", conversation_id=str(turn.conversation.pk))
        raise
    except Exception as exc:
        await store_or_log(turn, runner.outcome(FinishReason.ERROR.value))
        if isinstance(exc, ApplicationError):  # e.g. the embedding provider failed (502)
            failed = log.error if exc.status >= 500 else log.warning
            failed("chat_stream_failed", code=exc.code, error=exc.message)
            error = {"code": exc.code, "message": exc.message}
        elif isinstance(exc, OperationalError):  # the database gone while grounding: no bug
            if not outage.absorbs():  # a known outage is logged once, not per turn
                log.warning(
                    "chat_stream_failed", code="service_unavailable", error=type(exc).__name__
                )
            error = {"code": "service_unavailable", "message": DATABASE_UNAVAILABLE}
        else:
            log.exception("chat_stream_failed")
            error = {"code": "internal_error", "message": "The answer could not be completed."}
        yield sse(next(ids), "error", {"error": error})
        return
    outcome = runner.outcome()
    storing = asyncio.ensure_future(store(turn, outcome))
    try:
        while not storing.done():
            # A database slow to answer (a frozen one: until the bound) is waited for as the
            # provider is, with pings: the stream was silent that long (32 s under make run).
            await asyncio.wait({storing}, timeout=settings.SSE_PING_SECONDS)
            if not storing.done():
                yield PING
        storing.result()
    except (asyncio.CancelledError, GeneratorExit):  # the client left: the store goes on
        storing.add_done_callback(functools.partial(_stored, turn, outcome))
        raise
    except Exception as exc:  # the answer was streamed: say that it was not kept, then end
        yield sse(next(ids), "error", {"error": store_failed(exc, turn, outcome)})
        return
    yield sse(next(ids), "citations", {"citations": outcome.citations})
    yield sse(
        next(ids),
        "done",
        {
            "usage": outcome.usage,
            "refusal": {"reason": turn.refusal} if turn.refusal else None,
            "finish_reason": outcome.finish_reason,
        },
    )


CHAT_METHODS = "POST, OPTIONS"


def not_post(request: HttpRequest) -> HttpResponseBase:
    """Any method but ``POST``, after the credentials, as on the DRF views: ``OPTIONS`` is
    an empty ``200`` with ``Allow`` (:mod:`chatbot_site.options`; it was a ``405``), any other
    ``405``.
    A keyed request carries its ``RateLimit-*`` headers, and a missing or bad key is the
    ``401`` it is everywhere."""
    headers: dict[str, str] = {}
    try:
        headers = authorize(request, required_role=Role.CHAT).rate_headers
        if request.method == "OPTIONS":
            response: HttpResponseBase = options_answer(CHAT_METHODS)
            for name, value in headers.items():
                response[name] = value
            return response
        raise MethodNotAllowed(request.method or "")
    except Exception as exc:
        response = _error(request, exc, headers)
    if response.status_code == 405:
        response["Allow"] = CHAT_METHODS
    return response


@method_decorator(csrf_exempt, name="dispatch")
class ChatView(View):
    http_method_names = ["post", "options"]

    async def http_method_not_allowed(  # type: ignore[override]  # an async view's is awaited
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        return await run_sync(not_post, request)

    async def options(  # type: ignore[override]  # an async view's is awaited
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        return await run_sync(not_post, request)

    async def post(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        prepared = Prepared()
        try:
            await run_sync(prepare, request, prepared)
        except asyncio.CancelledError:
            # The client left while its turn was being opened; the thread goes on. Whichever of
            # the two sees the other's mark ends the turn (chat_release acts once), which
            # otherwise held its conversation (409 to the client's retry) and its quota until
            # they lapsed, minutes later.
            prepared.abandoned = True
            if prepared.turn is not None:
                await run_sync(chat_release, prepared.turn)
            raise
        if prepared.error is not None:
            return prepared.error
        if prepared.turn is None or prepared.access is None:  # pragma: no cover
            raise RuntimeError("prepare returned neither an answer nor an error")
        if prepared.stream:
            response: HttpResponseBase = StreamingHttpResponse(
                answer_stream(prepared.turn), content_type="text/event-stream; charset=utf-8"
            )
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"
        else:
            response = await answer_json(request, prepared.turn)
        for name, value in prepared.access.rate_headers.items():
            response[name] = value
        # W3C Server-Timing: authentication, and the time from the view's start to this
        # response's first byte (a stream's `start` event; a JSON answer's whole body).
        elapsed_ms = (time.perf_counter() - started) * 1000
        response["Server-Timing"] = (
            f"auth;dur={prepared.auth_ms:.2f}, {'start' if prepared.stream else 'answer'};"
            f"dur={elapsed_ms:.2f}"
        )
        return response


# --- the OpenAPI description (the view above is async, outside DRF) -----------------------


class ChatOutput(serializers.Serializer):
    session_id = serializers.UUIDField()
    message_id = serializers.UUIDField()
    output = serializers.CharField()
    citations = CitationOutput(many=True)
    usage = UsageSerializer()
    refusal = RefusalOutput(allow_null=True)
    model = serializers.CharField()


STREAM_DESCRIPTION = """With `"stream": true` (or, without `stream`, `Accept: text/event-stream`)
the answer is a `text/event-stream` of `start` {session_id, message_id}, `delta` {content} (repeated),
`citations` {citations}, `done` {usage, refusal, finish_reason}; every event has an increasing
`id:`; `: ping` comments while waiting; `error` {error: {code, message}} ends a failed stream.
A client that disconnects stops generation; the partial answer is stored as `cancelled`. So is
one whose key is revoked or expires, or whose tenant or bot is deactivated, while it streams:
within a ping interval it ends with the `error` a new request would get
(`authentication_failed`, or `permission_denied` / `not_found` for the bot)."""


class ChatSchemaView(APIView):
    """Schema only: describes ``POST /v1/chat`` (served by :class:`ChatView`)."""

    authentication_classes = [ApiKeyAuthentication]
    required_role = Role.CHAT  # as ChatView authorizes

    @extend_schema(
        operation_id="chat",
        request=ChatInput,
        responses={
            (200, "application/json"): OpenApiResponse(
                response=ChatOutput, description=STREAM_DESCRIPTION
            ),
            (200, "text/event-stream"): OpenApiResponse(
                response=OpenApiTypes.STR, description=STREAM_DESCRIPTION
            ),
            403: OpenApiResponse(description="permission_denied: the bot is not active"),
            404: OpenApiResponse(
                description="not_found: the bot (`bot_id`), or the conversation (`session_id`)"
            ),
            409: OpenApiResponse(
                description="conflict: the session (`session_id`) is still answering an earlier "
                "message; send this one again when that answer has ended."
            ),
            502: OpenApiResponse(
                description="upstream_error: the LLM provider failed; policy_blocked: the "
                "model's answer revealed the bot's instructions and was withheld."
            ),
        },
        parameters=[
            OpenApiParameter(
                STORED_HEADER,
                str,
                OpenApiParameter.HEADER,
                response=[200],
                enum=["later"],
                description="On a JSON answer whose turn could not be stored (the database "
                "went away while it was answered): `later`, it is stored in the conversation "
                "(`session_id`, `message_id`) once the database answers again. Absent: stored.",
            )
        ],
        tags=["chat"],
        description="Answer the last user message with the bot, grounded in its datasets.",
    )
    def post(self, request: Request) -> Response:  # pragma: no cover - never routed
        raise NotImplementedError
