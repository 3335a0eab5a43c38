from django.urls import path

from conversations import apis
from conversations.chat_api import ChatView

urlpatterns = [
    path("chat", ChatView.as_view(), name="chat"),
    path("conversations", apis.ConversationListApi.as_view(), name="conversations"),
    path(
        "conversations/<str:conversation_id>",
        apis.ConversationDetailApi.as_view(),
        name="conversation-detail",
    ),
    path("usage", apis.UsageApi.as_view(), name="usage"),
]
