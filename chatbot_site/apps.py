from django.apps import AppConfig


class ChatbotSiteConfig(AppConfig):
    name = "chatbot_site"
    verbose_name = "Chatbot service"
