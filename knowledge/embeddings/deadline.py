"""An HTTP client whose requests each end within their timeout, answer included.

httpx's timeouts bound each single wait — connecting, sending, one read — not a request: a
provider that sends its answer a few bytes at a time, each piece within the read timeout, held
a request for as long as it liked (100 pieces 0.5 s apart: a chat turn waited 50 s for its
question's vector, against ``EMBEDDING_QUERY_TIMEOUT_SECONDS`` of 10). Here a request's timeout
is also its deadline, counted from when it is sent:

- every wait begun is bounded by the time left (httpcore reads a request's timeouts as each
  stage begins — connecting, sending, the headers, the body — so a wait that began with time
  left is bounded by what was left then);
- the answer's body is checked against the deadline as each piece arrives.

Past the deadline a request ends with ``httpx.ReadTimeout`` (or the connect or write timeout),
which the ``openai`` client raises as ``APITimeoutError``: a timeout like any other, transient.
Event hooks, not a transport of our own: the SDK's connection limits, proxies from the
environment and redirects stay as they are.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import cast

import httpx2


def http_client() -> httpx2.Client:
    """The ``http_client`` for ``openai.OpenAI``: its defaults, with each request's deadline."""
    import openai

    return openai.DefaultHttpxClient(
        event_hooks={"request": [_start_deadline], "response": [_bound_body]}
    )


class _Timeouts(Mapping[str, float | None]):
    """A request's timeouts (``connect``, ``read``, ``write``, ``pool``), each no longer than the
    time left to ``deadline`` when it is read."""

    def __init__(self, timeouts: Mapping[str, float | None], deadline: float) -> None:
        self._timeouts = dict(timeouts)
        self.deadline = deadline

    def __getitem__(self, key: str) -> float | None:
        timeout = self._timeouts[key]
        # Never 0 or less: a socket would read that as "do not wait" or refuse it; a
        # millisecond times the wait out at once, as the timeout it is.
        left = max(self.deadline - time.monotonic(), 0.001)
        return left if timeout is None else min(timeout, left)

    def __iter__(self) -> Iterator[str]:
        return iter(self._timeouts)

    def __len__(self) -> int:
        return len(self._timeouts)


def _start_deadline(request: httpx2.Request) -> None:
    timeouts = request.extensions.get("timeout") or {}
    budget = timeouts.get("read")
    if budget is not None and not isinstance(timeouts, _Timeouts):
        request.extensions["timeout"] = _Timeouts(timeouts, time.monotonic() + budget)


def _bound_body(response: httpx2.Response) -> None:
    timeouts = response.request.extensions.get("timeout")
    if isinstance(timeouts, _Timeouts):
        _check(timeouts.deadline, response.request)  # the headers came too late already
        response.stream = _BoundedBody(response.stream, timeouts.deadline, response.request)


def _check(deadline: float, request: httpx2.Request) -> None:
    if time.monotonic() > deadline:
        raise httpx2.ReadTimeout("The answer did not arrive within the timeout.", request=request)


class _BoundedBody(httpx2.SyncByteStream):
    def __init__(self, stream: object, deadline: float, request: httpx2.Request) -> None:
        self._stream = cast(httpx2.SyncByteStream, stream)  # a sync client's
        self._deadline = deadline
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._stream:
            _check(self._deadline, self._request)
            yield piece

    def close(self) -> None:
        self._stream.close()
