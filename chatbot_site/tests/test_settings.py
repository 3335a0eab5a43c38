"""Settings come from the environment; production refuses to start without its secrets and
passes Django's deployment checks. Each case runs in a fresh process, as a real start would: a
child forked from one interpreter that has imported only third-party libraries (Django,
django-environ, Kombu ...; tests.processes.ForkServer), so that each case imports the project's
settings and modules itself with its own environment, exits with its own status and writes its
own stderr, without paying for a new interpreter and Django's import each time (40 interpreters
took ~1 s each)."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings

from tests.processes import ROOT, ForkServer, database_url_of_current_connection

pytestmark = pytest.mark.django_db

PRINT_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({k: getattr(s, k) for k in "
    "['DEBUG','LLM_BACKEND','EMBEDDING_DIMENSIONS','ALLOWED_HOSTS','CORS_ALLOWED_ORIGINS',"
    "'LOG_FORMAT','SESSION_COOKIE_SECURE','VECTOR_INDEX_KIND','REDIS_URL']}))"
)


# What a start imports before the project's own code (nothing of chatbot_site, knowledge, bots
# ... and no settings): a child forked per case imports those itself (tests.processes.ForkServer).
THIRD_PARTY = [
    "django", "django.conf", "django.core.management", "django.urls", "environ", "kombu",
    "corsheaders.defaults", "psycopg", "rest_framework", "rest_framework_simplejwt", "celery",
    "celery.app",
]  # fmt: skip


def clean_environment() -> dict[str, str]:
    # The test settings module set defaults in this process's environment; a real start has none.
    inherited = {
        "DEBUG", "SECRET_KEY", "LLM_BACKEND", "EMBEDDING_BACKEND", "LOG_FORMAT", "LOG_LEVEL",
        "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
    }  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if k not in inherited}
    clean.pop("DJANGO_SETTINGS_MODULE", None)
    clean["PYTHONPATH"] = str(ROOT)
    # The dev settings read the checkout's .env (chatbot_site.envfile): never a developer's here.
    clean["ENV_FILE"] = os.devnull
    return clean


@pytest.fixture(scope="module")
def fork_server() -> Iterator[ForkServer]:
    server = ForkServer(THIRD_PARTY, clean_environment())
    yield server
    server.close()


@pytest.fixture
def start(fork_server: ForkServer) -> Callable[..., subprocess.CompletedProcess[str]]:
    def start(
        module: str, code: str = PRINT_SETTINGS, **env: str
    ) -> subprocess.CompletedProcess[str]:
        case_env = {**clean_environment(), "DJANGO_SETTINGS_MODULE": module, **env}
        return fork_server.run(code, case_env)

    return start


def test_a_forked_start_answers_as_a_fresh_interpreter(start):
    """The cases below run in children of one interpreter (``start``): one failing and one
    passing start give the same status, stdout and last stderr line as ``python -c`` would."""
    for module, env in [
        ("chatbot_site.settings.dev", {"PORT": "abc"}),
        ("chatbot_site.settings.dev", {"OPENAI_API_KEY": ""}),
    ]:
        fresh = subprocess.run(
            [sys.executable, "-c", PRINT_SETTINGS],
            cwd=ROOT,
            env={**clean_environment(), "DJANGO_SETTINGS_MODULE": module, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        forked = start(module, **env)
        assert forked.returncode == fresh.returncode
        assert forked.stdout == fresh.stdout
        assert forked.stderr.strip().splitlines()[-1:] == fresh.stderr.strip().splitlines()[-1:]


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": database_url_of_current_connection(),
        "REDIS_URL": settings.REDIS_URL.split("?")[0],
        "ALLOWED_HOSTS": "chat.example.com",
    }
    env.update(overrides)
    return env


def test_dev_settings_default_to_debug_and_offline_backends(start):
    result = start("chatbot_site.settings.dev", OPENAI_API_KEY="")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is True
    assert values["LLM_BACKEND"] == "extractive"
    assert values["EMBEDDING_DIMENSIONS"] == 384
    assert values["LOG_FORMAT"] == "console"


def test_environment_overrides_reach_settings(start):
    result = start(
        "chatbot_site.settings.dev",
        OPENAI_API_KEY="sk-test",
        EMBEDDING_DIMENSIONS="768",
        ALLOWED_HOSTS="a.example,b.example",
        CORS_ALLOWED_ORIGINS="https://app.example",
        VECTOR_INDEX_KIND="ivfflat",
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["LLM_BACKEND"] == "openai"  # default follows OPENAI_API_KEY
    assert values["EMBEDDING_DIMENSIONS"] == 768
    assert values["ALLOWED_HOSTS"] == ["a.example", "b.example"]
    assert values["CORS_ALLOWED_ORIGINS"] == ["https://app.example"]
    assert values["VECTOR_INDEX_KIND"] == "ivfflat"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LLM_BACKEND", "magic"),
        ("EMBEDDING_BACKEND", "cloud"),
        ("VECTOR_INDEX_KIND", "btree"),
        ("LOG_FORMAT", "xml"),
        ("EMBEDDING_DIMENSIONS", "4096"),
        ("RETRIEVAL_TEXT_RANK", "bm99"),
        ("SSE_PING_SECONDS", "0"),
        ("CHAT_WORKER_THREADS", "0"),
        ("LLM_HTTP_CLIENT", "requests"),
        # Not numbers: a ValueError about int() in a traceback before.
        ("PORT", "abc"),
        ("EMBEDDING_DIMENSIONS", "abc"),
        ("DB_POOL_MAX_SIZE", "x"),
        ("URL_FETCH_TOTAL_SECONDS", "soon"),
        # Not a boolean: read as false before (DEBUG=maybe, DB_POOL=yes-please).
        ("DEBUG", "maybe"),
        ("DB_POOL", "yes-please"),
        # Out of range: accepted before.
        ("LOG_LEVEL", "LOUD"),
        ("PORT", "70000"),
        ("INGEST_LEASE_SECONDS", "-5"),
        ("WORKER_HEARTBEAT_SECONDS", "0"),
        ("RETRIEVAL_TEXT_WEIGHT", "-1"),
        ("SSE_PING_SECONDS", "30"),  # API.md: a ping at least every 15 s; accepted before
        # Read by the worker only: a 500 on every question (EMBEDDING_THREADS=abc), or a queue
        # that never ran (a soft limit above the hard one: Celery refused every task).
        ("EMBEDDING_THREADS", "abc"),
        ("EMBEDDING_THREADS", "0"),
        ("INGEST_TASK_SOFT_SECONDS", "700"),
        ("CELERY_TASK_SOFT_TIME_LIMIT", "1000"),
        # Not an http(s) URL: accepted before, and every chat failed "could not be reached".
        ("OPENAI_BASE_URL", "localhost:11434/v1"),
        ("OPENAI_BASE_URL", "ftp://models.example/v1"),
        ("OPENAI_BASE_URL", "http://localhost:port/v1"),
    ],
)
def test_invalid_setting_fails_at_start_naming_the_variable(start, name, value):
    result = start("chatbot_site.settings.dev", **{name: value})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]  # the message itself, not the traceback's code
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: ") and name in last, last


def test_a_production_boolean_that_is_not_one_stops_the_start(start):
    """SECURE_SSL_REDIRECT=perhaps turned the HTTPS redirect off without a word."""
    result = start(
        "chatbot_site.settings.production", **production_env(SECURE_SSL_REDIRECT="perhaps")
    )
    assert result.returncode != 0
    assert "SECURE_SSL_REDIRECT='perhaps': expected true or false" in result.stderr


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"])
def test_production_refuses_to_start_without_its_required_settings(start, missing):
    env = production_env()
    env[missing] = ""
    result = start("chatbot_site.settings.production", **env)
    assert result.returncode != 0
    assert f"{missing} must be set in production" in result.stderr


def test_production_defaults_are_safe(start):
    result = start("chatbot_site.settings.production", **production_env())
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["LOG_FORMAT"] == "json"


def test_production_passes_the_deployment_checks(start):
    result = start(
        "chatbot_site.settings.production",
        code="import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        **production_env(),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_the_deployment_checks_refuse_a_jwt_key_short_enough_to_guess(start):
    """HS256 wants a key of 256 bits: one of 8 characters is guessed offline from any token the
    service issued, and then every token can be forged. It was accepted without a word."""
    result = start(
        "chatbot_site.settings.production",
        code="import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        **production_env(JWT_SIGNING_KEY="s3cr3t!!"),
    )
    assert result.returncode != 0
    assert "chatbot_site.W010" in result.stderr + result.stdout


def test_the_deployment_checks_refuse_a_retired_jwt_key_short_enough_to_guess(start):
    """A retired key still verifies tokens (JWT_SIGNING_KEY_FALLBACKS): one short enough to
    guess forges tokens as well as the current one would."""
    result = start(
        "chatbot_site.settings.production",
        code="import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        **production_env(
            JWT_SIGNING_KEY=secrets.token_urlsafe(50), JWT_SIGNING_KEY_FALLBACKS="s3cr3t!!"
        ),
    )
    assert result.returncode != 0
    assert "JWT_SIGNING_KEY_FALLBACKS[0]" in result.stderr + result.stdout


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_jwt_signing_key_means_the_secret_key(start, value):
    """``JWT_SIGNING_KEY=`` (the .env.example line, uncommented) was an empty HS256 key: every
    token exchange and every request carrying a JWT was a 500 (PyJWT: "HMAC key must not be
    empty"). Empty is unset, as for the other variables: the key is SECRET_KEY."""
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "from rest_framework_simplejwt.tokens import AccessToken; "
        "token = AccessToken(); token['key_id'] = 'k'; AccessToken(str(token)); "
        "print(s.SIMPLE_JWT['SIGNING_KEY'] == s.SECRET_KEY)"
    )
    result = start(
        "chatbot_site.settings.production", code, **production_env(JWT_SIGNING_KEY=value)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True"


def test_redis_url_database_number_is_applied(monkeypatch):
    from chatbot_site.settings.base import redis_urls

    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379")
    assert redis_urls(3) == ("redis://cache.internal:6379/3", "redis://cache.internal:6379/3")
    monkeypatch.setenv("REDIS_URL", "redis://:pw@cache.internal:6379/7")
    assert redis_urls(3)[0] == "redis://:pw@cache.internal:6379/7"  # explicit /N wins
    monkeypatch.setenv("REDIS_URL", "unix:///run/redis.sock")
    assert redis_urls(2) == (
        "unix:///run/redis.sock?db=2",
        "redis+socket:///run/redis.sock?virtual_host=2",
    )


def test_every_setting_read_from_the_environment_is_in_the_readme():
    """API.md: the settings are "all documented in the README with defaults". Nine that the
    settings read (REDIS_SOCKET_TIMEOUT, the Celery time limits, RETRIEVAL_TEXT_RANK ...) were
    in no row of its Settings table."""
    settings_dir = ROOT / "chatbot_site" / "settings"
    source = "\n".join(path.read_text() for path in sorted(settings_dir.glob("*.py")))
    read = set(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]*)"', source))
    readme = (ROOT / "README.md").read_text()
    table = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in table.splitlines() if line.startswith("| `")]
    names = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", "".join(name for name, _ in rows)))
    assert len(read) > 80
    assert sorted(read - names) == []
    # ... with its default: two rows said only "see docs/...", where no number was given.
    assert [name for name, default in rows if default.strip().startswith("see ")] == []


