"""Writes for datasets and bot ↔ dataset links. (Ingestion services arrive with issue 4.)"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction

from bots.models import Bot
from chatbot_site.errors import Conflict
from knowledge.models import BotDataset, Dataset
from tenants.models import Tenant
from tenants.services import Actor, audit_record, full_clean_or_raise


@transaction.atomic
def dataset_create(*, tenant: Tenant, actor: Actor, name: str, **fields: Any) -> Dataset:
    dataset = Dataset(tenant=tenant, name=name, **fields)
    full_clean_or_raise(dataset, exclude=["tenant"], validate_unique=False)
    try:
        with transaction.atomic():
            dataset.save()
    except IntegrityError as exc:
        raise Conflict(f"A dataset named {name!r} already exists.") from exc
    audit_record(
        tenant=tenant,
        actor=actor,
        action="dataset.create",
        target=dataset,
        changes={"name": name, **fields},
    )
    return dataset


@transaction.atomic
def bot_datasets_set(
    *, tenant: Tenant, actor: Actor, bot: Bot, datasets: Iterable[Dataset]
) -> list[Dataset]:
    """Make ``datasets`` exactly the ones ``bot`` searches."""
    wanted = {d.pk: d for d in datasets}
    if bot.tenant_id != tenant.pk or any(d.tenant_id != tenant.pk for d in wanted.values()):
        raise ValueError("bot and datasets must belong to the tenant")
    links = BotDataset.objects.for_tenant(tenant).filter(bot=bot)
    links.exclude(dataset_id__in=wanted).delete()
    existing = set(links.values_list("dataset_id", flat=True))
    BotDataset.all_tenants.bulk_create(
        [
            BotDataset(tenant=tenant, bot=bot, dataset=d)
            for pk, d in wanted.items()
            if pk not in existing
        ]
    )
    audit_record(
        tenant=tenant,
        actor=actor,
        action="bot.datasets_set",
        target=bot,
        changes={"dataset_ids": sorted(str(pk) for pk in wanted)},
    )
    return list(wanted.values())
