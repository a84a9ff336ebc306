"""Embedded path end to end: in-process Dramatiq broker + worker thread, in-memory channel layer,
a real (tiny) segmentation model, websocket consumers receiving state, progress and the finished contour."""
from __future__ import annotations

import numpy as np
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from tests.jobs.conftest import build_tiny_checkpoint
from tests.jobs.wsutil import collect_until, communicator

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def in_process_worker(monkeypatch):
    monkeypatch.delenv("BROKER_URL", raising=False)
    from gpu_worker import broker, dispatch

    broker.setup_broker("")
    worker = dispatch.start_in_process_worker()
    yield worker
    dispatch.wait_in_process(120)
    dispatch.stop_in_process_worker()


def test_inference_streams_progress_and_contour_then_late_join_gets_result(sts_case, users, checkpoints,
                                                                         in_process_worker):
    from dicom_rt.payload import decode_mask
    from portal.imaging import storage
    from portal.jobs import services
    from portal.jobs.models import Job

    token = Token.objects.create(user=users["coordinator"]).key

    async def scenario():
        live = communicator(f"/ws/cases/{sts_case.pk}/", token)
        connected, _ = await live.connect()
        assert connected
        first = await live.receive_json_from(timeout=30)
        assert first == {"type": "snapshot", "jobs": []}
        job, created = await database_sync_to_async(services.submit_job)(users["coordinator"], "inference", sts_case)
        assert created
        events = await collect_until(live, lambda m: m["type"] in ("result",) or m["job"]["state"] == "failed")
        await live.disconnect()
        return job, events

    job, events = async_to_sync(scenario)()
    states = [e["job"]["state"] for e in events if e["type"] == "state"]
    assert states[:2] == ["queued", "running"], events
    progress = [e["job"]["progress"] for e in events if e["type"] == "progress"]
    assert progress and progress == sorted(progress) and max(progress) < 100
    seqs = [e["job"]["seq"] for e in events]
    assert seqs == sorted(set(seqs)), "events arrive once and in order"
    final = events[-1]
    assert final["type"] == "result" and final["job"]["state"] == "succeeded", final
    job = Job.objects.get(pk=job.pk)
    stored = storage.load_mask(job.mask_path)
    mask, grid = decode_mask(final["job"]["contour"])
    assert np.array_equal(mask, stored) and list(grid.shape) == [47, 134, 136]
    assert len(str(final)) < 200_000  # compact: never megabytes
    assert job.result_info["timings"]["total"] > 0 and job.attempts == 1
    assert "dice" in job.metrics

    # Same (case, context version, checkpoint) again: the stored result, nothing recomputed.
    again, created = services.submit_job(users["coordinator"], "inference", sts_case)
    assert (again.pk, created) == (job.pk, False)

    async def late_join():
        late = communicator(f"/ws/jobs/{job.pk}/", token)
        connected, _ = await late.connect()
        assert connected
        snap = await late.receive_json_from(timeout=30)
        await late.disconnect()
        return snap

    snap = async_to_sync(late_join)()
    assert snap["type"] == "snapshot" and snap["jobs"][0]["state"] == "succeeded"
    assert np.array_equal(decode_mask(snap["jobs"][0]["contour"])[0], stored)


def test_cancel_stops_a_running_job_and_bad_input_fails_without_retry(sts_case, users, checkpoints,
                                                                      in_process_worker):
    from portal.jobs import services
    from portal.jobs.models import Job

    # A slower (finer working grid) model so the job is surely still running when cancelled.
    build_tiny_checkpoint(checkpoints, name="tiny-slow.pt", spacing=(3.0, 1.5, 1.5))
    token = Token.objects.create(user=users["coordinator"]).key

    async def scenario():
        live = communicator(f"/ws/cases/{sts_case.pk}/", token)
        assert (await live.connect())[0]
        await live.receive_json_from(timeout=30)
        job, _ = await database_sync_to_async(services.submit_job)(users["coordinator"], "inference", sts_case,
                                                                   "tiny-slow.pt")
        await collect_until(live, lambda m: m["type"] == "progress" and m["job"]["progress"] >= 10)
        await database_sync_to_async(services.cancel_job)(users["coordinator"], job)
        events = await collect_until(live, lambda m: m["job"]["state"] in ("cancelled", "succeeded", "failed"))
        await live.disconnect()
        return job, events

    job, events = async_to_sync(scenario)()
    assert events[-1]["job"]["state"] == "cancelled", events[-1]
    job = Job.objects.get(pk=job.pk)
    assert job.state == "cancelled" and not job.mask_path and job.progress < 100

    # A prostate model for a breast case is bad input: failed with the model's message, tried once.
    bad, _ = services.submit_job(users["coordinator"], "inference", sts_case, "tiny-prostate.pt")
    from gpu_worker import dispatch

    dispatch.wait_in_process(120)
    bad = Job.objects.get(pk=bad.pk)
    assert bad.state == "failed" and "cancer_type" in bad.error and bad.attempts == 1, bad.error

    # A multimodal model for a case whose context is empty is bad input too: no silent "all unknown" prompt.
    from portal.cases.models import Case

    blank = Case.objects.create(label="STS-019-blank", site=sts_case.site, cancer_type="breast",
                                ct_series=sts_case.ct_series, ground_truth=sts_case.ground_truth)
    blank.context_versions.create(version=1, data={}, prompt_text="")
    no_context, _ = services.submit_job(users["coordinator"], "inference", blank, "tiny-breast.pt")
    dispatch.wait_in_process(120)
    no_context = Job.objects.get(pk=no_context.pk)
    assert no_context.state == "failed" and no_context.error.startswith("context:"), no_context.error
    assert no_context.attempts == 1 and not no_context.mask_path
