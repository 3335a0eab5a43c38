"""ASGI entry point, served by daphne (`daphne chatbot_site.asgi:application`)."""

import os

from django.core.asgi import get_asgi_application

from chatbot_site.servers import prepare_server

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings.production")

prepare_server()
application = get_asgi_application()
