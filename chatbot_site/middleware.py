"""Request id, access log, the error-envelope safety net, static files, and Django's own
middleware adapted to the API. All sync and async capable, so the async chat view (under
daphne) passes through them without a thread hop."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, cast

import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from corsheaders.middleware import CorsMiddleware
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.db import OperationalError as DatabaseOperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.middleware import clickjacking, common, csrf, security
from django.utils.deprecation import MiddlewareMixin
from whitenoise.middleware import WhiteNoiseMiddleware  # type: ignore[import-untyped]

from chatbot_site.errors import database_unavailable, error_response, wants_json

log = structlog.get_logger("chatbot.request")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
_QUIET_PATHS = frozenset({"/v1/health"})
# The access line's status of a request whose client left before its response existed: none
# was sent (nginx logs such a request 499, "client closed request", too).
CLIENT_GONE_STATUS = 499

GetResponse = Callable[[HttpRequest], Any]


def new_request_id(candidate: str | None) -> str:
    """Echo a client's id when it is sane (short, printable, no spaces), else make one."""
    if candidate and _SANE_REQUEST_ID.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex


class _DualMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        response = self.before(request) or self.get_response(request)
        return self.after(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        response = self.before(request) or await self.get_response(request)
        return self.after(request, response)

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        """A response here answers the request without the rest of the stack."""
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return response


class RequestIdMiddleware(_DualMiddleware):
    """Assigns ``request.request_id``, binds it into every log line and echoes it back."""

    def before(self, request: HttpRequest) -> None:
        request_id = new_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        request._started = time.perf_counter()  # type: ignore[attr-defined]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        self.before(request)
        try:
            response = await self.get_response(request)
        except asyncio.CancelledError:
            # Django's ASGI handler cancels the request's task when the client disconnects
            # before a response exists (a JSON chat turn waiting on a slow provider, a slow
            # list): no response, no access line, unless it is written here.
            self._log(request, CLIENT_GONE_STATUS, bytes=0, outcome="client_gone")
            raise
        return self.after(request, response)

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response[REQUEST_ID_HEADER] = request.request_id  # type: ignore[attr-defined]
        if response.streaming and getattr(response, "file_to_stream", None) is None:
            # A stream (a chat answer's events) is logged when it ends, with what was sent;
            # logged here, it was "200 in 30 ms" for an answer that took seconds, whatever
            # became of it. (A file's length is known: it is logged now, as it is served.)
            streaming = cast(StreamingHttpResponse, response)
            content = streaming.streaming_content
            streaming.streaming_content = (
                self._async_stream(request, response, content)  # type: ignore[arg-type]
                if streaming.is_async
                else self._stream(request, response, content)  # type: ignore[arg-type]
            )
            return response
        size = len(response.content) if isinstance(response, HttpResponse) else None
        self._log(request, response.status_code, bytes=size)
        return response

    @staticmethod
    def _log(request: HttpRequest, status: int, **fields: Any) -> None:
        elapsed_ms = round((time.perf_counter() - request._started) * 1000, 1)  # type: ignore[attr-defined]
        level = log.debug if request.path in _QUIET_PATHS and status < 500 else log.info
        level(
            "request_finished",
            method=request.method,
            path=request.path,
            status=status,
            ms=elapsed_ms,
            **fields,
        )

    async def _async_stream(
        self, request: HttpRequest, response: HttpResponseBase, content: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        sent, outcome = 0, "failed"
        try:
            async for chunk in content:
                sent += len(chunk)
                yield chunk
            outcome = "complete"
        except (asyncio.CancelledError, GeneratorExit):  # the client went away
            outcome = "client_gone"
            raise
        finally:
            self._log(request, response.status_code, bytes=sent, outcome=outcome)

    def _stream(
        self, request: HttpRequest, response: HttpResponseBase, content: Iterator[bytes]
    ) -> Iterator[bytes]:
        sent, outcome = 0, "failed"
        try:
            for chunk in content:
                sent += len(chunk)
                yield chunk
            outcome = "complete"
        except GeneratorExit:  # closed before its end: the client went away
            outcome = "client_gone"
            raise
        finally:
            self._log(request, response.status_code, bytes=sent, outcome=outcome)


def add_cors_headers(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """django-cors-headers' own headers, for a response made outside its middleware (before it
    ran, or outside Django: ``chatbot_site.servers``): without them a page of an allowed origin cannot read the
    error, only that the request failed."""
    return CorsMiddleware(lambda _: response).add_response_headers(request, response)


# The headers that describe a response's body, not the response: a body replaced drops them.
_BODY_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "content-disposition",
        "content-language",
        "content-range",
        "etag",
        "last-modified",
    }
)


class ErrorEnvelopeMiddleware(_DualMiddleware):
    """Last line of defence for ``/v1``: an error response that is not already our JSON
    envelope (a bare 404 from a resolver, a 405 from a plain Django view, a 413 from the body
    limit) is replaced with one, so clients only ever parse one error shape.

    It also refuses a query string carrying NUL (``%00``), for every route, the staff admin's
    included: PostgreSQL text holds no NUL, so a filter with one was a 500 (found by fuzzing).
    (Inside ``RequestIdMiddleware``, so the 400 still carries the request id.)"""

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        if "%00" in request.META.get("QUERY_STRING", ""):
            return add_cors_headers(
                request,
                error_response(
                    request,
                    400,
                    message="Malformed query string: parameters may not contain NUL (%00) "
                    "characters.",
                ),
            )
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        """The database gone or too slow in a view outside DRF (the staff admin): a 503 with
        Retry-After, as the API answers (DRF's views map it themselves), not a 500."""
        if isinstance(exception, DatabaseOperationalError):
            return database_unavailable(request, exception)
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if response.status_code < 400 or not (
            request.path.startswith("/v1")
            # DEBUG (``make run``): Django answers an unknown path with its HTML debug page, not
            # ``handler404``; a client that asks for no page gets what production sends it.
            or (response.status_code == 404 and settings.DEBUG and wants_json(request))
        ):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        if getattr(response, "streaming", False):
            return response
        replacement = error_response(request, response.status_code)
        # Every header the client needs stays (Allow, Retry-After, RateLimit-*, Vary, CORS, the
        # security headers ...): only those that described the replaced body change. Only three
        # were kept, and a page of an allowed origin could not read the 405 it was sent.
        for header, value in response.items():
            if header.lower() not in _BODY_HEADERS:
                replacement[header] = value
        replacement.cookies = response.cookies
        replacement["Content-Length"] = str(len(replacement.content))
        return replacement


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, able to run in Django's async stack.

    WhiteNoise's middleware is sync-only, which makes Django run every view below it through
    ``async_to_sync`` in a thread — the async chat view included. This subclass answers static
    files itself (in a thread; they are rare) and awaits everything else directly."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            response: HttpResponseBase = await sync_to_async(self.serve)(static_file, request)
            return response
        response = await self.get_response(request)
        return response


# Django's own middleware, adapted to the API. Under ASGI each hook of a ``MiddlewareMixin``
# middleware is sent to a thread and awaited (``sync_to_async``, thread-sensitive): two hops
# per middleware, about a dozen per request before the view runs, each a thread hand-off that
# costs the event loop CPU and the request latency (7% of a chat turn's CPU, 16 clients).
API_PREFIX = "/v1/"


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


class _InlineHooks(MiddlewareMixin):
    """For middleware whose hooks only compute (headers, redirects; no database, no files):
    under ASGI they run on the event loop, where the request already is."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await cast(Awaitable[HttpResponseBase], self.get_response(request))
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class _BrowserOnly(MiddlewareMixin):
    """For the middleware that serves the browser pages (the staff admin): sessions, CSRF, the
    logged-in user, messages. API requests authenticate with a key on every call (DRF's
    authenticators, the chat view) and read none of these, so they pass straight through,
    sync or async; every other request gets the middleware unchanged."""

    def __init__(self, get_response: GetResponse) -> None:
        super().__init__(get_response)
        if iscoroutinefunction(self) and hasattr(self, "process_view"):
            # Django hops a sync ``process_view`` to a thread for every view, API ones too;
            # it reads the hook off the instance once it is made, and awaits an async one.
            self.__dict__["process_view"] = self._process_view_async

    def __call__(self, request: HttpRequest) -> Any:
        if is_api_request(request):
            return self.get_response(request)  # a coroutine when async: awaited by the caller
        return super().__call__(request)

    async def _process_view_async(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponseBase | None:
        if is_api_request(request):
            return None
        hook = super().process_view  # type: ignore[misc]
        response: HttpResponseBase | None = await sync_to_async(hook, thread_sensitive=True)(
            request, view, args, kwargs
        )
        return response


class SecurityMiddleware(_InlineHooks, security.SecurityMiddleware):
    pass


class CommonMiddleware(_InlineHooks, common.CommonMiddleware):
    def should_redirect_with_slash(self, request: HttpRequest) -> bool:
        """Never for the API, whose paths end without one: ``/v1`` is an unknown path like
        any other (``404 not_found``). APPEND_SLASH answered it with an HTML ``301`` to
        ``/v1/`` (itself a 404), and a POST or DELETE to it with a ``500`` under DEBUG
        (Django refuses to redirect a method with a body). The staff admin keeps it."""
        if request.path_info == API_PREFIX.rstrip("/") or is_api_request(request):
            return False
        return bool(super().should_redirect_with_slash(request))

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        """Django's, then no ``Content-Length`` on a ``204`` or ``304``: Django adds it to every
        response (``0`` on every ``DELETE``'s 204), and RFC 9110 (8.6) forbids it on a 204;
        a 304's would have to be the full representation's length."""
        response = super().process_response(request, response)
        if response.status_code in (204, 304):
            del response["Content-Length"]
        return response


class XFrameOptionsMiddleware(_InlineHooks, clickjacking.XFrameOptionsMiddleware):
    pass


class SessionMiddleware(_BrowserOnly, sessions.SessionMiddleware):
    pass


class CsrfViewMiddleware(_BrowserOnly, csrf.CsrfViewMiddleware):
    pass


class AuthenticationMiddleware(_BrowserOnly, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(_BrowserOnly, messages.MessageMiddleware):
    pass
