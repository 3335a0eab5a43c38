"""Request bodies reach Django as sent when daphne serves: Twisted does not parse them first."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from knowledge.models import Document
from tests.processes import (
    child_env,
    daphne_process,
    daphne_server,
    parse_answer,
    raw_request,
    request_head,
)
from tests.world import TenantWorld, build_tenant

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

BOUNDARY = "b0undary"


@pytest.fixture(scope="module")
def plain_server(django_db_setup, tmp_path_factory) -> Iterator[str]:
    """One daphne with the test settings, for the module's tests that ask nothing else of their
    server (none reads its log or its memory): it reads the database per request, so it serves
    each test's own rows. A server of each test's own took seconds to start, ten times over."""
    with daphne_server(child_env(), tmp_path_factory.mktemp("daphne") / "daphne.log") as base:
        yield base


def post(url: str, key: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(  # noqa: S310 (our own server on loopback)
        url,
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def file_part(name: str, content: bytes) -> bytes:
    return (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/markdown\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def test_multipart_bodies_are_parsed_by_django_only(plain_server):
    side = build_tenant("bodies")
    url_of = f"/v1/datasets/{side.dataset.pk}/documents"
    base = plain_server
    # A body Twisted's own form parser rejects used to get a bare 400 with no envelope
    # before Django saw it; now Django's parser answers in the contract's shape.
    status, headers, body = post(base + url_of, side.admin_key.plaintext, b"--b0undary--\r\n")
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] in {"validation_error", "invalid_request"}
    assert error["request_id"] == headers["x-request-id"]

    # A real upload still arrives whole.
    content = b"# Served upload\n\n" + b"A paragraph that arrives through daphne. " * 2000
    status, _, body = post(base + url_of, side.admin_key.plaintext, file_part("served.md", content))
    assert status == 202, body
    document = json.loads(body)
    assert document["source"] == "served.md"
    assert document["status"] == "queued"

    stored = Document.all_tenants.get(pk=document["id"])
    assert stored.tenant_id == side.tenant.pk
    assert stored.dataset_id == side.dataset.pk


def peak_memory_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_large_body_reaches_django_without_being_held_in_memory(tmp_path):
    """daphne put a whole body into the application's queue, in 8 KiB messages, before Django
    read the first: every upload in flight held its full size in the server process (a 50 MB
    upload, 50 MB) until Django had spooled it to disk. Now each piece is read from Twisted's
    file when Django asks for it, so the process's peak memory does not grow with the body."""
    side = build_tenant("big-body")
    content = b"# A large upload\n\n" + (b"A paragraph of a long upload. " * 35 + b"\n\n") * 30_000
    assert len(content) > 30 * 1024 * 1024
    with daphne_process(child_env(), tmp_path / "daphne.log") as (base, daphne):
        pid = daphne.pid
        before = peak_memory_kb(pid)
        status, _, body = post(
            f"{base}/v1/datasets/{side.dataset.pk}/documents",
            side.admin_key.plaintext,
            file_part("large.md", content),
        )
        assert status == 202, body
        grown_kb = peak_memory_kb(pid) - before
    stored = Document.all_tenants.get(pk=json.loads(body)["id"])
    assert stored.byte_size == len(content)  # arrived whole, in order
    assert stored.content_hash == hashlib.sha256(content).hexdigest()
    assert grown_kb < len(content) // 1024 // 4, f"peak memory grew {grown_kb} KiB"


def test_a_body_piece_whose_client_left_aborts_the_request(tmp_path):
    """Twisted closes the request's file when the client goes away: a piece not yet read is
    the request aborted (Django returns without answering), not a body cut short."""
    from django.core.exceptions import RequestAborted

    from chatbot_site.servers import BODY_PIECE_BYTES, BodyPiece

    file = (tmp_path / "body").open("w+b")
    file.write(b"x" * (BODY_PIECE_BYTES + 10))
    first, last = (
        BodyPiece(file, offset, BODY_PIECE_BYTES + 10) for offset in (0, BODY_PIECE_BYTES)
    )
    assert (first["type"], first["more_body"], last["more_body"]) == ("http.request", True, False)
    assert "body" in last and last.get("body") == b"x" * 10
    file.close()
    assert last["body"] == b"x" * 10  # read once, kept while the message lives
    with pytest.raises(RequestAborted):
        first["body"]


