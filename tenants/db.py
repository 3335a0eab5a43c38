"""Migration operations for guarantees Django's schema editor cannot express.

:class:`TenantForeignKey` adds a composite foreign key ``(tenant_id, <field>_id)`` →
``target(tenant_id, id)`` beside Django's own single-column one, so the database itself refuses
a row of one tenant that points at another tenant's row (a bot using another tenant's scope, a
chunk in another tenant's dataset) — whatever code path writes it.

:class:`AppendOnlyTable` installs a trigger that rejects UPDATE and DELETE.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


class TenantForeignKey(migrations.operations.base.Operation):
    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name: str, field: str, to: str) -> None:
        self.model_name = model_name
        self.field = field
        self.to = to  # "app_label.ModelName"

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass  # the database constraint only; Django's model state is unchanged

    def _names(self, app_label: str, from_state: Any) -> tuple[str, str, str, str]:
        model = from_state.apps.get_model(app_label, self.model_name)
        target = from_state.apps.get_model(self.to)
        column = model._meta.get_field(self.field).column
        name = f"{model._meta.db_table}_{column}_tenant_fk"[:63]
        return model._meta.db_table, column, target._meta.db_table, name

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        table, column, target, name = self._names(app_label, to_state)
        qn = schema_editor.quote_name
        schema_editor.execute(
            f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(name)} "
            f"FOREIGN KEY ({qn('tenant_id')}, {qn(column)}) "
            f"REFERENCES {qn(target)} ({qn('tenant_id')}, {qn('id')}) "
            "DEFERRABLE INITIALLY DEFERRED"
        )

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        table, _column, _target, name = self._names(app_label, from_state)
        qn = schema_editor.quote_name
        schema_editor.execute(f"ALTER TABLE {qn(table)} DROP CONSTRAINT IF EXISTS {qn(name)}")

    def describe(self) -> str:
        return f"Tenant-consistent foreign key {self.model_name}.{self.field} -> {self.to}"


class AppendOnlyTable(migrations.operations.base.Operation):
    reversible = True
    reduces_to_sql = True

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        table = to_state.apps.get_model(app_label, self.model_name)._meta.db_table
        function = f"{table}_append_only"
        schema_editor.execute(f"""
            CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION USING
                    MESSAGE = TG_TABLE_NAME || ' is append-only: ' || TG_OP || ' refused',
                    ERRCODE = 'insufficient_privilege';
            END $$;
            CREATE TRIGGER {table}_no_update_delete
                BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION {function}();
            """)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        table = from_state.apps.get_model(app_label, self.model_name)._meta.db_table
        schema_editor.execute(
            f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table};"
            f"DROP FUNCTION IF EXISTS {table}_append_only();"
        )

    def describe(self) -> str:
        return f"Make {self.model_name} append-only"
