"""The admin site: staff sign in with username, password and a TOTP code (django-otp).

- No admin page is served to a session without a verified TOTP device (``has_permission``).
- A staff user without a confirmed device who gives the right password is signed in *unverified*
  and sent to the enrolment page: a QR code and the secret of a new device, which counts only
  once one of its codes has been typed back. Signing out ends any session, that one included.
- A code is spent when used (django-otp keeps the last time step), so it cannot be replayed.
- Failed attempts are counted in Redis per user and client IP (and per IP): past
  ``STAFF_LOGIN_FAILURES`` the pair is locked out for ``STAFF_LOCKOUT_SECONDS``, whether the
  password or the code was wrong, and the answer does not say which.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import qrcode
import qrcode.image.svg
import structlog
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import authenticate
from django.contrib.auth import login as auth_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django_otp import login as otp_login
from redis.exceptions import RedisError

from chatbot_site.redis import get_redis
from chatbot_site.staff_admin import StaffModelAdmin
from tenants.api_base import client_ip
from tenants.staff import (
    totp_device_confirm,
    totp_device_confirmed,
    totp_device_pending,
    totp_secret,
)

log = structlog.get_logger(__name__)

FAILED = "Please enter the correct username, password and authenticator code of a staff account."


class LoginThrottle:
    """Counts failed sign-ins per (user, IP) and per IP, in Redis, with a fixed lockout.

    With Redis down it counts nothing and locks nobody out (logged as an error), as the API's
    rate limits do: sign-in still needs the password and a TOTP code, and it was a 500."""

    def __init__(self, username: str, ip: str | None) -> None:
        user = hashlib.sha256(username.casefold().encode()).hexdigest()[:32]
        self.keys = (f"staff-login:{user}:{ip or '-'}", f"staff-login-ip:{ip or '-'}")
        self.limits = (settings.STAFF_LOGIN_FAILURES, settings.STAFF_LOGIN_FAILURES * 10)

    def locked_for(self) -> int:
        """Seconds left of a lockout, or 0."""
        try:
            redis = get_redis()
            for key, limit in zip(self.keys, self.limits, strict=True):
                if int(redis.get(key) or 0) >= limit:
                    return max(int(redis.ttl(key)), 1)
        except RedisError as exc:
            log.error("staff_login_throttle_unavailable", error=type(exc).__name__)
        return 0

    def failed(self) -> None:
        try:
            with get_redis().pipeline() as pipe:
                for key in self.keys:
                    pipe.incr(key)
                    pipe.expire(key, settings.STAFF_LOCKOUT_SECONDS)
                pipe.execute()
        except RedisError as exc:
            log.error("staff_login_throttle_unavailable", error=type(exc).__name__)

    def succeeded(self) -> None:
        try:
            get_redis().delete(self.keys[0])
        except RedisError as exc:
            log.error("staff_login_throttle_unavailable", error=type(exc).__name__)


class LoginForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(strip=False, widget=forms.PasswordInput)
    otp_token = forms.CharField(
        label="Authenticator code",
        required=False,
        max_length=8,
        help_text="Leave empty the first time: you will set up your authenticator next.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


class CodeForm(forms.Form):
    otp_token = forms.CharField(
        label="Authenticator code",
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


def _next_url(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target and allowed else default


def _is_staff(user: Any) -> bool:
    return bool(user is not None and user.is_active and user.is_staff)


def qr_svg(data: str) -> str:
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return image.to_string(encoding="unicode")


class StaffAdminSite(admin.AdminSite):
    site_header = "Chatbot service administration"
    site_title = "Chatbot admin"
    index_title = "Tenants, bots and knowledge"
    enable_nav_sidebar = True
    site_url = None  # the service has no public site to link to

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return _is_staff(user) and bool(getattr(user, "is_verified", lambda: False)())

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        """Every admin of the site is a StaffModelAdmin, Django's own (users, groups, TOTP
        devices) included: what it adds (actions on malformed ids, ...) holds everywhere."""
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, StaffModelAdmin):
            admin_class = type(
                admin_class.__name__,
                (StaffModelAdmin, admin_class),
                {"__module__": admin_class.__module__, "__doc__": admin_class.__doc__},
            )
        super().register(model_or_iterable, admin_class, **options)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        # Signing out is open to every session, an enrolling one (signed in, no verified device
        # yet) included: behind ``admin_view`` it was sent to the index and kept, and the secret
        # on the enrolment page still led to full access. (LogoutView takes only a POST, with
        # its CSRF token, and is never cached.)
        own = [
            path("enroll/", self.enroll, name="enroll"),
            path("logout/", self.logout, name="logout"),
        ]
        return [*own, *(url for url in super().get_urls() if getattr(url, "name", "") != "logout")]

    @method_decorator(sensitive_post_parameters("password", "otp_token"))
    @method_decorator(csrf_protect)
    @method_decorator(never_cache)
    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        index = reverse("admin:index", current_app=self.name)
        if request.method == "GET" and self.has_permission(request):
            return HttpResponseRedirect(_next_url(request, index))
        form = LoginForm(request.POST or None)
        error = ""
        if request.method == "POST" and form.is_valid():
            response = self._sign_in(request, form.cleaned_data, index)
            if isinstance(response, HttpResponse):
                return response
            error = response
        elif request.method == "POST":
            error = FAILED
        context = {
            **self.each_context(request),
            "title": "Sign in",
            "form": form,
            "error": error,
            "next": _next_url(request, index),
            **(extra_context or {}),
        }
        return render(request, "staff/login.html", context, status=400 if error else 200)

    def _sign_in(self, request: HttpRequest, data: dict[str, str], index: str) -> Any:
        username, token = data["username"], data["otp_token"].strip()
        throttle = LoginThrottle(username, client_ip(request))
        if locked := throttle.locked_for():
            log.warning("staff_login_locked_out", username=username, seconds=locked)
            return f"Too many failed attempts. Try again in {math.ceil(locked / 60)} minutes."
        user = authenticate(request, username=username, password=data["password"])
        if user is None or not _is_staff(user):
            throttle.failed()
            log.warning("staff_login_failed", username=username, reason="credentials")
            return FAILED
        device = totp_device_confirmed(user)
        if device is None:
            # Right password, no device yet: signed in unverified, which opens only enrolment.
            auth_login(request, user)
            log.info("staff_login_enrolment", user_id=user.pk)
            enroll = reverse("admin:enroll", current_app=self.name)
            return HttpResponseRedirect(f"{enroll}?next={_next_url(request, index)}")
        if not token or not device.verify_token(token):
            throttle.failed()
            log.warning("staff_login_failed", username=username, reason="otp")
            return FAILED
        throttle.succeeded()
        auth_login(request, user)
        otp_login(request, device)
        log.info("staff_login", user_id=user.pk)
        return HttpResponseRedirect(_next_url(request, index))

    @method_decorator(sensitive_post_parameters("otp_token"))
    @method_decorator(csrf_protect)
    @method_decorator(never_cache)
    def enroll(self, request: HttpRequest) -> HttpResponse:
        index = reverse("admin:index", current_app=self.name)
        login = reverse("admin:login", current_app=self.name)
        user = request.user
        if self.has_permission(request):
            return HttpResponseRedirect(index)
        if not _is_staff(user) or totp_device_confirmed(user) is not None:  # type: ignore[arg-type]
            # Not signed in, or has a device already: a second one needs the first one's code.
            return HttpResponseRedirect(login)
        device = totp_device_pending(user)  # type: ignore[arg-type]
        form = CodeForm(request.POST or None)
        error = ""
        if request.method == "POST":
            throttle = LoginThrottle(user.get_username(), client_ip(request))
            if locked := throttle.locked_for():
                error = f"Too many failed attempts. Try again in {math.ceil(locked / 60)} minutes."
            elif form.is_valid() and totp_device_confirm(device, form.cleaned_data["otp_token"]):
                throttle.succeeded()
                otp_login(request, device)
                return HttpResponseRedirect(_next_url(request, index))
            else:
                throttle.failed()
                error = "That code is not right. Check the time on your device and try again."
        context = {
            **self.each_context(request),
            "title": "Set up your authenticator",
            "form": form,
            "error": error,
            "qr_svg": qr_svg(device.config_url),
            "secret": totp_secret(device),
            "otpauth_uri": device.config_url,
            "next": _next_url(request, index),
        }
        return render(request, "staff/enroll.html", context, status=400 if error else 200)
