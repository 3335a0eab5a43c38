"""structlog configuration shared by the web process, the worker and management commands.

Every log record, ours or a library's, goes through the same processor chain and leaves as one
JSON object (``LOG_FORMAT=json``) or a readable console line. Request, task, tenant, bot and key
ids are bound as context variables by middleware and Celery signals; :func:`redact_secrets`
removes credentials from every event before it is rendered, and
:func:`chatbot_site.pii.mask_pii_processor` then masks personal data (e-mail addresses, phone,
card, IBAN and social security numbers, IP addresses) in every string value, ``event``
included, so that a line never carries a customer's PII whoever logged it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

from chatbot_site.pii import mask_pii_processor

SENSITIVE_KEYS = frozenset(
    {
        "api_key",
        "authorization",
        "password",
        "secret",
        "secret_key",
        "token",
        "access_token",
        "refresh_token",
        "openai_api_key",
        "key_hash",
        "cookie",
    }
)
REDACTED = "[REDACTED]"
# Our API keys (cbk_<prefix>_<secret>), bearer tokens and JWTs, wherever they appear in a string.
_SECRET_PATTERNS = (
    re.compile(r"cbk_[A-Za-z0-9]{1,32}_[A-Za-z0-9_\-]{8,128}"),
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._\-~+/]{8,4096}=*"),
    re.compile(r"eyJ[A-Za-z0-9_\-]{4,2048}\.[A-Za-z0-9_\-]{4,8192}\.[A-Za-z0-9_\-]{0,2048}"),
    re.compile(r"sk-[A-Za-z0-9_\-]{16,256}"),
)


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        for pattern in _SECRET_PATTERNS:
            value = pattern.sub(REDACTED, value)
        return value
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if str(k).lower() in SENSITIVE_KEYS else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v, depth + 1) for v in value)
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        redact_secrets,
        mask_pii_processor,
    ]


class WithoutTraceback(logging.Filter):
    """Drops the traceback of a record whose cause is the client's, not ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def build_logging_config(*, level: str, fmt: str) -> dict[str, Any]:
    """The ``LOGGING`` dict for Django; also configures structlog to feed into it, and sends
    Python's warnings (``warnings.warn``: a library's deprecation, Celery's root warning) to
    the ``py.warnings`` logger, so that they leave as log lines too, not as text on stderr
    (Django 5 does not)."""
    configure_structlog()
    logging.captureWarnings(True)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": _shared_processors(),
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    # The traceback exists as text only now: scrub and mask it too (an
                    # exception message can quote a value, e.g. a unique-key violation).
                    redact_secrets,
                    mask_pii_processor,
                    renderer,
                ],
            }
        },
        "filters": {
            "without_traceback": {"()": WithoutTraceback},
            "quiet_during_outage": {"()": "chatbot_site.pgconnection.QuietDuringOutage"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "structured"},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Without handlers of its own: Django's default prints its records unformatted in
            # DEBUG (make run), and they reach the root's structured handler too: twice.
            "django": {"level": level},
            # A client's bad Host header: a warning-worthy line, not a traceback.
            "django.security.DisallowedHost": {"filters": ["without_traceback"]},
            # Our own access log replaces these; the request line would be logged twice.
            "django.server": {"level": "WARNING"},
            "django.request": {"level": "ERROR"},
            "daphne": {"level": "WARNING"},
            # A line per failed connection attempt while the database is down: the outage's
            # own lines say it once (chatbot_site.pgconnection.Outage).
            "psycopg.pool": {"filters": ["quiet_during_outage"]},
            "celery": {"level": level},
        },
    }


def configure_structlog() -> None:
    structlog.configure(
        processors=[
            # A line below its logger's level is dropped here, before the chain: the stdlib
            # logger that the chain ends in dropped it anyway, after the time stamp, the secret
            # scrub and the PII scan had been done for nothing (a chat turn's two info lines
            # under LOG_LEVEL=WARNING; every health probe's debug line under INFO).
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
