"""WSGI entry point, for servers without ASGI (streaming then holds a worker per stream)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings.production")

application = get_wsgi_application()
