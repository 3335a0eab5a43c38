"""Chinese, Japanese and Korean in full-text search: their runs of letters are indexed as
overlapping character bigrams ("东京塔" → "东京 京塔"), as Lucene's CJK analyser does.

PostgreSQL's parser reads a run of these letters without spaces as one word: a sentence of
Chinese up to its punctuation was one lexeme, and a question matched no chunk unless it was that
very sentence. ``knowledge_cjk_bigrams(text)`` rewrites each run of Han, kana and Hangul as its
bigrams (a one-letter run stays itself) and leaves any other text as it is, so the lexemes of
every other language are unchanged (all-ASCII text is returned without a look at its letters).
Retrieval passes the question through it too.

How, without holding the chunk table: changing a stored generated column's expression rewrites
the table, and with it every index, the HNSW index included — at 158,000 chunks that locked
the table (reads too: no retrieval, chat or ingestion) for 10.5 minutes in the upgrade audit.
So ``search_vector`` becomes an ordinary column (``DROP EXPRESSION`` keeps its values and
rewrites nothing), kept by a row trigger as the generated column was: on insert, and on an
update of the text or the language (or of the vector itself, which nobody else may set).
Django's state keeps it a generated field, so Django never writes it. Then only the chunks with
CJK letters are re-indexed, 100 of them per transaction; the BM25 frequencies follow through the
statement trigger on updates (knowledge 0008), exactly.

The change waits at most a second for its lock, then lets the table's queue through and tries
again (an ALTER TABLE waiting behind a long transaction holds every later read and write of the
table behind itself), and each of its statements may run twice: a migration cut short while it
re-indexes (the change committed, the migration not recorded) completes when run again.

Going back is the same with knowledge 0012's expression, ``to_tsvector(language, text)``: the
column stays an ordinary one kept by the trigger — a generated column again would rewrite the
table (403 s with it locked at 160,000 chunks, docs/BENCHMARKS.md) — the CJK chunks are
re-indexed and ``knowledge_cjk_bigrams`` is dropped. A database that ran this migration's first
version (the generated column given the new expression) goes back the same way.
"""

import time
import uuid
from typing import Any

from django.contrib.postgres.search import SearchVectorField
from django.db import OperationalError, migrations, models, transaction
from django.db.models import F, Func
from psycopg.errors import LockNotAvailable

# Han (with extensions A-G and the compatibility ideographs), 々〆〇, hiragana, katakana (with
# its phonetic extensions and the half-width forms) and Hangul syllables.
CJK = (
    r"\u3005-\u3007\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    r"\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)

FUNCTION = f"""
CREATE OR REPLACE FUNCTION knowledge_cjk_bigrams(t text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT CASE WHEN octet_length(t) = length(t) OR t !~ '[{CJK}]' THEN t ELSE (
    SELECT string_agg(
        CASE WHEN m.part[1] ~ '^[{CJK}]' THEN (
            SELECT string_agg(substr(m.part[1], i, 2), ' ' ORDER BY i)
            FROM generate_series(1, greatest(length(m.part[1]) - 1, 1)) AS i
        ) ELSE m.part[1] END,
        ' ' ORDER BY m.n)
    FROM regexp_matches(t, '[{CJK}]+|[^{CJK}]+', 'g') WITH ORDINALITY AS m(part, n)
) END
$$;
"""  # noqa: S608 - constant text, no input


def search_vector_trigger(expression: str) -> str:
    """``search_vector`` as an ordinary column (``DROP EXPRESSION`` keeps the values and rewrites
    nothing; ``IF EXISTS``: it may be one already) that a row trigger sets to ``expression`` on
    insert, and on an update of the text or the language (or of the vector itself, which nobody
    else may set)."""
    return f"""
ALTER TABLE knowledge_chunk ALTER COLUMN search_vector DROP EXPRESSION IF EXISTS;

CREATE OR REPLACE FUNCTION knowledge_chunk_search_vector() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.search_vector := {expression};
    ELSIF NEW.text IS DISTINCT FROM OLD.text OR NEW.language IS DISTINCT FROM OLD.language
          OR NEW.search_vector IS DISTINCT FROM OLD.search_vector THEN
        NEW.search_vector := {expression};
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER knowledge_chunk_search_vector BEFORE INSERT OR UPDATE ON knowledge_chunk
FOR EACH ROW EXECUTE FUNCTION knowledge_chunk_search_vector();
"""


