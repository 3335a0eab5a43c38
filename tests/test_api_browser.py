# mypy: disable-error-code="arg-type,attr-defined,return-value"
"""The API from a real browser (Debian's Chromium, driven by Playwright): a page of another
origin, served from loopback, calls it with ``fetch`` as a front end would — CORS preflights,
a JWT, a chat turn as JSON and as a stream read from a ``ReadableStream``, its conversations,
the errors it can meet, and a stream it aborts. A page of an origin not in
``CORS_ALLOWED_ORIGINS`` reads nothing.

Like ``test_admin_browser``, it fails (never skips) if /usr/bin/chromium is missing."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from conversations.tests.chatkit import add_passages, ask
from tenants.models import ApiKey, Role
from tenants.tests.factories import ApiKeyFactory
from tests.fake_openai import FakeOpenAI, fake_openai
from tests.processes import ROOT, VENV_BIN, child_env, daphne_server, wait_for
from tests.test_admin_browser import CHROMIUM, CHROMIUM_ARGS
from tests.world import TenantWorld, build_tenant

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

REPLY = "Plans renew every year [1] and refunds take five working days."

# fetch() in the page; every answer as the page's script can see it.
FETCH = """
async ([url, init]) => {
  try {
    const response = await fetch(url, init);
    const headers = {};
    for (const name of ["x-request-id", "ratelimit-limit", "ratelimit-remaining",
                        "ratelimit-reset", "retry-after", "content-type"]) {
      headers[name] = response.headers.get(name);
    }
    return {status: response.status, headers, body: await response.text()};
  } catch (error) {
    return {failed: String(error)};
  }
}
"""

# A streamed turn read piece by piece from the response's ReadableStream; with ``abortAfter``,
# the fetch is aborted once that many deltas are in.
STREAM = """
async ([url, init, abortAfter]) => {
  const controller = new AbortController();
  const response = await fetch(url, {...init, signal: controller.signal});
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const reads = [];
  let text = "";
  try {
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      const piece = decoder.decode(value, {stream: true});
      reads.push(piece);
      text += piece;
      if (abortAfter && (text.match(/^event: delta$/gm) || []).length >= abortAfter) {
        controller.abort();
        break;
      }
    }
  } catch (error) {
    reads.push("failed: " + error);
  }
  return {status: response.status, type: response.headers.get("content-type"),
          requestId: response.headers.get("x-request-id"), reads, text};
}
"""


class FrontEnd(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>A front end</title><p>client</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_port() -> Iterator[int]:
    """The front end's own server: another origin than the API's."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FrontEnd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def api(django_db_setup, page_port, tmp_path_factory) -> Iterator[tuple[str, FakeOpenAI]]:
    # Static files as in production: collected, then served by WhiteNoise (the docs page's).
    static_root = tmp_path_factory.mktemp("static")
    subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT, env=child_env(STATIC_ROOT=str(static_root)), check=True,
    )  # fmt: skip
    with fake_openai() as fake:
        env = child_env(
            STATIC_ROOT=str(static_root),
            CORS_ALLOWED_ORIGINS=f"http://127.0.0.1:{page_port}",
            LLM_BACKEND="openai", OPENAI_BASE_URL=fake.url, OPENAI_API_KEY="sk-test",
            SSE_PING_SECONDS="0.2", LLM_RETRY_BASE_SECONDS="0.01",
            # A body over 2 MB is refused as it arrives (chatbot_site.servers).
            INGEST_MAX_UPLOAD_BYTES=str(1024 * 1024), DATA_UPLOAD_MAX_MEMORY_SIZE="65536",
        )  # fmt: skip
        with daphne_server(env, tmp_path_factory.mktemp("daphne") / "daphne.log") as base:
            yield base, fake


@pytest.fixture
def world() -> TenantWorld:
    world = build_tenant("browser")
    add_passages(world)
    return world


@pytest.fixture
def slow_key(world: TenantWorld) -> ApiKey:
    return ApiKeyFactory(tenant=world.tenant, role=Role.CHAT, rate_limit_per_minute=1)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Playwright runs an event loop in this thread: the database is for fixtures made before
    it (Django refuses its queries from there)."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (make test)."
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def front_end(browser: Any, origin: str) -> Page:
    page = browser.new_page()
    page.goto(f"{origin}/index.html")
    return page


def call(page: Page, url: str, **init: Any) -> dict[str, Any]:
    return page.evaluate(FETCH, [url, init])


def json_post(token: str, body: str, **headers: str) -> dict[str, Any]:
    return {
        "method": "POST",
        "headers": {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            **headers,
        },
        "body": body,
    }


