"""`manage.py fuzz_api` (make fuzz): a scratch tenant whose key the fuzzer cannot exhaust, and
the fuzzer's verdict as the command's."""

from __future__ import annotations

import shutil

import pytest
from django.core.management import CommandError, call_command

from tenants.models import ApiKey, Tenant

pytestmark = pytest.mark.django_db


def test_fuzzing_runs_as_a_new_tenant_and_fails_when_the_fuzzer_does():
    call_command("fuzz_api", url="http://127.0.0.1:1", schemathesis=shutil.which("true"))
    tenant = Tenant.objects.get(slug__startswith="fuzz-")
    key = ApiKey.objects.for_tenant(tenant).get()
    assert (key.role, key.rate_limit_per_minute) == ("admin", 1_000_000)

    call_command(
        "fuzz_api", url="http://127.0.0.1:1", schemathesis=shutil.which("true"), role="chat"
    )
    chat_key = ApiKey.objects.for_tenant(
        Tenant.objects.exclude(pk=tenant.pk).get(slug__startswith="fuzz-")
    ).get()
    assert chat_key.role == "chat"

    with pytest.raises(CommandError, match="found failures"):
        call_command("fuzz_api", url="http://127.0.0.1:1", schemathesis=shutil.which("false"))
    with pytest.raises(CommandError, match="make fuzz"):
        call_command("fuzz_api", url="http://127.0.0.1:1", schemathesis="/nonexistent/st")


def test_fuzzing_with_a_jwt_needs_the_server_to_exchange_the_key():
    with pytest.raises(CommandError, match="exchange the key for a JWT"):
        call_command("fuzz_api", url="http://127.0.0.1:1", jwt=True, schemathesis="true")
