"""An ASGI application for daphne that streams pieces larger than a socket takes at once
(test_servers.py), behind the project's ``RequestGuard`` and with the project's daphne glue."""

from typing import Any

from chatbot_site.asgi import application as _project  # noqa: F401  (installs the daphne glue)
from chatbot_site.servers import RequestGuard

PIECES = 3
PIECE_BYTES = 4 * 1024 * 1024


def piece(n: int) -> bytes:
    return (b"%d" % n) * PIECE_BYTES


async def streams_large_pieces(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/v1/health":  # what daphne_server waits for
        await send({"type": "http.response.body", "body": b"{}"})
        return
    for n in range(PIECES):
        await send({"type": "http.response.body", "body": piece(n), "more_body": True})
    await send({"type": "http.response.body", "body": b"end"})


application = RequestGuard(streams_large_pieces)