FORWARD = FUNCTION + search_vector_trigger(
    "to_tsvector(NEW.language, knowledge_cjk_bigrams(NEW.text))"
)
BACKWARD = search_vector_trigger("to_tsvector(NEW.language, NEW.text)")

# The next page of chunks with CJK letters after id %(after)s get their vector again (set to
# NULL, the trigger computes it), in one transaction. Returns the page's last id, NULL past the
# end. A page is counted in chunks re-indexed, not in ids read: each costs ~11 ms (two HNSW
# graphs, the GIN index, termstat; 1,000 took 10.9 s at 160,000 chunks) and the page holds their
# rows throughout (a deletion, re-ingestion or language change of them waits): pages of 5,000
# ids could hold 5,000 rows, ~55 s at that rate, where most chunks are Chinese, Japanese, Korean.
PAGE = f"""
WITH page AS MATERIALIZED (
    SELECT id FROM knowledge_chunk
    WHERE id > %(after)s AND octet_length(text) <> length(text) AND text ~ '[{CJK}]'
    ORDER BY id LIMIT %(size)s
), redone AS (
    UPDATE knowledge_chunk c SET search_vector = NULL FROM page WHERE c.id = page.id
    RETURNING c.id
)
SELECT (SELECT id FROM page ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM redone)
"""  # noqa: S608 - constant text, no input
PAGE_SIZE = 100
# While ALTER TABLE waits for the chunk table's ACCESS EXCLUSIVE lock, every later read and
# write of the table queues behind it: waiting out a long transaction (an ingestion storing a
# large document, a dataset language change) stalled retrieval for as long. So the change waits
# at most LOCK_TIMEOUT, then lets the queue through for LOCK_PAUSE seconds and tries again.
LOCK_TIMEOUT = "1s"
LOCK_PAUSE = 2.0
LOCK_ATTEMPTS = 150  # about 7.5 minutes, then the migration fails (run it again: it resumes)


def briefly(schema_editor: Any, sql: str) -> None:
    """``sql`` in one transaction that waits at most LOCK_TIMEOUT for a lock, retried."""
    connection = schema_editor.connection
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                cursor.execute(sql)
            return
        except OperationalError as error:
            if not isinstance(error.__cause__, LockNotAvailable) or attempt == LOCK_ATTEMPTS:
                raise
        time.sleep(LOCK_PAUSE)


def reindex_cjk_chunks(schema_editor: Any) -> None:
    after = uuid.UUID(int=0)
    with schema_editor.connection.cursor() as cursor:
        while True:
            cursor.execute(PAGE, {"after": after, "size": PAGE_SIZE})
            last, _redone = cursor.fetchone()
            if last is None:
                return
            after = last


def forward(apps: Any, schema_editor: Any) -> None:
    briefly(schema_editor, FORWARD)
    reindex_cjk_chunks(schema_editor)


def backward(apps: Any, schema_editor: Any) -> None:
    """The way forward, with knowledge 0012's expression: no rewrite either (a new generated
    column rewrote the table and rebuilt its indexes, the HNSW ones included, with it locked:
    403 s at 160,000 chunks). ``search_vector`` stays an ordinary column kept by the trigger,
    which Django, for whom it is still generated, never writes.

    ``knowledge_cjk_bigrams`` stays: a rollback runs with this code still serving, whose
    retrieval passes every question through it, until the older code is deployed; dropping it
    failed every retrieval meanwhile. Nothing of 0012 uses it, and going forward replaces it."""
    briefly(schema_editor, BACKWARD)
    reindex_cjk_chunks(schema_editor)


class Migration(migrations.Migration):
    atomic = False  # the change and each page of the re-indexing commit on their own

    dependencies = [
        ("knowledge", "0012_document_transient_failures"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forward, backward)],
            state_operations=[
                migrations.AlterField(
                    model_name="chunk",
                    name="search_vector",
                    field=models.GeneratedField(
                        db_persist=True,
                        expression=Func(
                            F("language"),
                            Func(
                                F("text"),
                                function="knowledge_cjk_bigrams",
                                output_field=models.TextField(),
                            ),
                            function="to_tsvector",
                            output_field=SearchVectorField(),
                        ),
                        output_field=SearchVectorField(),
                    ),
                ),
            ],
        ),
    ]
