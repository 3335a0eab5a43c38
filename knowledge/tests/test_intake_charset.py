"""Uploads whose part declares a charset (``Content-Type: text/plain; charset=koi8-r``): their
text is stored as UTF-8 a piece at a time, refused whole when the charset cannot read it, and is
one document with the same text or the same bytes uploaded before; ``ingest_folder --charset``."""

from __future__ import annotations

import hashlib
import io
import json
import tracemalloc

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.core.management import CommandError, call_command

from knowledge.intake import document_add_upload
from knowledge.models import Dataset, Document, DocumentStatus
from tenants.models import AuditLog
from tenants.services import Actor
from tests.world import build_tenant

pytestmark = pytest.mark.django_db

TERMS = "Оплата по счёту в течение 14 дней."  # a guess reads its KOI8-R as Shift_JIS


@pytest.fixture
def side():
    return build_tenant("acme")


def upload(side, name: str, data: bytes, charset: str | None = None):
    content_type = f"text/plain; charset={charset}" if charset else "text/plain"
    return side.client().post(
        f"/v1/datasets/{side.dataset.pk}/documents",
        {"file": SimpleUploadedFile(name, data, content_type=content_type)},
        format="multipart",
    )


def new_documents(side):
    return Document.objects.for_tenant(side.tenant).exclude(pk=side.document.pk)


def stored_files(side) -> list[str]:
    folder = f"documents/{side.tenant.pk}/{side.dataset.pk}"
    return default_storage.listdir(folder)[1] if default_storage.exists(folder) else []


def test_declared_text_longer_than_a_piece_is_stored_whole_as_utf8(side):
    # Characters of two and three bytes fall across the 64 KiB pieces it is read in.
    text = "\n".join(f"{n}. {TERMS} 請求書は月末に届きます。" for n in range(4000))
    response = upload(side, "terms.txt", text.encode("shift_jis"), "Shift_JIS")
    assert response.status_code == 202, response.content
    document = Document.objects.for_tenant(side.tenant).get(pk=response.json()["id"])
    assert document.file.read() == text.encode()
    assert document.content_hash == hashlib.sha256(text.encode()).hexdigest()
    assert (document.byte_size, document.content_type) == (len(text.encode()), "text/plain")


def test_bytes_the_declared_charset_cannot_read_are_a_400_and_nothing_is_stored(side):
    """They were ignored with the label (a guess read the text instead); the client declared
    the charset, so it is told, with where. Nothing half-written stays: the first 64 KiB had
    been re-encoded before the bad byte."""
    good = (TERMS + "\n").encode("cp1251") * 3000  # ~100 KB
    response = upload(side, "terms.txt", good + b"\x98" + good, "windows-1251")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"] == "The file is not windows-1251 text, the charset its part declares."
    assert error["details"]["file"] == [
        f"Byte 98 at offset {len(good):,} is not windows-1251 text. Declare the charset the "
        "file is written in, or send it as UTF-8."
    ]
    assert not new_documents(side).exists()
    assert stored_files(side) == []


def test_a_large_declared_upload_is_re_encoded_in_bounded_memory(side):
    """It was read whole, decoded and encoded again: 8 MB of KOI8-R held ~40 MB at once."""
    data = (TERMS + "\n").encode("koi8-r") * 240_000  # 8.4 MB
    received = TemporaryUploadedFile("big.txt", "text/plain", len(data), "koi8-r")
    received.write(data)
    received.seek(0)
    size, expected = len(data), hashlib.sha256(data.decode("koi8-r").encode()).hexdigest()
    del data
    tracemalloc.start()
    try:
        added = document_add_upload(tenant=side.tenant, actor=Actor.system("tests"),
                                    dataset=side.dataset, upload=received)  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        received.close()
    assert added.document.content_hash == expected
    assert added.document.byte_size > size  # Cyrillic: two bytes a letter in UTF-8
    assert peak < size // 8, f"peak {peak:,} bytes for an upload of {size:,}"


def test_the_same_text_declared_or_in_utf8_is_one_document(side):
    first = upload(side, "terms.txt", TERMS.encode("koi8-r"), "koi8-r").json()
    for name, data, charset in [
        ("terms-utf8.txt", TERMS.encode(), None),
        ("terms-1251.txt", TERMS.encode("cp1251"), "windows-1251"),
        ("terms-again.txt", TERMS.encode("koi8-r"), "KOI8-R"),
    ]:
        again = upload(side, name, data, charset)
        assert (again.status_code, again.json()["id"]) == (200, first["id"]), name
    assert new_documents(side).count() == 1


