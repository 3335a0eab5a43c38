from django.conf import settings
from django.contrib import admin
from django.urls import path

from chatbot_site.health import HealthApi

urlpatterns = [
    path("v1/health", HealthApi.as_view(), name="health"),
    path(settings.ADMIN_URL, admin.site.urls),
]

handler400 = "chatbot_site.errors.handler400"
handler403 = "chatbot_site.errors.handler403"
handler404 = "chatbot_site.errors.handler404"
handler500 = "chatbot_site.errors.handler500"
