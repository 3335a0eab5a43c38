"""A chunk's heading path in its full-text vector: a question that names a section ("what does
the guardrails list say about canaries") finds the section's chunks by their headings too, not
only by their embedding (which carries the headings in front of the text since contextual chunk
embeddings; the stored tsvector held the text alone).

``search_vector`` becomes ``to_tsvector(language, knowledge_cjk_bigrams(text)) ||
setweight(to_tsvector(language, knowledge_cjk_bigrams(<heading path, space-joined>)), 'A')``:
the text keeps weight D (the default, so a chunk with no heading gets exactly the vector it had)
and its lexemes' positions, the headings come after it at weight A, which the text leg's ranking
weighs on its own (``RETRIEVAL_HEADING_WEIGHT``). BM25's document frequencies (knowledge_termstat)
count a heading's words in every chunk under it, exactly, through its update trigger.

How, as knowledge 0013 did it (its ``briefly`` and its page of 100 chunks per transaction): the
row trigger that keeps the column (an ordinary column since 0013) gets the new expression in one
statement that waits at most a second for its lock at a time, then only the chunks with a
heading path are re-indexed, 100 per transaction, the table served throughout. Each step may run
twice: a migrate cut short while it re-indexes completes when run again. Going back is the same
with 0013's expression.
"""

import importlib
import uuid
from typing import Any

from django.contrib.postgres.search import SearchVectorField
from django.db import migrations, models
from django.db.models import F, Func, Value

cjk = importlib.import_module("knowledge.migrations.0013_chunk_cjk_bigrams")
briefly = cjk.briefly

TEXT = "to_tsvector(NEW.language, knowledge_cjk_bigrams(NEW.text))"
HEADINGS = (
    "setweight(to_tsvector(NEW.language,"
    " knowledge_cjk_bigrams(array_to_string(NEW.heading_path, ' '))), 'A')"
)


def search_vector_trigger(expression: str) -> str:
    """0013's trigger with ``expression``, recomputed on an update of the heading path as well
    (its ``ALTER ... DROP EXPRESSION IF EXISTS`` is a no-op by now)."""
    sql = cjk.search_vector_trigger(expression)
    language = "OR NEW.language IS DISTINCT FROM OLD.language"
    assert language in sql, "knowledge 0013's trigger changed"  # noqa: S101 - a constant
    return sql.replace(
        language, f"{language}\n          OR NEW.heading_path IS DISTINCT FROM OLD.heading_path"
    )


FORWARD = search_vector_trigger(f"{TEXT} || {HEADINGS}")
BACKWARD = cjk.search_vector_trigger(TEXT)  # 0013's trigger as it was

# The next page of chunks with a heading path after id %(after)s get their vector again (set to
# NULL, the trigger computes it), in one transaction: 0013's page, another condition. A chunk
# without headings has the same vector either way and is not touched.
PAGE = """
WITH page AS MATERIALIZED (
    SELECT id FROM knowledge_chunk
    WHERE id > %(after)s AND cardinality(heading_path) > 0
    ORDER BY id LIMIT %(size)s
), redone AS (
    UPDATE knowledge_chunk c SET search_vector = NULL FROM page WHERE c.id = page.id
    RETURNING c.id
)
SELECT (SELECT id FROM page ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM redone)
"""


def reindex_chunks_with_headings(schema_editor: Any) -> None:
    after = uuid.UUID(int=0)
    with schema_editor.connection.cursor() as cursor:
        while True:
            cursor.execute(PAGE, {"after": after, "size": cjk.PAGE_SIZE})
            last, _redone = cursor.fetchone()
            if last is None:
                return
            after = last


def forward(apps: Any, schema_editor: Any) -> None:
    briefly(schema_editor, FORWARD)
    reindex_chunks_with_headings(schema_editor)


def backward(apps: Any, schema_editor: Any) -> None:
    briefly(schema_editor, BACKWARD)
    reindex_chunks_with_headings(schema_editor)


def language_vector(text: Any) -> Func:
    return Func(
        F("language"),
        Func(text, function="knowledge_cjk_bigrams", output_field=models.TextField()),
        function="to_tsvector",
        output_field=SearchVectorField(),
    )


class Migration(migrations.Migration):
    atomic = False  # the change and each page of the re-indexing commit on their own

    dependencies = [
        ("knowledge", "0015_document_pipeline_version"),
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
                            language_vector(F("text")),
                            Func(
                                language_vector(
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
                        ),
                        output_field=SearchVectorField(),
                    ),
                ),
            ],
        ),
    ]
