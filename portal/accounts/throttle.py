"""Login throttling: lock a username+address pair after repeated failures within a window."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import authenticate
from django.utils import timezone

from portal.accounts.models import LoginFailure


class LoginLocked(Exception):
    def __init__(self, retry_after_seconds: int):
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"too many failed logins; try again in {retry_after_seconds} s")


def client_address(request) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy sets it.
    return (request.META.get("REMOTE_ADDR") or "unknown")[:64]


def _window_start():
    return timezone.now() - timedelta(seconds=settings.CONTEXTRT_LOGIN_LOCKOUT_SECONDS)


def check_not_locked(username: str, address: str) -> None:
    recent = LoginFailure.objects.filter(username=username[:150], address=address, at__gte=_window_start())
    if recent.count() >= settings.CONTEXTRT_LOGIN_MAX_FAILURES:
        oldest = recent.order_by("at").values_list("at", flat=True)[0]
        retry = oldest + timedelta(seconds=settings.CONTEXTRT_LOGIN_LOCKOUT_SECONDS) - timezone.now()
        raise LoginLocked(max(1, int(retry.total_seconds())))


def record_failure(username: str, address: str) -> None:
    LoginFailure.objects.create(username=username[:150], address=address)


def clear_failures(username: str, address: str) -> None:
    LoginFailure.objects.filter(username=username[:150], address=address).delete()


def throttled_authenticate(request, username: str, password: str):
    """Authenticate or return None; raises LoginLocked while the pair is locked out."""
    address = client_address(request)
    check_not_locked(username, address)
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_active:
        record_failure(username, address)
        return None
    clear_failures(username, address)
    return user
