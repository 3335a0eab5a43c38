"""What an API key reaches: ``bots.reach``'s rule, with datasets and documents.

A key limited to some bots reads the datasets its bots search and their documents, and changes
them only while no other bot searches them."""

from __future__ import annotations

from django.db.models import QuerySet

from bots.models import Bot
from bots.reach import Reach as BotReach
from knowledge.models import BotDataset, Dataset, Document


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
            "dataset",
            Bot.objects.for_tenant(self.tenant).filter(
                pk__in=BotDataset.objects.for_tenant(self.tenant)
                .filter(dataset_id=dataset_id)
                .values("bot_id")
            ),
        )
