"""What the ASGI servers need from us beyond ``application``.

daphne serves the API on Twisted's HTTP server, and Twisted's ``Request`` parses every POST body
that says ``multipart/form-data`` (or form-urlencoded) itself, with the ``email`` package, before
daphne hands the body to Django (twisted/twisted#4519, #5511): a 40 MB upload cost ~490 MB of
memory and ~1.3 s on the reactor thread, during which no other request or stream of the process
was served, and a body that parser rejects got a bare ``400`` with no envelope. Django parses the
body again anyway, streaming and within its limits, so Twisted's copy is pure cost.
:func:`daphne_leaves_bodies_to_django` turns it off (Twisted's own ``parsePOSTFormSubmission``).

Twisted also takes a body of any size: it is written to a temporary file whole before daphne
calls the application, so Django's limits (``INGEST_MAX_UPLOAD_BYTES``) answered only after a
hostile 10 GB upload had filled the disk. The same requests now refuse a body past
:func:`body_limit` as it arrives: a declared ``Content-Length`` at once, a chunked body at the
first chunk over, with ``413 payload_too_large`` in the contract's envelope. (nginx caps bodies in the containers too: ``client_max_body_size``.)

daphne then put all of a body into the application's queue, in 8 KiB messages, before Django
read the first: every upload in flight held its whole size in the process (a 200 MB upload took
it from 112 to 336 MB). A body larger than one message now goes over as :class:`BodyPiece`
messages that read their 64 KiB from Twisted's file when Django takes them (113 → 134 MB).

After the 413 the rest of such a body is read and dropped until it ends or pauses (a lingering
close, as nginx does): closed with it unread, the socket sent a reset, and a proxy still
sending the body (nginx) answered 502 instead of passing the 413 on.

The errors daphne answers itself (an invalid header value, an application that failed or timed
out before answering) are in the contract's envelope too, and so are Twisted's refusals of a
request it cannot parse (a malformed request line, header name or chunk, too many headers).

:class:`RequestGuard` wraps the application with the same cap for any ASGI server (uvicorn and
granian hand the body over as it arrives; Django's handler spooled all of it to a temporary
file before a view ran), declares a chunked body's length, which DRF needs to read it at all,
and answers an exception that escapes Django before a response started with a ``500`` in the
envelope (the servers' own is an HTML page). It costs ~1.7 µs per request (measured in
process).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import sys
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote_to_bytes, urlsplit

import structlog
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

BODY_SLACK = 1024 * 1024  # a multipart envelope around the largest file allowed
LINGER_IDLE_SECONDS = 1.0
LINGER_MAX_SECONDS = 10.0
BODY_PIECE_BYTES = 64 * 1024  # what the application reads of a large body at a time


def body_limit() -> int:
    """The largest request body any route can accept: an upload of the largest file allowed,
    or the largest JSON body, whichever is larger."""
    return (
        max(settings.INGEST_MAX_UPLOAD_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0)
        + BODY_SLACK
    )


def cors_headers(method: str, path: str, origin: str | None) -> list[tuple[bytes, bytes]]:
    """The CORS headers django-cors-headers gives a response to this request, for the answers
    given outside Django (:func:`chatbot_site.middleware.add_cors_headers` on a stand-in
    request and response)."""
    from django.http import HttpRequest, HttpResponse

    from chatbot_site.middleware import add_cors_headers

    request = HttpRequest()
    request.method = method
    request.path = request.path_info = path
    if origin is not None:
        request.META["HTTP_ORIGIN"] = origin
    response = add_cors_headers(request, HttpResponse())
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.items()
        if name.lower() == "vary" or name.lower().startswith("access-control-")
    ]


def error_reply(
    code: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    request_id: bytes | str | None = None,
    close: bool = False,
    cors: list[tuple[bytes, bytes]] | None = None,
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """ASGI headers and body of an error in the contract's envelope, for the answers given
    outside Django (the server's own, a body refused as it arrives, a failure Django let out),
    with the request's ``cors`` headers (:func:`cors_headers`) when it is known.

    ``request_id`` is the client's ``X-Request-ID`` (or the id Django had given the request):
    echoed when sane, as :class:`chatbot_site.middleware.RequestIdMiddleware` echoes it, else a
    new one. (These answers made a new one whatever the client sent, so a client could not find
    its refused upload by the id it had logged.)"""
    # Both imported by asgi.py before Django is set up.
    from chatbot_site.errors import error_body
    from chatbot_site.middleware import new_request_id

    if isinstance(request_id, bytes):
        request_id = request_id.decode("latin-1")
    request_id = new_request_id(request_id)
    body = json.dumps(error_body(code, message, details=details, request_id=request_id)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        *(cors or ()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    return headers, body


def too_large(
    limit: int,
    cors: list[tuple[bytes, bytes]] | None = None,
    request_id: bytes | str | None = None,
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """A ``413 payload_too_large``; the connection is closed after it (the body is unread)."""
    return error_reply(
        "payload_too_large",
        f"Request bodies are limited to {limit // (1024 * 1024)} MB "
        f"(files to {settings.INGEST_MAX_UPLOAD_BYTES // (1024 * 1024)} MB).",
        details={"limit_bytes": limit},
        request_id=request_id,
        close=True,
        cors=cors,
    )


def scope_request_id(scope: dict[str, Any]) -> bytes | None:
    """The client's ``X-Request-ID`` of an ASGI request, as sent."""
    return next(
        (value for name, value in scope.get("headers", ()) if name == b"x-request-id"), None
    )


def scope_cors(scope: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """:func:`cors_headers` of an ASGI request."""
    origin = next((value for name, value in scope.get("headers", ()) if name == b"origin"), None)
    return cors_headers(
        scope.get("method", "GET"),
        scope.get("path", "/"),
        None if origin is None else origin.decode("latin-1"),
    )


def raw_response(status_line: bytes, reply: tuple[list[tuple[bytes, bytes]], bytes]) -> bytes:
    """A complete HTTP/1.1 response, for a connection the server writes to itself."""
    headers, body = reply
    head = (
        status_line
        + b"\r\n"
        + b"".join(name.title() + b": " + value + b"\r\n" for name, value in headers)
    )
    return head + b"\r\n" + body


# daphne's own errors: their messages are fixed texts ("Invalid header value"), never request data.
DAPHNE_ERROR_CODES = {400: "invalid_request", 503: "service_unavailable"}


class BodyPiece(dict[str, Any]):
    """An ``http.request`` message whose body is read from daphne's file when the application
    first takes it (and kept while the message lives: :class:`RequestGuard` counts it, then
    Django writes it). Twisted closes the file when the client goes away: the application
    sees the request aborted, as after a disconnect."""

    def __init__(self, file: Any, offset: int, size: int) -> None:
        super().__init__(type="http.request", more_body=offset + BODY_PIECE_BYTES < size)
        self.file = file
        self.offset = offset

    def __contains__(self, key: object) -> bool:
        return key == "body" or super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        if key == "body" and not super().__contains__(key):
            from django.core.exceptions import RequestAborted

            try:
                self.file.seek(self.offset)
                self["body"] = self.file.read(BODY_PIECE_BYTES)
            except ValueError:  # closed: the client left
                raise RequestAborted from None
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


def write_now(channel: Any, write: Callable[[], None]) -> None:
    """``write()`` a piece of a streamed response, and send it now, as an asyncio transport
    does, instead of on the reactor's next turn: Twisted only marks the socket for writing,
    which cost every streamed piece an event-loop wake-up and Twisted's dispatch. The socket is
    not marked at all while ``write`` buffers the piece (two ``epoll_ctl`` calls a piece, in and
    out of the selector, and asyncio's handle for it): only what the socket does not take now
    is left to the reactor, marked as Twisted would have, and a failed send is found again
    there and handled as Twisted handles it."""
    transport = getattr(channel, "transport", None)
    if (
        transport is None
        or getattr(transport, "TLS", True)  # TLS buffers its own records: left to Twisted
        or not getattr(transport, "connected", False)
        or getattr(transport, "disconnecting", True)
    ):
        write()
        return
    marked: list[bool] = []
    transport.startWriting = lambda: marked.append(True)  # for this write only
    try:
        write()
    finally:
        del transport.startWriting  # Twisted's own again
    if not marked:  # nothing was buffered
        return
    failed = transport.doWrite()
    if failed is not None or transport.dataBuffer or transport._tempDataLen:
        transport.startWriting()  # the rest (or the failure) is the reactor's


def daphne_leaves_bodies_to_django() -> None:
    """Make daphne build its requests with Twisted's form parsing off. Idempotent.

    daphne's ``HTTPFactory.buildProtocol`` looks ``WebRequest`` up in its module for every
    connection, and its command line imports the application (this package's ``asgi``) before
    it listens, so replacing the module's class here covers every request it serves.
    """
    from daphne import http_protocol
    from twisted.web.http import RESPONSES, Request

    if getattr(http_protocol.WebRequest, "leaves_bodies_to_django", False):
        return
    if "parsePOSTFormSubmission" not in inspect.signature(Request.__init__).parameters:
        raise ImproperlyConfigured("This Twisted cannot leave form bodies to Django: upgrade it.")

    class WebRequest(http_protocol.WebRequest):
        leaves_bodies_to_django = True

        def setResponseCode(self, code: int, message: bytes | None = None) -> None:
            """Twisted's table of reason phrases lacks 429 ("429 Unknown Status")."""
            if message is None and code not in RESPONSES:
                with contextlib.suppress(ValueError):
                    message = HTTPStatus(code).phrase.encode()
            super().setResponseCode(code, message)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["parsePOSTFormSubmission"] = False
            self.started = time.perf_counter()
            self.body_expected = False  # the headers are in: the body is what is awaited
            self.handed_over = False  # to daphne's process(): the application's to log
            self.body_received = 0
            self.body_refused = False
            self.body_cap = body_limit()  # read once per request, not per chunk
            self.linger_idle: Any = None  # after a refusal: the rest of the body is dropped
            self.linger_end: Any = None
            super().__init__(*args, **kwargs)

        def gotLength(self, length: int | None) -> None:
            self.body_expected = True
            if length is not None and length > self.body_cap:
                self.content = io.BytesIO()
                self.refuse_body()
                return
            super().gotLength(length)

        def handleContentChunk(self, data: bytes) -> None:
            if self.body_refused:  # lingering: read and dropped
                if self.linger_idle is not None and self.linger_idle.active():
                    self.linger_idle.reset(LINGER_IDLE_SECONDS)
                return
            self.body_received += len(data)
            if self.body_received > self.body_cap:
                self.refuse_body()
                return
            super().handleContentChunk(data)

        def target(self) -> tuple[str, str]:
            """The request's method and path (no query). While its headers and body arrive
            Twisted keeps them on the channel: the request has them once the body is in."""
            method = getattr(self.channel, "_command", None) or self.method
            uri = getattr(self.channel, "_path", None) or self.uri
            return (
                method.decode("latin-1", "replace"),
                uri.decode("latin-1", "replace").split("?", 1)[0],
            )

        def cors(self) -> list[tuple[bytes, bytes]]:
            origin = self.getHeader(b"origin")
            return cors_headers(
                *self.target(), None if origin is None else origin.decode("latin-1")
            )

        def refuse_body(self) -> None:
            self.body_refused = True
            self.channel.transport.write(
                raw_response(
                    b"HTTP/1.1 413 Content Too Large",
                    too_large(self.body_cap, self.cors(), self.getHeader(b"x-request-id")),
                )
            )
            # Closed now, with the rest of the body unread, the socket would send a reset, and
            # a client or proxy still sending (nginx) reports that instead of the 413. So the
            # rest is read and dropped until it ends, pauses for LINGER_IDLE_SECONDS, or
            # LINGER_MAX_SECONDS have passed (nginx's own lingering close).
            from twisted.internet import reactor as installed

            reactor = cast(Any, installed)  # the one daphne installed (asyncio's)
            self.linger_idle = reactor.callLater(LINGER_IDLE_SECONDS, self.end_linger)
            self.linger_end = reactor.callLater(LINGER_MAX_SECONDS, self.end_linger)
            method, path = self.target()
            structlog.get_logger("chatbot.request").warning(
                "request_body_refused",
                method=method,
                path=path[:200],
                received=self.body_received,
                declared=(self.getHeader(b"content-length") or b"").decode("latin-1") or None,
                limit=self.body_cap,
            )

        def stop_lingering(self) -> None:
            for call in (self.linger_idle, self.linger_end):
                if call is not None and call.active():
                    call.cancel()
            self.linger_idle = self.linger_end = None

        def end_linger(self) -> None:
            self.stop_lingering()
            if self.channel is not None:
                self.channel.loseConnection()

        def connectionLost(self, reason: Any) -> None:
            self.stop_lingering()
            if self.body_expected and not self.handed_over and not self.body_refused:
                # The client left while sending the body (an upload abandoned): daphne hands
                # a request to the application only once its body is in, so Django never
                # saw it and no access line said it was made.
                method, path = self.target()
                declared = self.getHeader(b"content-length")
                log_abandoned(
                    method=method,
                    path=path,
                    started=self.started,
                    request_id=self.getHeader(b"x-request-id"),
                    received=self.body_received,
                    declared=declared.decode("latin-1") if declared is not None else None,
                )
            super().connectionLost(reason)

        def process(self) -> None:
            self.handed_over = True
            if self.body_refused:  # never handed to the application; all of it is read
                self.end_linger()
                return
            body = self.content
            size = body.seek(0, io.SEEK_END)
            if size <= self.server.request_buffer_size or body.closed:
                super().process()  # one message: daphne's own way
                return
            # daphne would read all of the body into the application's queue now, before
            # Django reads any of it: it is handed an empty body, which is replaced by pieces
            # that stay in Twisted's file until Django asks for each.
            self.content = io.BytesIO()
            try:
                super().process()  # runs through: creating the application is synchronous
            finally:
                self.content = body
            queue = self.application_queue
            if queue is None or queue.qsize() != 1:
                return  # daphne refused the request itself (and answered it)
            queue.get_nowait()
            for offset in range(0, size, BODY_PIECE_BYTES):
                queue.put_nowait(BodyPiece(body, offset, size))

        def handle_reply(self, message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("more_body", False):
                write_now(self.channel, functools.partial(super().handle_reply, message))
            else:
                super().handle_reply(message)

        def handle_exception(self, exception: Exception) -> None:
            """The application failed. Before its response started: daphne's 500 (below, in the
            envelope). After: the connection is cut, so the client sees the response incomplete
            — daphne tried to start a second response, which failed, and left the connection
            open with the first one unfinished."""
            if self._response_started:
                if self.channel is not None:
                    self.channel.transport.abortConnection()
                return
            super().handle_exception(exception)

        def basic_error(self, status: int, status_text: bytes, body: str) -> None:
            """daphne's own errors (an invalid header or path, an application that failed or
            timed out before answering) in the contract's envelope, not an HTML page."""
            headers, payload = error_reply(
                DAPHNE_ERROR_CODES.get(status, "internal_error"),
                body,
                request_id=self.getHeader(b"x-request-id"),
                cors=self.cors(),
            )
            self.handle_reply({"type": "http.response.start", "status": status, "headers": headers})
            self.handle_reply({"type": "http.response.body", "body": payload})

    http_protocol.WebRequest = WebRequest

    build_protocol = http_protocol.HTTPFactory.buildProtocol

    def build_protocol_in_envelope(factory: Any, addr: Any) -> Any:
        protocol = build_protocol(factory, addr)
        # Twisted answers a request it cannot parse (a malformed request line, header name or
        # chunk; a bad Content-Length; too many or too long headers) with a bare 400 of its own
        # and closes the connection: the same, in the envelope. (Its channel sits inside a
        # wrapper that picks HTTP/1.1 or HTTP/2.)
        channel = getattr(protocol, "_channel", protocol)
        if hasattr(channel, "_respondToBadRequestAndDisconnect"):
            channel._respondToBadRequestAndDisconnect = functools.partial(
                malformed_request, channel
            )
        return protocol

    http_protocol.HTTPFactory.buildProtocol = build_protocol_in_envelope


MALFORMED = "The request is not valid HTTP/1.1."


def malformed_request(channel: Any) -> None:
    """A ``400 invalid_request`` in the envelope, then the connection closed (what Twisted's
    ``HTTPChannel`` does in its own words when a request cannot be parsed)."""
    reply = error_reply("invalid_request", MALFORMED, close=True)
    channel.transport.write(raw_response(b"HTTP/1.1 400 Bad Request", reply))
    channel.loseConnection()
    structlog.get_logger("chatbot.request").warning("request_malformed")


class _TooLarge(Exception):
    pass


def log_abandoned(
    *,
    method: str,
    path: str,
    started: float,
    request_id: bytes | str | None,
    received: int,
    declared: str | None,
) -> None:
    """The access line of a request whose client left while sending its body, before the
    application (or, under another server, Django's handler) had it: ``request_finished`` as
    :class:`chatbot_site.middleware.RequestIdMiddleware` writes one for a client gone before
    its response existed (``status`` 499, ``bytes`` 0, ``outcome`` ``client_gone``), with
    what was received of the body (``body_received``, ``body_declared``)."""
    from chatbot_site.middleware import CLIENT_GONE_STATUS, new_request_id

    if isinstance(request_id, bytes):
        request_id = request_id.decode("latin-1")
    structlog.get_logger("chatbot.request").info(
        "request_finished",
        method=method,
        path=path[:200],
        status=CLIENT_GONE_STATUS,
        ms=round((time.perf_counter() - started) * 1000, 1),
        bytes=0,
        outcome="client_gone",
        request_id=new_request_id(request_id),
        body_received=received,
        body_declared=declared,
    )


def origin_form(scope: dict[str, Any]) -> dict[str, Any]:
    """The scope of a request whose target is in absolute form (``GET http://host/v1/health``),
    as if it had come in origin form: the URL's path, and its host as the ``Host`` header, which
    RFC 9112 (3.2.2) tells a server to ignore for such a request. daphne passed the whole URL on
    as the path, and Django answered 404; a client talking to the API through a forward proxy
    configuration sends this form."""
    target = urlsplit(scope["path"])
    path, raw_path = target.path or "/", (target.path or "/").encode()
    raw = scope.get("raw_path")
    if raw and raw[:8].lower().startswith((b"http://", b"https://")):
        raw_path = urlsplit(raw).path or b"/"
        path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    headers = [(name, value) for name, value in scope.get("headers", ()) if name != b"host"]
    if host := target.netloc.rpartition("@")[2]:  # no user information in a Host header
        headers.append((b"host", host.encode("ascii", "replace")))
    return {**scope, "path": path, "raw_path": raw_path, "headers": headers}


class RequestGuard:
    """ASGI middleware around the Django application, for any server.

    - The body limit: a declared ``Content-Length`` past :func:`body_limit` is refused before
      the body is read; a body that grows past it, at the message that crosses it (uvicorn and
      granian hand the body over as it arrives, and Django's handler writes all of it to a
      temporary file before a view runs).
    - A chunked body's length, declared once it is in (DRF reads none without one).
    - The last resort: an exception that escapes Django before a response started is answered
      ``500 internal_error`` in the envelope; one after it started goes on to the server, which
      cuts the response off (daphne: ``WebRequest.handle_exception``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"][:8].lower().startswith(("http://", "https://")):
            try:
                scope = origin_form(scope)
            except ValueError:  # "http://[::1/v1/health": not a URL
                reply = error_reply(
                    "invalid_request",
                    "The request target is not a URL.",
                    request_id=scope_request_id(scope),
                    cors=scope_cors(scope),
                )
                await self._send(send, 400, reply)
                return
        limit = body_limit()
        declared = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    await self._refuse(send, limit, scope)
                    return
                declared = True
                break
        received, body_in, started = 0, False, time.perf_counter()

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, body_in
            message = await receive()
            if message["type"] == "http.disconnect" and not body_in:
                # Django's handler returns without a word when the client leaves while the
                # body arrives (uvicorn, granian: daphne's own request logs it).
                headers = dict(scope.get("headers", ()))
                length = headers.get(b"content-length")
                log_abandoned(
                    method=scope.get("method", ""),
                    path=scope.get("path", ""),
                    started=started,
                    request_id=headers.get(b"x-request-id"),
                    received=received,
                    declared=length.decode("latin-1") if length is not None else None,
                )
            if message["type"] == "http.request":
                body_in = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
                if not declared and received and not message.get("more_body", False):
                    # A chunked body has no Content-Length, and DRF reads a request without
                    # one as having no body ("This field is required."). Django reads the
                    # whole body before it builds the request from the scope, so its length
                    # can be declared here.
                    scope["headers"] = [
                        *scope.get("headers", ()),
                        (b"content-length", str(received).encode()),
                    ]
            return cast(dict[str, Any], message)

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:  # raised while Django read the body: nothing was sent yet
            await self._refuse(send, limit, scope)
        except Exception:
            structlog.get_logger("chatbot.request").exception("asgi_unhandled_exception")
            if not await self._answer_internal_error(send, scope):
                raise

    @staticmethod
    async def _answer_internal_error(send: Any, scope: dict[str, Any]) -> bool:
        """A 500 in the envelope, if no response has started (the server refuses a second
        start: then False)."""
        # The request's id, if RequestIdMiddleware bound it before the failure (as the log has).
        bound = structlog.contextvars.get_contextvars().get("request_id")
        headers, body = error_reply(
            "internal_error",
            "Internal server error.",
            request_id=bound if isinstance(bound, str) else scope_request_id(scope),
            cors=scope_cors(scope),
        )
        try:
            await send({"type": "http.response.start", "status": 500, "headers": headers})
        except Exception:  # the response had started
            return False
        await send({"type": "http.response.body", "body": body})
        return True

    @staticmethod
    async def _send(send: Any, status: int, reply: tuple[list[tuple[bytes, bytes]], bytes]) -> None:
        headers, body = reply
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @classmethod
    async def _refuse(cls, send: Any, limit: int, scope: dict[str, Any]) -> None:
        await cls._send(send, 413, too_large(limit, scope_cors(scope), scope_request_id(scope)))
        structlog.get_logger("chatbot.request").warning("request_body_refused", limit=limit)


# The routes whose views are async and send their sync work to ``chatbot_site.concurrency``'s
# pool: what is left to Django's thread-sensitive hops on them is its request signals and
# closing the response.
UNSHARED_THREAD_ROUTES = frozenset({"/v1/chat"})


def django_application() -> Any:
    """Django's ASGI handler, except that ``POST /v1/chat`` runs outside asgiref's
    ``ThreadSensitiveContext``. Django gives every request one, and the first thread-sensitive
    call in it (its own ``request_started`` receivers, ``response.close()`` at the end) makes a
    single-thread executor for that request, a thread, and a second thread to join it: 0.45 ms
    of CPU per request (measured in process), 2-3% of a chat turn. Without the context those
    calls share asgiref's one process-wide thread, which is free for them since every other
    route, the staff admin's sync views included, keeps its context and its own thread."""
    import django
    from django.core.handlers.asgi import ASGIHandler

    class Handler(ASGIHandler):
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope.get("path") in UNSHARED_THREAD_ROUTES:
                await self.handle(scope, receive, send)
            else:
                await super().__call__(scope, receive, send)

    django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does
    return Handler()


def prepare_server() -> None:
    """Called by ``asgi.py``: adjusts whichever server imported us (only daphne needs it)."""
    if "daphne" in sys.modules:
        daphne_leaves_bodies_to_django()
