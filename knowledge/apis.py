"""Admin API for datasets, their documents and bots.

Bots are served here because a bot's ``dataset_ids`` are links owned by this app and
dependencies point one way (knowledge → bots); the bot's own writes stay in ``bots.services``.
Adding and re-ingesting documents is the ingestion work (issue 4)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Prefetch, QuerySet
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from bots.models import Bot
from bots.services import bot_delete
from chatbot_site.errors import NotFound, ValidationFailed
from chatbot_site.pagination import PAGE_PARAMETERS, page_of, paginate
from chatbot_site.params import TagListField, parse_bool, parse_tag, parse_tags
from chatbot_site.parsers import JSONParser, metadata_problem
from chatbot_site.schema import NAME_TAKEN, UnsetAsNullField
from chatbot_site.strict import StrictInput
from knowledge.intake import (
    Added,
    document_add_upload,
    document_add_url,
    document_reingest,
    documents_add_records,
)
from knowledge.models import LANGUAGES, BotDataset, Dataset, Document, DocumentStatus
from knowledge.reach import Reach
from knowledge.services import (
    bot_create_with_datasets,
    bot_update_with_datasets,
    dataset_create,
    dataset_delete,
    dataset_update,
    document_delete,
)
from tenants.api_base import TenantApi, located


class ReachApi(TenantApi):
    """What the key reaches (``bots.reach``): a bot-limited key, its bots and what they use."""

    @property
    def reach(self) -> Reach:
        return Reach(self.tenant, self.api_key)


# --- datasets ------------------------------------------------------------------------------


class DatasetOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    chunk_size = serializers.IntegerField()
    chunk_overlap = serializers.IntegerField()
    language = serializers.ChoiceField(choices=LANGUAGES)
    # Read-only, so required in the schema (with a default it was optional there): it is in
    # every answer, 0 for a dataset just made (not annotated).
    document_count = serializers.IntegerField(read_only=True, default=0)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DatasetInput(StrictInput):
    refuse_unknown = True
    echoed = frozenset(DatasetOutput._declared_fields)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(allow_blank=True, max_length=20_000, required=False)
    tags = TagListField(max_length=100, required=False)
    chunk_size = serializers.IntegerField(min_value=32, max_value=8192, required=False)
    chunk_overlap = serializers.IntegerField(min_value=0, max_value=4096, required=False)
    language = serializers.ChoiceField(choices=LANGUAGES, required=False)


def check_overlap(data: dict[str, Any], current: Dataset | None = None) -> None:
    size = data.get("chunk_size", current.chunk_size if current else 512)
    overlap = data.get("chunk_overlap", current.chunk_overlap if current else 64)
    if overlap >= size:
        raise ValidationFailed(details={"chunk_overlap": ["Must be smaller than chunk_size."]})


class DatasetListCreateApi(ReachApi):
    @extend_schema(
        operation_id="datasets_list",
        responses=page_of(DatasetOutput),
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("tag", str, description="Only datasets with this tag."),
        ],
        tags=["datasets"],
    )
    def get(self, request: Request) -> Response:
        datasets = self.reach.datasets().annotate(document_count=Count("documents"))
        if tag := request.query_params.get("tag"):
            datasets = datasets.filter(tags__contains=[parse_tag(tag)])
        return Response(paginate(datasets, request, lambda r: DatasetOutput(r, many=True).data))

    @extend_schema(
        operation_id="datasets_create",
        request=DatasetInput,
        responses={201: DatasetOutput, 409: NAME_TAKEN},
        tags=["datasets"],
    )
    def post(self, request: Request) -> Response:
        self.reach.check_may_create("datasets")
        data = self.validated(DatasetInput, request.data)
        check_overlap(data)
        dataset = dataset_create(tenant=self.tenant, actor=self.actor, **data)
        return located(
            Response(DatasetOutput(dataset).data, status=201), "dataset-detail", dataset.pk
        )


class DatasetDetailApi(ReachApi):
    def dataset(self, dataset_id: Any) -> Dataset:
        queryset = self.reach.datasets().annotate(document_count=Count("documents"))
        return self.get_object(Dataset, dataset_id, queryset=queryset)

    @extend_schema(operation_id="datasets_retrieve", responses=DatasetOutput, tags=["datasets"])
    def get(self, request: Request, dataset_id: str) -> Response:
        return Response(DatasetOutput(self.dataset(dataset_id)).data)

    @extend_schema(
        operation_id="datasets_update",
        request=DatasetInput(partial=True),
        responses={200: DatasetOutput, 409: NAME_TAKEN},
        tags=["datasets"],
    )
    @transaction.atomic  # the check that no other bot uses it holds until the change commits
    def patch(self, request: Request, dataset_id: str) -> Response:
        dataset = self.dataset(dataset_id)
        self.reach.check_dataset_unshared(dataset.pk)
        changes = self.validated(DatasetInput, request.data, partial=True)
        check_overlap(changes, dataset)
        dataset = dataset_update(
            tenant=self.tenant, actor=self.actor, dataset=dataset, changes=changes
        )
        return Response(DatasetOutput(dataset).data)

    @extend_schema(operation_id="datasets_destroy", responses={204: None}, tags=["datasets"])
    @transaction.atomic  # as patch
    def delete(self, request: Request, dataset_id: str) -> Response:
        dataset = self.get_object(Dataset, dataset_id, queryset=self.reach.datasets())
        self.reach.check_dataset_unshared(dataset.pk)
        dataset_delete(tenant=self.tenant, actor=self.actor, dataset=dataset)
        return Response(status=204)


# --- documents -----------------------------------------------------------------------------


class DocumentError(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class DocumentOutput(serializers.Serializer):
    id = serializers.UUIDField()
    dataset_id = serializers.UUIDField()
    title = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]  # the contract's field name
    content_type = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    status = serializers.ChoiceField(choices=DocumentStatus.choices)
    error = serializers.SerializerMethodField()
    chunk_count = serializers.IntegerField()
    token_count = serializers.IntegerField()
    content_hash = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    ingested_at = serializers.DateTimeField(allow_null=True)
    # knowledge.ingestion.PIPELINE_VERSION of the run that made the chunks searched (0: none yet,
    # or made before versions were recorded).
    pipeline_version = serializers.IntegerField(read_only=True)

    @extend_schema_field(DocumentError(allow_null=True))
    def get_error(self, document: Document) -> dict[str, str] | None:
        if not document.error_code:
            return None
        return {"code": document.error_code, "message": document.error_message or ""}


def filter_documents(documents: QuerySet[Document], request: Request) -> QuerySet[Document]:
    status = request.query_params.get("status")
    if status:
        if status not in DocumentStatus.values:
            raise ValidationFailed(
                details={"status": [f"Must be one of {', '.join(DocumentStatus.values)}."]}
            )
        documents = documents.filter(status=status)
    if tag := request.query_params.get("tag"):
        documents = documents.filter(tags__contains=[parse_tag(tag)])
    return documents


DOCUMENT_FILTERS = [
    OpenApiParameter("status", str, enum=DocumentStatus.values),
    OpenApiParameter("tag", str, description="Only documents with this tag."),
]


class RecordInput(StrictInput):
    refuse_unknown = True
    # Required, as API.md writes it ({"title", "text", ...}); it may be blank.
    title = serializers.CharField(max_length=500, allow_blank=True)
    text = serializers.CharField(max_length=1_000_000, trim_whitespace=False)
    metadata = serializers.DictField(required=False, default=dict)
    tags = TagListField(max_length=100, required=False, default=list)
    external_id = serializers.CharField(max_length=255, required=False, allow_null=True)

    def validate_text(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Must not be blank.")
        return value.replace("\x00", "")

    def validate_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        if problem := metadata_problem(metadata, max_chars=64_000):
            raise serializers.ValidationError(problem)
        return metadata


class RecordsInput(StrictInput):
    refuse_unknown = True
    # A ListField (not many=True): the schema then carries minItems/maxItems.
    records = serializers.ListField(
        child=RecordInput(), allow_empty=False, min_length=1, max_length=1000
    )

    def validate_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """An ``external_id`` names one document: twice in a batch, the second record would
        silently replace the first (and the answer list the first, which no longer exists)."""
        first: dict[str, int] = {}
        repeated: dict[str, Any] = {}
        for index, record in enumerate(records):
            if (external_id := record.get("external_id")) is None:
                continue
            if external_id in first:
                repeated[str(index)] = {
                    "external_id": [f"Repeats the external_id of record {first[external_id]}."]
                }
            else:
                first[external_id] = index
        if repeated:
            raise serializers.ValidationError(repeated)
        return records


class UrlInput(StrictInput):
    refuse_unknown = True
    url = serializers.URLField(max_length=2048)
    tags = TagListField(max_length=100, required=False, default=list)
    title = serializers.CharField(max_length=500, allow_blank=True, required=False, default="")


class DocumentsAdded(serializers.Serializer):
    data = DocumentOutput(many=True)  # type: ignore[assignment]


# JSON bodies are one of two shapes, and records are answered as a list: in the schema, oneOf.
DOCUMENT_JSON_INPUT = PolymorphicProxySerializer(
    component_name="DocumentJsonInput",
    serializers=[UrlInput, RecordsInput],
    resource_type_field_name=None,
)
DOCUMENT_ADDED = PolymorphicProxySerializer(
    component_name="DocumentAdded",
    serializers=[DocumentOutput, DocumentsAdded],
    resource_type_field_name=None,
)


class UploadInput(StrictInput):
    file = serializers.FileField(allow_empty_file=False)
    title = serializers.CharField(max_length=500, allow_blank=True, required=False, default="")
    tags = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Comma-separated, or a JSON list; the field may be repeated.",
    )


class DatasetDocumentListApi(ReachApi):
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        operation_id="documents_list",
        responses=page_of(DocumentOutput),
        parameters=[*PAGE_PARAMETERS, *DOCUMENT_FILTERS],
        tags=["documents"],
    )
    def get(self, request: Request, dataset_id: str) -> Response:
        dataset = self.get_object(Dataset, dataset_id, queryset=self.reach.datasets())
        documents = filter_documents(self.scoped(Document).filter(dataset=dataset), request)
        return Response(paginate(documents, request, lambda r: DocumentOutput(r, many=True).data))

    @extend_schema(
        operation_id="documents_create",
        request={
            "multipart/form-data": UploadInput,
            "application/json": DOCUMENT_JSON_INPUT,
        },
        responses={
            202: DOCUMENT_ADDED,
            200: DOCUMENT_ADDED,
            409: OpenApiResponse(
                description="conflict: a record's document is being ingested, or its new "
                "content is already another document of the dataset"
            ),
        },
        description=(
            "Add a document: a file (multipart `file`, optional `title`, `tags`), "
            '`{"url": ...}`, or `{"records": [...]}` (up to 1,000; one document each, answered '
            'as `{"data": [...]}`). `202` + `queued`; the same content already in the dataset is '
            "`200` with the existing document."
        ),
        tags=["documents"],
    )
    def post(self, request: Request, dataset_id: str) -> Response:
        dataset = self.get_object(Dataset, dataset_id, queryset=self.reach.datasets())
        try:
            with transaction.atomic():  # no other bot is given the dataset until this commits
                self.reach.check_dataset_unshared(dataset.pk)
                return self._add(request, dataset)
        except IntegrityError:
            # Deleted between the lookup and this commit: the new rows' foreign key failed.
            if not self.scoped(Dataset).filter(pk=dataset.pk).exists():
                raise NotFound("Dataset not found.") from None
            raise

    def _add(self, request: Request, dataset: Dataset) -> Response:
        if request.content_type.startswith("multipart/"):
            data = self.validated(UploadInput, request.data)
            added = document_add_upload(
                tenant=self.tenant, actor=self.actor, dataset=dataset, upload=data["file"],
                title=data["title"], tags=parse_tags(request.POST.getlist("tags")),
            )  # fmt: skip
            return document_added(added)
        if isinstance(request.data, dict) and {"records", "url"} <= request.data.keys():
            raise ValidationFailed(
                details={"non_field_errors": ['Send {"records": [...]} or {"url": ...}, not both.']}
            )
        if isinstance(request.data, dict) and "records" in request.data:
            records = self.validated(RecordsInput, request.data)["records"]
            results = documents_add_records(
                tenant=self.tenant, actor=self.actor, dataset=dataset, records=records
            )
            status = 202 if any(r.created for r in results) else 200
            body = {"data": [DocumentOutput(r.document).data for r in results]}
            return Response(body, status=status)
        if isinstance(request.data, dict) and "url" in request.data:
            data = self.validated(UrlInput, request.data)
            added = document_add_url(
                tenant=self.tenant, actor=self.actor, dataset=dataset, url=data["url"],
                title=data["title"], tags=data["tags"],
            )  # fmt: skip
            return document_added(added)
        raise ValidationFailed(
            details={
                "non_field_errors": ['Send a multipart file, {"records": [...]} or {"url": ...}.']
            }
        )


def document_added(added: Added) -> Response:
    """An upload's or URL's answer: ``202`` and ``Location`` (where its status is read) for a
    document queued, ``200`` with the existing one for content the dataset already has."""
    if not added.created:
        return Response(DocumentOutput(added.document).data, status=200)
    response = Response(DocumentOutput(added.document).data, status=202)
    return located(response, "document-detail", added.document.pk)


class DocumentReingestApi(ReachApi):
    @extend_schema(
        operation_id="documents_reingest",
        request=None,
        responses={
            202: DocumentOutput,
            409: OpenApiResponse(description="conflict: the document is queued or being ingested"),
        },
        tags=["documents"],
    )
    @transaction.atomic  # the check that no other bot uses its dataset holds until commit
    def post(self, request: Request, document_id: str) -> Response:
        document = self.get_object(Document, document_id, queryset=self.reach.documents())
        self.reach.check_dataset_unshared(document.dataset_id)
        document = document_reingest(tenant=self.tenant, actor=self.actor, document=document)
        return Response(DocumentOutput(document).data, status=202)


class DocumentDetailApi(ReachApi):
    @extend_schema(operation_id="documents_retrieve", responses=DocumentOutput, tags=["documents"])
    def get(self, request: Request, document_id: str) -> Response:
        document = self.get_object(Document, document_id, queryset=self.reach.documents())
        return Response(DocumentOutput(document).data)

    @extend_schema(operation_id="documents_destroy", responses={204: None}, tags=["documents"])
    @transaction.atomic  # as reingest
    def delete(self, request: Request, document_id: str) -> Response:
        document = self.get_object(Document, document_id, queryset=self.reach.documents())
        self.reach.check_dataset_unshared(document.dataset_id)
        document_delete(tenant=self.tenant, actor=self.actor, document=document)
        return Response(status=204)


# --- bots ----------------------------------------------------------------------------------


class BotOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField()
    system_prompt = serializers.CharField()
    model = UnsetAsNullField(help_text="null: the service's default (the CHAT_MODEL setting).")
    temperature = serializers.FloatField()
    max_output_tokens = serializers.IntegerField()
    dataset_ids = serializers.SerializerMethodField()
    scope_id = serializers.UUIDField(allow_null=True)
    top_k = serializers.IntegerField()
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_dataset_ids(self, bot: Bot) -> list[str]:
        return sorted(str(link.dataset_id) for link in bot.dataset_links.all())


class BotInput(StrictInput):
    refuse_unknown = True
    echoed = frozenset(BotOutput._declared_fields)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(allow_blank=True, max_length=20_000, required=False)
    system_prompt = serializers.CharField(allow_blank=True, max_length=50_000, required=False)
    model = UnsetAsNullField(
        max_length=200, required=False, help_text="null or empty: the CHAT_MODEL setting."
    )
    temperature = serializers.FloatField(min_value=0.0, max_value=2.0, required=False)
    max_output_tokens = serializers.IntegerField(min_value=1, max_value=32768, required=False)
    dataset_ids = serializers.ListField(
        child=serializers.UUIDField(), max_length=100, required=False
    )
    scope_id = serializers.UUIDField(allow_null=True, required=False)
    top_k = serializers.IntegerField(min_value=1, max_value=100, required=False)
    is_active = serializers.BooleanField(required=False)


class BotApiBase(ReachApi):
    def bots(self) -> QuerySet[Bot]:
        return self.reach.bots().prefetch_related(
            Prefetch("dataset_links", queryset=self.scoped(BotDataset).only("bot_id", "dataset_id"))
        )

    def resolve_references(
        self, data: dict[str, Any]
    ) -> tuple[dict[str, Any], list[Dataset] | None]:
        """``scope_id`` / ``dataset_ids`` → objects the key reaches, or field errors (a
        bot-limited key's bots get only the scopes and datasets its bots already use: another
        bot's would let it read their documents through its own)."""
        errors: dict[str, list[str]] = {}
        if "scope_id" in data:
            scope_id = data.pop("scope_id")
            data["scope"] = None
            if scope_id is not None:
                data["scope"] = self.reach.scopes().filter(pk=scope_id).first()
                if data["scope"] is None:
                    errors["scope_id"] = ["Scope not found."]
        datasets = None
        if "dataset_ids" in data:
            wanted = list(dict.fromkeys(data.pop("dataset_ids")))
            datasets = list(self.reach.datasets().filter(pk__in=wanted))
            missing = set(wanted) - {d.pk for d in datasets}
            if missing:
                errors["dataset_ids"] = [
                    f"Dataset not found: {pk}" for pk in sorted(map(str, missing))
                ]
        if errors:
            raise ValidationFailed(details=errors)
        return data, datasets


class BotListCreateApi(BotApiBase):
    @extend_schema(
        operation_id="bots_list",
        responses=page_of(BotOutput),
        parameters=[*PAGE_PARAMETERS, OpenApiParameter("is_active", bool)],
        tags=["bots"],
    )
    def get(self, request: Request) -> Response:
        bots = self.bots()
        active = parse_bool(request.query_params.get("is_active"), "is_active")
        if active is not None:
            bots = bots.filter(is_active=active)
        return Response(paginate(bots, request, lambda r: BotOutput(r, many=True).data))

    @extend_schema(
        operation_id="bots_create",
        request=BotInput,
        responses={201: BotOutput, 409: NAME_TAKEN},
        tags=["bots"],
        examples=[
            OpenApiExample(
                "support bot",
                value={
                    "name": "Support",
                    "system_prompt": "Answer from the documentation; say when you do not know.",
                    "dataset_ids": ["5f0c6a3e-8d1b-4c55-9a1e-2b7f3c9d4e10"],
                    "scope_id": "8a2d4b6c-1e3f-4a5b-8c7d-9e0f1a2b3c4d",
                    "temperature": 0.2,
                    "top_k": 5,
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        self.reach.check_may_create("bots")
        data, datasets = self.resolve_references(self.validated(BotInput, request.data))
        bot = bot_create_with_datasets(
            tenant=self.tenant, actor=self.actor, datasets=datasets or [], **data
        )
        body = BotOutput(self.get_object(Bot, bot.pk, queryset=self.bots())).data
        return located(Response(body, status=201), "bot-detail", bot.pk)


class BotDetailApi(BotApiBase):
    @extend_schema(operation_id="bots_retrieve", responses=BotOutput, tags=["bots"])
    def get(self, request: Request, bot_id: str) -> Response:
        return Response(BotOutput(self.get_object(Bot, bot_id, queryset=self.bots())).data)

    @extend_schema(
        operation_id="bots_update",
        request=BotInput(partial=True),
        responses={200: BotOutput, 409: NAME_TAKEN},
        tags=["bots"],
    )
    def patch(self, request: Request, bot_id: str) -> Response:
        bot = self.get_object(Bot, bot_id, queryset=self.bots())
        changes, datasets = self.resolve_references(
            self.validated(BotInput, request.data, partial=True)
        )
        bot_update_with_datasets(
            tenant=self.tenant, actor=self.actor, bot=bot, changes=changes, datasets=datasets
        )
        return Response(BotOutput(self.get_object(Bot, bot.pk, queryset=self.bots())).data)

    @extend_schema(operation_id="bots_destroy", responses={204: None}, tags=["bots"])
    def delete(self, request: Request, bot_id: str) -> Response:
        bot = self.get_object(Bot, bot_id, queryset=self.bots())
        bot_delete(tenant=self.tenant, actor=self.actor, bot=bot)
        return Response(status=204)
