from django.urls import path

from bots import apis

urlpatterns = [
    path("scopes", apis.ScopeListCreateApi.as_view(), name="scopes"),
    path("scopes/<str:scope_id>", apis.ScopeDetailApi.as_view(), name="scope-detail"),
    path("api-keys", apis.ApiKeyListCreateApi.as_view(), name="api-keys"),
    path("api-keys/<str:key_id>", apis.ApiKeyDetailApi.as_view(), name="api-key-detail"),
]
