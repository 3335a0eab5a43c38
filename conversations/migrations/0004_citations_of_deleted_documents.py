"""A stored citation of a deleted document keeps no text of it: its ``snippet``, ``title`` and
``source`` become empty strings (its ids, ``page`` and ``score`` stay, so the answer's ``[n]``
markers still resolve). Deleting a document, or a dataset, left its text in the snippets of
every message that had cited it.

PostgreSQL does it, whichever way the rows go (the API, the staff admin, a dataset's or a
tenant's deletion): a statement trigger on ``knowledge_document`` rewrites, in the deleting
transaction, the citations of the messages that cite the deleted documents, found through a
GIN index of the cited document ids (messages with citations only), so a document cited in
many messages costs one index scan. A message stored after the deletion (a turn that retrieved
the document before it went and was answered after) is cleaned as it is inserted; the two take
a per-tenant advisory lock (shared by inserts, exclusive by deletions), so that a message is
never stored in between the deletion's cleaning and its commit unseen by both. Messages of
documents deleted before this migration are cleaned once, a page at a time.

Safe on a big table: the index is built concurrently (chats go on), the triggers are added in
transactions that wait at most a second for their locks at a time (knowledge 0013's
``briefly``), and each page of the clean-up commits on its own. Every step may run twice.
"""

from __future__ import annotations

import importlib
import uuid
from typing import Any

from django.db import migrations

briefly = importlib.import_module("knowledge.migrations.0013_chunk_cjk_bigrams").briefly

INDEX = "message_cited_documents"
CITED = "jsonb_path_query_array(citations, '$[*].document_id')"
# The advisory lock class of "the citations of a tenant's messages" (key 2: the tenant).
LOCK_CLASS = 7_319_004

FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION conversations_citations_forget(citations jsonb, gone text[])
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_agg(
               CASE WHEN c ->> 'document_id' = ANY(gone)
                    THEN c || '{{"title": "", "source": "", "snippet": ""}}'::jsonb
                    ELSE c END
               ORDER BY n), '[]'::jsonb)
    FROM jsonb_array_elements(citations) WITH ORDINALITY AS e(c, n)
$$;

-- The cited documents that do not exist (any more). PL/pgSQL, volatile: its plan is kept
-- (a SQL function's was made at every call: twice the trigger's time), and it reads the table
-- as it is at the call, not at the start of the statement that called it.
CREATE OR REPLACE FUNCTION conversations_cited_gone(citations jsonb)
RETURNS text[] LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (
        SELECT array_agg(DISTINCT x.cited) FROM (
            SELECT c ->> 'document_id' AS cited,
                   CASE WHEN pg_input_is_valid(c ->> 'document_id', 'uuid')
                        THEN (c ->> 'document_id')::uuid END AS id
            FROM jsonb_array_elements(citations) AS e(c)
        ) x
        WHERE x.id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM knowledge_document d WHERE d.id = x.id)
    );
END
$$;

CREATE OR REPLACE FUNCTION conversations_message_cites_present() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    gone text[];
BEGIN
    -- Before the documents are looked at: a deletion of one that has not committed yet is
    -- waited for (and then seen), or waits for this message (and then cleans it).
    PERFORM pg_advisory_xact_lock_shared({LOCK_CLASS}, hashtext(NEW.tenant_id::text));
    gone := conversations_cited_gone(NEW.citations);
    IF gone IS NOT NULL THEN
        NEW.citations := conversations_citations_forget(NEW.citations, gone);
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION conversations_forget_deleted_documents() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    gone text[];
    tenants uuid[];
BEGIN
    SELECT array_agg(id::text), array_agg(DISTINCT tenant_id) INTO gone, tenants
    FROM deleted_documents;
    IF gone IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock({LOCK_CLASS}, hashtext(t::text))
    FROM unnest(tenants) AS t ORDER BY t;
    UPDATE conversations_message m
    SET citations = conversations_citations_forget(m.citations, gone)
    WHERE m.tenant_id = ANY(tenants) AND m.citations <> '[]'::jsonb
      AND {CITED.replace("citations", "m.citations", 1)} ?| gone;
    RETURN NULL;
