"""Deployment checks: the adapted middleware (``chatbot_site.middleware``) and the JWT key.

Django's ``security.W001``-``W003`` look for its own middleware by dotted path, so they cannot
see the subclasses this project installs in their place; the settings silence those three and
this check asks the same question by class: is each of them, or a subclass, installed?"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

# Django's middleware, the check of Django's that looks for it, and what is lost without it.
REQUIRED = (
    ("django.middleware.security.SecurityMiddleware", "security.W001",
     "HSTS, nosniff, the referrer and cross-origin opener policies and the SSL redirect"),
    ("django.middleware.clickjacking.XFrameOptionsMiddleware", "security.W002",
     "the X-Frame-Options header"),
    ("django.middleware.csrf.CsrfViewMiddleware", "security.W003",
     "CSRF protection of the staff admin's forms"),
)  # fmt: skip


def _installed(path: str) -> bool:
    wanted = import_string(path)
    for entry in settings.MIDDLEWARE:
        try:
            cls = import_string(entry)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, wanted):
            return True
    return False


@checks.register(checks.Tags.security, deploy=True)
def middleware_installed(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return [
        checks.Warning(
            f"No {path} (nor a subclass, such as chatbot_site.middleware's) in MIDDLEWARE: "
            f"{lost} will be missing.",
            id=f"chatbot_site.{django_check.split('.')[1]}",
        )
        for path, django_check, lost in REQUIRED
        if not _installed(path)
    ]


# RFC 7518 (3.2): an HS256 key of at least 256 bits. A shorter one can be guessed offline from
# any one token the service issued, and then every token forged.
MIN_JWT_KEY_BYTES = 32


@checks.register(checks.Tags.security, deploy=True)
def jwt_key_strength(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    current = settings.SIMPLE_JWT["SIGNING_KEY"]
    keys = {"The JWT signing key (JWT_SIGNING_KEY, else SECRET_KEY)": current}
    for i, key in enumerate(settings.JWT_SIGNING_KEY_FALLBACKS):
        keys[f"JWT_SIGNING_KEY_FALLBACKS[{i}]"] = key
    return [
        checks.Warning(
            f"{name} is {size} bytes: HS256 needs at least {MIN_JWT_KEY_BYTES}, or a token's "
            "key can be guessed offline and tokens forged.",
            id="chatbot_site.W010",
        )
        for name, key in keys.items()
        if (size := len(str(key).encode())) < MIN_JWT_KEY_BYTES
    ]