def test_declaring_the_charset_of_bytes_uploaded_without_one_re_reads_that_document(side):
    """The same file, first sent bare (its text left to the worker's guess), then with its
    charset, was two documents, both searched; now the second upload says what the first one's
    text is: one document, re-read."""
    data = TERMS.encode("koi8-r")
    bare = upload(side, "terms.txt", data).json()
    assert bare["content_hash"] == hashlib.sha256(data).hexdigest()
    Document.objects.for_tenant(side.tenant).filter(pk=bare["id"]).update(
        status=DocumentStatus.READY
    )
    old_file = Document.objects.for_tenant(side.tenant).get(pk=bare["id"]).file.name

    declared = upload(side, "terms.txt", data, "koi8-r")

    assert declared.status_code == 202, declared.content
    body = declared.json()
    assert (body["id"], body["status"]) == (bare["id"], "queued")
    assert body["content_hash"] == hashlib.sha256(TERMS.encode()).hexdigest()
    document = Document.objects.for_tenant(side.tenant).get(pk=bare["id"])
    assert document.file.read() == TERMS.encode()
    assert document.file.name != old_file
    assert new_documents(side).count() == 1
    assert (
        AuditLog.objects.for_tenant(side.tenant)
        .filter(action="document.update", target_id=str(bare["id"]))
        .exists()
    )
    # Bare again, as UTF-8 or as the bytes first sent: the document, read as declared.
    for again in (TERMS.encode(), data):
        assert upload(side, "terms.txt", again).json()["id"] == bare["id"]
    assert new_documents(side).count() == 1


def test_declaring_the_charset_of_a_document_being_ingested_is_a_conflict(side):
    data = TERMS.encode("koi8-r")
    bare = upload(side, "terms.txt", data).json()
    Document.objects.for_tenant(side.tenant).filter(pk=bare["id"]).update(
        status=DocumentStatus.PROCESSING
    )
    response = upload(side, "terms.txt", data, "koi8-r")
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"document_id": bare["id"]}
    document = Document.objects.for_tenant(side.tenant).get(pk=bare["id"])
    assert document.content_hash == hashlib.sha256(data).hexdigest()
    assert new_documents(side).count() == 1


def test_the_same_bytes_sent_again_without_their_charset_are_the_document_read_in_it(side):
    """Declared, then bare: the second upload's hash was of the raw bytes, the first's of their
    UTF-8 text, so the one file became two documents, the second read by a guess. The raw bytes'
    hash is kept now: the bare upload is the declared document, as it was read (``200``)."""
    data = TERMS.encode("koi8-r")
    declared = upload(side, "terms.txt", data, "koi8-r").json()
    assert declared["content_hash"] == hashlib.sha256(TERMS.encode()).hexdigest()

    for name in ("terms.txt", "copy.txt"):
        bare = upload(side, name, data)
        assert (bare.status_code, bare.json()["id"]) == (200, declared["id"]), name
    document = Document.objects.for_tenant(side.tenant).get(pk=declared["id"])
    assert document.file.read() == TERMS.encode()
    assert document.raw_hash == hashlib.sha256(data).hexdigest()
    assert new_documents(side).count() == 1


def test_the_same_bytes_declared_in_another_charset_re_read_that_document(side):
    """Declared in one charset, then in another that reads them as other text: the latest
    declaration is the client's word on what the bytes say (a charset corrected), so the one
    document is re-read in it, as bytes first sent bare are; it was a second document."""
    data = TERMS.encode("koi8-r")
    first = upload(side, "terms.txt", data, "iso-8859-5").json()
    Document.objects.for_tenant(side.tenant).filter(pk=first["id"]).update(
        status=DocumentStatus.READY
    )

    corrected = upload(side, "terms.txt", data, "koi8-r")

    assert corrected.status_code == 202, corrected.content
    body = corrected.json()
    assert (body["id"], body["status"]) == (first["id"], "queued")
    assert body["content_hash"] == hashlib.sha256(TERMS.encode()).hexdigest()
    document = Document.objects.for_tenant(side.tenant).get(pk=first["id"])
    assert document.file.read() == TERMS.encode()
    assert document.raw_hash == hashlib.sha256(data).hexdigest()
    assert new_documents(side).count() == 1
    # Declared as it now is, or bare: that document as it is.
    for charset in ("koi8-r", None):
        again = upload(side, "terms.txt", data, charset)
        assert (again.status_code, again.json()["id"]) == (200, first["id"]), charset