def test_a_page_of_an_allowed_origin_uses_the_api_and_reads_its_errors(
    api, page_port, world, slow_key, browser
):
    base, fake = api
    fake.chat_reply = REPLY
    page = front_end(browser, f"http://127.0.0.1:{page_port}")
    question = json.dumps(ask(world, "When do annual plans renew?"))

    # A JWT for the key (a preflight: JSON is not a simple request), then a turn with it.
    token = call(
        page,
        f"{base}/v1/auth/token",
        method="POST",
        headers={"Content-Type": "application/json", "X-Request-ID": "page-1"},
        body=json.dumps({"api_key": world.chat_key.plaintext}),
    )
    assert token["status"] == 200, token
    assert token["headers"]["x-request-id"] == "page-1"
    jwt = json.loads(token["body"])["access_token"]

    turn = call(page, f"{base}/v1/chat", **json_post(jwt, question))
    assert turn["status"] == 200, turn
    assert json.loads(turn["body"])["output"] == REPLY
    assert turn["headers"]["x-request-id"]
    assert turn["headers"]["ratelimit-limit"] == "100000"
    assert turn["headers"]["ratelimit-remaining"] is not None

    listed = call(page, f"{base}/v1/conversations", headers={"Authorization": f"Bearer {jwt}"})
    assert listed["status"] == 200, listed
    assert json.loads(listed["body"])["data"]

    # Errors reach the page whole: status, envelope and headers.
    def error_of(answer: dict[str, Any]) -> dict[str, Any]:
        assert "failed" not in answer, answer  # the browser hid the answer from the page
        error = json.loads(answer["body"])["error"]
        assert error["request_id"] == answer["headers"]["x-request-id"], answer
        return error

    wrong = call(page, f"{base}/v1/chat", **json_post("cbk_nope_" + "x" * 40, question))
    assert (error_of(wrong)["code"], wrong["status"]) == ("authentication_failed", 401)

    empty = call(page, f"{base}/v1/chat", **json_post(jwt, json.dumps({"messages": []})))
    assert (error_of(empty)["code"], empty["status"]) == ("validation_error", 400)

    first = call(page, f"{base}/v1/chat", **json_post(slow_key.plaintext, question))
    assert first["status"] == 200, first
    limited = call(page, f"{base}/v1/chat", **json_post(slow_key.plaintext, question))
    assert (error_of(limited)["code"], limited["status"]) == ("rate_limited", 429)
    assert int(limited["headers"]["retry-after"]) > 0
    assert limited["headers"]["ratelimit-remaining"] == "0"

    # A body past the limit is refused by the server as it arrives, before Django: the page
    # saw only "TypeError: Failed to fetch" (the 413 had no CORS headers).
    too_big = call(
        page,
        f"{base}/v1/datasets/{world.dataset.pk}/documents",
        **json_post(
            world.admin_key.plaintext,
            json.dumps({"records": [{"title": "T", "text": "x" * 3_000_000}]}),
        ),
    )
    assert (error_of(too_big)["code"], too_big["status"]) == ("payload_too_large", 413)


def test_a_page_of_another_origin_reads_nothing(api, page_port, world, browser):
    """``localhost`` is another origin than ``127.0.0.1``: its preflight gets no CORS headers,
    so the browser sends no request and the page learns nothing."""
    base, _ = api
    page = front_end(browser, f"http://localhost:{page_port}")
    token = call(
        page,
        f"{base}/v1/auth/token",
        method="POST",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"api_key": world.chat_key.plaintext}),
    )
    assert token == {"failed": "TypeError: Failed to fetch"}
    simple = call(page, f"{base}/v1/health")  # no preflight, but the answer is not shared
    assert simple == {"failed": "TypeError: Failed to fetch"}


def test_a_stream_arrives_as_it_is_sent_and_an_aborted_one_is_stored_cancelled(
    api, page_port, world, browser
):
    base, fake = api
    fake.chat_reply = REPLY
    fake.chat_delay = 0.3  # longer than SSE_PING_SECONDS: pings between the pieces
    page = front_end(browser, f"http://127.0.0.1:{page_port}")
    init = json_post(world.chat_key.plaintext, json.dumps(ask(world, "Renewal?", stream=True)))

    streamed = page.evaluate(STREAM, [f"{base}/v1/chat", init, 0])
    assert streamed["status"] == 200
    assert streamed["type"].startswith("text/event-stream")
    assert streamed["requestId"]
    reads = streamed["reads"]
    # Read as sent: the start alone, before any delta; the done last, after the deltas.
    assert "event: start" in reads[0] and "event: delta" not in reads[0], reads[:3]
    assert "event: done" in reads[-1] and "event: start" not in reads[-1]
    assert sum("event: delta" in piece for piece in reads) >= 3, reads
    assert "\n\n: ping\n\n" in streamed["text"], reads
    blocks = [b for b in streamed["text"].split("\n\n") if b and not b.startswith(":")]
    ids = [int(block.split("\n")[0].removeprefix("id: ")) for block in blocks]
    assert ids == list(range(1, len(blocks) + 1))
    events = [block.split("\n")[1].removeprefix("event: ") for block in blocks]
    assert events[0] == "start" and events[-2:] == ["citations", "done"]

    fake.chat_delay = 0.5
    aborted = page.evaluate(STREAM, [f"{base}/v1/chat", init, 1])
    start = json.loads(aborted["text"].split("event: start\ndata: ", 1)[1].split("\n", 1)[0])
    assert "event: done" not in aborted["text"]

    # The server stores the partial answer once it sees the connection gone.
    def last_message() -> dict[str, Any] | None:
        answer = call(
            page,
            f"{base}/v1/conversations/{start['session_id']}",
            headers={"Authorization": f"Bearer {world.chat_key.plaintext}"},
        )
        assert answer["status"] == 200, answer
        message = json.loads(answer["body"])["messages"][-1]
        return message if message["role"] == "assistant" else None

    message = wait_for(last_message, timeout=15, what="the aborted answer to be stored")
    assert message["id"] == start["message_id"]
    assert message["finish_reason"] == "cancelled"
    assert message["content"] and REPLY.startswith(message["content"].rstrip())


def test_the_docs_page_works_with_only_the_service_reachable(api, browser):
    """Every request the page makes that does not go to the service is refused, as on a machine
    without internet access: Swagger UI still renders every operation from /v1/schema, and
    nothing was asked of another host (its favicon was, from cdn.jsdelivr.net)."""
    base, _ = api
    page = browser.new_page()
    elsewhere: list[str] = []

    def only_the_service(route: Any) -> None:
        if route.request.url.startswith(base + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_service)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base}/v1/docs")
    page.wait_for_selector(".opblock")
    page.wait_for_load_state("networkidle")
    assert page.locator(".opblock").count() >= 30
    assert page.locator(".opblock-summary-path", has_text="/v1/chat").count() >= 1
    assert (elsewhere, errors) == ([], [])
