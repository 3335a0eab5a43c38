"""Project package: settings, URLs, ASGI/WSGI entry points, the Celery app and shared glue."""

from chatbot_site.celery import app as celery_app

__version__ = "0.1.0"
__all__ = ["__version__", "celery_app"]
