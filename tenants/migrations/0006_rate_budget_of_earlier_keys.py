"""Keys a bot-limited key created before 0005 share its rate limit too.

0005 gave keys created from then on the limit of the bot-limited key that created them
(``ApiKey.rate_budget``); the ones created before kept limits of their own, each a multiple of
the creator's budget. The creator of each is in its ``api_key.create`` audit entry: a key
created by a key that has ``bot_ids`` shares that key's budget (the one it shares itself, if
any), taken in the order they were created, as ``bots.reach.Reach.rate_budget_of_new_key``
does. A key whose creator was unlimited, or is gone, is left alone. Backwards: nothing (the
column goes with 0005)."""

from django.db import migrations


def share_earlier_keys(apps, schema_editor):
    ApiKey = apps.get_model("tenants", "ApiKey")
    AuditLog = apps.get_model("tenants", "AuditLog")
    created = (
        AuditLog._default_manager.filter(action="api_key.create", actor_type="api_key")
        .order_by("created_at")
        .values_list("actor_id", "target_id")
    )
    budget_of: dict[str, str | None] = {}  # key id -> the key whose limit it shares
    limited: dict[str, bool] = {}
    for actor_id, target_id in created.iterator():
        if actor_id not in limited:
            actor = ApiKey._default_manager.filter(pk=actor_id).values("bot_ids", "rate_budget_id")
            row = actor.first()
            limited[actor_id] = bool(row and row["bot_ids"])
            if row:
                budget_of.setdefault(actor_id, row["rate_budget_id"] and str(row["rate_budget_id"]))
        if not limited[actor_id]:
            continue
        budget = budget_of.get(actor_id) or actor_id
        shared = ApiKey._default_manager.filter(pk=target_id, rate_budget__isnull=True).exclude(
            pk=budget
        )
        if shared.update(rate_budget_id=budget):
            budget_of[target_id] = budget


class Migration(migrations.Migration):
    dependencies = [("tenants", "0005_apikey_rate_budget")]

    operations = [migrations.RunPython(share_earlier_keys, migrations.RunPython.noop)]
