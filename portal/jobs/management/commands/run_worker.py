"""manage.py run_worker: start Dramatiq worker processes for the given queues on a portal host.

It only mints a worker-account token (the one thing it needs the database
for) and then runs the database-free worker (``python -m gpu_worker``); on a
GPU box without portal settings run that module directly (docs/workers.md).
"""
import os
import socket

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run job workers: python manage.py run_worker --queues gpu --processes 1"

    def add_arguments(self, parser):
        parser.add_argument("--queues", nargs="+", default=["gpu"], choices=["gpu", "cpu"])
        parser.add_argument("--processes", type=int, default=1)
        parser.add_argument("--threads", type=int, default=1)
        parser.add_argument("--portal-url", default=os.environ.get("CONTEXTRT_PORTAL_URL", "http://127.0.0.1:8000"),
                            help="how the workers reach the portal (REST + DICOMweb)")
        parser.add_argument("--account", default=f"worker-{socket.gethostname()}"[:150],
                            help="worker account whose token the workers use")

    def handle(self, *args, **options):
        from gpu_worker.broker import broker_url
        from gpu_worker.__main__ import run_dramatiq

        if not broker_url():
            raise CommandError("BROKER_URL is not set: the embedded default runs its worker inside "
                               "`manage.py serve_demo`; set BROKER_URL=redis://... or amqp://... for separate workers")
        if not os.environ.get("CONTEXTRT_WORKER_TOKEN"):
            os.environ["CONTEXTRT_WORKER_TOKEN"] = worker_token(options["account"])
        os.environ["CONTEXTRT_PORTAL_URL"] = options["portal_url"]
        self.stdout.write(f"workers for queues {', '.join(options['queues'])} -> {options['portal_url']} "
                          f"(account {options['account']})")
        raise SystemExit(run_dramatiq(options["queues"], options["processes"], options["threads"]))


def worker_token(username: str) -> str:
    """A fresh-enough API token of a worker account (created with role "worker" when missing)."""
    import secrets

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from portal.accounts.models import Role
    from portal.accounts.services import create_account

    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        user = create_account(username, secrets.token_urlsafe(24), Role.WORKER)
    elif getattr(getattr(user, "profile", None), "role", None) != Role.WORKER:
        raise CommandError(f"account {username!r} exists and is not a worker account")
    token = Token.objects.filter(user=user).first()
    # Renew a token with less than half its lifetime left, so a long-running worker keeps working.
    if token is not None and token.created < timezone.now() - settings.CONTEXTRT_TOKEN_TTL / 2:
        token.delete()
        token = None
    return (token or Token.objects.create(user=user)).key
