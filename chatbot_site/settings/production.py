"""Production: everything from the environment, HTTPS hardening on, no embedded servers.

Deploy behind a TLS-terminating proxy (docker/nginx.conf) that sets X-Forwarded-Proto.
"""

import os

from django.core.exceptions import ImproperlyConfigured

for _name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"):
    if not os.environ.get(_name):
        raise ImproperlyConfigured(f"{_name} must be set in production")

from chatbot_site.settings.base import *  # noqa: E402,F403
from chatbot_site.settings.base import env  # noqa: E402

DEBUG = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", default=True)
# Health checks from the orchestrator come over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^v1/health$"]
SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_HTTPONLY = True  # the admin posts the token from the form, never reads the cookie
