"""The real URLs plus the floor: the same scope list without authentication or rate limit."""

from typing import Any

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView

from bots.apis import ScopeListCreateApi
from chatbot_site.urls import urlpatterns as real_urlpatterns
from tenants.models import Tenant


class OpenScopeListApi(ScopeListCreateApi):
    authentication_classes = []
    permission_classes = [AllowAny]
    tenant_slug = "bench"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        APIView.initial(self, request, *args, **kwargs)  # skips TenantApi's auth and rate limit
        self.tenant = Tenant.objects.get(slug=self.tenant_slug)


urlpatterns = [*real_urlpatterns, path("bench/scopes", OpenScopeListApi.as_view())]
