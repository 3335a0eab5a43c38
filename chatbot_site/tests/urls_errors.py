"""The real URLs plus views that fail on purpose, one per error source."""

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import path
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chatbot_site.errors import NotFound, QuotaExceeded
from chatbot_site.urls import urlpatterns as real_urlpatterns


class EchoApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=5)
        count = serializers.IntegerField(min_value=1)

    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(serializer.validated_data)


class DomainErrorApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        if request.query_params.get("kind") == "quota":
            raise QuotaExceeded()
        raise NotFound("Bot not found.")


class PrivateApi(APIView):
    """Uses the project's DRF defaults: authentication required."""

    def get(self, request: Request) -> Response:
        return Response({})


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("SELECT secret FROM somewhere")  # must never reach the client


def database_gone(request: HttpRequest) -> HttpResponse:
    """A page outside DRF (as the staff admin's are) whose query finds the database gone."""
    raise OperationalError("connection to server at 10.0.0.5 failed: SELECT secret")


def plain_405(request: HttpRequest) -> HttpResponse:
    return HttpResponseNotAllowed(["GET"])


def plain_429(request: HttpRequest) -> HttpResponse:
    """A refusal in text, with the headers a client needs and some that describe its body."""
    response = HttpResponse("slow down", status=429, content_type="text/plain")
    for name, value in {
        "Retry-After": "7",
        "RateLimit-Limit": "60",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "7",
        "Cache-Control": "no-store",
        "Content-Disposition": 'attachment; filename="slow.txt"',
        "Content-Language": "en",
    }.items():
        response[name] = value
    response.set_cookie("seen", "1")
    return response


class BoomApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        raise RuntimeError("password=hunter2")


urlpatterns = [  # before the real ones, whose /v1 ends with a catch-all 404
    path("v1/test/echo", EchoApi.as_view()),
    path("v1/test/domain", DomainErrorApi.as_view()),
    path("v1/test/private", PrivateApi.as_view()),
    path("v1/test/boom", boom),
    path("v1/test/boom-drf", BoomApi.as_view()),
    path("v1/test/plain-405", plain_405),
    path("v1/test/plain-429", plain_429),
    path("staff-test/database-gone", database_gone),
    *real_urlpatterns,
]

handler400 = "chatbot_site.errors.handler400"
handler403 = "chatbot_site.errors.handler403"
handler404 = "chatbot_site.errors.handler404"
handler500 = "chatbot_site.errors.handler500"