def test_an_upload_its_client_abandons_before_the_body_is_in_has_an_access_line(tmp_path):
    """daphne hands a request to the application once its body is in: an upload whose client
    went away while sending it never reached Django, and no line said it had been made. Now
    it has its access line, as a chat whose client left has (status 499, ``client_gone``),
    with what was received of the body."""
    side = build_tenant("abandoned")
    path = f"/v1/datasets/{side.dataset.pk}/documents"
    content = file_part("big.md", b"# Big\n\n" + b"A paragraph of a long upload. " * 20_000)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: upload-abandoned-1\r\n"
        f"Authorization: Bearer {side.admin_key.plaintext}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(content)}\r\n\r\n"
    ).encode()
    log_path = tmp_path / "daphne.log"
    with daphne_server(child_env(LOG_LEVEL="INFO"), log_path) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(head + content[:65536])  # a part of the body, then the client is gone
        from tests.processes import wait_for

        [line] = wait_for(lambda: log_lines(log_path, "request_finished"), timeout=10,
                          what="the upload's access line")  # fmt: skip
    for field in ("method=POST", f"path={path}", "status=499", "bytes=0",
                  "outcome=client_gone", "request_id=upload-abandoned-1",
                  f"body_declared={len(content)}"):  # fmt: skip
        assert field in line, (field, line)
    assert not Document.all_tenants.filter(dataset=side.dataset, source="big.md").exists()


