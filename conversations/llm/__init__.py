"""LLM backends behind one interface: an async stream of :class:`Delta` pieces ended by one
:class:`Completion`.

``openai``: any OpenAI-compatible chat-completions server, through ``openai``'s async client.
``extractive``: offline; composes an answer from the best passages with ``[n]`` markers. It is a
real mode for retrieval-only deployments (and the default without ``OPENAI_API_KEY``).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from django.conf import settings

if TYPE_CHECKING:
    from knowledge.retrieval import Hit


@dataclass(frozen=True)
class LLMRequest:
    model: str
    messages: list[dict[str, str]]  # what a chat model reads: system, history, question
    question: str  # the user's question
    # A follow-up's subject: the previous message it means ("Tell me more.", "When was it
    # released?"), which an answerer without a chat model reads with the question.
    subject: str = ""
    passages: list[Hit] = field(default_factory=list)  # numbered from 1, as in the prompt
    temperature: float = 0.2
    max_tokens: int = 1024


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Completion:
    finish_reason: str
    model: str
    # None: the backend did not say; the caller counts with the local tokenizer.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class LLMError(Exception):
    """A provider failure. ``transient`` ones (429, 5xx, timeouts) are retried before the first
    token; none are retried after it."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after  # seconds, when the provider said when to come back


class LLM(Protocol):
    name: str

    def stream(
        self, request: LLMRequest, *, pace: float = 0.0
    ) -> AsyncGenerator[Delta | Completion, None]:
        """The answer's pieces, then its :class:`Completion`. ``pace``: read a remote
        provider at most this often (a stream's relay; a JSON answer reads as it comes)."""
        ...


@functools.cache
def get_llm() -> LLM:
    if settings.LLM_BACKEND == "openai":
        from conversations.llm.openai import OpenAILLM

        return OpenAILLM()
    from conversations.llm.extractive import ExtractiveLLM

    return ExtractiveLLM()
