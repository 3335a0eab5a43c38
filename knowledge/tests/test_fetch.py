"""URL fetching cannot be turned against our own network: the SSRF list, against real local
servers (loopback is allowed only where a test turns on the test-only setting)."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import ipaddress
import threading
import time
from collections.abc import Iterator

import pytest

from knowledge.fetch import FetchError, address_allowed, check_url, fetch, resolve
from knowledge.ingestion import document_ingest
from knowledge.models import Chunk, Document, DocumentStatus
from tests.world import build_tenant

RUSSIAN = "Оплата по счёту в течение 14 дней."  # short: a guess reads it as Shift_JIS
JAPANESE = "請求書は月末に届きます。"  # a guess reads EUC-JP as Korean
PAGE = b"<html><body><main><h1>Shipping</h1><p>Shipping is free above 50 euros.</p></main></body></html>"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        path = self.path
        if path == "/page":
            self.reply(200, PAGE, "text/html; charset=utf-8")
        elif path == "/to-metadata":
            self.redirect("http://169.254.169.254/latest/meta-data/")
        elif path == "/to-private":
            self.redirect("http://10.0.0.7/admin")
        elif path == "/to-page":
            self.redirect("/page")
        elif path.startswith("/loop"):
            self.redirect(f"/loop{len(path)}")
        elif path == "/koi8":
            self.reply(200, RUSSIAN.encode("koi8-r"), "text/plain; charset=KOI8-R")
        elif path == "/euc-jp":
            body = f"<html><body><p>{JAPANESE}</p></body></html>".encode("euc-jp")
            self.reply(200, body, 'text/html; charset="euc-jp"')
        elif path == "/big":
            self.reply(200, b"x" * 200_000, "text/plain")
        elif path == "/image":
            self.reply(200, b"\x89PNG\r\n\x1a\n", "image/png")
        elif path == "/gzip":
            self.send_response(200)
            body = gzip.compress(b"hello " * 1000)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b"slow ")
                self.wfile.flush()
                time.sleep(0.2)
        else:
            self.reply(404, b"missing", "text/plain")

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True  # a slow handler must not hold up the test's teardown
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def loopback_allowed(settings):
    settings.URL_FETCH_ALLOW_LOOPBACK = True


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1",  # noqa: S104
        "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::1",
        "2002:a9fe:a9fe::1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address):
    assert not address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "file:///etc/passwd", "gopher://example.com", "http:///path",
     "http://user:pw@example.com/", "javascript:alert(1)", "http://[::1"],
)  # fmt: skip
def test_only_plain_http_and_https_urls_are_accepted(url):
    with pytest.raises(FetchError) as excinfo:
        check_url(url)
    assert excinfo.value.code == "url_not_allowed"


@pytest.mark.parametrize(
    "host", ["2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "0x7f000001", "localhost", "[::1]"]
)
def test_odd_spellings_of_loopback_are_resolved_and_refused(host):
    _scheme, hostname, port = check_url(f"http://{host}/")
    with pytest.raises(FetchError) as excinfo:
        resolve(hostname, port)
    assert excinfo.value.code == "url_not_allowed"


@pytest.mark.django_db
def test_submitting_a_private_url_is_refused_at_once():
    side = build_tenant("acme")
    for url in ("http://127.0.0.1:8000/v1/health", "http://169.254.169.254/latest/meta-data",
                "http://[::ffff:10.0.0.1]/", "ftp://example.com/file"):  # fmt: skip
        response = side.client().post(
            f"/v1/datasets/{side.dataset.pk}/documents", {"url": url}, format="json"
        )
        assert response.status_code == 400, url
        messages = response.json()["error"]["details"]["url"]
        assert any("url_not_allowed" in m or "valid URL" in m for m in messages), messages
    assert not Document.objects.for_tenant(side.tenant).exclude(pk=side.document.pk).exists()


def test_loopback_is_refused_without_the_test_setting(server):
    with pytest.raises(FetchError) as excinfo:
        fetch(f"{server}/page")
    assert excinfo.value.code == "url_not_allowed"


@pytest.mark.usefixtures("loopback_allowed")
def test_fetch_follows_a_safe_redirect(server):
    fetched = fetch(f"{server}/to-page")
    assert fetched.data == PAGE
    assert fetched.url.endswith("/page")
    assert fetched.content_type == "text/html"


@pytest.mark.usefixtures("loopback_allowed")
@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/to-metadata", "url_not_allowed"),
        ("/to-private", "url_not_allowed"),
        ("/loop", "too_many_redirects"),
        ("/image", "unsupported_type"),
        ("/gzip", "url_fetch_failed"),
        ("/missing", "url_fetch_failed"),
    ],
)
def test_each_hop_and_response_is_checked(server, path, code):
    with pytest.raises(FetchError) as excinfo:
        fetch(f"{server}{path}")
    assert excinfo.value.code == code


@pytest.mark.usefixtures("loopback_allowed")
def test_body_size_is_capped(server, settings):
    settings.URL_FETCH_MAX_BYTES = 10_000
    with pytest.raises(FetchError) as excinfo:
        fetch(f"{server}/big")
    assert excinfo.value.code == "url_too_large"


@pytest.mark.usefixtures("loopback_allowed")
def test_total_time_is_capped(server, settings):
    settings.URL_FETCH_TOTAL_SECONDS = 1.0
    with pytest.raises(FetchError) as excinfo:
        fetch(f"{server}/slow")
    assert excinfo.value.code == "url_timeout"


@pytest.mark.django_db
@pytest.mark.usefixtures("loopback_allowed")
def test_url_document_is_fetched_and_ingested(server, django_capture_on_commit_callbacks):
    side = build_tenant("acme")
    url = f"{server}/page"
    client = side.client()
    response = client.post(f"/v1/datasets/{side.dataset.pk}/documents", {"url": url, "tags": ["web"]},
                           format="json")  # fmt: skip
    assert response.status_code == 202, response.content
    document_id = response.json()["id"]
    again = client.post(f"/v1/datasets/{side.dataset.pk}/documents", {"url": url}, format="json")
    assert (again.status_code, again.json()["id"]) == (200, document_id)
    assert document_ingest(document_id=document_id) == "ready"
    document = Document.objects.for_tenant(side.tenant).get(pk=document_id)
    assert (document.status, document.content_type) == (DocumentStatus.READY, "text/html")
    chunk = Chunk.objects.for_tenant(side.tenant).get(document=document)
    assert chunk.text == "Shipping is free above 50 euros."
    assert chunk.tags == ["web"]


@pytest.mark.django_db
@pytest.mark.usefixtures("loopback_allowed")
@pytest.mark.parametrize(("path", "text"), [("/koi8", RUSSIAN), ("/euc-jp", JAPANESE)])
def test_a_page_is_read_in_the_encoding_its_server_declares(server, path, text):
    side = build_tenant("acme")
    response = side.client().post(f"/v1/datasets/{side.dataset.pk}/documents",
                                  {"url": f"{server}{path}"}, format="json")  # fmt: skip
    document_id = response.json()["id"]
    assert document_ingest(document_id=document_id) == "ready"
    chunk = Chunk.objects.for_tenant(side.tenant).get(document_id=document_id)
    assert chunk.text == text


@pytest.mark.django_db
@pytest.mark.usefixtures("loopback_allowed")
def test_a_redirect_to_the_metadata_service_fails_the_document(server):
    side = build_tenant("acme")
    response = side.client().post(f"/v1/datasets/{side.dataset.pk}/documents",
                                  {"url": f"{server}/to-metadata"}, format="json")  # fmt: skip
    document_id = response.json()["id"]
    assert document_ingest(document_id=document_id) == "url_not_allowed"
    body = side.client().get(f"/v1/documents/{document_id}").json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == "url_not_allowed"


@pytest.fixture
def not_http() -> Iterator[str]:
    """A server that answers anything with a line that is not HTTP, then closes."""
    import socketserver

    class Garbage(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError):  # the client may be gone first
                self.request.recv(4096)
                self.request.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Garbage) as tcp:
        threading.Thread(target=tcp.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{tcp.server_address[1]}"
        tcp.shutdown()


@pytest.mark.usefixtures("loopback_allowed")
def test_connection_failures_are_told_in_words_not_exception_names(not_http):
    """They were "Fetching failed (ConnectionRefusedError)."; the class is for the log only."""
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{unused.getsockname()[1]}/"  # nothing listens there
    answers = {}
    for url in (closed, f"{not_http}/page"):
        with pytest.raises(FetchError) as excinfo:
            fetch(url)
        answers[url] = excinfo.value
    refused, garbled = answers[closed], answers[f"{not_http}/page"]
    assert (refused.code, refused.message) == (
        "url_fetch_failed", "The server refused the connection."
    )  # fmt: skip
    assert refused.detail == "ConnectionRefusedError"
    assert garbled.code == "url_fetch_failed"
    assert garbled.message == "The server's answer was not valid HTTP."
    assert "Error" not in refused.message + garbled.message