END
$$;
"""  # noqa: S608 - constant text, no input

TRIGGERS = """
CREATE OR REPLACE TRIGGER conversations_message_cites_present
BEFORE INSERT ON conversations_message FOR EACH ROW
WHEN (jsonb_typeof(NEW.citations) = 'array' AND NEW.citations <> '[]'::jsonb)
EXECUTE FUNCTION conversations_message_cites_present();

CREATE OR REPLACE TRIGGER conversations_forget_deleted_documents
AFTER DELETE ON knowledge_document REFERENCING OLD TABLE AS deleted_documents
FOR EACH STATEMENT EXECUTE FUNCTION conversations_forget_deleted_documents();
"""

DROP = """
DROP TRIGGER IF EXISTS conversations_forget_deleted_documents ON knowledge_document;
DROP TRIGGER IF EXISTS conversations_message_cites_present ON conversations_message;
DROP FUNCTION IF EXISTS conversations_forget_deleted_documents();
DROP FUNCTION IF EXISTS conversations_message_cites_present();
DROP FUNCTION IF EXISTS conversations_cited_gone(jsonb);
DROP FUNCTION IF EXISTS conversations_citations_forget(jsonb, text[]);
"""

# One page of the clean-up of messages stored before this migration: the next PAGE_SIZE
# messages with citations after ``after`` (primary key order), those citing a deleted document
# rewritten.
PAGE = """
WITH page AS MATERIALIZED (
    SELECT id FROM conversations_message
    WHERE id > %(after)s AND citations <> '[]'::jsonb AND jsonb_typeof(citations) = 'array'
    ORDER BY id LIMIT %(size)s
), gone AS MATERIALIZED (
    SELECT m.id, conversations_cited_gone(m.citations) AS ids
    FROM conversations_message m JOIN page USING (id)
), cleaned AS (
    UPDATE conversations_message m SET citations = conversations_citations_forget(m.citations, g.ids)
    FROM gone g WHERE m.id = g.id AND g.ids IS NOT NULL
    RETURNING m.id
)
SELECT (SELECT id FROM page ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM cleaned)
"""
PAGE_SIZE = 500


def index_forward(apps: Any, schema_editor: Any) -> None:
    with schema_editor.connection.cursor() as cursor:
        # A concurrent build cut short leaves an invalid index behind: built again.
        cursor.execute(
            "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s",
            [INDEX],
        )
        row = cursor.fetchone()
        if row is not None and row[0]:
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
        cursor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON conversations_message "
            f"USING gin (({CITED})) WHERE citations <> '[]'::jsonb"
        )


def index_backward(apps: Any, schema_editor: Any) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


def triggers_forward(apps: Any, schema_editor: Any) -> None:
    briefly(schema_editor, FUNCTIONS + TRIGGERS)


def triggers_backward(apps: Any, schema_editor: Any) -> None:
    briefly(schema_editor, DROP)


def clean_earlier_messages(apps: Any, schema_editor: Any) -> None:
    after = uuid.UUID(int=0)
    with schema_editor.connection.cursor() as cursor:
        while True:
            cursor.execute(PAGE, {"after": after, "size": PAGE_SIZE})
            last, _cleaned = cursor.fetchone()
            if last is None:
                return
            after = last


class Migration(migrations.Migration):
    atomic = False  # the index is built concurrently; each page of the clean-up commits alone

    dependencies = [
        ("conversations", "0003_finish_reason_content_filter"),
        ("knowledge", "0014_document_dataset_created"),
    ]

    operations = [
        migrations.RunPython(index_forward, index_backward, elidable=False),
        migrations.RunPython(triggers_forward, triggers_backward, elidable=False),
        migrations.RunPython(clean_earlier_messages, migrations.RunPython.noop, elidable=False),
    ]
