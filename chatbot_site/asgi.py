"""ASGI entry point, served by daphne (`daphne chatbot_site.asgi:application`)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings.production")

application = get_asgi_application()
