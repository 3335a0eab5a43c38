from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ChatbotSiteConfig(AppConfig):
    default = True

    name = "chatbot_site"
    verbose_name = "Chatbot service"

    def ready(self) -> None:
        from django.conf import settings

        from chatbot_site import checks  # noqa: F401  (registers the middleware check)
        from chatbot_site.pgconnection import FailureLog

        FailureLog.summary_seconds = settings.DB_OUTAGE_LOG_SECONDS


class StaffAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin whose default site lets in only staff with a verified TOTP device."""

    default = False  # chatbot_site's own config stays this module's default
    default_site = "chatbot_site.staff_site.StaffAdminSite"
