"""Chinese, Japanese and Korean in full-text search: their runs of letters are indexed as
overlapping character bigrams ("东京塔" → "东京 京塔"), as Lucene's CJK analyser does.

PostgreSQL's parser reads a run of these letters without spaces as one word: a sentence of
Chinese up to its punctuation was one lexeme, and a question matched no chunk unless it was that
very sentence. ``knowledge_cjk_bigrams(text)`` rewrites each run of Han, kana and Hangul as its
bigrams (a one-letter run stays itself) and leaves any other text as it is, so the lexemes of
every other language are unchanged (all-ASCII text is returned without a look at its letters). The stored ``search_vector`` is generated through it, and
retrieval passes the question through it too.

The column is dropped and added again, not altered (``ALTER COLUMN ... SET EXPRESSION`` needs
PostgreSQL 17), with its GIN index; both rewrite the table, once. The BM25 frequencies in
``knowledge_termstat`` are counted afresh from the new vectors (the triggers do not fire on a
rewrite).
"""

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


def generated(expression: str) -> str:
    return f"""
ALTER TABLE knowledge_chunk DROP COLUMN search_vector;
ALTER TABLE knowledge_chunk ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS ({expression}) STORED;
CREATE INDEX chunk_dataset_search_gin ON knowledge_chunk USING gin (dataset_id, search_vector);
"""


FORWARD = FUNCTION + generated("to_tsvector(language, knowledge_cjk_bigrams(text))") + RECOUNT
BACKWARD = (
    generated("to_tsvector(language, text)")
    + RECOUNT
    + "DROP FUNCTION knowledge_cjk_bigrams(text);"
)


class Migration(migrations.Migration):

    dependencies = [
        ("knowledge", "0012_document_transient_failures"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
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
