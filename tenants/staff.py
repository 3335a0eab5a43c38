"""Staff users: the people who run tenants from the admin, each with a TOTP device.

A staff user is a Django user with ``is_staff``, a :class:`~tenants.models.StaffMembership`
naming their tenant (superusers see every tenant) and a confirmed TOTP device (django-otp).
"""

from __future__ import annotations

import base64
from typing import Any

import structlog
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from chatbot_site.errors import Conflict, ValidationFailed
from tenants.models import StaffMembership, Tenant
from tenants.services import Actor, audit_record

log = structlog.get_logger(__name__)


def staff_tenant_of(user: Any) -> Tenant | None:
    """The tenant a signed-in staff user works for, or None (superusers: their home tenant).
    None too when that tenant is deactivated: its staff users then see nothing, as its keys and
    their JWTs fail (a deactivated tenant's staff still listed, created keys and uploaded
    documents that the workers ingested)."""
    if not getattr(user, "is_authenticated", False):
        return None
    membership = (
        StaffMembership.objects.select_related("tenant")
        .filter(user=user, tenant__is_active=True)
        .first()
    )
    return membership.tenant if membership is not None else None


def totp_secret(device: TOTPDevice) -> str:
    """The base32 secret an authenticator app takes when typed in by hand."""
    return base64.b32encode(device.bin_key).decode()


def totp_device_confirmed(user: AbstractBaseUser) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()


def totp_device_pending(user: AbstractBaseUser) -> TOTPDevice:
    """The unconfirmed device an enrolling user scans; the same one until it is confirmed."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
    return device


def totp_device_confirm(device: TOTPDevice, token: str) -> bool:
    """Confirm an enrolling device with one valid code. The code is spent: django-otp records
    the time step it belongs to, so it cannot be replayed at the next sign-in."""
    if not device.verify_token(token):
        return False
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    log.info("staff_totp_enrolled", user_id=device.user_id)
    return True


@transaction.atomic
def staff_create(
    *,
    username: str,
    password: str,
    tenant: Tenant,
    superuser: bool = False,
    actor: Actor | None = None,
) -> tuple[Any, TOTPDevice]:
    """A staff user with a confirmed TOTP device (for operators without a browser); returns the
    user and the device, whose ``config_url`` is the otpauth URI to load into an app. The
    membership is in the tenant's audit log, as one given in the admin."""
    user_model = get_user_model()
    if user_model._default_manager.filter(username=username).exists():
        raise Conflict(f"A user named {username!r} already exists.")
    user = user_model(username=username, is_staff=True, is_superuser=superuser, is_active=True)
    try:
        user.full_clean(exclude=["password"])
        validate_password(password, user)
    except DjangoValidationError as exc:
        details = (
            {k: [str(m) for e in v for m in e.messages] for k, v in exc.error_dict.items()}
            if hasattr(exc, "error_dict")
            else {"password": [str(m) for m in exc.messages]}
        )
        raise ValidationFailed(details=details) from exc
    user.set_password(password)
    user.save()
    membership = StaffMembership.objects.create(user=user, tenant=tenant)
    audit_record(
        tenant=tenant,
        actor=actor or Actor.system("staff_create"),
        action="staff_membership.create",
        target=membership,
        changes={"user": user.get_username()},
    )
    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    log.info("staff_created", user_id=user.pk, tenant_id=str(tenant.pk), superuser=superuser)
    return user, device