PRINT_ISOLATION = (
    "import django, json, os; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'REDIS_DB': s.REDIS_DB, 'REDIS_URL': s.REDIS_URL, "
    "'MEDIA_ROOT': str(s.MEDIA_ROOT), 'env': os.environ['REDIS_DB']}))"
)


def test_each_xdist_worker_has_its_own_redis_database_and_media_root(start):
    """`make test` runs the suite in pytest-xdist workers, which inherit the controller's
    environment (REDIS_DB=15, set by these settings when it imported them). Each worker flushes
    its Redis database before every test and runs Celery workers on its queues: gw0, gw1 and gw2
    must each have their own, and so must their uploaded files; a process a worker's test starts
    (both variables inherited) must land on its worker's."""

    def isolation(**env: str) -> dict[str, object]:
        result = start("chatbot_site.settings.test", PRINT_ISOLATION, **env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    serial = isolation(REDIS_DB="15", PYTEST_XDIST_WORKER="")
    workers = [isolation(REDIS_DB="15", PYTEST_XDIST_WORKER=f"gw{n}") for n in range(3)]
    assert serial["REDIS_DB"] == 15
    assert len({w["REDIS_DB"] for w in workers} | {serial["REDIS_DB"]}) == 4
    assert len({w["REDIS_URL"] for w in workers}) == 3
    assert len({w["MEDIA_ROOT"] for w in workers} | {serial["MEDIA_ROOT"]}) == 4
    assert all(w["env"] == str(w["REDIS_DB"]) for w in workers)
    child = isolation(REDIS_DB=str(workers[1]["env"]), PYTEST_XDIST_WORKER="gw1")
    assert child == workers[1]
