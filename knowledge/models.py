"""Datasets, documents and their chunks (embedding + full-text vector), and bot ↔ dataset links.

The vector index is not in ``Meta.indexes``: its kind (HNSW or IVFFLAT) is a deployment
setting, so it is created by the migration from ``VECTOR_INDEX_KIND`` and rebuilt with
``manage.py vector_index --rebuild`` (see :mod:`knowledge.vector_index`).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import F, Func, Q, Value, lookups
from pgvector.django import VectorField

from bots.models import Bot
from tenants.models import TenantOwned

# The text search configurations a dataset may use (PostgreSQL's own, as the API documents them).
LANGUAGES = (
    "simple", "arabic", "armenian", "basque", "catalan", "danish", "dutch", "english", "finnish",
    "french", "german", "greek", "hindi", "hungarian", "indonesian", "irish", "italian",
    "lithuanian", "nepali", "norwegian", "portuguese", "romanian", "russian", "serbian",
    "spanish", "swedish", "tamil", "turkish", "yiddish",
)  # fmt: skip


class RegConfigField(models.CharField):
    """A PostgreSQL ``regconfig`` (text search configuration, e.g. ``english``, ``simple``).

    Stored as ``regconfig`` rather than text so that ``to_tsvector(language, text)`` is
    immutable and can feed a generated column."""

    def db_type(self, connection: Any) -> str:
        return "regconfig"

    def rel_db_type(self, connection: Any) -> str:
        return "regconfig"


class ComparedAsText(lookups.Lookup):
    """Compares a regconfig column with a value as text. regconfig has no ``=`` of its own:
    PostgreSQL uses the oid's, and reads ``'english'`` as an oid (a DataError, as the admin's
    language filter was). As text, an unknown configuration matches nothing."""

    def process_lhs(self, compiler: Any, connection: Any, lhs: Any = None) -> Any:
        sql, params = super().process_lhs(compiler, connection, lhs)
        return (f"({sql})::text" if self.rhs_is_direct_value() else sql), params


@RegConfigField.register_lookup
class RegConfigExact(ComparedAsText, lookups.Exact):
    pass


@RegConfigField.register_lookup
class RegConfigIn(ComparedAsText, lookups.In):
    pass


class Dataset(TenantOwned):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    tags = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    chunk_size = models.PositiveIntegerField(default=512, help_text="Tokens per chunk.")
    chunk_overlap = models.PositiveIntegerField(
        default=64, help_text="Tokens shared by neighbours."
    )
    language = RegConfigField(
        max_length=63, default="english", help_text="Full-text search configuration."
    )
    bots: models.ManyToManyField[Bot, BotDataset] = models.ManyToManyField(
        Bot, through="BotDataset", related_name="datasets", blank=True
    )
    # Set by knowledge.vector_index.maintain once the dataset's own partial ANN index is built
    # (large datasets of a shared table); retrieval then searches the dataset through it.
    own_vector_index = models.BooleanField(
        default=False,
        editable=False,
        help_text="Searched through an ANN index of its own (large datasets; built by celery beat).",
    )

    class Meta(TenantOwned.Meta):
        ordering = ["name"]
        constraints = [
            *TenantOwned.Meta.constraints,
            models.UniqueConstraint(
                fields=["tenant", "name"], name="dataset_name_unique_per_tenant"
            ),
            models.CheckConstraint(
                condition=Q(chunk_size__gte=32) & Q(chunk_size__lte=8192),
                name="dataset_chunk_size_range",
            ),
            models.CheckConstraint(
                condition=Q(chunk_overlap__lt=F("chunk_size")),
                name="dataset_overlap_below_size",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class BotDataset(TenantOwned):
    """A bot searches these datasets. Both ends belong to the row's tenant (composite FKs)."""

    bot = models.ForeignKey(Bot, on_delete=models.CASCADE, related_name="dataset_links")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="bot_links")

    class Meta(TenantOwned.Meta):
        constraints = [
            *TenantOwned.Meta.constraints,
            models.UniqueConstraint(fields=["bot", "dataset"], name="botdataset_unique"),
        ]


class DocumentStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class SourceType(models.TextChoices):
    FILE = "file", "Uploaded file"
    URL = "url", "URL"
    RECORD = "record", "JSON record"


def document_upload_to(instance: Document, filename: str) -> str:
    # Never the client's file name on disk: ids only (the name is kept in `source`).
    return f"documents/{instance.tenant_id}/{instance.dataset_id}/{instance.id}"


