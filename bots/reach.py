"""What an API key reaches inside its tenant: the one rule for keys limited to some bots.

A key without ``bot_ids`` reaches everything of its tenant. A key with ``bot_ids`` (an ``admin``
key: a ``chat`` key only chats, retrieves and reads its own conversations) reaches:

- its bots: it reads, changes and deletes them, and creates none (a new bot is not in its list);
- the scopes and datasets its bots use, and those datasets' documents: it reads them, and
  changes or deletes them (adds, reingests or deletes a dataset's documents) only while no bot
  outside its list uses them, else ``403 permission_denied`` (it can see them: its bots use
  them). The check holds until the change commits: a bot being given the object meanwhile
  (``chatbot_site.database.links_lock``) is waited for and seen. It creates no scope or
  dataset: no bot of its uses a new one, so it could not see it;
- keys limited to some of the same bots, itself included (another bot in a key's ``bot_ids``
  is "not found", as a missing one); a key it would create or change to reach every bot, or
  to outlive it (an expiry later than its own, or none),
  or to allow more requests a minute than it (its own limit raised among them), is
  ``403 permission_denied``; the keys it creates, or whose rate limit it changes, share its
  rate limit (their requests count against it as well as against their own), so that they do
  not multiply it;
- the conversations and usage of its bots (usage by key: the rows of the keys it manages
  only), and the audit entries about all of the above. Another key's id on them (a
  conversation's ``api_key_id``, an entry's actor) is shown only for a key it manages
  (:meth:`Reach.shown_key_id`), else ``null`` (the entry's actor: ``""``, no label or address).

Anything else of the tenant is ``404 not_found``, exactly as a missing object: a bot-limited key
learns nothing of the tenant's other bots (their system prompts were in the audit log), nor of
the datasets and scopes only they use.

The bots layer holds bots, scopes and keys; ``knowledge.reach`` adds datasets, documents and the
audit log (dependencies point one way)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

from django.db.models import Model, QuerySet

from bots.models import Bot, Scope
from chatbot_site.database import links_lock
from chatbot_site.errors import PermissionDenied
from tenants.models import ApiKey, Tenant

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Reach:
    tenant: Tenant
    api_key: ApiKey

    @property
    def bot_ids(self) -> list[uuid.UUID] | None:
        """The key's bots, or None: every bot of the tenant."""
        return list(self.api_key.bot_ids) or None

    def of_its_bots(self, rows: QuerySet[M], field: str = "bot_id") -> QuerySet[M]:
        """``rows`` (conversations, usage) of the key's bots only."""
        if (bot_ids := self.bot_ids) is None:
            return rows
        return rows.filter(**{f"{field}__in": bot_ids})

    def of_its_keys(self, rows: QuerySet[M], field: str = "api_key_id") -> QuerySet[M]:
        """``rows`` (usage) of the keys it manages only (:meth:`keys`): a bot-limited key saw
        the ids and figures of every key that used its bots, the tenant's unlimited ones too."""
        if self.bot_ids is None:
            return rows
        return rows.filter(**{f"{field}__in": self.keys().values("pk")})

    @cached_property
    def _managed_key_ids(self) -> frozenset[str]:
        return frozenset(str(pk) for pk in self.keys().values_list("pk", flat=True))

    def shown_key_id(self, key_id: object) -> str | None:
        """Another key's id as this key is shown it (a conversation's ``api_key_id``, an audit
        entry's actor): a key it manages (:meth:`keys`, itself among them), else ``None``. A
        bot-limited key read the ids of the tenant's other keys that chatted with or changed
        its bots, the unlimited ones too, and could tell them apart."""
        if key_id is None or key_id == "":
            return None
        if self.bot_ids is None or str(key_id) in self._managed_key_ids:
            return str(key_id)
        return None

    def bots(self) -> QuerySet[Bot]:
        return self.of_its_bots(Bot.objects.for_tenant(self.tenant), "pk")

    def scopes(self) -> QuerySet[Scope]:
        scopes = Scope.objects.for_tenant(self.tenant)
        if self.bot_ids is None:
            return scopes
        return scopes.filter(pk__in=self.bots().filter(scope__isnull=False).values("scope_id"))

    def keys(self) -> QuerySet[ApiKey]:
        keys = ApiKey.objects.for_tenant(self.tenant)
        if (bot_ids := self.bot_ids) is None:
            return keys
        return keys.filter(bot_ids__len__gt=0, bot_ids__contained_by=bot_ids)

    def check_may_create(self, kind: str) -> None:
        """A bot-limited key creates no bot, scope or dataset: none of its bots would use it."""
        if self.bot_ids is not None:
            raise PermissionDenied(
                f"This key is limited to some bots and cannot create {kind}: a key without "
                "bot_ids creates them."
            )

    def check_key_within(self, bot_ids: list[uuid.UUID]) -> None:
        """A key this key creates or changes reaches no more than it: limited to some of its
        bots (an empty list is every bot)."""
        own = self.bot_ids
        if own is not None and not (bot_ids and set(bot_ids) <= set(own)):
            raise PermissionDenied(
                "This key is limited to some bots: the keys it manages must be limited to some "
                "of them."
            )

    def check_key_expiry_within(self, expires_at: dt.datetime | None) -> None:
        """A key this key creates, or an expiry it sets (its own among them), ends no later
        than this key: else a bot-limited key that expires could outlive itself in another."""
        own = self.api_key.expires_at
        if self.bot_ids is None or own is None:
            return
        if expires_at is None or expires_at > own:
            stamp = own.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
            raise PermissionDenied(
                f"This key is limited to some bots and expires at {stamp}: the keys it manages "
                "must expire no later.",
                details={"expires_at": [f"Must be at most {stamp}."]},
            )

    def check_key_rate_within(self, rate_limit_per_minute: int | None) -> None:
        """A key this key creates, or a limit it sets (its own among them), allows no more
        requests a minute than this key (``None``: the tenant's default): else a bot-limited
        key raised its own limit, or made a key with a higher one, past what it was given."""
        if self.bot_ids is None:
            return
        default = self.tenant.default_rate_limit_per_minute
        own = self.api_key.rate_limit_per_minute or default
        if (rate_limit_per_minute or default) > own:
            raise PermissionDenied(
                f"This key is limited to some bots and to {own} requests a minute: the keys "
                "it manages, itself included, may allow no more.",
                details={
                    "rate_limit_per_minute": [
                        f"Must be at most {own}"
                        + (f" (null is the tenant's default, {default})." if default > own else ".")
                    ]
                },
            )

    def limited_key(self) -> ApiKey | None:
        """The key, if it is limited to some bots: the keys it creates, and the keys whose rate
        limit it sets, take from its budget (``tenants.services.api_key_update``). A limited
        key at 5 requests a minute made keys at 5 each, and had 5 more a minute with every one
        (``make run``, 2026-12-07)."""
        return None if self.bot_ids is None else self.api_key

    def check_unshared(self, model: type[Model], pk: object, used_by: QuerySet[Bot]) -> None:
        """``used_by``, the bots that use the object ``pk`` this key reaches, are all its own,
        or the object is shared with bots it does not manage: ``403``. Call in the transaction
        of the change: its links are locked until it ends (``links_lock``), so no bot is given
        the object between this check and the change (another key did, and the change went to
        an object another bot used)."""
        if (bot_ids := self.bot_ids) is None:
            return
        links_lock(model, [pk], shared=True)
        if used_by.exclude(pk__in=bot_ids).exists():
            raise PermissionDenied(
                f"The {model._meta.model_name} is also used by bots outside this key's bot_ids: "
                "a key that reaches them changes it."
            )

    def check_scope_unshared(self, scope: Scope) -> None:
        self.check_unshared(
            Scope, scope.pk, Bot.objects.for_tenant(self.tenant).filter(scope=scope)
        )
