"""What an API key reaches: ``bots.reach``'s rule, with datasets, documents and the audit log.

A key limited to some bots reads the datasets its bots search and their documents, and changes
them only while no other bot searches them; it reads the audit entries about what it reaches
(its bots, their conversations, the scopes, datasets and documents they use, the keys it
manages), not the tenant's others: those named other bots, their system prompts among them."""

from __future__ import annotations

from typing import Any

from django.db.models import CharField, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from bots.models import Bot
from bots.reach import Reach as BotReach
from knowledge.models import BotDataset, Dataset, Document
from tenants.models import ActorType, AuditLog


def _ids_as_text(rows: QuerySet[Any]) -> QuerySet[Any]:
    """The rows' ids as the audit log's ``target_id`` holds them (text)."""
    return rows.annotate(id_text=Cast("pk", CharField())).values("id_text")


class Reach(BotReach):
    def datasets(self) -> QuerySet[Dataset]:
        datasets = Dataset.objects.for_tenant(self.tenant)
        if (bot_ids := self.bot_ids) is None:
            return datasets
        links = BotDataset.objects.for_tenant(self.tenant).filter(bot_id__in=bot_ids)
        return datasets.filter(pk__in=links.values("dataset_id"))

    def documents(self) -> QuerySet[Document]:
        documents = Document.objects.for_tenant(self.tenant)
        if self.bot_ids is None:
            return documents
        return documents.filter(dataset_id__in=self.datasets().values("pk"))

    def check_dataset_unshared(self, dataset_id: object) -> None:
        """The dataset (a document's, to add, reingest or delete one) is searched by this key's
        bots only, or ``403``."""
        self.check_unshared(
            Dataset,
            dataset_id,
            Bot.objects.for_tenant(self.tenant).filter(
                pk__in=BotDataset.objects.for_tenant(self.tenant)
                .filter(dataset_id=dataset_id)
                .values("bot_id")
            ),
        )

    def audit_entries(self) -> QuerySet[AuditLog]:
        """The entries about what the key reaches, and those of its own writes (a dataset it
        deleted is no longer reached). A deleted conversation's entry names its bot, a
        document's entries their dataset (``changes``); older ones name neither, and nothing
        left names them for certain once the object is gone: those stay out."""
        entries = AuditLog.objects.for_tenant(self.tenant)
        if (bot_ids := self.bot_ids) is None:
            return entries
        bots = [str(pk) for pk in bot_ids]
        datasets = _ids_as_text(self.datasets())
        entries = entries.annotate(
            changed_bot_id=KeyTextTransform("bot_id", "changes"),
            changed_dataset_id=KeyTextTransform("dataset_id", "changes"),
        )
        return entries.filter(
            Q(actor_type=ActorType.API_KEY, actor_id=str(self.api_key.pk))
            | Q(target_type="bot", target_id__in=bots)
            | Q(target_type="conversation", changed_bot_id__in=bots)
            | Q(target_type="apikey", target_id__in=_ids_as_text(self.keys()))
            | Q(target_type="scope", target_id__in=_ids_as_text(self.scopes()))
            | Q(target_type="dataset", target_id__in=datasets)
            | Q(target_type="document", target_id__in=_ids_as_text(self.documents()))
            | Q(target_type="document", changed_dataset_id__in=datasets)
        )