class Document(TenantOwned):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="documents")
    title = models.CharField(max_length=500, blank=True)
    # The title its searched chunks were made with, set when a run stores them: a hit shows it
    # over their text. A record replaced with a new title takes it at once, while its old text
    # is searched until the new run's chunks replace it (and for good if that run fails); a hit
    # showed the new title over the old text. Null: made before it was kept (the title, then).
    indexed_title = models.CharField(max_length=500, null=True, blank=True, editable=False)
    source = models.CharField(max_length=2048, blank=True, help_text="File name or URL.")
    source_type = models.CharField(max_length=10, choices=SourceType.choices)
    content_type = models.CharField(max_length=100, blank=True)
    file = models.FileField(upload_to=document_upload_to, max_length=500, null=True, blank=True)
    external_id = models.CharField(max_length=255, null=True, blank=True)
    tags = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=12, choices=DocumentStatus.choices, default=DocumentStatus.QUEUED
    )
    error_code = models.CharField(max_length=64, null=True, blank=True)
    error_message = models.TextField(null=True, blank=True)
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the content, hex.")
    # An upload's bytes as they came, whatever charset they were read in: its content_hash is
    # its text's once re-encoded as UTF-8, so the same file sent with another declaration (or
    # none) is found by this. Null for records, URLs and uploads stored before it was kept.
    raw_hash = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        editable=False,
        help_text="SHA-256 of the uploaded bytes, hex.",
    )
    byte_size = models.BigIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0)
    token_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Runs the embedding provider failed (5xx, 429, timeouts, invalid answers) since the document
    # was last queued by someone: at INGEST_TRANSIENT_ATTEMPTS it fails embedding_unavailable.
    transient_failures = models.PositiveSmallIntegerField(default=0)
    embedding_model = models.CharField(max_length=200, blank=True)
    # knowledge.ingestion.PIPELINE_VERSION of the run that made the chunks searched; 0: none
    # yet, or made before versions were recorded. Older than the code's: reingest_stale.
    pipeline_version = models.PositiveSmallIntegerField(default=0)
    # Milliseconds per stage of the last ingestion: {"fetch", "parse", "chunk", "embed", "store"}.
    timings = models.JSONField(default=dict, blank=True)
    processing_started_at = models.DateTimeField(null=True, blank=True)
    ingested_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantOwned.Meta):
        ordering = ["-created_at"]
        constraints = [
            *TenantOwned.Meta.constraints,
            models.UniqueConstraint(
                fields=["dataset", "content_hash"], name="document_hash_unique_per_dataset"
            ),
            # Target of chunk (dataset_id, document_id): a chunk's denormalised dataset is its
            # document's dataset.
            models.UniqueConstraint(fields=["dataset", "id"], name="document_dataset_pk"),
            # The same uploaded bytes are one document of a dataset, whatever charset declared.
            models.UniqueConstraint(
                fields=["dataset", "raw_hash"],
                condition=Q(raw_hash__isnull=False),
                name="document_raw_hash_unique_per_dataset",
            ),
            models.UniqueConstraint(
                fields=["dataset", "external_id"],
                condition=Q(external_id__isnull=False),
                name="document_external_id_unique_per_dataset",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in DocumentStatus]),
                name="document_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status=DocumentStatus.FAILED) | Q(error_code__isnull=False),
                name="document_failed_has_error",
            ),
            models.CheckConstraint(
                condition=Q(content_hash__regex=r"^[0-9a-f]{64}$"), name="document_hash_sha256_hex"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "dataset", "status"], name="document_dataset_status"),
            models.Index(fields=["tenant", "-created_at"], name="document_tenant_created"),
            # Every tenant's, newest first (the staff admin's list for a superuser, and its tag
            # filter's newest documents): without it a page sorted every document (0019).
            models.Index(fields=["-created_at", "-id"], name="document_created"),
            # A dataset's documents, newest first (the API's list): without it a page of one
            # dataset read past every newer document of the tenant's other datasets.
            models.Index(
                fields=["tenant", "dataset", "-created_at"], name="document_dataset_created"
            ),
            # The sweeper: claims older than the task time limit are requeued.
            models.Index(
                fields=["processing_started_at"],
                condition=Q(status=DocumentStatus.PROCESSING),
                name="document_processing_claims",
            ),
            # The next document to ingest, fairly between tenants (ingestion.claim).
            models.Index(
                fields=["created_at"],
                condition=Q(status=DocumentStatus.QUEUED),
                name="document_queued",
            ),
            GinIndex(fields=["tags"], name="document_tags_gin"),
        ]

    def __str__(self) -> str:
        return self.title or self.source or str(self.id)


