"""Any OpenAI-compatible chat-completions server, through ``openai``'s async client.

Streams with ``stream_options.include_usage`` (the provider's token counts); retries with
jittered backoff only before the first token arrives (429, 5xx, timeouts, connection errors);
a 4xx is final. After the first token nothing is retried: the caller turns the failure into an
SSE ``error`` event (or ``502`` for a JSON answer).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any, cast

import openai
import structlog
from django.conf import settings

from conversations.llm import Completion, Delta, LLMError, LLMRequest

log = structlog.get_logger(__name__)


def _transient(exc: Exception) -> tuple[bool, int | None]:
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return status == 429 or status >= 500, status
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        return True, None
    return False, None


class OpenAILLM:
    name = "openai"

    def __init__(self) -> None:
        self._clients: dict[int, openai.AsyncOpenAI] = {}

    def client(self) -> openai.AsyncOpenAI:
        # An async HTTP client belongs to the event loop it first ran on.
        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None:
            client = openai.AsyncOpenAI(
                api_key=settings.OPENAI_API_KEY or "not-set",
                base_url=settings.OPENAI_BASE_URL or None,
                timeout=settings.LLM_TIMEOUT_SECONDS,
                max_retries=0,  # retries are ours, and only before the first token
            )
            self._clients[id(loop)] = client
        return client

    async def _open(self, request: LLMRequest) -> tuple[Any, Any, Any]:
        """The stream, its iterator and its first chunk — retried while nothing was received."""
        attempt = 0
        while True:
            stream = None
            try:
                stream = await self.client().chat.completions.create(
                    model=request.model,
                    messages=cast(Any, request.messages),
                    temperature=request.temperature,
                    max_tokens=request.max_tokens,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                iterator = stream.__aiter__()
                first = await iterator.__anext__()
                return stream, iterator, first
            except StopAsyncIteration:
                return stream, None, None
            except openai.OpenAIError as exc:
                if stream is not None:
                    await stream.close()
                transient, status = _transient(exc)
                if not transient or attempt >= settings.LLM_MAX_RETRIES:
                    raise LLMError(_describe(exc), transient=transient, status=status) from exc
                delay = settings.LLM_RETRY_BASE_SECONDS * 2**attempt
                delay *= 0.5 + random.random()  # noqa: S311 - jitter, not security
                log.warning("llm_retry", attempt=attempt + 1, status=status, delay_s=delay)
                attempt += 1
                await asyncio.sleep(delay)

    async def stream(self, request: LLMRequest) -> AsyncIterator[Delta | Completion]:
        stream, iterator, chunk = await self._open(request)
        finish_reason = "stop"
        model = request.model
        prompt_tokens = completion_tokens = None
        try:
            while chunk is not None:
                model = chunk.model or model
                if chunk.usage is not None:
                    prompt_tokens = chunk.usage.prompt_tokens
                    completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        yield Delta(choice.delta.content)
                    if choice.finish_reason:
                        finish_reason = "length" if choice.finish_reason == "length" else "stop"
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    chunk = None
        except Exception as exc:  # the provider or the connection, mid-stream: never retried
            raise LLMError(_describe(exc), transient=False) from exc
        finally:
            if stream is not None:
                await stream.close()
        yield Completion(
            finish_reason=finish_reason,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )


def _describe(exc: Exception) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"The language model provider answered {exc.status_code}."
    if isinstance(exc, openai.APITimeoutError):
        return "The language model provider timed out."
    if isinstance(exc, openai.APIConnectionError):
        return "The language model provider could not be reached."
    return "The language model provider failed."
