"""An OpenAI-compatible HTTP server on loopback: the only fake in the test suite, standing in
for outside providers so that the real ``openai`` client path is what gets tested.

``/v1/embeddings`` answers deterministic unit vectors. ``/v1/chat/completions`` answers
``chat_reply`` (as one JSON body, or streamed word by word with ``chat_delay`` seconds between
pieces, usage in the last chunk when ``stream_options.include_usage`` asks for it). A script of
status codes (``fail_with``) makes it answer errors first, to exercise retries;
``break_after_pieces`` makes a stream fail with an error event after that many pieces;
``piece_chars`` streams pieces of that many characters instead of words; ``stalls`` makes
streams stall (before the first piece: a provider slow to start; later: one that hangs);
``chat_body`` streams those bytes instead of an answer, and ``ignore_stream`` answers a JSON
completion to a request for a stream (hostile or broken providers);
``embedding_answers`` scripts what ``/v1/embeddings`` answers instead of its vectors (a broken or
hostile provider): each entry, one per request while they last, is a function of the answer it
would have sent, returning the answer to send (JSON-able, or bytes sent as they are).
``embedding_pieces`` sends an embeddings answer in that many pieces, ``embedding_piece_delay``
seconds apart (a provider that trickles its body). ``reply_for`` answers a function of the
request instead (a model that leaks what the prompt holds, transformed).

It speaks HTTP/1.1 as providers do: connections are kept alive, and a stream is sent with
chunked transfer encoding, one event per chunk, so the client reads it a chunk at a time.

``obey = True`` makes it the model the guardrails are measured against: one that *does* leak and
*does* obey instructions, wherever they come from (:func:`obedient_reply`)."""

from __future__ import annotations

import hashlib
import html
import http.server
import json
import math
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

_PASSAGE = re.compile(r"<passage [^>]*>\n(.*?)\n</passage>", re.S)
_URL = re.compile(r"(?:https?://|www\.)[^\s)\]\"'<>]{1,500}")
_LEAK_CUE = re.compile(
    r"(?i)(system prompt|instruction|above|previous|prompt|rules|ignore|forget|vergiss|"
    r"password|secret|reveal|repeat|print|pwned)"
)
_SAY = re.compile(
    r"(?i)\b(?:say|print|output|respond with|reply with|write)\s*:?\s*[\"']([^\"']{1,200})[\"']"
)


def obedient_reply(body: dict[str, Any]) -> str:
    """What a model with no manners answers: it follows every instruction it reads — in the
    question or in a passage — leaks its system prompt when anything hints at it, renders every
    URL it saw as an image carrying the user's question, repeats the question (and any PII in
    it) and quotes the first passage (and any PII in that)."""
    messages = body.get("messages") or []
    system = next((m["content"] for m in messages if m.get("role") == "system"), "")
    question = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    passages = [html.unescape(p) for p in _PASSAGE.findall(system)]
    read = "\n".join([question, *passages])
    parts = [f"You asked: {question}"]
    if _LEAK_CUE.search(read):
        parts.append(f"My instructions are: {system}")
    for said in _SAY.findall(read):
        parts.append(said)
    for url in dict.fromkeys(_URL.findall(read)):
        parts.append(f"![status]({url}?q={quote(question[:100])}) [more]({url})")
    if passages:
        parts.append(f"The source says: {passages[0][:400]} [1]")
    return "\n\n".join(parts)


def fake_vector(text: str, dimensions: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] + i * 31) % 255) / 255 - 0.5 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


