"""A checkout's ``.env`` for the dev settings, ``make run`` and ``make worker``.

README "Settings" sends a newcomer to ``.env.example``, which says to copy it to ``.env``: the
dev settings (``manage.py``, the worker and API of ``make run``) read that file, and so do the
shell lines of ``make run`` and ``make worker`` (``HOST``, ``PORT``, ``DATA_DIR``,
``API_PROCESSES`` ...: ``python chatbot_site/envfile.py --shell``, run as a file, since the
package's ``__init__`` loads Celery, 0.4 s of CPU, and this module needs the standard library
only). A variable set in the real environment is never overridden. The production settings read no file: containers get their environment
from compose's ``env_file``.

The syntax is the part of compose's ``env_file`` a ``.env`` needs: ``NAME=value`` lines,
``export NAME=value`` too, blank lines and ``#`` comments; a value unquoted (stripped, a
`` #`` after whitespace starts a comment), in single quotes (as written) or in double quotes
(``\\"``, ``\\\\``, ``\\n``, ``\\t``, ``\\$`` read as escapes). No ``${VAR}`` expansion. Any
other line stops the process with the file and line number (python-dotenv, in the dev
requirements only, warns and skips such a line: a setting silently not set).
``ENV_FILE`` names another file (``ENV_FILE=/path/to/staging.env make run``); neither it nor
``DJANGO_SETTINGS_MODULE`` is taken from the file: they decide which file is read, and whether.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import MutableMapping
from pathlib import Path

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NOT_FROM_FILE = frozenset({"DJANGO_SETTINGS_MODULE", "ENV_FILE"})
CHECKOUT = Path(__file__).resolve().parent.parent
ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "$": "$"}


class EnvFileError(ValueError):
    """A line of an env file that is not ``NAME=value``; the message names the file and line."""


def _double_quoted(body: str, where: str) -> tuple[str, str]:
    """The value of a double-quoted string whose opening quote was just read, and the rest."""
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == '"':
            return "".join(out), body[i + 1 :]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    raise EnvFileError(f"{where}: the double quote is not closed")


def parse(text: str, *, path: str = ".env") -> dict[str, str]:
    """The variables an env file sets, in order; ``EnvFileError`` for a malformed line."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{path}:{number}"
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].lstrip()
        name, equals, rest = line.partition("=")
        name = name.strip()
        if not equals:
            raise EnvFileError(f"{where}: expected NAME=value, got {raw.strip()[:60]!r}")
        if not NAME.fullmatch(name):
            raise EnvFileError(f"{where}: {name[:60]!r} is not a variable name")
        rest = rest.strip()
        if rest.startswith("'"):
            value, closed, after = rest[1:].partition("'")
            if not closed:
                raise EnvFileError(f"{where}: the single quote is not closed")
        elif rest.startswith('"'):
            value, after = _double_quoted(rest[1:], where)
        else:
            value = re.split(r"\s#", rest, maxsplit=1)[0].rstrip()
            after = ""
        after = after.strip()
        if after and not after.startswith("#"):
            raise EnvFileError(f"{where}: unexpected text after the quoted value of {name}")
        values[name] = value
    return values


def read(path: Path) -> dict[str, str]:
    """The variables of the file at ``path``; none if there is no such file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as exc:
        raise EnvFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse(text, path=str(path))


def missing_from(
    values: dict[str, str], environ: MutableMapping[str, str] = os.environ
) -> dict[str, str]:
    """What of ``values`` the environment does not set already (it wins)."""
    return {
        name: value
        for name, value in values.items()
        if name not in environ and name not in NOT_FROM_FILE
    }


def default_path(environ: MutableMapping[str, str] = os.environ) -> Path:
    """``ENV_FILE`` if set, else the checkout's ``.env``."""
    return Path(environ.get("ENV_FILE") or CHECKOUT / ".env")


def load(path: Path, environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set in ``environ`` the file's variables it does not set already; what was set."""
    added = missing_from(read(path), environ)
    environ.update(added)
    return added


def main(argv: list[str]) -> int:
    """``python chatbot_site/envfile.py --shell``: ``export NAME=value`` lines (shell-quoted)
    for the variables of ``default_path()`` the environment does not set, for ``eval``."""
    if argv != ["--shell"]:
        print("usage: python chatbot_site/envfile.py --shell", file=sys.stderr)
        return 2
    try:
        added = missing_from(read(default_path()))
    except EnvFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, value in added.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
