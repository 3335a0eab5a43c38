from __future__ import annotations

import json
import logging

import pytest
import structlog

from chatbot_site.logging import REDACTED, build_logging_config
from tenants.keys import generate_key


def json_formatter() -> logging.Formatter:
    config = build_logging_config(level="INFO", fmt="json")["formatters"]["structured"]
    factory = config.pop("()")
    return factory(**config)


def rendered(caplog, event: str) -> dict:
    records = [r for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == event]
    assert records, f"no {event} log record"
    return json.loads(json_formatter().format(records[-1]))


@pytest.mark.django_db
def test_every_request_log_line_carries_the_request_id(client, caplog):
    with caplog.at_level(logging.INFO, logger="chatbot.request"):
        response = client.get("/v1/nowhere", HTTP_X_REQUEST_ID="req-42")
    line = rendered(caplog, "request_finished")
    assert line["request_id"] == "req-42" == response["X-Request-ID"]
    assert (line["status"], line["path"], line["method"]) == (404, "/v1/nowhere", "GET")
    assert line["level"] == "info"
    assert "timestamp" in line


def test_secrets_never_reach_a_log_line(caplog):
    key = generate_key().plaintext
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    log = structlog.get_logger("chatbot.test")
    with caplog.at_level(logging.INFO, logger="chatbot.test"):
        log.info(
            "auth_attempt",
            api_key=key,
            password="hunter2",
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
            note=f"client sent {key} and token {jwt}",
            provider="sk-abcdefghijklmnopqrstuvwx",
        )
    line = rendered(caplog, "auth_attempt")
    text = json.dumps(line)
    for secret in (key, key.split("_", 2)[2], "hunter2", jwt, "sk-abcdefghijklmnopqrstuvwx"):
        assert secret not in text
    assert line["api_key"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert line["note"].startswith("client sent [REDACTED]")


class Probe(dict):
    """A value that notes whether a processor walked it (the secret scrub walks every dict)."""

    walked = False

    def items(self):
        Probe.walked = True
        return super().items()


def test_a_line_below_the_level_is_dropped_before_the_processors_run(caplog):
    log = structlog.get_logger("chatbot.test.levels")
    with caplog.at_level(logging.WARNING, logger="chatbot.test.levels"):
        Probe.walked = False
        log.info("too_quiet", probe=Probe(a=1))
        assert not Probe.walked  # not time-stamped, scrubbed nor PII-scanned: dropped
        log.warning("loud_enough", probe=Probe(a=1))
        assert Probe.walked
    assert [r.msg["event"] for r in caplog.records if isinstance(r.msg, dict)] == ["loud_enough"]
    assert rendered(caplog, "loud_enough")["probe"] == {"a": 1}


def test_stdlib_loggers_are_rendered_by_the_same_pipeline(caplog):
    structlog.contextvars.bind_contextvars(request_id="abc")
    try:
        with caplog.at_level(logging.INFO, logger="some.library"):
            logging.getLogger("some.library").info("plain %s message", "library")
        # Handlers format while the context is bound, as here.
        record = next(r for r in caplog.records if r.name == "some.library")
        line = json.loads(json_formatter().format(record))
    finally:
        structlog.contextvars.clear_contextvars()
    assert line["event"] == "plain library message"
    assert line["request_id"] == "abc"
    assert line["logger"] == "some.library"


def test_djangos_records_are_logged_once_and_a_bad_host_without_a_traceback(client, caplog):
    """In DEBUG (``make run``) Django's own console handler printed its records unformatted,
    and the root's structured handler printed them again; a bad Host header was a traceback
    twice."""
    assert logging.getLogger("django").handlers == []
    with caplog.at_level(logging.WARNING, logger="django.security.DisallowedHost"):
        response = client.get("/v1/health", HTTP_HOST="bad host")
    assert response.status_code == 400
    record = next(r for r in caplog.records if r.name == "django.security.DisallowedHost")
    assert record.exc_info is None and "Invalid HTTP_HOST header" in record.getMessage()


def _access_lines(caplog) -> list[dict]:
    return [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "request_finished"
    ]


async def _read(pieces) -> bytes:
    return b"".join([piece async for piece in pieces])


@pytest.mark.django_db(transaction=True)
def test_a_streams_access_line_is_written_when_it_ends_with_what_was_sent(caplog):
    """It was written when the view handed the stream over: status 200 in a few ms, no size,
    the same whether the answer then came whole, failed or lost its client (that one:
    conversations' test_client_disconnect_cancels_generation_and_stores_the_partial_answer)."""
    from asgiref.sync import async_to_sync

    from conversations.tests.chatkit import add_passages, ask, chat
    from tests.world import build_tenant

    alpha = build_tenant("alpha")
    add_passages(alpha)
    with caplog.at_level(logging.INFO, logger="chatbot.request"):
        response = chat(alpha.client(alpha.chat_key), **ask(alpha, "renew?", stream=True))
        assert _access_lines(caplog) == []  # handed over, not sent yet
        body = async_to_sync(_read)(response.streaming_content)
        json_turn = chat(alpha.client(alpha.chat_key), **ask(alpha, "renew?"))
    assert b"event: done" in body
    streamed, answered = _access_lines(caplog)
    assert (streamed["status"], streamed["bytes"], streamed["outcome"]) == (
        200,
        len(body),
        "complete",
    )
    assert (answered["status"], answered["bytes"]) == (200, len(json_turn.content))
    assert "outcome" not in answered
