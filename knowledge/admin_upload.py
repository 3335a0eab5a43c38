"""Dataset upload from the admin: several files and URLs at once, with tags. Each becomes a
document queued for ingestion by the same services the API uses (knowledge.intake)."""

from __future__ import annotations

from typing import Any

import structlog
from django import forms
from django.core.files.uploadedfile import UploadedFile

from chatbot_site.errors import ApplicationError, ValidationFailed
from chatbot_site.params import parse_tags
from knowledge.apis import UrlInput
from knowledge.intake import document_add_upload, document_add_url
from knowledge.models import Dataset
from tenants.services import Actor

log = structlog.get_logger(__name__)
EMPTY_FILE = forms.FileField.default_error_messages["empty"]


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files. An empty one is not the form's error (which named no file and queued
    none of the others): :func:`add_documents` reports it as it does every refused item."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        kwargs.setdefault("allow_empty_file", True)
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data]
        return [single(data, initial)] if data else []


class UploadForm(forms.Form):
    documents = MultipleFileField(
        required=False,
        help_text="PDF, DOCX, Markdown, HTML, JSON or plain text; several at once.",
    )
    urls = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="One http(s) URL per line; the worker fetches each one.",
    )
    tags = forms.CharField(
        required=False,
        help_text="Comma-separated (or a JSON list), given to every document; as the API reads "
        "an upload's tags: trimmed, each once, case as typed.",
    )

    def clean_urls(self) -> list[str]:
        lines = [line.strip() for line in self.cleaned_data["urls"].splitlines()]
        urls = [line for line in lines if line]
        if len(urls) > 100:
            raise forms.ValidationError("At most 100 URLs at once.")
        return urls

    def clean_tags(self) -> list[str]:
        # The API's own reading of an upload's tags field, so that the same text typed here
        # gives the same tags (the JSON-list form, the limits, NFC, blanks and repeats).
        try:
            return parse_tags([self.cleaned_data["tags"]])
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.details["tags"]) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("documents") and not data.get("urls") and not self.errors:
            raise forms.ValidationError("Choose at least one file or give a URL.")
        return data


class Outcome:
    def __init__(self) -> None:
        self.queued: list[str] = []
        self.existing: list[str] = []
        self.errors: list[str] = []

    def summary(self) -> str:
        parts = [f"Queued {len(self.queued)} document(s) for ingestion."]
        if self.existing:
            parts.append(f"Already in the dataset: {', '.join(self.existing)}.")
        return " ".join(parts)


def url_refusals(url: str) -> list[str]:
    """Why the API would refuse ``url`` (its format, its length), checked by the API's own
    field; empty when it would take it."""
    checked = UrlInput(data={"url": url})
    return [] if checked.is_valid() else [str(message) for message in checked.errors["url"]]


def add_documents(
    *, dataset: Dataset, actor: Actor, files: list[UploadedFile], urls: list[str], tags: list[str]
) -> Outcome:
    """Queue every file and URL; one bad item is reported and does not stop the others. Each
    item is added in a transaction of its own, so a failure is that item's alone."""
    outcome = Outcome()
    items: list[tuple[str, Any]] = [(f.name or "upload", f) for f in files]
    items += [(url, url) for url in urls]
    for index, (label, item) in enumerate(items):
        shown = label if len(label) <= 200 else f"{label[:200]}…"
        if isinstance(item, str) and (refusals := url_refusals(item)):
            outcome.errors.append(f"Not queued: {shown} — {' '.join(refusals)}")
            continue
        if not isinstance(item, str) and not item.size:  # as the API's file field refuses it
            outcome.errors.append(f"Not queued: {shown} — {EMPTY_FILE}")
            continue
        try:
            if isinstance(item, str):
                added = document_add_url(
                    tenant=dataset.tenant, actor=actor, dataset=dataset, url=item, tags=tags
                )
            else:
                added = document_add_upload(
                    tenant=dataset.tenant, actor=actor, dataset=dataset, upload=item, tags=tags
                )
        except ApplicationError as exc:
            reasons = "; ".join(m for v in exc.details.values() if isinstance(v, list) for m in v)
            outcome.errors.append(
                f"Not queued: {shown} — {exc.message}{' ' + reasons if reasons else ''}"
            )
            continue
        except Exception:  # the items before it are committed and queued: the page must say so
            log.exception("admin_upload_item_failed", dataset_id=str(dataset.pk), item=index)
            outcome.errors.append(f"Not queued: {shown} — It could not be added (error logged).")
            continue
        (outcome.queued if added.created else outcome.existing).append(label)
    return outcome
