"""pytest: the real PostgreSQL (embedded unless DATABASE_URL) and real Redis, in their own
Redis database so a running dev server's queue is never touched."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-insecure-key-0123456789-abcdefghijklmnop")
os.environ.setdefault("LOG_FORMAT", "console")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# A pytest-xdist worker (PYTEST_XDIST_WORKER=gw0, gw1 ...; `make test` runs PYTEST_WORKERS of
# them) has a Redis database of its own, 14 for gw0, 13 for gw1 ... (15 stays a serial run's), as
# its test database is its own (pytest-django's test_<name>_gw0 ...): its flushes, queues and
# keys are never another's, nor those of a serial run of a few tests meanwhile.
# Set, not defaulted: the xdist controller imported these settings first (REDIS_DB=15) and its
# workers inherit its environment; the processes a worker's tests start inherit both variables
# and so compute the same database.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if XDIST_WORKER:
    os.environ["REDIS_DB"] = str(14 - int(XDIST_WORKER.removeprefix("gw")))
os.environ.setdefault("REDIS_DB", "15")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("LLM_BACKEND", "extractive")
os.environ.setdefault("EMBEDDING_BACKEND", "local")
# Connections of the async views' pool threads close after each call, as a request's do, so
# none outlives a test (the test database could not be dropped).
os.environ.setdefault("CONN_MAX_AGE", "0")

# (E402: the environment above is set before the base settings read it.)
from chatbot_site.settings.base import *  # noqa: F403, E402
from chatbot_site.settings.base import (  # noqa: E402
    DATA_DIR,
    DATABASES,
    STATIC_ROOT,
    add_server_option,
)

# Local HTTP servers stand in for the internet in the URL-ingestion tests that ask for it.
URL_FETCH_ALLOW_LOOPBACK = os.environ.get("URL_FETCH_ALLOW_LOOPBACK_FOR_TESTS") == "1"
# The test database's commits do not wait for their WAL to reach the disk: each is seen by every
# connection at once as before, and only a crash of the server could lose the last few (the test
# database is thrown away). Every test writes, on a disk the machine's other work shares.
add_server_option(DATABASES["default"], "-c synchronous_commit=off")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; tests only
# Each xdist worker stores its uploads apart: a sweep of orphan files (knowledge.storage_sweep)
# sees only files its own test database may refer to.
MEDIA_ROOT = DATA_DIR / (f"test-media-{XDIST_WORKER}" if XDIST_WORKER else "test-media")
WORKER_HEARTBEAT_MAX_AGE_SECONDS = 5.0
CELERY_WORKER_HEARTBEAT_SECONDS = 0.5
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns without it
