"""Document frequencies for BM25, kept by PostgreSQL.

``knowledge_termstat`` holds, per dataset and text-search language, how many chunks contain each
lexeme (and under ``''`` how many chunks there are). Statement-level triggers with transition
tables keep it exact for every way chunks change — the ingestion's replacing transaction, a
document or dataset deleted (cascades included), COPY, a text or language update. Each trigger
first takes a transaction-scoped advisory lock per dataset it touches, in dataset order, so
concurrent writers of one dataset queue instead of deadlocking on the counter rows; writers of
different datasets never meet. The counts of chunks already stored are filled in here.
"""

import django.db.models.deletion
from django.db import migrations, models

import knowledge.models

FUNCTIONS = """
CREATE FUNCTION knowledge_termstat_lock(datasets uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE d uuid;
BEGIN
    FOR d IN SELECT DISTINCT x FROM unnest(datasets) AS x ORDER BY x LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('knowledge_termstat:' || d::text, 0));
    END LOOP;
END $$;

CREATE FUNCTION knowledge_termstat_add() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM knowledge_termstat_lock(ARRAY(SELECT DISTINCT dataset_id FROM new_rows));
    INSERT INTO knowledge_termstat (dataset_id, language, lexeme, df)
    SELECT dataset_id, language, lexeme, count(*) FROM (
        SELECT n.dataset_id, n.language, t.lexeme
        FROM new_rows n CROSS JOIN LATERAL unnest(n.search_vector) AS t
        UNION ALL
        SELECT n.dataset_id, n.language, '' FROM new_rows n
    ) terms
    GROUP BY dataset_id, language, lexeme
    ORDER BY dataset_id, language, lexeme
    ON CONFLICT (dataset_id, language, lexeme)
    DO UPDATE SET df = knowledge_termstat.df + EXCLUDED.df;
    RETURN NULL;
END $$;

CREATE FUNCTION knowledge_termstat_subtract() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM knowledge_termstat_lock(ARRAY(SELECT DISTINCT dataset_id FROM old_rows));
    UPDATE knowledge_termstat s SET df = s.df - gone.df
    FROM (
        SELECT dataset_id, language, lexeme, count(*) AS df FROM (
            SELECT o.dataset_id, o.language, t.lexeme
            FROM old_rows o CROSS JOIN LATERAL unnest(o.search_vector) AS t
            UNION ALL
            SELECT o.dataset_id, o.language, '' FROM old_rows o
        ) terms
        GROUP BY dataset_id, language, lexeme
    ) gone
    WHERE s.dataset_id = gone.dataset_id AND s.language = gone.language
      AND s.lexeme = gone.lexeme;
    DELETE FROM knowledge_termstat s
    WHERE s.df <= 0 AND s.dataset_id IN (SELECT DISTINCT dataset_id FROM old_rows);
    RETURN NULL;
END $$;

CREATE FUNCTION knowledge_termstat_replace() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Only rows whose words, language or dataset changed move counts.
    IF NOT EXISTS (
        SELECT 1 FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (o.dataset_id, o.language, o.search_vector)
              IS DISTINCT FROM (n.dataset_id, n.language, n.search_vector)
    ) THEN
        RETURN NULL;
    END IF;
    PERFORM knowledge_termstat_lock(ARRAY(
        SELECT dataset_id FROM old_rows UNION SELECT dataset_id FROM new_rows));
    INSERT INTO knowledge_termstat (dataset_id, language, lexeme, df)
    SELECT dataset_id, language, lexeme, sum(delta) FROM (
        SELECT o.dataset_id, o.language, t.lexeme, -1 AS delta
        FROM old_rows o CROSS JOIN LATERAL unnest(o.search_vector) AS t
        UNION ALL SELECT o.dataset_id, o.language, '', -1 FROM old_rows o
        UNION ALL
        SELECT n.dataset_id, n.language, t.lexeme, 1
        FROM new_rows n CROSS JOIN LATERAL unnest(n.search_vector) AS t
        UNION ALL SELECT n.dataset_id, n.language, '', 1 FROM new_rows n
    ) moves
    GROUP BY dataset_id, language, lexeme
    HAVING sum(delta) <> 0
    ORDER BY dataset_id, language, lexeme
    ON CONFLICT (dataset_id, language, lexeme)
    DO UPDATE SET df = knowledge_termstat.df + EXCLUDED.df;
    DELETE FROM knowledge_termstat s
    WHERE s.df <= 0 AND s.dataset_id IN (SELECT dataset_id FROM old_rows);
    RETURN NULL;
END $$;

CREATE TRIGGER knowledge_chunk_termstat_insert AFTER INSERT ON knowledge_chunk
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION knowledge_termstat_add();

CREATE TRIGGER knowledge_chunk_termstat_delete AFTER DELETE ON knowledge_chunk
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION knowledge_termstat_subtract();

CREATE TRIGGER knowledge_chunk_termstat_update AFTER UPDATE ON knowledge_chunk
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION knowledge_termstat_replace();

INSERT INTO knowledge_termstat (dataset_id, language, lexeme, df)
SELECT dataset_id, language, lexeme, count(*) FROM (
    SELECT c.dataset_id, c.language, t.lexeme
    FROM knowledge_chunk c CROSS JOIN LATERAL unnest(c.search_vector) AS t
    UNION ALL
    SELECT c.dataset_id, c.language, '' FROM knowledge_chunk c
) terms
GROUP BY dataset_id, language, lexeme;
"""

DROP_FUNCTIONS = """
DROP TRIGGER IF EXISTS knowledge_chunk_termstat_insert ON knowledge_chunk;
DROP TRIGGER IF EXISTS knowledge_chunk_termstat_delete ON knowledge_chunk;
DROP TRIGGER IF EXISTS knowledge_chunk_termstat_update ON knowledge_chunk;
DROP FUNCTION IF EXISTS knowledge_termstat_add();
DROP FUNCTION IF EXISTS knowledge_termstat_subtract();
DROP FUNCTION IF EXISTS knowledge_termstat_replace();
DROP FUNCTION IF EXISTS knowledge_termstat_lock(uuid[]);
"""


class Migration(migrations.Migration):

    dependencies = [
        ("knowledge", "0007_chunk_injection_suspected"),
    ]

    operations = [
        migrations.CreateModel(
            name="TermStat",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "dataset",
                        "language",
                        "lexeme",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("language", knowledge.models.RegConfigField(max_length=63)),
                ("lexeme", models.TextField()),
                ("df", models.IntegerField()),
                (
                    "dataset",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="knowledge.dataset",
                    ),
                ),
            ],
        ),
        migrations.RunSQL(FUNCTIONS, DROP_FUNCTIONS),
    ]
