from django.urls import path

from tenants import apis

urlpatterns = [
    path("auth/token", apis.AuthTokenApi.as_view(), name="auth-token"),
]
