"""A checkout's ``.env`` (README "Settings"): read by the dev settings (``manage.py``, ``make
run``'s API and worker) and by ``make run``'s and ``make worker``'s shell lines, under the real
environment; a malformed line stops the start naming the file and line; production reads no
file. Each start is a real process (``manage.py``, ``python -c``, ``sh``) given a temporary file
through ``ENV_FILE``, never the checkout's own ``.env``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from chatbot_site.envfile import EnvFileError, load, parse
from chatbot_site.tests.test_settings import clean_environment
from tests.processes import ROOT, database_url_of_current_connection

pytestmark = pytest.mark.django_db

SHOW = (
    "from django.conf import settings as s; import json; "
    "print(json.dumps({k: getattr(s, k) for k in "
    "['PORT', 'ALLOWED_HOSTS', 'LOG_LEVEL', 'CORS_ALLOWED_ORIGINS', 'DEBUG', 'SECRET_KEY']}))"
)


def stores() -> dict[str, str]:
    # The test's own database and Redis: no start here may reach for the checkout's .data.
    return {
        "DATABASE_URL": database_url_of_current_connection(),
        "REDIS_URL": settings.REDIS_URL.split("?")[0],
    }


def manage_py(env_file: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Not what the test settings set in this process (CONN_MAX_AGE): a real start's
    # environment has none of it, and it would win over the file.
    inherited = {k: v for k, v in clean_environment().items() if k not in {"CONN_MAX_AGE"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**inherited, **stores(), "ENV_FILE": str(env_file), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def shown(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_manage_py_reads_the_env_file_under_the_real_environment(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# copied from .env.example\n"
        "\n"
        "PORT=9123\n"
        "export LOG_LEVEL='WARNING'\n"
        'CORS_ALLOWED_ORIGINS="https://a.example,https://b.example"  # two\n'
        "ALLOWED_HOSTS=from-the-file.example\n"
    )
    values = shown(manage_py(env_file, "shell", "-c", SHOW, ALLOWED_HOSTS="from-env.example"))
    assert values["PORT"] == 9123
    assert values["LOG_LEVEL"] == "WARNING"
    assert values["CORS_ALLOWED_ORIGINS"] == ["https://a.example", "https://b.example"]
    # The real environment wins over the file.
    assert values["ALLOWED_HOSTS"] == ["from-env.example"]


def test_a_malformed_line_stops_manage_py_naming_the_file_and_line(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=9123\n# fine\nLOG_LEVEL WARNING\n")
    result = manage_py(env_file, "shell", "-c", SHOW)
    assert result.returncode != 0
    assert f"{env_file}:3: expected NAME=value" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_example_copied_as_it_is_starts_the_dev_settings(tmp_path):
    """``cp .env.example .env`` and nothing else: its empty ``SECRET_KEY=`` is the dev key, and
    the README's curl lines to 127.0.0.1 are allowed hosts."""
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text())
    values = shown(manage_py(env_file, "shell", "-c", SHOW))
    assert values["SECRET_KEY"].startswith("dev-only")
    assert "127.0.0.1" in values["ALLOWED_HOSTS"]
    assert values["DEBUG"] is True


def test_production_settings_read_no_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("LOG_LEVEL=WARNING\nthis line is not a setting\n")
    code = f"import django; django.setup(); {SHOW}"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **clean_environment(),
            **stores(),
            "DJANGO_SETTINGS_MODULE": "chatbot_site.settings.production",
            "SECRET_KEY": "p" * 60,
            "ALLOWED_HOSTS": "chat.example.com",
            "ENV_FILE": str(env_file),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown(result)["LOG_LEVEL"] == "INFO"