def _language_vector(text: Any) -> Func:
    return Func(
        F("language"),
        Func(text, function="knowledge_cjk_bigrams", output_field=models.TextField()),
        function="to_tsvector",
        output_field=SearchVectorField(),
    )


# The text at weight D (the default), then the heading path at weight A (migration 0016): a
# question that names a section finds its chunks by their headings too, and the text leg ranks
# a heading's match on its own weight (RETRIEVAL_HEADING_WEIGHT).
SEARCH_VECTOR = Func(
    _language_vector(F("text")),
    Func(
        _language_vector(
            Func(
                F("heading_path"),
                Value(" "),
                function="array_to_string",
                output_field=models.TextField(),
            )
        ),
        Value("A"),
        function="setweight",
        output_field=SearchVectorField(),
    ),
    arg_joiner=" || ",
    template="(%(expressions)s)",
    output_field=SearchVectorField(),
)


class Chunk(TenantOwned):
    """A retrievable passage. ``tenant`` and ``dataset`` are denormalised from the document so
    that retrieval filters without joins; composite FKs keep them consistent."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="+")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    page = models.PositiveIntegerField(null=True, blank=True)
    heading_path = ArrayField(models.TextField(), default=list, blank=True)
    tags = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    token_count = models.PositiveIntegerField(default=0)
    char_start = models.PositiveIntegerField(default=0)
    char_end = models.PositiveIntegerField(default=0)
    language = RegConfigField(max_length=63, default="english")
    embedding = VectorField(dimensions=settings.EMBEDDING_DIMENSIONS, null=True, blank=True)
    # Which model made the vector: a model change is detectable (and re-embeddable) per chunk.
    embedding_model = models.CharField(max_length=200, blank=True)
    # Looked like a prompt injection at ingestion (knowledge.injection.detect_passage): marked
    # as such in the prompt and down-weighted in retrieval (RETRIEVAL_SUSPECT_WEIGHT).
    injection_suspected = models.BooleanField(default=False)
    # Kept in step by PostgreSQL itself: a stored generated column to Django, which never writes
    # it; in the database, since migration 0013, an ordinary column that a row trigger computes
    # with this very expression (a new expression for a generated column rewrites the table).
    # Chinese, Japanese and Korean are indexed as overlapping character bigrams
    # (knowledge_cjk_bigrams), as the question is searched: PostgreSQL's parser read a whole
    # unspaced run as one word. The heading path is indexed after the text, at weight A.
    search_vector = models.GeneratedField(
        expression=SEARCH_VECTOR,
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta(TenantOwned.Meta):
        ordering = ["document", "ordinal"]
        constraints = [
            *TenantOwned.Meta.constraints,
            models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_ordinal_unique"),
            models.CheckConstraint(
                condition=Q(char_end__gte=F("char_start")), name="chunk_char_range_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "dataset"], name="chunk_tenant_dataset"),
            GinIndex(fields=["tags"], name="chunk_tags_gin"),
            # The dataset leads (btree_gin): a term's postings are intersected with the
            # searched datasets' inside the index, not fetched for every tenant and ANDed with
            # a second index's bitmap. Serves conditions on search_vector alone as well.
            GinIndex(fields=["dataset", "search_vector"], name="chunk_dataset_search_gin"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"


class TermStat(models.Model):
    """How many chunks of a dataset hold a lexeme — BM25's document frequencies — and, under
    ``lexeme=''``, how many chunks the dataset has. Written only by PostgreSQL: statement
    triggers on ``knowledge_chunk`` add and subtract the lexemes of inserted, deleted and
    re-texted chunks (migration 0008), so retrieval reads a frequency with one index lookup
    instead of counting a term's postings at query time. Internal: no API reads it."""

    pk = models.CompositePrimaryKey("dataset", "language", "lexeme")
    # The primary key's prefix indexes it.
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="+", db_index=False)
    language = RegConfigField(max_length=63)
    lexeme = models.TextField()
    df = models.IntegerField()

    def __str__(self) -> str:
        return f"{self.dataset_id}:{self.language}:{self.lexeme or '(chunks)'}={self.df}"
