"""``OPTIONS`` on every ``/v1`` path: ``200`` with no content and ``Allow``, after the credentials
where the path needs them (so a keyed request carries its ``RateLimit-*`` headers, and a
missing or bad key is the ``401`` it is on every other method).

DRF answers ``OPTIONS`` with its metadata (the view's class name, its renderers and parsers),
rendered by the view's first renderer: JSON on most paths, YAML on ``/v1/schema``, and a
``500`` on ``/v1/docs`` (its HTML renderer has no template for it); the async ``/v1/chat``
answered ``405``. Now every path answers alike: ``200`` and ``Content-Length: 0``, as RFC 9110
(9.3.7) has an ``OPTIONS`` answer without content say (a ``204`` must carry no
``Content-Length``, and Django's middleware adds one to every response). A CORS preflight (``OPTIONS`` with
``Access-Control-Request-Method``) never reaches a view: django-cors-headers answers it.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.request import Request
from rest_framework.views import APIView


def options_answer(allow: str) -> HttpResponse:
    """The answer to ``OPTIONS``: no content, the methods the path takes."""
    response = HttpResponse(status=200)
    del response["Content-Type"]
    response["Allow"] = allow
    return response


class AllowOptions(APIView):
    """The base of the DRF views: ``OPTIONS`` answers :func:`options_answer`, a plain Django
    response (DRF's would be rendered by the view's renderer: HTML on ``/v1/docs``)."""

    def options(  # type: ignore[override]  # a Django response, which DRF passes through
        self, request: Request, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        return options_answer(", ".join(self.allowed_methods))


class SchemaView(AllowOptions, SpectacularAPIView):
    pass


class DocsView(AllowOptions, SpectacularSwaggerView):
    pass
