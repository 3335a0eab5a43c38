"""Rotating SECRET_KEY (or JWT_SIGNING_KEY): what the old key signed — staff sessions, JWTs —
stays good while the old key is a fallback, and only until then; new ones are the new key's."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken

from tenants.authentication import issue_token
from tenants.tests.factories import ApiKeyFactory
from tests.processes import child_env, daphne_server
from tests.staff import staff_client
from tests.world import build_tenant

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def status(base: str, path: str, *, token: str = "", cookie: str = "") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {"Cookie": cookie}
    request = urllib.request.Request(f"{base}{path}", headers=headers)  # noqa: S310 (loopback)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 302 to the sign-in page is the answer, not a page to follow


def exchange(base: str, api_key: str) -> str:
    request = urllib.request.Request(  # noqa: S310 (loopback)
        f"{base}/v1/auth/token",
        data=json.dumps({"api_key": api_key}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return str(json.loads(response.read())["access_token"])


def test_a_rotated_secret_key_keeps_the_jwts_and_staff_sessions_it_signed(tmp_path):
    """A new SECRET_KEY signed every staff user out and failed every JWT an integrator held,
    at once: SECRET_KEY_FALLBACKS was not read, and JWTs had one key. Now the old key in
    SECRET_KEY_FALLBACKS keeps both good until they expire; a fresh token is the new key's."""
    side = build_tenant("rotate")
    old = settings.SECRET_KEY  # what this process signs with: the key before the rotation
    token, _ = issue_token(side.admin_key)
    session = f"sessionid={staff_client(side.tenant).cookies['sessionid'].value}"
    admin = f"/{settings.ADMIN_URL}"
    new = secrets.token_urlsafe(50)

    rotated = child_env(SECRET_KEY=new, SECRET_KEY_FALLBACKS=old)
    with daphne_server(rotated, tmp_path / "rotated.log") as base:
        assert status(base, "/v1/bots", token=token) == 200
        assert status(base, admin, cookie=session) == 200  # not a 302 to the sign-in page
        fresh = exchange(base, side.admin_key.plaintext)

    # Once the fallback is dropped, the old token and session end; the fresh token is the new key's.
    with daphne_server(child_env(SECRET_KEY=new), tmp_path / "new.log") as base:
        assert status(base, "/v1/bots", token=fresh) == 200
        assert status(base, "/v1/bots", token=token) == 401
        assert status(base, admin, cookie=session) == 302


def test_a_token_of_a_retired_jwt_signing_key_is_accepted_and_no_other(api_client):
    """JWT_SIGNING_KEY rotated on its own: its JWT_SIGNING_KEY_FALLBACKS verify what they
    signed; a key that is neither the current one nor retired is still a bad signature."""
    key = ApiKeyFactory()
    retired, stranger = secrets.token_urlsafe(40), secrets.token_urlsafe(40)

    def signed_with(signing_key: str) -> str:
        current = AccessToken(issue_token(key)[0])  # type: ignore[arg-type]  # our claims
        backend = TokenBackend("HS256", signing_key, "", api_settings.AUDIENCE, api_settings.ISSUER)
        return backend.encode(current.payload)

    with override_settings(JWT_SIGNING_KEY_FALLBACKS=[retired]):
        for signing_key, expected in ((retired, 200), (stranger, 401)):
            api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {signed_with(signing_key)}")
            assert api_client.get("/v1/conversations").status_code == expected
