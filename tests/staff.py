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