def test_an_upload_abandoned_under_any_asgi_server_has_an_access_line():
    """uvicorn and granian hand the body over as it arrives; Django's handler returns without
    a word when the client leaves before it is in."""
    from structlog.testing import capture_logs

    from chatbot_site.asgi import application  # sets Django up: logging configured again

    path = "/v1/datasets/00000000-0000-0000-0000-000000000000/documents"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        "headers": [(b"content-type", b"multipart/form-data; boundary=b0undary"),
                    (b"content-length", b"100000")],
    }  # fmt: skip
    messages = [
        {"type": "http.request", "body": b"x" * 1000, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    with capture_logs() as lines:
        asyncio.run(application(scope, receive, send))
    assert sent == []  # nobody to answer
    [line] = [line for line in lines if line["event"] == "request_finished"]
    assert (line["method"], line["path"], line["status"], line["outcome"]) == (
        "POST",
        path,
        499,
        "client_gone",
    )
    assert (line["bytes"], line["body_received"], line["body_declared"]) == (0, 1000, "100000")
    assert line["request_id"]


def test_a_body_past_the_limit_is_refused_as_it_arrives(tmp_path):
    """Twisted wrote any body whole to a temporary file before the application saw it; a
    declared length past the limit is now refused before the body is read, a chunked body at
    the first chunk over, in the contract's envelope."""
    side = build_tenant("bodycap")
    env = child_env(INGEST_MAX_UPLOAD_BYTES=str(1024 * 1024), DATA_UPLOAD_MAX_MEMORY_SIZE="65536")
    limit = 2 * 1024 * 1024  # the larger of the two, plus a megabyte for a form's envelope
    path = f"/v1/datasets/{side.dataset.pk}/documents"
    auth = f"Authorization: Bearer {side.admin_key.plaintext}\r\n"
    with daphne_server(env, tmp_path / "daphne.log") as base:
        declared = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}X-Request-ID: upload-7\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 10000000000\r\n\r\n"
        ).encode()
        status, headers, body = parse_answer(raw_request(base, declared))
        assert status == 413
        assert headers["content-type"] == "application/json"
        assert body["error"]["code"] == "payload_too_large"
        assert body["error"]["details"] == {"limit_bytes": limit}
        # The client's id, echoed as on every other answer (a new one was made).
        assert body["error"]["request_id"] == headers["x-request-id"] == "upload-7"

        chunked = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        piece = b"x" * 65536
        parts = [b"%x\r\n%s\r\n" % (len(piece), piece)] * (limit // len(piece) + 1)
        status, _, body = parse_answer(raw_request(base, chunked, parts))
        assert status == 413
        assert body["error"]["code"] == "payload_too_large"

        # A client that sends the whole body anyway reads the 413, and the connection closes
        # once the body is in: the rest is read and dropped (closed with it unread, the socket
        # sends a reset, which nginx reports instead of the 413: test_containers).
        sent = limit + 3 * 65536
        whole = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}"
            f"Content-Type: application/octet-stream\r\nContent-Length: {sent}\r\n\r\n"
        ).encode()
        answer = raw_request(base, whole, [piece] * (sent // len(piece)))
        assert parse_answer(answer)[0] == 413, answer[:200]

        # Under the limit, the same server still takes a body.
        status, _, body = post(
            base + path, side.admin_key.plaintext, file_part("small.md", b"# Small\n\nText.")
        )
        assert status == 202, body

    refusals = [line for line in (tmp_path / "daphne.log").read_text().splitlines()
                if "request_body_refused" in line]  # fmt: skip
    assert len(refusals) == 3, refusals
    assert "declared=10000000000" in refusals[0]
    # The request's method and path, which Twisted keeps on the connection until the body is
    # in: the log said method='(no method yet)' path='(no uri yet)'.
    assert all("method=POST" in line and f"path={path}" in line for line in refusals), refusals


def asgi_call(
    headers: list[tuple[bytes, bytes]],
    bodies: list[bytes],
    path: str = "/v1/auth/token",
    method: str = "POST",
) -> list[dict]:
    """One request through the project's ASGI application, as uvicorn or granian would send
    it: the body in messages, as it arrives."""
    from chatbot_site.asgi import application

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    messages = [
        {"type": "http.request", "body": body, "more_body": i < len(bodies) - 1}
        for i, body in enumerate(bodies)
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected until the answer is sent
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(application(scope, receive, send))
    return sent


def test_any_asgi_server_gets_the_same_limit(settings):
    """uvicorn and granian hand the body over as it arrives; Django's handler would write all
    of it to a temporary file before a view ran."""
    settings.INGEST_MAX_UPLOAD_BYTES = 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    limit = 1024 + 1024 * 1024
    json_type = (b"content-type", b"application/json")

    declared = asgi_call([json_type, (b"content-length", b"9" * 12)], [b"{}"])
    streamed = asgi_call([json_type], [b" " * 65536] * (limit // 65536 + 2))
    for sent in (declared, streamed):
        assert sent[0]["status"] == 413
        headers = dict(sent[0]["headers"])
        body = json.loads(sent[1]["body"])
        assert body["error"]["code"] == "payload_too_large"
        assert body["error"]["details"] == {"limit_bytes": limit}
        assert body["error"]["request_id"] == headers[b"x-request-id"].decode()

    small = asgi_call([json_type, (b"content-length", b"15")], [b'{"api_key": ""}'])
    assert small[0]["status"] == 400  # read and answered by the view
    assert json.loads(small[1]["body"])["error"]["details"] == {
        "api_key": ["This field may not be blank."]
    }


def test_an_answer_given_outside_django_echoes_the_clients_request_id(settings):
    """API.md: every response carries X-Request-ID, the client's when it sent a sane one. The
    answers given before Django ran (a body refused as it arrives, a request target that is no
    URL) made a new one whatever the client had sent; an insane one is still replaced."""
    settings.INGEST_MAX_UPLOAD_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    too_long = (b"content-length", b"9" * 12)
    for sent_id, echoed in ((b"client-id.1", "client-id.1"), (b"no spaces allowed", None)):
        refused = asgi_call([too_long, (b"x-request-id", sent_id)], [b"{}"])
        not_a_url = asgi_call(
            [(b"x-request-id", sent_id)], [b""], path="http://[::1/v1/health", method="GET"
        )
        for sent, status in ((refused, 413), (not_a_url, 400)):
            assert sent[0]["status"] == status
            header = dict(sent[0]["headers"])[b"x-request-id"].decode()
            assert json.loads(sent[1]["body"])["error"]["request_id"] == header
            if echoed:
                assert header == echoed
            else:
                assert len(header) == 32 and " " not in header


def test_an_answer_given_outside_django_is_readable_by_an_allowed_origin(settings):
    """A body refused as it arrives (and a 500 Django let out) never pass django-cors-headers'
    middleware: a page of an allowed origin saw "Failed to fetch", not the 413 (in Chromium:
    tests/test_api_browser). They carry its headers now, as Django's answers do."""
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    settings.INGEST_MAX_UPLOAD_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    too_long = (b"content-length", b"9" * 12)

    def refused(origin: bytes, path: str = "/v1/chat") -> dict[bytes, bytes]:
        sent = asgi_call([too_long, (b"origin", origin)], [b"{}"], path=path)
        assert sent[0]["status"] == 413
        return dict(sent[0]["headers"])

    headers = refused(b"https://app.example.com")
    assert headers[b"access-control-allow-origin"] == b"https://app.example.com"
    exposed = headers[b"access-control-expose-headers"].decode().lower()
    assert "x-request-id" in exposed and "retry-after" in exposed
    assert headers[b"vary"] == b"origin"
    assert b"access-control-allow-credentials" not in headers
    assert b"access-control-allow-origin" not in refused(b"https://evil.example.net")
    assert b"access-control-allow-origin" not in refused(b"https://app.example.com", "/admin/")


def test_a_chunked_json_body_is_read(plain_server):
    """A body sent chunked carries no Content-Length, and DRF read such a request as empty
    ("This field is required."): its length is declared once the body is in."""
    body = b'{"api_key": ""}'
    sent = asgi_call([(b"content-type", b"application/json")], [body[:7], body[7:]])
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"]["details"] == {
        "api_key": ["This field may not be blank."]
    }

    side = build_tenant("chunked")
    base = plain_server
    payload = b'{"name": "sent in chunks", "tags": ["a"]}'
    head = (
        f"POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Authorization: Bearer {side.admin_key.plaintext}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    parts = [b"%x\r\n%s\r\n" % (len(p), p) for p in (payload[:10], payload[10:])] + [b"0\r\n\r\n"]
    status, _, created = parse_answer(raw_request(base, head, parts))
    assert status == 201, created
    assert (created["name"], created["tags"]) == ("sent in chunks", ["a"])


def test_an_exception_that_escapes_django_is_a_500_in_the_envelope():
    """Before a response started: the contract's 500 (the servers' own is an HTML page). After
    it started: the server's to handle (it cuts the response off)."""
    from chatbot_site.servers import RequestGuard

    async def fails_at_once(scope, receive, send):
        raise RuntimeError("boom")

    async def fails_mid_stream(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("boom")

    def run(app) -> tuple[list[dict], BaseException | None]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start" and sent:
                raise ValueError("HTTP response has already been started")  # as daphne does
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/v1/bots", "headers": []}
        try:
            asyncio.run(RequestGuard(app)(scope, receive, send))
        except RuntimeError as exc:
            return sent, exc
        return sent, None

    sent, raised = run(fails_at_once)
    assert raised is None
    assert sent[0]["status"] == 500
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == "internal_error" and "boom" not in sent[1]["body"].decode()
    assert error["request_id"] == dict(sent[0]["headers"])[b"x-request-id"].decode()

    sent, raised = run(fails_mid_stream)
    assert isinstance(raised, RuntimeError)
    assert [m["status"] for m in sent] == [200]


def test_a_response_the_application_fails_in_is_cut_off_not_left_open(tmp_path):
    """daphne tried to start a second response (its 500) after the first had begun, which
    failed, and the connection stayed open with the response unfinished: a streaming client
    waited forever. Now the connection is cut, without the chunked body's end."""
    app = "chatbot_site.tests.asgi_fails_mid_response:application"
    with daphne_server(child_env(), tmp_path / "daphne.log", application=app) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(4096):  # a TimeoutError here: left open
                    received += chunk
    assert received.startswith(b"HTTP/1.1 200 ") and b"partial" in received
    assert not received.endswith(b"0\r\n\r\n")  # not ended as if complete


def test_streamed_pieces_the_socket_cannot_take_at_once_arrive_whole(tmp_path):
    """A streamed piece is sent as it is written, without marking the socket for writing; what
    the socket does not take (three 4 MB pieces) is left to the reactor, which sends the rest:
    every byte arrives, in order, and the chunked body ends."""
    from chatbot_site.tests.asgi_streams_large_pieces import PIECES, piece

    app = "chatbot_site.tests.asgi_streams_large_pieces:application"
    with daphne_server(child_env(), tmp_path / "daphne.log", application=app) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            received = bytearray()
            while chunk := sock.recv(1 << 20):
                received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"chunked" in head.lower()
    content, rest = bytearray(), body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        content += rest[:size]
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]
    assert bytes(content) == b"".join(piece(n) for n in range(PIECES)) + b"end"


def assert_database_unavailable(status: int, headers: dict[str, str], body: dict) -> None:
    assert status == 503, body
    assert headers["retry-after"] == "5"
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["message"] == "The database is unavailable or too slow; try again shortly."
    assert body["error"]["request_id"] == headers["x-request-id"]


def test_daphnes_own_errors_are_in_the_envelope(plain_server):
    """daphne answers some requests itself (an invalid header value, an application that timed
    out before answering): in the contract's shape, not its HTML page."""
    base = plain_server
    head = (
        b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Odd: a\x0bb\r\n"
        b"X-Request-ID: probe-42\r\nConnection: close\r\n\r\n"
    )
    status, headers, body = parse_answer(raw_request(base, head))
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["message"] == "Invalid header value"
    assert body["error"]["request_id"] == headers["x-request-id"] == "probe-42"


def test_a_statement_past_db_statement_timeout_is_a_503_in_the_envelope(tmp_path):
    """``DB_STATEMENT_TIMEOUT_SECONDS`` reaches the server's connections when they start, and a
    statement it cancels (here: one waiting for a lock another connection holds) is answered
    ``503 service_unavailable``, not a 500 or a request hung as long as the lock."""
    import psycopg

    from tests.processes import database_url_of_current_connection

    side = build_tenant("slowdb")
    env = child_env(DB_STATEMENT_TIMEOUT_SECONDS="0.3")
    with daphne_server(env, tmp_path / "daphne.log") as base:
        with psycopg.connect(database_url_of_current_connection()) as locker:
            locker.execute("LOCK TABLE bots_bot IN ACCESS EXCLUSIVE MODE")  # until rollback
            head = request_head("GET", "/v1/bots", side.admin_key.plaintext)
            status, headers, body = parse_answer(raw_request(base, head))
            locker.rollback()
        again = parse_answer(raw_request(base, head))  # the lock is gone
    assert_database_unavailable(status, headers, body)
    assert again[0] == 200, again
    log = (tmp_path / "daphne.log").read_text()
    assert log.count("database_unavailable") == 1
    # Logged once: Django's own "Service Unavailable: /v1/bots" line (ERROR, no cause) is not.
    assert "Service Unavailable" not in log


def test_a_database_that_stops_answering_is_a_503_within_the_statement_bound(tmp_path):
    """A server that takes the statement and never answers (SIGSTOP, a partition) cancels
    nothing itself: a request held its thread and its pooled connection until the server
    woke (79 s under make run, no answer meanwhile). Now the client gives up
    DB_STATEMENT_TIMEOUT_SECONDS + 2 s on: a 503, and the connection is not used again.

    The statement is the only wait on the server when it stalls: one pool connection
    (``DB_POOL_MAX_SIZE=1``) and health answered 200 first. Otherwise a connection attempt
    still out then (the pool growing for a request or a probe that waited for it, or health's
    own direct connection, which all happen under load) times out first (``ConnectionTimeout``
    after at most 2 s, the statement's bound is 2.5 s): the outage's line names that, and the
    request's ``DatabaseNoAnswer`` is counted in it with no line of its own."""
    from tests.processes import DatabaseProxy, http_get_json, wait_for

    side = build_tenant("stalled")
    proxy = DatabaseProxy()
    env = child_env(DATABASE_URL=proxy.url, DB_STATEMENT_TIMEOUT_SECONDS="0.5",
                    DB_CONNECT_TIMEOUT="1", DB_POOL_TIMEOUT="2",
                    DB_POOL_MAX_SIZE="1")  # fmt: skip
    head = request_head("GET", "/v1/bots", side.admin_key.plaintext)
    try:
        with daphne_server(env, tmp_path / "daphne.log") as base:
            wait_for(lambda: http_get_json(f"{base}/v1/health")[0] == 200, timeout=30,
                     what="health to find the database")  # fmt: skip
            assert parse_answer(raw_request(base, head))[0] == 200
            proxy.stall()
            # Without a bound the request waits as long as the stall: here 60 s.
            answer = raw_request(base, head, timeout=60)
            assert answer, "no answer in 60 s"
            status, headers, body = parse_answer(answer)
            health = http_get_json(f"{base}/v1/health")  # its own bound: 1 s
            proxy.resume()
            again = parse_answer(raw_request(base, head))
    finally:
        proxy.close()
    assert_database_unavailable(status, headers, body)
    assert health[0] == 503, health
    assert again[0] == 200, again
    log = (tmp_path / "daphne.log").read_text()
    assert "DatabaseNoAnswer" in log  # database_unavailable names the cause


def chat_to_no_bot(side: TenantWorld) -> tuple[bytes, bytes]:
    """A raw JSON chat request (head, body) of ``side``'s chat key to a bot that is nobody's:
    a 404 after the turn's thread has used its database connection."""
    import uuid

    body = json.dumps(
        {"bot_id": str(uuid.uuid4()), "messages": [{"role": "user", "content": "Hello?"}]}
    ).encode()
    head = (
        f"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"  # type: ignore[attr-defined]
        f"Authorization: Bearer {side.chat_key.plaintext}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


def test_without_the_pool_a_database_that_stops_answering_is_a_503_within_the_bound(tmp_path):
    """``DB_POOL=false``: Django connects by itself, and its connections were plain psycopg
    ones — a chat whose thread (``CHAT_WORKER_THREADS``) kept its connection from the turn
    before waited as long as the server did (30 s of a 30 s freeze under make run). Now they
    are of the same bounded class as the pool's: a 503, and health answers meanwhile."""
    from tests.processes import DatabaseProxy, http_get_json

    side = build_tenant("stalled")
    proxy = DatabaseProxy()
    env = child_env(DATABASE_URL=proxy.url, DB_POOL="false", CONN_MAX_AGE="60",
                    CHAT_WORKER_THREADS="1", DB_STATEMENT_TIMEOUT_SECONDS="0.5",
                    DB_CONNECT_TIMEOUT="1")  # fmt: skip
    head, body = chat_to_no_bot(side)
    try:
        with daphne_server(env, tmp_path / "daphne.log") as base:
            # Not this tenant's bot: 404, after the chat thread has opened its connection.
            assert parse_answer(raw_request(base, head, [body]))[0] == 404
            proxy.stall()
            # Without a bound the chat waits as long as the stall: here 60 s.
            answer = raw_request(base, head, [body], timeout=60)
            health = http_get_json(f"{base}/v1/health")  # its own bound: 1 s
            proxy.resume()
            again = parse_answer(raw_request(base, head, [body]))
    finally:
        proxy.close()
    assert answer, "no answer in 60 s"
    assert_database_unavailable(*parse_answer(answer))
    assert health[0] == 503, health
    assert health[1]["checks"]["database"]["status"] == "error"
    assert again[0] == 404, again


def test_chats_queued_behind_a_database_that_stopped_answering_are_a_503_at_once(tmp_path):
    """A chat's hops run on CHAT_WORKER_THREADS threads: with the database frozen, each hop
    held its thread for its bound (or DB_POOL_TIMEOUT for a connection) and the chats behind
    it waited their turn — under make run 33 of 40 chats waited the whole 30 s freeze, no
    ``start`` event for the streams. Now once one has seen the server not answer, the others
    are refused at once (one attempt a second finds out whether it is back), and when it is
    back the chats are served again."""
    import threading
    import time

    from tests.processes import DatabaseProxy, wait_for

    side = build_tenant("queued")
    proxy = DatabaseProxy()
    env = child_env(DATABASE_URL=proxy.url, CHAT_WORKER_THREADS="1",
                    DB_STATEMENT_TIMEOUT_SECONDS="0.5", DB_CONNECT_TIMEOUT="1",
                    DB_POOL_TIMEOUT="2")  # fmt: skip
    head, body = chat_to_no_bot(side)
    answers: list[tuple[float, bytes]] = []

    def chat(base: str) -> None:
        started = time.monotonic()
        answer = raw_request(base, head, [body], timeout=90)
        answers.append((time.monotonic() - started, answer))

    try:
        with daphne_server(env, tmp_path / "daphne.log") as base:
            assert parse_answer(raw_request(base, head, [body]))[0] == 404  # not its bot
            proxy.stall()
            chats = [threading.Thread(target=chat, args=(base,)) for _chat in range(12)]
            for thread in chats:
                thread.start()
            for thread in chats:
                thread.join()
            proxy.resume()
            wait_for(lambda: parse_answer(raw_request(base, head, [body]))[0] == 404,
                     timeout=15, what="chats to be served again")  # fmt: skip
    finally:
        proxy.close()
    assert len(answers) == 12 and all(answer for _took, answer in answers), answers
    for _took, answer in answers:
        assert_database_unavailable(*parse_answer(answer))
    # One after another, each hop's wait made the last one wait 12 x 2 s and more.
    assert max(took for took, _answer in answers) < 12, sorted(t for t, _a in answers)
    log = (tmp_path / "daphne.log").read_text()
    assert log.count("database_outage_started") == 1, log  # the refusals: no line each
    assert "database_outage_ended" in log


def test_one_failed_connection_attempt_does_not_turn_requests_away(tmp_path):
    """A connection attempt that fails at once is tried again at once, and only a second
    failure makes the process take the database for down: one attempt cut off (a dropped
    handshake, a listener restarting) was a 503 for its request and, for the next second, for
    every other request of the process (DatabaseDown), while the database answered."""
    from tests.processes import DatabaseProxy

    side = build_tenant("blip")
    proxy = DatabaseProxy()
    env = child_env(DATABASE_URL=proxy.url, DB_POOL="false", CONN_MAX_AGE="0",
                    DB_STATEMENT_TIMEOUT_SECONDS="0.5", DB_CONNECT_TIMEOUT="2")  # fmt: skip
    head = request_head("GET", "/v1/bots", side.admin_key.plaintext)
    try:
        with daphne_server(env, tmp_path / "daphne.log") as base:
            assert parse_answer(raw_request(base, head))[0] == 200
            proxy.drop_next()  # the request's own connection (CONN_MAX_AGE=0: one each)
            blip = parse_answer(raw_request(base, head))
            after = parse_answer(raw_request(base, head))
            proxy.drop_next(2)  # twice in a row: the server is down, as before
            down = parse_answer(raw_request(base, head))
    finally:
        proxy.close()
    assert blip[0] == 200, blip
    assert after[0] == 200, after
    assert_database_unavailable(*down)
    started = log_lines(tmp_path / "daphne.log", "database_outage_started")
    assert len(started) == 1 and "cause=OperationalError" in started[0], started


def log_lines(path, event: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if event in line]


def test_a_database_outage_is_logged_when_it_starts_while_it_lasts_and_when_it_ends(tmp_path):
    """Every request refused while the database did not answer wrote its own ERROR line
    (``database_unavailable``): a flood under load, when operators read the log. Now the outage
    is one line when it starts, naming what failed, at most one per ``DB_OUTAGE_LOG_SECONDS``
    while it lasts, with how many requests were refused, and one when it ends."""
    import re

    from tests.processes import DatabaseProxy, wait_for

    side = build_tenant("outagelog")
    proxy = DatabaseProxy()
    env = child_env(DATABASE_URL=proxy.url, DB_STATEMENT_TIMEOUT_SECONDS="0.5",
                    DB_CONNECT_TIMEOUT="1", DB_POOL_TIMEOUT="2",
                    DB_OUTAGE_LOG_SECONDS="1", LOG_LEVEL="INFO")  # fmt: skip
    head = request_head("GET", "/v1/bots", side.admin_key.plaintext)
    log_path = tmp_path / "daphne.log"
    refused = 0

    def served() -> bool:
        nonlocal refused
        status, headers, body = parse_answer(raw_request(base, head, timeout=30))
        if status == 200:
            return True
        assert_database_unavailable(status, headers, body)
        refused += 1
        return False

    def refuse_one() -> bool:
        assert not served()
        return bool(log_lines(log_path, "database_outage_continues")) and refused >= 20

    try:
        with daphne_server(env, log_path) as base:
            assert parse_answer(raw_request(base, head))[0] == 200
            proxy.stall()
            wait_for(refuse_one, timeout=60, what="a line while the outage lasts")
            proxy.resume()
            wait_for(served, timeout=15, what="the database to answer again")
    finally:
        proxy.close()
    assert log_lines(log_path, "database_unavailable") == []  # 20 and more before
    started = log_lines(log_path, "database_outage_started")
    assert len(started) == 1, started
    assert "cause=DatabaseNoAnswer" in started[0] and "[error" in started[0], started
    ended = log_lines(log_path, "database_outage_ended")
    assert len(ended) == 1, ended
    assert f"refused={refused}" in ended[0], (refused, ended)
    totals = [int(re.search(r"refused_total=(\d+)", line)[1])
              for line in log_lines(log_path, "database_outage_continues")]  # fmt: skip
    assert totals == sorted(totals) and 0 < totals[-1] <= refused, (totals, refused)
    # Each refused request still has its access line.
    assert len([line for line in log_lines(log_path, "request_finished")
                if "status=503" in line]) == refused  # fmt: skip


@pytest.mark.parametrize("statement_timeout", ["0.5", "0"])
def test_during_an_outage_health_and_the_pool_write_no_line_of_their_own(
    tmp_path, statement_timeout
):
    """The database gone (a server restarting: connections closed, new ones refused): each
    health probe wrote its ``health_database_failed`` ERROR line, and psycopg_pool a warning
    per failed connection attempt, for as long as it lasted — the log flooded again, beside
    the outage's own lines. Now they are counted in those (the first one names the cause).
    Without a statement bound (``DB_STATEMENT_TIMEOUT_SECONDS=0``, the workers' setting) the
    process never knew of the outage: no line of its own, and every attempt's warning and
    every refused request's ERROR were the log."""
    from tests.processes import DatabaseProxy, http_get_json, wait_for

    side = build_tenant(f"quietpool{statement_timeout}")
    proxy = DatabaseProxy()
    env = child_env(DATABASE_URL=proxy.url, DB_STATEMENT_TIMEOUT_SECONDS=statement_timeout,
                    DB_CONNECT_TIMEOUT="1", DB_POOL_TIMEOUT="2", LOG_LEVEL="INFO")  # fmt: skip
    head = request_head("GET", "/v1/bots", side.admin_key.plaintext)
    log_path = tmp_path / "daphne.log"

    def health() -> int:
        return http_get_json(f"{base}/v1/health")[0]

    try:
        with daphne_server(env, log_path) as base:
            assert parse_answer(raw_request(base, head))[0] == 200
            proxy.down()
            wait_for(lambda: health() == 503 and log_lines(log_path, "database_outage_started"),
                     timeout=30, what="the outage to be known")  # fmt: skip
            assert [health() for _probe in range(6)] == [503] * 6
            assert parse_answer(raw_request(base, head))[0] == 503
            proxy.up()
            wait_for(lambda: health() == 200, timeout=15, what="health to see the database")
            wait_for(lambda: parse_answer(raw_request(base, head))[0] == 200, timeout=15,
                     what="the API to be served again")  # fmt: skip
    finally:
        proxy.close()
    lines = log_path.read_text().splitlines()
    started = next(i for i, line in enumerate(lines) if "database_outage_started" in line)
    ended = next(i for i, line in enumerate(lines) if "database_outage_ended" in line)
    assert "cause=OperationalError" in lines[started], lines[started]
    during = lines[started + 1 : ended]
    assert not [line for line in during if "psycopg.pool" in line], during
    assert not [line for line in during if "health_database" in line], during
    assert not [line for line in during if "database_unavailable" in line], during
    assert len(log_lines(log_path, "database_outage_started")) == 1
    # Before the outage was known, at most the first probe's own line.
    assert len(log_lines(log_path, "health_database_failed")) <= 1


@pytest.mark.parametrize(
    ("what", "table"),
    [
        ("datasets", "knowledge_chunk"),
        ("bots", "conversations_message"),
        # The messages that cited the document lose its text in the deleting transaction.
        ("documents", "conversations_message"),
    ],
)
def test_deletions_that_grow_with_the_data_are_not_bound_by_the_statement_timeout(
    tmp_path, what, table
):
    """A dataset's chunks, a bot's messages, the messages citing a document: each goes (or is
    rewritten) in one statement that grows with them, so ``DELETE /v1/datasets/{id}``,
    ``DELETE /v1/bots/{id}`` and ``DELETE /v1/documents/{id}`` wait here for a lock held past
    ``DB_STATEMENT_TIMEOUT_SECONDS`` (and the client's bound on an answer) and still succeed."""
    import threading

    import psycopg

    from tests.processes import database_url_of_current_connection

    side = build_tenant(f"big{what}")
    target = {"datasets": side.dataset, "bots": side.bot, "documents": side.document}[what]
    env = child_env(DB_STATEMENT_TIMEOUT_SECONDS="0.3")
    head = request_head("DELETE", f"/v1/{what}/{target.pk}", side.admin_key.plaintext)
    with (
        daphne_server(env, tmp_path / "daphne.log") as base,
        psycopg.connect(database_url_of_current_connection()) as locker,
    ):
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        # Past the 0.3 s bound, and past the client's own (0.3 + 2 s: chatbot_site.pgconnection)
        release = threading.Timer(3.0, locker.rollback)
        release.start()
        answer = raw_request(base, head)
        release.join()
    assert answer.startswith(b"HTTP/1.1 204 "), answer[:300]
    assert not type(target).all_tenants.filter(pk=target.pk).exists()


def test_a_request_target_in_absolute_form_is_served(plain_server):
    """``GET http://host/v1/health`` (RFC 9112 3.2.2: a server must accept it, and take the host
    from it rather than from the ``Host`` header); daphne used to hand Django the whole URL as
    the path, a 404."""
    answers = {}
    base = plain_server
    authority = base.removeprefix("http://")
    for target, host in ((f"HTTP://{authority}/v1/health?probe=1", "elsewhere.example"),
                         ("http://elsewhere.example/v1/health", authority),
                         ("http://[::1/v1/health", "broken.example")):  # fmt: skip
        head = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        answers[host] = parse_answer(raw_request(base, head.encode()))
    status, _, body = answers["elsewhere.example"]
    assert status == 200, body
    assert body["status"] in {"ok", "degraded"}  # the health view answered (no worker here)
    status, headers, body = answers[authority]  # the target's host is the one Django checks
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["request_id"] == headers["x-request-id"]
    status, headers, body = answers["broken.example"]
    assert status == 400, body
    assert body["error"] == {"code": "invalid_request", "message": "The request target is not a URL.",
                             "details": {}, "request_id": headers["x-request-id"]}  # fmt: skip


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/health\r\n\r\n",  # no HTTP version
        b"GET /v1/h\xc3\xa9alth HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # not ASCII
        b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: x\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n",
        b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: b\r\n" * 1000 + b"\r\n",
    ],
    ids=[
        "request-line",
        "path-not-ascii",
        "header-name",
        "content-length",
        "chunk-size",
        "too-many-headers",
    ],
)
def test_a_request_twisted_cannot_parse_is_refused_in_the_envelope(plain_server, head):
    """Twisted refuses these itself, before daphne or Django see a request: it used to answer
    a bare ``400 Bad Request`` with no body."""
    base = plain_server
    answer = raw_request(base, head)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    status, headers, body = parse_answer(answer)
    assert (status, headers["content-type"], headers["connection"]) == (
        400, "application/json", "close")  # fmt: skip
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["message"] == "The request is not valid HTTP/1.1."
    assert body["error"]["request_id"] == headers["x-request-id"]


def test_a_429_has_its_reason_phrase(tmp_path):
    """Twisted's table lacks 429: every rate limit and quota answer read "429 Unknown Status"."""
    body = b'{"api_key": "cbk_000000000000_not-a-key"}'
    head = (
        b"POST /v1/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with daphne_server(child_env(AUTH_FAILURES_PER_MINUTE="1"), tmp_path / "daphne.log") as base:
        answers = [raw_request(base, head) for _attempt in range(3)]
    assert answers[0].startswith(b"HTTP/1.1 401 Unauthorized"), answers[0][:100]
    assert answers[-1].startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), answers[-1][:100]


def test_chat_turns_make_no_thread_of_their_own():
    """Django runs every request in a ``ThreadSensitiveContext``, which makes a thread (and a
    second one to join it) per request for its thread-sensitive calls, such as the
    ``request_finished`` receivers. ``POST /v1/chat`` does without (its sync work has a pool of
    its own): its receivers run in one shared thread; every other route gets a new one."""
    import threading

    from django.core.signals import request_finished

    from conversations.tests.chatkit import ask

    finished_in: list[threading.Thread] = []

    def record(**_: object) -> None:
        finished_in.append(threading.current_thread())

    side = build_tenant("threads")
    auth = (b"authorization", f"Bearer {side.chat_key.plaintext}".encode())
    body = json.dumps(ask(side, "When do plans renew?")).encode()
    chat_headers = [auth, (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())]  # fmt: skip
    request_finished.connect(record)
    try:
        for _ in range(2):
            sent = asgi_call(chat_headers, [body], "/v1/chat")
            assert sent[0]["status"] == 200, sent
            assert json.loads(sent[1]["body"])["session_id"]
        for _ in range(2):
            sent = asgi_call([auth], [b""], "/v1/conversations", method="GET")
            assert sent[0]["status"] == 200, sent
    finally:
        request_finished.disconnect(record)
    chat_a, chat_b, other_a, other_b = finished_in
    assert chat_a is chat_b  # asgiref's one shared thread
    assert other_a is not other_b and chat_a not in (other_a, other_b)  # a thread per request
