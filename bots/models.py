"""Bots and the scopes (guardrail policies) they follow."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from tenants.models import TenantOwned

PII_ENTITIES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "SSN", "IP_ADDRESS")
DEFAULT_REFUSAL = "Sorry, I can only help with questions about the topics I was set up for."


def all_pii_entities() -> list[str]:
    return list(PII_ENTITIES)


class Scope(TenantOwned):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    allowed_topics = ArrayField(models.CharField(max_length=200), default=list, blank=True)
    blocked_topics = ArrayField(models.CharField(max_length=200), default=list, blank=True)
    refusal_message = models.TextField(default=DEFAULT_REFUSAL)
    min_relevance = models.FloatField(default=0.3)
    answer_without_context = models.BooleanField(default=False)
    pii_entities = ArrayField(models.CharField(max_length=20), default=all_pii_entities, blank=True)
    # Only chunks carrying one of these tags are searched; empty = all.
    tags = ArrayField(models.CharField(max_length=100), default=list, blank=True)

    class Meta(TenantOwned.Meta):
        ordering = ["name"]
        constraints = [
            *TenantOwned.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "name"], name="scope_name_unique_per_tenant"),
            models.CheckConstraint(
                condition=Q(min_relevance__gte=0) & Q(min_relevance__lte=1),
                name="scope_min_relevance_0_1",
            ),
            models.CheckConstraint(
                condition=Q(pii_entities__contained_by=list(PII_ENTITIES)),
                name="scope_pii_entities_known",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Bot(TenantOwned):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    system_prompt = models.TextField(blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="Blank: the CHAT_MODEL setting.")
    temperature = models.FloatField(default=0.2)
    max_output_tokens = models.PositiveIntegerField(default=1024)
    scope = models.ForeignKey(
        Scope, on_delete=models.PROTECT, null=True, blank=True, related_name="bots"
    )
    top_k = models.PositiveSmallIntegerField(default=5)
    is_active = models.BooleanField(default=True)

    class Meta(TenantOwned.Meta):
        ordering = ["name"]
        constraints = [
            *TenantOwned.Meta.constraints,
            models.UniqueConstraint(fields=["tenant", "name"], name="bot_name_unique_per_tenant"),
            models.CheckConstraint(
                condition=Q(temperature__gte=0) & Q(temperature__lte=2), name="bot_temperature_0_2"
            ),
            models.CheckConstraint(
                condition=Q(max_output_tokens__gte=1) & Q(max_output_tokens__lte=32768),
                name="bot_max_output_tokens_range",
            ),
            models.CheckConstraint(
                condition=Q(top_k__gte=1) & Q(top_k__lte=100), name="bot_top_k_1_100"
            ),
        ]

    def __str__(self) -> str:
        return self.name
