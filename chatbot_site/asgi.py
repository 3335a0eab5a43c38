"""ASGI entry point, served by daphne (`daphne chatbot_site.asgi:application`); uvicorn and
granian serve the same application. Request bodies past the largest any route takes are refused
as they arrive, whatever the server (`chatbot_site.servers`)."""

import os

from chatbot_site.servers import RequestGuard, django_application, prepare_server

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings.production")

prepare_server()
application = RequestGuard(django_application())

# Turns a process killed before (its lease lapsed) left in the spool (conversations.late_store).
from conversations.late_store import drain_at_start  # noqa: E402 (Django is set up now)

drain_at_start()
