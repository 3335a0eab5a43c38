"""Developer machine: `make run` and `manage.py` default to this module.

Only environment defaults differ from production; anything set in the environment still wins.
A ``.env`` file in the checkout (``cp .env.example .env``; ``ENV_FILE`` names another) is read
first, under the real environment: a variable set in both keeps the environment's value
(``chatbot_site.envfile``).
The production settings read no file (containers take theirs from compose's ``env_file``).
"""

import os

from chatbot_site.envfile import EnvFileError, default_path, load

try:
    load(default_path())
except EnvFileError as exc:
    # The file and line, not a traceback through Django's settings import.
    raise SystemExit(f"error: {exc}") from None

os.environ.setdefault("DEBUG", "true")
# Empty (``SECRET_KEY=``, as .env.example has it before it is filled in) is unset here.
DEV_SECRET_KEY = "dev-only-insecure-key-never-use-in-production-0123456789"  # noqa: S105
if not os.environ.get("SECRET_KEY", "").strip():
    os.environ["SECRET_KEY"] = DEV_SECRET_KEY
os.environ.setdefault("LOG_FORMAT", "console")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")

from chatbot_site.settings.base import *  # noqa: E402, F403

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 (WhiteNoise warns without it)
