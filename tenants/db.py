"""Migration operations for guarantees Django's schema editor cannot express.

:class:`TenantForeignKey` (a :class:`CompositeForeignKey`) adds a composite foreign key ``(tenant_id, <field>_id)`` →
``target(tenant_id, id)`` beside Django's own single-column one, so the database itself refuses
a row of one tenant that points at another tenant's row (a bot using another tenant's scope, a
chunk in another tenant's dataset) — whatever code path writes it.

:class:`AppendOnlyTable` installs a trigger that rejects UPDATE and DELETE.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


class CompositeForeignKey(migrations.operations.base.Operation):
    """``FOREIGN KEY (<fields>) REFERENCES <to> (<to_fields>)``, beside Django's own."""

    reversible = True
    reduces_to_sql = True

    def __init__(
        self, model_name: str, fields: list[str], to: str, to_fields: list[str], name: str
    ) -> None:
        self.model_name = model_name
        self.fields = fields
        self.to = to  # "app_label.ModelName"
        self.to_fields = to_fields
        self.name = name

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass  # the database constraint only; Django's model state is unchanged

    def constraint_name(self, table: str) -> str:
        return self.name

    def _sql_parts(self, app_label: str, state: Any) -> tuple[str, list[str], str, list[str]]:
        model = state.apps.get_model(app_label, self.model_name)
        target = state.apps.get_model(self.to)
        columns = [model._meta.get_field(f).column for f in self.fields]
        target_columns = [target._meta.get_field(f).column for f in self.to_fields]
        return model._meta.db_table, columns, target._meta.db_table, target_columns

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        table, columns, target, target_columns = self._sql_parts(app_label, to_state)
        qn = schema_editor.quote_name
        schema_editor.execute(
            f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(self.constraint_name(table))} "
            f"FOREIGN KEY ({', '.join(map(qn, columns))}) "
            f"REFERENCES {qn(target)} ({', '.join(map(qn, target_columns))}) "
            "DEFERRABLE INITIALLY DEFERRED"
        )

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        table = from_state.apps.get_model(app_label, self.model_name)._meta.db_table
        qn = schema_editor.quote_name
        name = qn(self.constraint_name(table))
        schema_editor.execute(f"ALTER TABLE {qn(table)} DROP CONSTRAINT IF EXISTS {name}")

    def describe(self) -> str:
        return f"Composite foreign key {self.model_name}({', '.join(self.fields)}) -> {self.to}"


class TenantForeignKey(CompositeForeignKey):
    """``(tenant_id, <field>_id) → target(tenant_id, id)``: never a row of another tenant."""

    def __init__(self, model_name: str, field: str, to: str) -> None:
        super().__init__(model_name, ["tenant", field], to, ["tenant", "id"], name="")
        self.field = field

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return self.__class__.__name__, [self.model_name, self.field], {"to": self.to}

    def constraint_name(self, table: str) -> str:
        return f"{table}_{self.field}_id_tenant_fk"[:63]


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
