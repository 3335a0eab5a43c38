"""``content_filter`` joins the finish reasons the check constraint allows.

The constraint is replaced NOT VALID and validated in a second transaction: adding a CHECK
constraint validates every message while holding an ACCESS EXCLUSIVE lock on the table, which
stops every chat turn (reads included) for as long as the scan takes — seconds per few million
messages. VALIDATE CONSTRAINT takes only a SHARE UPDATE EXCLUSIVE lock: chats go on meanwhile.
Going back re-adds the old constraint validated, so it fails (check constraint violated) while
a message with ``content_filter`` is stored."""

from django.db import migrations, models

TABLE = "conversations_message"
NAME = "message_finish_reason_valid"
OLD = ["stop", "length", "cancelled", "error", "policy_blocked", "refusal"]
NEW = ["stop", "length", "content_filter", "cancelled", "error", "policy_blocked", "refusal"]


def check(reasons: list[str]) -> str:
    allowed = ", ".join(f"'{r}'" for r in reasons)
    return f"CHECK (finish_reason IS NULL OR finish_reason IN ({allowed}))"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("conversations", "0002_usage_daily_scoped_managers"),
        ("tenants", "0002_staff_membership"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    [
                        f"ALTER TABLE {TABLE} DROP CONSTRAINT {NAME}, "
                        f"ADD CONSTRAINT {NAME} {check(NEW)} NOT VALID"
                    ],
                    [f"ALTER TABLE {TABLE} DROP CONSTRAINT {NAME}, ADD CONSTRAINT {NAME} {check(OLD)}"],
                ),
                migrations.RunSQL(
                    [f"ALTER TABLE {TABLE} VALIDATE CONSTRAINT {NAME}"], migrations.RunSQL.noop
                ),
            ],
            state_operations=[
                migrations.RemoveConstraint(
                    model_name="message",
                    name="message_finish_reason_valid",
                ),
                migrations.AlterField(
                    model_name="message",
                    name="finish_reason",
                    field=models.CharField(blank=True, choices=[('stop', 'Stop'), ('length', 'Length'), ('content_filter', "Cut by the provider's content filter"), ('cancelled', 'Cancelled by the client'), ('error', 'Error'), ('policy_blocked', 'Blocked by policy'), ('refusal', 'Refusal')], max_length=20, null=True),
                ),
                migrations.AddConstraint(
                    model_name="message",
                    constraint=models.CheckConstraint(condition=models.Q(('finish_reason__isnull', True), ('finish_reason__in', ['stop', 'length', 'content_filter', 'cancelled', 'error', 'policy_blocked', 'refusal']), _connector='OR'), name='message_finish_reason_valid'),
                ),
            ],
        ),
    ]
