# mypy: disable-error-code="arg-type,attr-defined"
"""Helpers for chat tests: a bot over real, really embedded passages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.test import override_settings
from rest_framework.test import APIClient

from bots.models import Bot
from conversations.llm import get_llm
from knowledge.embeddings import get_embedder
from knowledge.models import Chunk, Document
from knowledge.tests.factories import ChunkFactory, DocumentFactory
from tests.fake_openai import FakeOpenAI, fake_openai
from tests.world import TenantWorld

PASSAGES = [
    "Annual plans renew automatically every year on the date of purchase. "
    "You can cancel the renewal at any time from the billing page.",
    "Refunds are paid to the original card within five business days.",
    "The support team answers tickets within one working day.",
]


@dataclass
class Library:
    bot: Bot
    document: Document
    chunks: list[Chunk]


def add_passages(world: TenantWorld, texts: list[str] = PASSAGES) -> Library:
    """A ready document in the bot's dataset whose chunks carry real embeddings of ``texts``."""
    document = DocumentFactory(
        tenant=world.tenant, dataset=world.dataset, title="Billing FAQ", source="billing.md"
    )
    embedder = get_embedder()
    vectors = embedder.embed(texts)
    chunks = [
        ChunkFactory(tenant=world.tenant, document=document, text=text, embedding=vector,
                     page=i + 1, ordinal=i, token_count=embedder.count_tokens(text))
        for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))
    ]  # fmt: skip
    return Library(world.bot, document, chunks)


def chat(client: APIClient, **body: Any) -> Any:
    return client.post("/v1/chat", body, format="json")


def ask(world: TenantWorld, content: str, **extra: Any) -> dict[str, Any]:
    body = {"bot_id": str(world.bot.pk), "messages": [{"role": "user", "content": content}]}
    body.update(extra)
    return body


@contextmanager
def openai_llm(**settings_overrides: Any) -> Iterator[FakeOpenAI]:
    """The ``openai`` backend, talking to the loopback fake provider."""
    with fake_openai() as fake, override_settings(
        LLM_BACKEND="openai", OPENAI_BASE_URL=fake.url, OPENAI_API_KEY="sk-test",
        LLM_RETRY_BASE_SECONDS=0.01, **settings_overrides,
    ):  # fmt: skip
        get_llm.cache_clear()
        try:
            yield fake
        finally:
            get_llm.cache_clear()
