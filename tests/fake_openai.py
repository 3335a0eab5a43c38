"""An OpenAI-compatible HTTP server on loopback: the only fake in the test suite, standing in
for outside providers so that the real ``openai`` client path is what gets tested.

``/v1/embeddings`` answers deterministic unit vectors; a script of status codes (``fail_with``)
makes it answer errors first, to exercise retries."""

from __future__ import annotations

import hashlib
import http.server
import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


def fake_vector(text: str, dimensions: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] + i * 31) % 255) / 255 - 0.5 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


@dataclass
class FakeOpenAI:
    url: str = ""
    fail_with: list[int] = field(default_factory=list)  # statuses to answer before succeeding
    requests: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def fake_openai() -> Iterator[FakeOpenAI]:
    state = FakeOpenAI()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            state.requests.append({"path": self.path, "body": body})
            if state.fail_with:
                status = state.fail_with.pop(0)
                self.reply(status, {"error": {"message": "scripted failure", "type": "test"}})
                return
            if self.path.endswith("/embeddings"):
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                dims = body.get("dimensions") or 8
                data = [
                    {"object": "embedding", "index": i, "embedding": fake_vector(t, dims)}
                    for i, t in enumerate(inputs)
                ]
                tokens = sum(len(t.split()) for t in inputs)
                self.reply(200, {"object": "list", "data": data, "model": body.get("model"),
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})  # fmt: skip
                return
            self.reply(404, {"error": {"message": "not here"}})

        def reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
