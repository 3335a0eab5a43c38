from django.urls import path

from conversations import apis
from conversations.chat_api import ChatView
from conversations.retrieve_api import RetrieveApi

urlpatterns = [
    path("chat", ChatView.as_view(), name="chat"),
    path("retrieve", RetrieveApi.as_view(), name="retrieve"),
    path("conversations", apis.ConversationListApi.as_view(), name="conversations"),
    path(
        "conversations/<str:conversation_id>",
        apis.ConversationDetailApi.as_view(),
        name="conversation-detail",
    ),
    path("usage", apis.UsageApi.as_view(), name="usage"),
]