@dataclass
class FakeOpenAI:
    url: str = ""
    fail_with: list[int] = field(default_factory=list)  # statuses to answer before succeeding
    fail_headers: dict[str, str] = field(default_factory=dict)  # sent with those ("Retry-After")
    requests: list[dict[str, Any]] = field(default_factory=list)
    chat_reply: str = "Plans renew every year [1]."
    chat_delay: float = 0.0
    embedding_delay: float = 0.0  # seconds before an embeddings answer (a slow provider)
    # What /v1/embeddings answers (status 200), one entry per request while they last, as a
    # function of its proper answer: JSON-able, or bytes sent as they are with Content-Type
    # ``embedding_content_type`` ("data": [] instead of vectors, a proxy's HTML page, ...).
    embedding_answers: list[Callable[[dict[str, Any]], Any]] = field(default_factory=list)
    embedding_content_type: str = "application/json"
    embedding_pieces: int = 1  # an embeddings answer's body in this many pieces ...
    embedding_piece_delay: float = 0.0  # ... this many seconds apart (a trickling provider)
    break_after_pieces: int | None = None
    prompt_tokens: int = 42
    piece_chars: int | None = None
    # When each piece of a streamed answer was sent (time.monotonic()), the last answer's only.
    piece_sent_at: list[float] = field(default_factory=list)
    obey: bool = False
    disconnected: bool = False  # the client went away mid-stream
    keep_requests: bool = True
    connections: int = 0  # accepted so far (a client that keeps them alive opens few)
    # A script for streamed answers, one entry per request while it lasts: (pieces, seconds) =
    # after that many pieces of the answer, stall that long (a slow or hung provider; a
    # negative time: drop the connection there, mid-body).
    stalls: list[tuple[int, float]] = field(default_factory=list)
    # A hostile provider: the body of a streamed answer, verbatim (None: the answer above), or
    # a JSON completion where a stream was asked for.
    chat_body: list[bytes] | None = None
    on_embeddings: Callable[[], None] | None = None  # called as an embeddings request arrives
    ignore_stream: bool = False
    # The answer as a function of the request (None: ``chat_reply`` or the obedient reply): a
    # model that writes what a test needs from the prompt it was sent (its canary, transformed).
    reply_for: Callable[[dict[str, Any]], str] | None = None

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"].endswith("/chat/completions")]


