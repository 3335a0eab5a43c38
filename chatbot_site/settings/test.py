"""pytest: the real PostgreSQL (embedded unless DATABASE_URL) and real Redis, in their own
Redis database so a running dev server's queue is never touched."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-insecure-key-0123456789-abcdefghijklmnop")
os.environ.setdefault("LOG_FORMAT", "console")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("REDIS_DB", "15")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("LLM_BACKEND", "extractive")
os.environ.setdefault("EMBEDDING_BACKEND", "local")
# Connections of the async views' pool threads close after each call, as a request's do, so
# none outlives a test (the test database could not be dropped).
os.environ.setdefault("CONN_MAX_AGE", "0")

from chatbot_site.settings.base import *  # noqa: F403
from chatbot_site.settings.base import DATA_DIR, DATABASES, STATIC_ROOT, add_server_option

# Local HTTP servers stand in for the internet in the URL-ingestion tests that ask for it.
URL_FETCH_ALLOW_LOOPBACK = os.environ.get("URL_FETCH_ALLOW_LOOPBACK_FOR_TESTS") == "1"
# The test database's commits do not wait for their WAL to reach the disk: each is seen by every
# connection at once as before, and only a crash of the server could lose the last few (the test
# database is thrown away). Every test writes, on a disk the machine's other work shares.
add_server_option(DATABASES["default"], "-c synchronous_commit=off")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; tests only
MEDIA_ROOT = DATA_DIR / "test-media"
WORKER_HEARTBEAT_MAX_AGE_SECONDS = 5.0
CELERY_WORKER_HEARTBEAT_SECONDS = 0.5
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns without it
