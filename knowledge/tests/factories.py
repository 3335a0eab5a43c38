from __future__ import annotations

import hashlib

import factory
from django.conf import settings

from bots.tests.factories import BotFactory
from knowledge.models import BotDataset, Chunk, Dataset, Document, DocumentStatus, SourceType
from tenants.tests.factories import ModelFactory, TenantFactory


class DatasetFactory(ModelFactory[Dataset]):
    class Meta:
        model = Dataset

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"dataset {n}")


class BotDatasetFactory(ModelFactory[BotDataset]):
    class Meta:
        model = BotDataset

    tenant = factory.SubFactory(TenantFactory)
    bot = factory.SubFactory(BotFactory, tenant=factory.SelfAttribute("..tenant"))
    dataset = factory.SubFactory(DatasetFactory, tenant=factory.SelfAttribute("..tenant"))


class DocumentFactory(ModelFactory[Document]):
    class Meta:
        model = Document

    tenant = factory.SubFactory(TenantFactory)
    dataset = factory.SubFactory(DatasetFactory, tenant=factory.SelfAttribute("..tenant"))
    title = factory.Sequence(lambda n: f"Document {n}")
    source = factory.LazyAttribute(lambda o: f"{o.title.lower().replace(' ', '-')}.md")
    source_type = SourceType.FILE
    content_type = "text/markdown"
    content_hash = factory.Sequence(lambda n: hashlib.sha256(f"doc-{n}".encode()).hexdigest())
    status = DocumentStatus.READY


def unit_vector(index: int, dims: int | None = None) -> list[float]:
    """A normalised embedding pointing along one axis: handy for exact similarity orders."""
    dims = dims or settings.EMBEDDING_DIMENSIONS
    vector = [0.0] * dims
    vector[index % dims] = 1.0
    return vector


class ChunkFactory(ModelFactory[Chunk]):
    class Meta:
        model = Chunk

    tenant = factory.SubFactory(TenantFactory)
    document = factory.SubFactory(DocumentFactory, tenant=factory.SelfAttribute("..tenant"))
    dataset = factory.SelfAttribute("document.dataset")
    ordinal = factory.Sequence(lambda n: n)
    text = "Vector search finds passages by meaning."
    embedding = factory.Sequence(unit_vector)
    token_count = 8
    char_end = factory.LazyAttribute(lambda o: len(o.text))