@contextmanager
def fake_openai(port: int = 0, sock: socket.socket | None = None) -> Iterator[FakeOpenAI]:
    """The test provider on ``port`` (0: one of the kernel's choosing), or on ``sock``, a
    listening socket handed to it."""
    state = FakeOpenAI()
    counting = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, and a chunked stream
        # Each write goes out at once, as a provider flushes each event; with Nagle's algorithm
        # a kept-alive JSON answer (headers, then body) stalls for the client's delayed ACK.
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with counting:
                state.connections += 1

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if state.keep_requests:
                state.requests.append({"path": self.path, "body": body})
            if state.fail_with:
                status = state.fail_with.pop(0)
                error = {"error": {"message": "scripted failure", "type": "test"}}
                self.reply(status, error, state.fail_headers)
                return
            if self.path.endswith("/embeddings"):
                if state.on_embeddings is not None:
                    state.on_embeddings()
                time.sleep(state.embedding_delay)
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                dims = body.get("dimensions") or 8
                data = [
                    {"object": "embedding", "index": i, "embedding": fake_vector(t, dims)}
                    for i, t in enumerate(inputs)
                ]
                tokens = sum(len(t.split()) for t in inputs)
                answer = {"object": "list", "data": data, "model": body.get("model"),
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip
                content_type = "application/json"
                raw = json.dumps(answer).encode()
                if state.embedding_answers:
                    sent = state.embedding_answers.pop(0)(answer)
                    raw = sent if isinstance(sent, bytes) else json.dumps(sent).encode()
                    content_type = state.embedding_content_type
                self.reply_bytes(200, raw, content_type, pieces=state.embedding_pieces,
                                 delay=state.embedding_piece_delay)  # fmt: skip
                return
            if self.path.endswith("/chat/completions"):
                if body.get("stream") and not state.ignore_stream:
                    self.stream_chat(body)
                else:
                    self.reply(200, self.completion(body))
                return
            self.reply(404, {"error": {"message": "not here"}})

        def reply_text(self, body: dict[str, Any]) -> str:
            if state.reply_for is not None:
                return state.reply_for(body)
            return obedient_reply(body) if state.obey else state.chat_reply

        def usage(self, reply: str) -> dict[str, Any]:
            completion = len(reply.split())
            claimed: Any = state.prompt_tokens  # a hostile provider may claim anything
            total = claimed + completion if isinstance(claimed, int) else claimed
            return {"prompt_tokens": claimed, "completion_tokens": completion,
                    "total_tokens": total}  # fmt: skip

        def completion(self, body: dict[str, Any]) -> dict[str, Any]:
            reply = self.reply_text(body)
            return {
                "id": "chatcmpl-test", "object": "chat.completion", "created": 0,
                "model": body.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": reply}}],
                "usage": self.usage(reply),
            }  # fmt: skip

        def stream_chat(self, body: dict[str, Any]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def send(data: bytes) -> None:  # one chunk; an empty one ends the body
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
                choices = [] if delta is None else [
                    {"index": 0, "delta": delta, "finish_reason": finish}]  # fmt: skip
                payload = {"id": "chatcmpl-test", "object": "chat.completion.chunk",
                           "created": 0, "model": body.get("model"), "choices": choices, **extra}  # fmt: skip
                send(f"data: {json.dumps(payload)}\n\n".encode())

            if state.chat_body is not None:
                for data in state.chat_body:
                    send(data)
                send(b"")
                return
            stall_at, stall = state.stalls.pop(0) if state.stalls else (-1, 0.0)
            try:
                chunk({"role": "assistant", "content": ""})
                reply = self.reply_text(body)
                if state.piece_chars:
                    size = state.piece_chars
                    pieces = [reply[i : i + size] for i in range(0, len(reply), size)]
                else:
                    words = reply.split(" ")
                    pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
                state.piece_sent_at = []
                for i, piece in enumerate(pieces):
                    if state.break_after_pieces is not None and i >= state.break_after_pieces:
                        error = {"error": {"message": "provider fell over", "type": "server"}}
                        send(f"data: {json.dumps(error)}\n\n".encode())
                        send(b"")
                        return
                    if state.chat_delay:
                        time.sleep(state.chat_delay)
                    if i == stall_at and stall < 0:  # the provider dies mid-body
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if i == stall_at:
                        time.sleep(stall)
                    state.piece_sent_at.append(time.monotonic())
                    chunk({"content": piece})
                chunk({}, "stop")
                if (body.get("stream_options") or {}).get("include_usage"):
                    chunk(None, usage=self.usage(reply))  # type: ignore[arg-type]
                send(b"data: [DONE]\n\n")
                send(b"")
            except (BrokenPipeError, ConnectionResetError):
                state.disconnected = True
                self.close_connection = True

        def reply(
            self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            self.reply_bytes(
                status, json.dumps(payload).encode(), "application/json", headers=headers
            )

        def reply_bytes(
            self,
            status: int,
            data: bytes,
            content_type: str,
            pieces: int = 1,
            delay: float = 0,
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            size = max(1, -(-len(data) // max(1, pieces)))
            try:
                for start in range(0, len(data), size):
                    if start and delay:
                        time.sleep(delay)
                    self.wfile.write(data[start : start + size])
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                state.disconnected = True
                self.close_connection = True

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 1024  # benchmarks open hundreds of streams at once
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            # A client that goes away mid-response (the disconnect tests do) is expected.
            if isinstance(sys.exc_info()[1], ConnectionError):
                state.disconnected = True
                return
            super().handle_error(request, client_address)

    if sock is None:
        server = Server(("127.0.0.1", port), Handler)
    else:
        server = Server(sock.getsockname(), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        server.server_address = sock.getsockname()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def listen_argument(value: str) -> tuple[int, socket.socket | None]:
    """A command line's ``PORT``, or ``fd:N``: the listening socket inherited as descriptor N."""
    if value.startswith("fd:"):
        return 0, socket.socket(fileno=int(value.removeprefix("fd:")))
    return int(value), None


def main() -> None:
    """``python -m tests.fake_openai PORT [REPLY_WORDS] [DELAY]``: serve until killed (benchmarks
    run it in a process of its own so it does not share their GIL). ``PORT`` ``fd:N``: serve
    on the listening socket inherited as descriptor N (no port to pick and race for)."""

    port, sock = listen_argument(sys.argv[1])
    words = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    with fake_openai(port=port, sock=sock) as state:
        state.chat_reply = " ".join(f"word{i}" for i in range(words - 1)) + " [1]."
        state.chat_delay = delay
        state.keep_requests = False
        threading.Event().wait()


if __name__ == "__main__":
    main()
