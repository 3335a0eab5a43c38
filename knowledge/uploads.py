"""Upload size cap enforced while the body streams in, before Django buffers it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler

from chatbot_site.errors import PayloadTooLarge


def too_large() -> PayloadTooLarge:
    limit = settings.INGEST_MAX_UPLOAD_BYTES
    return PayloadTooLarge(
        f"Uploads are limited to {limit // (1024 * 1024)} MB.", details={"limit_bytes": limit}
    )


class LimitedUploadHandler(FileUploadHandler):
    """First in FILE_UPLOAD_HANDLERS: refuses a declared Content-Length over the limit at once,
    and a body that grows past it (chunked, or lying about its length) at the first chunk over."""

    def handle_raw_input(
        self,
        input_data: Any,
        META: Any,
        content_length: int,
        boundary: Any,
        encoding: Any = None,
    ) -> None:
        if content_length and content_length > settings.INGEST_MAX_UPLOAD_BYTES + 64 * 1024:
            raise too_large()
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received = getattr(self, "received", 0) + len(raw_data)
        if self.received > settings.INGEST_MAX_UPLOAD_BYTES:
            raise too_large()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None
