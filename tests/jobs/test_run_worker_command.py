"""manage.py run_worker: refuses the embedded default, mints and renews the worker token, starts the
database-free worker with the requested queues (the worker process itself is exercised by the live tests)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_without_a_broker_url_it_refuses_and_says_what_to_set(monkeypatch):
    monkeypatch.delenv("BROKER_URL", raising=False)
    with pytest.raises(CommandError, match="BROKER_URL is not set"):
        call_command("run_worker")


def test_worker_token_is_created_reused_and_renewed_when_half_expired(settings):
    from rest_framework.authtoken.models import Token

    from portal.accounts.models import Role
    from portal.jobs.management.commands.run_worker import worker_token

    first = worker_token("worker-box-1")
    token = Token.objects.get(key=first)
    assert token.user.profile.role == Role.WORKER
    assert worker_token("worker-box-1") == first  # fresh: reused
    Token.objects.filter(key=first).update(created=timezone.now() - settings.CONTEXTRT_TOKEN_TTL / 2 - timedelta(minutes=1))
    renewed = worker_token("worker-box-1")
    assert renewed != first and not Token.objects.filter(key=first).exists()


def test_an_existing_non_worker_account_is_not_turned_into_a_worker():
    from portal.accounts.models import Role
    from portal.accounts.services import create_account
    from portal.jobs.management.commands.run_worker import worker_token

    create_account("alice", "alice-password-123", Role.COORDINATOR)
    with pytest.raises(CommandError, match="not a worker account"):
        worker_token("alice")


def test_it_starts_the_worker_for_the_queues_with_a_token(monkeypatch):
    import gpu_worker.__main__ as worker_main
    from rest_framework.authtoken.models import Token

    started = {}

    def record(queues, processes, threads):  # stands in for the Dramatiq process launcher only
        import os

        started.update(queues=queues, processes=processes, threads=threads,
                       token=os.environ["CONTEXTRT_WORKER_TOKEN"], url=os.environ["CONTEXTRT_PORTAL_URL"])
        return 0

    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("CONTEXTRT_WORKER_TOKEN", "")  # recorded as absent, so undo removes what the command sets
    monkeypatch.delenv("CONTEXTRT_WORKER_TOKEN")
    monkeypatch.setenv("CONTEXTRT_PORTAL_URL", "http://unused.invalid")
    monkeypatch.setattr(worker_main, "run_dramatiq", record)
    with pytest.raises(SystemExit) as done:
        call_command("run_worker", "--queues", "gpu", "cpu", "--processes", "2", "--account", "worker-test",
                     "--portal-url", "http://127.0.0.1:8123")
    assert done.value.code == 0
    assert started["queues"] == ["gpu", "cpu"] and started["processes"] == 2 and started["threads"] == 1
    assert started["url"] == "http://127.0.0.1:8123"
    assert Token.objects.get(key=started["token"]).user.username == "worker-test"


def test_the_command_leaves_no_worker_environment_behind():
    import os

    assert "CONTEXTRT_WORKER_TOKEN" not in os.environ
