"""An ASGI application for daphne that fails after its response started (test_servers.py),
behind the project's ``RequestGuard`` and with the project's daphne glue installed."""

from typing import Any

from chatbot_site.asgi import application as _project  # noqa: F401  (installs the daphne glue)
from chatbot_site.servers import RequestGuard


async def fails_mid_response(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/v1/health":  # what daphne_server waits for
        await send({"type": "http.response.body", "body": b"{}"})
        return
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("boom")


application = RequestGuard(fails_mid_response)