def make_shell(env_file: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A shell line as ``make run`` and ``make worker`` begin theirs (the Makefile's ENVFILE)."""
    prefix = f'dotenv=$("{sys.executable}" chatbot_site/envfile.py --shell) || exit 1; '
    return subprocess.run(
        ["sh", "-c", prefix + 'eval "$dotenv"; ' + script],
        cwd=ROOT,
        env={**clean_environment(), "ENV_FILE": str(env_file), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_make_runs_shell_lines_take_the_file_under_the_environment(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "PORT=9124\nHOST=0.0.0.0\nDATA_DIR='/tmp/a dir/with $dollar'\nAPI_PROCESSES=2\n"
    )
    result = make_shell(env_file, 'echo "$HOST:$PORT|$DATA_DIR|$API_PROCESSES"', HOST="127.0.0.2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "127.0.0.2:9124|/tmp/a dir/with $dollar|2"

    env_file.write_text("PORT=9124\nPORT 9125\n")
    result = make_shell(env_file, "echo started")
    assert result.returncode == 1
    assert "started" not in result.stdout
    assert f"{env_file}:2: expected NAME=value" in result.stderr


def test_the_makefile_reads_the_env_file_for_run_and_worker():
    makefile = (ROOT / "Makefile").read_text()
    recipes = {
        name: makefile.split(f"\n{name}: ", 1)[1].split("\n\n", 1)[0] for name in ("run", "worker")
    }
    for name, recipe in recipes.items():
        assert "$(ENVFILE)" in recipe, name
    # No HOST or PORT default exported by make: it would hide the file's.
    assert "\nPORT " not in makefile and "export HOST" not in makefile


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1", {"A": "1"}),
        ("  A = spaced out  ", {"A": "spaced out"}),
        ("A=", {"A": ""}),
        ("A=x # a comment", {"A": "x"}),
        ("A=x#not-a-comment", {"A": "x#not-a-comment"}),
        ("A='kept # as $written\\n'", {"A": "kept # as $written\\n"}),
        ('A="line\\nnext \\"q\\" \\\\ \\$HOME" # c', {"A": 'line\nnext "q" \\ $HOME'}),
        ("export A=1\nexport\tB=2", {"A": "1", "B": "2"}),
        ("A=postgres://u:p@h:5432/db?x=1", {"A": "postgres://u:p@h:5432/db?x=1"}),
        ("A=1\nA=2", {"A": "2"}),
    ],
)
def test_parse_reads_what_compose_env_files_hold(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("A=1\nnot a setting", ".env:2: expected NAME=value"),
        ("1A=1", ".env:1: '1A' is not a variable name"),
        ("A B=1", ".env:1: 'A B' is not a variable name"),
        ("A='open", ".env:1: the single quote is not closed"),
        ('A="open', ".env:1: the double quote is not closed"),
        ("A='x' y", ".env:1: unexpected text after the quoted value of A"),
    ],
)
def test_parse_names_the_line_it_cannot_read(text, message):
    with pytest.raises(EnvFileError) as caught:
        parse(text)
    assert str(caught.value).startswith(message)


def test_load_sets_only_what_the_environment_does_not(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "A=file\nB=file\nDJANGO_SETTINGS_MODULE=chatbot_site.settings.production\nENV_FILE=x\n"
    )
    environ = {"A": "real"}
    assert load(env_file, environ) == {"B": "file"}
    assert environ == {"A": "real", "B": "file"}
    assert load(tmp_path / "missing", environ) == {}
    env_file.write_bytes("\ufeffC=1\n".encode())  # a BOM, as some editors write
    assert load(env_file, environ) == {"C": "1"}


def test_every_default_the_example_shows_uncommented_starts_the_dev_settings(tmp_path):
    """Each ``# NAME=value`` line of .env.example, uncommented, is a value the settings take:
    ``# CONN_MAX_AGE=60  (only with DB_POOL=false)`` was the value "60  (only with ...)"."""
    example = (ROOT / ".env.example").read_text()
    defaults = re.findall(r"^# ([A-Z][A-Z0-9_]*=.*)$", example, re.M)
    assert len(defaults) > 50
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(defaults) + "\n")
    # DB_POOL=false, so that CONN_MAX_AGE is read too.
    values = shown(manage_py(env_file, "shell", "-c", SHOW, DB_POOL="false"))
    assert values["PORT"] == 8000
