from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path

import chatbot_site.schema  # noqa: F401  (registers the auth scheme extension)
from chatbot_site.health import HealthApi
from chatbot_site.options import DocsView, SchemaView
from tenants.api_base import UnknownPathApi

v1: list[URLPattern | URLResolver] = [
    path("health", HealthApi.as_view(), name="health"),
    path("schema", SchemaView.as_view(), name="schema"),
    path("docs", DocsView.as_view(url_name="schema"), name="docs"),
    path("", include("tenants.urls")),
    path("", include("bots.urls")),
    path("", include("knowledge.urls")),
    path("", include("conversations.urls")),
    re_path(r"", UnknownPathApi.as_view()),  # last: a 404 that still checks a key's rate limit
]

urlpatterns = [
    path("v1", UnknownPathApi.as_view()),  # no slash appended: a 404 as any unknown API path
    path("v1/", include(v1)),
    path(settings.ADMIN_URL, admin.site.urls),
]

handler400 = "chatbot_site.errors.handler400"
handler403 = "chatbot_site.errors.handler403"
handler404 = "chatbot_site.errors.handler404"
handler500 = "chatbot_site.errors.handler500"
