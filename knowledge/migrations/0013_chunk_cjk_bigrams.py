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
CJK letters are re-indexed, a page of ids at a time, each page its own transaction; the BM25
frequencies follow through the statement trigger on updates (knowledge 0008), exactly.
"""

import uuid

from django.contrib.postgres.search import SearchVectorField
from django.db import migrations, models
from django.db.models import F, Func

# Han (with extensions A-G and the compatibility ideographs), 々〆〇, hiragana, katakana (with
# its phonetic extensions and the half-width forms) and Hangul syllables.
CJK = (
    r"\u3005-\u3007\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    r"\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)

FUNCTION = f"""
CREATE FUNCTION knowledge_cjk_bigrams(t text) RETURNS text
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

TRIGGER = """
ALTER TABLE knowledge_chunk ALTER COLUMN search_vector DROP EXPRESSION;

CREATE FUNCTION knowledge_chunk_search_vector() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.search_vector := to_tsvector(NEW.language, knowledge_cjk_bigrams(NEW.text));
    ELSIF NEW.text IS DISTINCT FROM OLD.text OR NEW.language IS DISTINCT FROM OLD.language
          OR NEW.search_vector IS DISTINCT FROM OLD.search_vector THEN
        NEW.search_vector := to_tsvector(NEW.language, knowledge_cjk_bigrams(NEW.text));
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER knowledge_chunk_search_vector BEFORE INSERT OR UPDATE ON knowledge_chunk
FOR EACH ROW EXECUTE FUNCTION knowledge_chunk_search_vector();
"""

# One page of chunk ids after %(after)s: those with CJK letters get their vector again (set to
# NULL, the trigger computes it). Returns the page's last id, NULL past the end.
PAGE = f"""
WITH page AS MATERIALIZED (
    SELECT id FROM knowledge_chunk WHERE id > %(after)s ORDER BY id LIMIT %(size)s
), redone AS (
    UPDATE knowledge_chunk c SET search_vector = NULL FROM page
    WHERE c.id = page.id AND octet_length(c.text) <> length(c.text) AND c.text ~ '[{CJK}]'
    RETURNING c.id
)
SELECT (SELECT id FROM page ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM redone)
"""  # noqa: S608 - constant text, no input
PAGE_SIZE = 5000


def reindex_cjk_chunks(apps, schema_editor):
    after = uuid.UUID(int=0)
    with schema_editor.connection.cursor() as cursor:
        while True:
            cursor.execute(PAGE, {"after": after, "size": PAGE_SIZE})
            last, _redone = cursor.fetchone()
            if last is None:
                return
            after = last


RECOUNT = """
DELETE FROM knowledge_termstat;
INSERT INTO knowledge_termstat (dataset_id, language, lexeme, df)
SELECT dataset_id, language, lexeme, count(*) FROM (
    SELECT c.dataset_id, c.language, t.lexeme
    FROM knowledge_chunk c CROSS JOIN LATERAL unnest(c.search_vector) AS t
    UNION ALL
    SELECT c.dataset_id, c.language, '' FROM knowledge_chunk c
) terms
GROUP BY dataset_id, language, lexeme;
"""

# Back to the generated column of knowledge 0009 (a rewrite: going back may hold the table).
BACKWARD = (
    """
DROP TRIGGER IF EXISTS knowledge_chunk_search_vector ON knowledge_chunk;
DROP FUNCTION IF EXISTS knowledge_chunk_search_vector();
ALTER TABLE knowledge_chunk DROP COLUMN search_vector;
ALTER TABLE knowledge_chunk ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector(language, text)) STORED;
CREATE INDEX chunk_dataset_search_gin ON knowledge_chunk USING gin (dataset_id, search_vector);
"""
    + RECOUNT
    + "DROP FUNCTION knowledge_cjk_bigrams(text);"
)


class Migration(migrations.Migration):
    atomic = False  # each page of the re-indexing commits on its own

    dependencies = [
        ("knowledge", "0012_document_transient_failures"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    "BEGIN;" + FUNCTION + TRIGGER + "COMMIT;", BACKWARD
                ),  # one short transaction
                migrations.RunPython(reindex_cjk_chunks, migrations.RunPython.noop),
            ],
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
