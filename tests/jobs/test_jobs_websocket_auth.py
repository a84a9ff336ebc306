"""Websocket consumers: authentication (session cookie or ?token=), case/study scoping, snapshot on connect."""
from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.jobs.wsutil import ORIGIN, communicator

pytestmark = pytest.mark.django_db(transaction=True)


def connect_result(comm):
    async def run():
        connected, code = await comm.connect()
        snapshot = await comm.receive_json_from(timeout=30) if connected else None
        await comm.disconnect()
        return connected, code, snapshot

    return async_to_sync(run)()


def test_anonymous_and_bad_tokens_are_rejected(sts_case, users):
    assert connect_result(communicator(f"/ws/cases/{sts_case.pk}/"))[:2] == (False, 4401)
    assert connect_result(communicator(f"/ws/cases/{sts_case.pk}/", "not-a-token"))[:2] == (False, 4401)
    # Without an allowed Origin the handshake is refused before any consumer runs.
    from portal.asgi import application

    comm = WebsocketCommunicator(application, f"/ws/cases/{sts_case.pk}/", headers=[(b"origin", b"http://evil.test")])
    assert connect_result(comm)[0] is False


def test_users_join_only_cases_and_studies_they_may_see(sts_case, users, checkpoints):
    from portal.jobs import services

    job, _ = services.submit_job(users["coordinator"], "inference", sts_case, dispatch=False, study_key="study-1")
    tokens = {name: Token.objects.get_or_create(user=users[name])[0].key
              for name in ("coordinator", "other_coordinator", "trainee", "admin", "worker")}
    ok, _, snap = connect_result(communicator(f"/ws/cases/{sts_case.pk}/", tokens["coordinator"]))
    assert ok and [j["job"] for j in snap["jobs"]] == [job.pk] and snap["jobs"][0]["state"] == "queued"
    assert connect_result(communicator(f"/ws/jobs/{job.pk}/", tokens["admin"]))[0]
    for name in ("other_coordinator", "trainee", "worker"):
        assert connect_result(communicator(f"/ws/cases/{sts_case.pk}/", tokens[name]))[:2] == (False, 4403), name
        assert connect_result(communicator(f"/ws/jobs/{job.pk}/", tokens[name]))[:2] == (False, 4403), name
    ok, _, snap = connect_result(communicator("/ws/studies/study-1/", tokens["coordinator"]))
    assert ok and [j["job"] for j in snap["jobs"]] == [job.pk]
    assert connect_result(communicator("/ws/studies/study-1/", tokens["trainee"]))[:2] == (False, 4403)
    # Teaching cases become visible to trainees of the site.
    sts_case.teaching = True
    sts_case.save()
    assert connect_result(communicator(f"/ws/cases/{sts_case.pk}/", tokens["trainee"]))[0]


def test_session_cookie_authenticates_the_browser(sts_case, users):
    from portal.asgi import application

    browser = Client()
    browser.force_login(users["coordinator"])
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    comm = WebsocketCommunicator(application, f"/ws/cases/{sts_case.pk}/", headers=ORIGIN + [(b"cookie", cookie)])
    connected, _, snap = connect_result(comm)
    assert connected and snap["type"] == "snapshot"
