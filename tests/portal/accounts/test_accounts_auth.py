"""Token endpoint, login throttling, login page and the create_account command."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from portal.accounts.models import LoginFailure, Role, Site
from portal.accounts.services import create_account

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def coordinator():
    Site.objects.create(code="s1", name="S1")
    return create_account("coord", "long-password-1", Role.COORDINATOR, ["s1"])


def test_token_roundtrip_and_expiry(coordinator, settings):
    api = APIClient()
    resp = api.post("/api/auth/token/", {"username": "coord", "password": "long-password-1"}, format="json")
    assert resp.status_code == 200, resp.content
    key = resp.json()["token"]
    assert resp.json()["role"] == "coordinator"
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    me = api.get("/api/auth/me/")
    assert me.status_code == 200 and me.json()["sites"] == ["s1"]
    Token.objects.filter(key=key).update(created=Token.objects.get(key=key).created - settings.CONTEXTRT_TOKEN_TTL - timedelta(seconds=5))
    expired = api.get("/api/auth/me/")
    assert expired.status_code in (401, 403) and "expired" in expired.content.decode()


def test_me_requires_auth(db):
    assert APIClient().get("/api/auth/me/").status_code in (401, 403)


def test_token_lockout_after_failures(coordinator, settings):
    settings.CONTEXTRT_LOGIN_MAX_FAILURES = 3
    api = APIClient()
    for _ in range(3):
        assert api.post("/api/auth/token/", {"username": "coord", "password": "wrong"}, format="json").status_code == 401
    locked = api.post("/api/auth/token/", {"username": "coord", "password": "long-password-1"}, format="json")
    assert locked.status_code == 429 and "Retry-After" in locked.headers
    # Another address is not locked (lock is per username + address).
    other = APIClient(REMOTE_ADDR="10.9.9.9")
    assert other.post("/api/auth/token/", {"username": "coord", "password": "long-password-1"}, format="json").status_code == 200
    assert LoginFailure.objects.filter(address="10.9.9.9").count() == 0


def test_browser_login_throttled_with_csrf(coordinator, settings):
    settings.CONTEXTRT_LOGIN_MAX_FAILURES = 2
    client = Client(enforce_csrf_checks=True)
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b"csrfmiddlewaretoken" in page.content
    token = page.cookies["csrftoken"].value
    # Without the CSRF token the POST is refused.
    assert client.post("/accounts/login/", {"username": "coord", "password": "x"}, HTTP_X_CSRFTOKEN="").status_code == 403
    for _ in range(2):
        bad = client.post("/accounts/login/", {"username": "coord", "password": "x", "csrfmiddlewaretoken": token})
        assert bad.status_code == 200 and b"Please enter a correct" in bad.content
    locked = client.post("/accounts/login/", {"username": "coord", "password": "long-password-1", "csrfmiddlewaretoken": token})
    assert b"Too many failed logins" in locked.content
    LoginFailure.objects.all().delete()
    ok = client.post("/accounts/login/", {"username": "coord", "password": "long-password-1", "csrfmiddlewaretoken": token})
    assert ok.status_code == 302


def test_create_account_command(db):
    call_command("create_account", "dr-who", "--role", "coordinator", "--site", "int", "--create-sites", "--password", "pw-long-enough")
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="dr-who")
    assert user.profile.role == "coordinator" and list(user.profile.sites.values_list("code", flat=True)) == ["int"]
    assert user.check_password("pw-long-enough")
