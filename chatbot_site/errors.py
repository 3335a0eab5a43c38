"""One error envelope for every layer.

``{"error": {"code", "message", "details", "request_id"}}`` — rendered for domain errors
(:class:`ApplicationError`), DRF exceptions, Django's 400/403/404/500 handlers, CSRF failures,
oversized bodies and, through :class:`chatbot_site.middleware.ErrorEnvelopeMiddleware`, any
bare error response that reaches the client from under ``/v1``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import structlog
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views import csrf
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from chatbot_site.pgconnection import outage

log = structlog.get_logger(__name__)

STATUS_CODES: dict[int, tuple[str, str]] = {
    400: ("invalid_request", "The request is invalid."),
    401: ("authentication_failed", "Authentication failed."),
    403: ("permission_denied", "You do not have permission to do this."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    406: ("invalid_request", "The requested representation is not available."),
    409: ("conflict", "The request conflicts with the current state."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Unsupported media type."),
    429: ("rate_limited", "Too many requests."),
    500: ("internal_error", "Internal server error."),
    502: ("upstream_error", "An upstream provider failed."),
    503: ("service_unavailable", "The service is unavailable."),
}


class ApplicationError(Exception):
    """A domain error with a contract code. Raise it (or a subclass) from services."""

    code = "invalid_request"
    status = 400
    default_message = "The request is invalid."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.message = message or self.default_message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)


class ValidationFailed(ApplicationError):
    code = "validation_error"
    default_message = "Some fields are invalid."


class AuthenticationFailed(ApplicationError):
    code = "authentication_failed"
    status = 401
    default_message = "Authentication failed."


class PermissionDenied(ApplicationError):
    code = "permission_denied"
    status = 403
    default_message = "You do not have permission to do this."


class NotFound(ApplicationError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class Conflict(ApplicationError):
    code = "conflict"
    status = 409
    default_message = "The request conflicts with the current state."


class PayloadTooLarge(ApplicationError):
    code = "payload_too_large"
    status = 413
    default_message = "The request body is too large."


class UnsupportedMediaType(ApplicationError):
    code = "unsupported_media_type"
    status = 415
    default_message = "Unsupported media type."


class RateLimited(ApplicationError):
    code = "rate_limited"
    status = 429
    default_message = "Too many requests."


class QuotaExceeded(ApplicationError):
    code = "quota_exceeded"
    status = 429
    default_message = "The monthly token quota is used up."


class UpstreamError(ApplicationError):
    code = "upstream_error"
    status = 502
    default_message = "An upstream provider failed."


class ServiceUnavailable(ApplicationError):
    code = "service_unavailable"
    status = 503
    default_message = "The service is unavailable."


def request_id_of(request: Any) -> str | None:
    return getattr(request, "request_id", None) or structlog.contextvars.get_contextvars().get(
        "request_id"
    )


def error_body(
    code: str, message: str, *, details: dict[str, Any] | None = None, request_id: str | None
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details or {},
            "request_id": request_id,
        }
    }


def error_response(
    request: HttpRequest | None,
    status: int,
    *,
    code: str | None = None,
    message: str | None = None,
    details: dict[str, Any] | None = None,
) -> JsonResponse:
    default_code, default_message = STATUS_CODES.get(status, STATUS_CODES[500])
    body = error_body(
        code or default_code,
        message or default_message,
        details=details,
        request_id=request_id_of(request),
    )
    return JsonResponse(body, status=status)


def _flatten_validation(detail: Any) -> dict[str, Any]:
    """DRF's ValidationError detail → ``{field: [messages]}`` (nested paths joined with '.')."""
    if isinstance(detail, list):
        return {"non_field_errors": [str(item) for item in detail]}
    out: dict[str, Any] = {}
    for field, value in detail.items():
        if isinstance(value, dict):
            for sub, messages in _flatten_validation(value).items():
                # A nested serializer's own errors belong to the field itself.
                out[field if sub == "non_field_errors" else f"{field}.{sub}"] = messages
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for index, item in enumerate(value):
                for sub, messages in _flatten_validation(item).items():
                    out[f"{field}.{index}.{sub}"] = messages
        else:
            out[str(field)] = [
                str(item) for item in (value if isinstance(value, list) else [value])
            ]
    return out


