from __future__ import annotations

import hashlib
import re

import pytest

from chatbot_site.errors import Conflict, ValidationFailed
from tenants.keys import key_matches, parse_key
from tenants.models import ApiKey, AuditLog, Role
from tenants.services import Actor, api_key_create, tenant_create
from tenants.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

KEY_FORMAT = re.compile(r"^cbk_[0-9a-f]{12}_[A-Za-z0-9_\-]{32,}$")


def test_new_key_has_contract_format_and_only_prefix_and_hash_are_stored():
    tenant = TenantFactory()
    key, plaintext = api_key_create(tenant=tenant, actor=Actor.system(), role=Role.CHAT, name="web")

    assert KEY_FORMAT.match(plaintext)
    secret = plaintext.split("_", 2)[2]
    stored = ApiKey.objects.for_tenant(tenant).values().get()
    assert stored["prefix"] == plaintext[4:16]
    assert stored["key_hash"] == hashlib.sha256(plaintext.encode()).hexdigest()
    assert not any(secret in str(value) for value in stored.values())
    assert key_matches(plaintext, key.key_hash)
    assert not key_matches(plaintext + "x", key.key_hash)


def test_two_keys_never_share_prefix_or_secret():
    tenant = TenantFactory()
    keys = [
        api_key_create(tenant=tenant, actor=Actor.system(), role=Role.ADMIN)[1] for _ in range(20)
    ]
    assert len({k[4:16] for k in keys}) == 20
    assert len(set(keys)) == 20


def test_a_keys_prefix_always_has_a_letter_so_log_lines_keep_it():
    """Twelve decimal digits (one prefix in 280) can be a Luhn-valid card number, and the log
    lines' PII masking wrote ``api_key_prefix=[CREDIT_CARD]`` (a full test run met one). 20,000
    prefixes drawn as before hold about 70 of them."""
    from chatbot_site.pii.data import mask_pii_processor
    from tenants.keys import generate_key

    prefixes = [generate_key().prefix for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9a-f]{12}", p) and not p.isdigit() for p in prefixes)
    logged = mask_pii_processor(None, "info", {"api_key_prefix": "590508615986"})
    assert logged["api_key_prefix"] == "[CREDIT_CARD]"  # what an all-digit prefix became


def test_key_creation_is_audited_without_the_secret():
    tenant = TenantFactory()
    key, plaintext = api_key_create(tenant=tenant, actor=Actor.system("cli"), role=Role.ADMIN)
    entry = AuditLog.objects.for_tenant(tenant).get(action="api_key.create")
    assert entry.target_id == str(key.id)
    assert entry.actor_label == "cli"
    assert plaintext not in str(entry.changes)
    assert "key_hash" not in entry.changes
    assert entry.changes["prefix"] == key.prefix


def test_unknown_role_is_a_validation_error():
    with pytest.raises(ValidationFailed) as excinfo:
        api_key_create(tenant=TenantFactory(), actor=Actor.system(), role="owner")
    assert "role" in excinfo.value.details


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "cbk_",
        "cbk_abc_def",
        "sk-123",
        "cbk_0123456789ab_short",
        "Bearer cbk_0123456789ab_" + "a" * 40,
    ],
)
def test_malformed_keys_are_rejected_before_any_lookup(candidate):
    assert parse_key(candidate) is None


def test_well_formed_key_yields_its_prefix():
    assert parse_key("cbk_0123456789ab_" + "A-_z" * 10) == "0123456789ab"


def test_duplicate_tenant_slug_is_a_conflict():
    tenant_create(slug="acme", actor=Actor.system())
    with pytest.raises(Conflict):
        tenant_create(slug="acme", actor=Actor.system())
