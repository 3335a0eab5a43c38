from django.urls import path

from knowledge import apis, audit_api

urlpatterns = [
    path("audit-logs", audit_api.AuditLogListApi.as_view(), name="audit-logs"),
    path("bots", apis.BotListCreateApi.as_view(), name="bots"),
    path("bots/<str:bot_id>", apis.BotDetailApi.as_view(), name="bot-detail"),
    path("datasets", apis.DatasetListCreateApi.as_view(), name="datasets"),
    path("datasets/<str:dataset_id>", apis.DatasetDetailApi.as_view(), name="dataset-detail"),
    path(
        "datasets/<str:dataset_id>/documents",
        apis.DatasetDocumentListApi.as_view(),
        name="dataset-documents",
    ),
    path("documents/<str:document_id>", apis.DocumentDetailApi.as_view(), name="document-detail"),
    path(
        "documents/<str:document_id>/reingest",
        apis.DocumentReingestApi.as_view(),
        name="document-reingest",
    ),
]