def test_bytes_uploaded_bare_before_their_hash_was_kept_are_re_read_when_declared(side):
    """Documents stored before ``raw_hash`` have none; one stored as its bytes came has their
    hash as its ``content_hash``, and is still found by it."""
    data = TERMS.encode("koi8-r")
    bare = upload(side, "terms.txt", data).json()
    Document.objects.for_tenant(side.tenant).filter(pk=bare["id"]).update(
        raw_hash=None, status=DocumentStatus.READY
    )
    declared = upload(side, "terms.txt", data, "koi8-r")
    assert (declared.status_code, declared.json()["id"]) == (202, bare["id"])
    document = Document.objects.for_tenant(side.tenant).get(pk=bare["id"])
    assert document.raw_hash == hashlib.sha256(data).hexdigest()
    assert new_documents(side).count() == 1


def ingest_folder(*args: str) -> None:
    call_command("ingest_folder", *args, stdout=io.StringIO(), stderr=io.StringIO())


def test_ingest_folder_reads_its_files_in_the_charset_it_is_given(side, tmp_path):
    (tmp_path / "terms.txt").write_bytes(TERMS.encode("koi8-r"))
    (tmp_path / "notes.md").write_bytes(("# Заметки\n\n" + TERMS).encode())
    ingest_folder(str(tmp_path), "--tenant", side.tenant.slug, "--dataset", "legacy",
                  "--charset", "KOI8-R")  # fmt: skip
    dataset = Dataset.objects.for_tenant(side.tenant).get(name="legacy")
    stored = {
        d.source: d.file.read()
        for d in Document.objects.for_tenant(side.tenant).filter(dataset=dataset)
    }
    assert stored == {
        "terms.txt": TERMS.encode(),
        "notes.md": ("# Заметки\n\n" + TERMS).encode(),
    }


def test_ingest_folder_refuses_a_charset_python_does_not_know_before_uploading(side, tmp_path):
    (tmp_path / "terms.txt").write_bytes(TERMS.encode("koi8-r"))
    for charset in ("koi9-r", "base64"):
        with pytest.raises(CommandError, match=f"--charset '{charset}' is not a text encoding"):
            ingest_folder(str(tmp_path), "--tenant", side.tenant.slug, "--dataset", "legacy",
                          "--charset", charset)  # fmt: skip
    assert not Dataset.objects.for_tenant(side.tenant).filter(name="legacy").exists()


def test_ingest_folder_refuses_a_file_its_charset_cannot_read_and_says_which(side, tmp_path):
    (tmp_path / "good.txt").write_bytes(TERMS.encode("cp1251"))
    (tmp_path / "bad.txt").write_bytes(TERMS.encode("cp1251") + b"\x98")
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest_folder", str(tmp_path), "--tenant", side.tenant.slug, "--dataset",
                 "legacy", "--charset", "windows-1251", stdout=out, stderr=err)  # fmt: skip
    report = json.loads(out.getvalue())
    assert (report["submitted"], report["refused_at_intake"]) == (1, {"validation_error": 1})
    offset = len(TERMS.encode("cp1251"))
    assert f"refused bad.txt: validation_error: Byte 98 at offset {offset}" in err.getvalue()


def test_text_with_a_byte_order_mark_is_stored_as_utf8_and_is_one_document_with_it(side):
    """UTF-16 (or UTF-8) with a byte order mark was stored as it came, so the same text without
    the mark, or in UTF-8, or declared in KOI8-R, was a second document."""
    first = upload(side, "wide.txt", TERMS.encode("utf-16"))
    assert first.status_code == 202, first.content
    document = Document.objects.for_tenant(side.tenant).get(pk=first.json()["id"])
    assert document.file.read() == TERMS.encode()
    assert first.json()["content_hash"] == hashlib.sha256(TERMS.encode()).hexdigest()
    for name, data, charset in [
        ("marked.txt", b"\xef\xbb\xbf" + TERMS.encode(), None),
        ("plain.txt", TERMS.encode(), None),
        ("big-endian.txt", b"\xfe\xff" + TERMS.encode("utf-16-be"), "koi8-r"),
        ("terms.txt", TERMS.encode("koi8-r"), "koi8-r"),
    ]:
        again = upload(side, name, data, charset)
        assert (again.status_code, again.json()["id"]) == (200, first.json()["id"]), name
    assert new_documents(side).count() == 1