def _pgcode(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (57014: a statement cancelled by its timeout)."""
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) if cause is not None else None


DATABASE_UNAVAILABLE = "The database is unavailable or too slow; try again shortly."
UNSAFE_REQUEST = "The request was rejected as unsafe."


def _log_database_unavailable(exc: BaseException) -> None:
    """The database went away, the pool had no connection in time, or a statement outlived
    DB_STATEMENT_TIMEOUT_SECONDS: the client may try again. The log names which (the error's
    own text may quote the statement, so it stays out of the answer). While the process knows
    the database is not answering, the request is counted in the outage's own lines instead
    (``database_outage_*``: :class:`chatbot_site.pgconnection.Outage`)."""
    if outage.absorbs():
        return
    cause = exc.__cause__
    log.error(
        "database_unavailable",
        error=type(exc).__name__,
        cause=type(cause).__name__ if cause is not None else None,  # DatabaseNoAnswer, PoolTimeout
        pgcode=_pgcode(exc),
    )


def database_unavailable(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """A ``503`` with ``Retry-After`` for a view outside DRF (the staff admin): the envelope for
    clients that ask for no page, a short page for browsers."""
    _log_database_unavailable(exc)
    if wants_json(request):
        response: HttpResponse = error_response(request, 503, message=DATABASE_UNAVAILABLE)
    else:
        response = HttpResponse(
            f"<!doctype html><title>Service unavailable</title><h1>Service unavailable</h1>"
            f"<p>{DATABASE_UNAVAILABLE}</p>",
            status=503,
        )
    response["Retry-After"] = "5"
    return response


_Response = TypeVar("_Response", bound=HttpResponseBase)


def mark_logged(response: _Response) -> _Response:
    """Django logs every 5xx response once more on ``django.request`` ("Bad Gateway:
    /v1/chat", ERROR, naming neither cause nor tenant): a response whose cause our code logged
    is marked as Django marks the ones it logged itself, so that a failure is one ERROR line."""
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _log_server_error(exc: Exception, status: int, code: str, message: str) -> None:
    cause = exc.__cause__
    log.error(
        "request_failed",
        status=status,
        code=code,
        error=type(exc).__name__,
        message=message,
        cause=type(cause).__name__ if cause is not None else None,
    )


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: every exception raised in a DRF view ends here."""
    request = context.get("request")
    headers: dict[str, str] = {}
    details: dict[str, Any] = {}

    if isinstance(exc, ApplicationError):
        status, code, message, details = exc.status, exc.code, exc.message, exc.details
        headers.update(exc.headers)
    elif isinstance(exc, drf.ValidationError):
        status, code = 400, "validation_error"
        message = "Some fields are invalid."
        details = _flatten_validation(exc.detail)
    elif isinstance(exc, drf.ParseError):
        status, code, message = 400, "invalid_request", f"Malformed request body: {exc.detail}"
    elif isinstance(exc, drf.UnsupportedMediaType):
        status, code, message = 415, "unsupported_media_type", str(exc.detail)
    elif isinstance(exc, drf.MethodNotAllowed):
        status, code, message = 405, "method_not_allowed", str(exc.detail)
    elif isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        status, code, message = 401, "authentication_failed", str(exc.detail)
    elif isinstance(exc, drf.Throttled):
        status, code, message = 429, "rate_limited", "Too many requests."
    elif isinstance(exc, drf.APIException):
        status = exc.status_code
        code = STATUS_CODES.get(status, STATUS_CODES[500])[0]
        message = str(exc.detail) if isinstance(exc.detail, str) else STATUS_CODES[status][1]
    elif isinstance(exc, Http404):
        status, code, message = 404, "not_found", "Not found."
    elif isinstance(exc, DjangoPermissionDenied):
        status, code, message = 403, "permission_denied", STATUS_CODES[403][1]
    elif isinstance(exc, RequestDataTooBig):
        status, code, message = 413, "payload_too_large", STATUS_CODES[413][1]
    elif isinstance(exc, SuspiciousOperation):
        # Too many query or form fields, a bad Host ...: Django's 400, answered here. Left to
        # Django, DEBUG (make run) rendered its page for it, which read the query string again,
        # failed the same way and was a 500.
        log.warning("request_rejected", error=type(exc).__name__)
        status, code, message = 400, "invalid_request", UNSAFE_REQUEST
    elif isinstance(exc, DatabaseOperationalError):
        _log_database_unavailable(exc)
        status, code, message = 503, "service_unavailable", DATABASE_UNAVAILABLE
        headers["Retry-After"] = "5"
    else:
        return None  # unexpected: Django logs it and handler500 answers

    if isinstance(exc, drf.APIException):
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)
        if wait is not None:
            headers["Retry-After"] = str(int(wait) + 1)
    if status == 401 and "WWW-Authenticate" not in headers:
        headers["WWW-Authenticate"] = 'Bearer realm="api"'

    set_rollback()
    body = error_body(code, message, details=details, request_id=request_id_of(request))
    response = Response(body, status=status, headers=headers)
    if status >= 500:
        if not isinstance(exc, DatabaseOperationalError):  # logged above, as database_unavailable
            _log_server_error(exc, status, code, message)
        mark_logged(response)
    return response


# --- Django-level handlers (urls.py: handler400/403/404/500; settings: CSRF_FAILURE_VIEW) ----


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return error_response(request, 413)
    if isinstance(exception, SuspiciousOperation):
        return error_response(request, 400, message=UNSAFE_REQUEST)
    return error_response(request, 400)


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 403)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 404)


def handler500(request: HttpRequest) -> HttpResponse:
    return error_response(request, 500)


def wants_json(request: HttpRequest) -> bool:
    """API paths always; elsewhere unless a browser asks for a page."""
    return request.path.startswith("/v1") or "text/html" not in request.headers.get("Accept", "")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if wants_json(request):
        return error_response(request, 403, message="CSRF verification failed.")
    return csrf.csrf_failure(request, reason=reason)
