from django.urls import path

from conversations import apis

urlpatterns = [
    path("conversations", apis.ConversationListApi.as_view(), name="conversations"),
    path(
        "conversations/<str:conversation_id>",
        apis.ConversationDetailApi.as_view(),
        name="conversation-detail",
    ),
    path("usage", apis.UsageApi.as_view(), name="usage"),
]
