"""Staff users for admin tests: a user with a confirmed TOTP device, codes, a signed-in client."""

from __future__ import annotations

import time
from typing import Any

from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from tenants.models import Tenant
from tenants.staff import staff_create

PASSWORD = "correct horse battery staple 42"


def code(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """The device's code now (or a later time step's: still inside the tolerance window)."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def make_staff(
    tenant: Tenant, username: str = "alice", *, superuser: bool = False
) -> tuple[Any, TOTPDevice]:
    return staff_create(username=username, password=PASSWORD, tenant=tenant, superuser=superuser)


def sign_in(client: Client, user: Any, device: TOTPDevice, **extra: Any) -> Any:
    return client.post(
        "/admin/login/",
        {"username": user.username, "password": PASSWORD, "otp_token": code(device)},
        **extra,
    )


def staff_client(tenant: Tenant, username: str = "alice", *, superuser: bool = False) -> Client:
    user, device = make_staff(tenant, username, superuser=superuser)
    client = Client()
    response = sign_in(client, user, device)
    assert response.status_code == 302, response.content[:500]
    return client


def change_form_data(response: Any, **overrides: Any) -> dict[str, Any]:
    """What the browser posts back from an admin change page left as it is (inlines unchanged:
    none of their forms), with ``overrides``; a value of ``None`` leaves the field out."""
    form = response.context["adminform"].form
    data: dict[str, Any] = {}
    for name in form.fields:
        value = form[name].value()
        if value is None or value is False:
            continue
        data[name] = list(value) if isinstance(value, list | tuple) else value
    for inline in response.context["inline_admin_formsets"]:
        prefix = inline.formset.prefix
        data.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0,
                     f"{prefix}-MIN_NUM_FORMS": 0, f"{prefix}-MAX_NUM_FORMS": 0})  # fmt: skip
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}
