"""Reads for tenants and keys."""

from __future__ import annotations

from chatbot_site.errors import NotFound
from tenants.models import Tenant


def tenant_get_by_slug(*, slug: str) -> Tenant:
    try:
        return Tenant.objects.get(slug=slug)
    except Tenant.DoesNotExist:
        raise NotFound(f"Tenant {slug!r} not found.") from None
