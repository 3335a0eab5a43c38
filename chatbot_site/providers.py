"""What the outside providers (the LLM, the embedding provider) tell us about their failures."""

from __future__ import annotations

import datetime as dt
import email.utils
import math

import openai


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds an OpenAI-compatible provider asked us to wait in its error response
    (``retry-after-ms``, as OpenAI sends it, or ``Retry-After`` in seconds or as an HTTP date),
    if it said so sensibly; at most a day."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    seconds: float | None = None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            seconds = float(ms) / 1000
        elif (value := headers.get("retry-after")) is not None:
            try:
                seconds = float(value)
            except ValueError:
                when = email.utils.parsedate_to_datetime(value)
                seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    except (ValueError, TypeError, OverflowError):
        return None
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), 86_400.0)
