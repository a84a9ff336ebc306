"""Jobs REST API and the worker protocol over REST: creation, de-duplication, filters, scoping, cancel,
enforced state machine, and an idempotent result post of a real model's output."""
from __future__ import annotations

import io

import numpy as np
import pytest
from rest_framework.test import APIClient

from gpu_worker.client import decode_mask_npz, encode_mask_npz, encode_probability_npz
from portal.imaging import storage
from portal.jobs import services
from portal.jobs.models import Job, State

pytestmark = pytest.mark.django_db


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def worker_client(users):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {users['worker_token']}")
    return client


def test_create_dedupe_list_detail_cancel_and_scoping(sts_case, users, checkpoints):
    coord = client_for(users["coordinator"])
    first = coord.post("/api/jobs/", {"kind": "inference", "case": sts_case.pk}, format="json")
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["state"] == "queued" and body["checkpoint"] == "tiny-breast.pt"
    assert body["context_version"] == sts_case.current_context.pk
    again = coord.post("/api/jobs/", {"kind": "inference", "case": sts_case.pk, "checkpoint": "tiny-breast.pt"},
                       format="json")
    assert again.status_code == 200 and again.json()["job"] == body["job"]
    assert Job.objects.count() == 1

    listed = coord.get("/api/jobs/", {"case": sts_case.pk, "state": "queued"}).json()
    assert [j["job"] for j in listed["results"]] == [body["job"]]
    assert coord.get("/api/jobs/", {"state": "running"}).json()["count"] == 0
    assert coord.get("/api/jobs/", {"state": "bogus"}).status_code == 400
    assert coord.get(f"/api/jobs/{body['job']}/").json()["state"] == "queued"

    # Other site, raters, anonymous and workers see nothing of it.
    other = client_for(users["other_coordinator"])
    assert other.get(f"/api/jobs/{body['job']}/").status_code == 404
    assert other.get("/api/jobs/").json()["count"] == 0
    assert other.post("/api/jobs/", {"kind": "inference", "case": sts_case.pk}, format="json").status_code == 404
    assert client_for(users["rater"]).post("/api/jobs/", {"case": sts_case.pk}, format="json").status_code == 404
    assert APIClient().get("/api/jobs/").status_code in (401, 403)
    assert worker_client(users).get("/api/jobs/").json()["count"] == 0
    # A trainee cannot see (or cancel) a non-teaching case's job.
    assert client_for(users["trainee"]).post(f"/api/jobs/{body['job']}/cancel/").status_code == 404

    cancelled = coord.post(f"/api/jobs/{body['job']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert coord.post(f"/api/jobs/{body['job']}/cancel/").status_code == 409
    # A cancelled job does not block a new submission of the same work.
    resubmitted = coord.post("/api/jobs/", {"kind": "inference", "case": sts_case.pk}, format="json")
    assert resubmitted.status_code == 201 and resubmitted.json()["job"] != body["job"]


@pytest.mark.parametrize("payload, field", [
    ({"kind": "painting"}, "kind"),
    ({"kind": "inference", "checkpoint": "../../etc/passwd.pt"}, "checkpoint"),
    ({"kind": "inference", "checkpoint": "missing.pt"}, "checkpoint"),
    ({"kind": "inference", "queue": "tpu"}, "queue"),
    ({"kind": "what_if", "params": {"context": {"no_such_field": 1}}}, "params.context"),
    ({"kind": "inference", "study": "bad key!"}, "study"),
])
def test_bad_input_names_the_field_and_stores_nothing(sts_case, users, checkpoints, payload, field):
    response = client_for(users["coordinator"]).post("/api/jobs/", {"case": sts_case.pk, **payload}, format="json")
    assert response.status_code == 400, response.content
    if field:
        assert response.json()["field"] == field
    assert Job.objects.count() == 0


def test_state_machine_is_enforced(sts_case, users, checkpoints):
    job, _ = services.submit_job(users["coordinator"], "inference", sts_case)
    with pytest.raises(services.JobStateError):
        services.store_result(job.pk, "w", np.zeros((47, 134, 136), bool))  # queued -> succeeded is not allowed
    services.claim_job(job.pk, "w1")
    services.record_failure(job.pk, "w1", "boom")
    job.refresh_from_db()
    assert job.state == State.FAILED and job.error == "boom"
    with pytest.raises(services.JobStateError):
        services._move(Job.objects.get(pk=job.pk), State.RUNNING)
    assert services.claim_job(job.pk, "w2") == {"action": "skip", "job": job.pk, "state": "failed"}


def test_worker_protocol_over_rest_with_real_model_output(sts_case, users, checkpoints):
    from portal.imaging.volume import load_ct_volume
    from segmentation.inference import Segmenter

    job, _ = services.submit_job(users["coordinator"], "inference", sts_case)
    worker = worker_client(users)
    # Users may not speak the worker protocol.
    assert client_for(users["coordinator"]).post(f"/api/worker/jobs/{job.pk}/claim/", {"worker": "x"},
                                                 format="json").status_code == 403
    spec = worker.post(f"/api/worker/jobs/{job.pk}/claim/", {"worker": "box:1"}, format="json").json()
    assert spec["action"] == "run" and spec["ct"]["shape"] == [47, 134, 136]
    assert spec["case"]["cancer_type"] == "breast" and spec["checkpoint"] == "tiny-breast.pt"
    answer = worker.post(f"/api/worker/jobs/{job.pk}/progress/", {"worker": "box:1", "percent": 40,
                                                                  "message": "window 3/8"}, format="json").json()
    assert answer == {"cancel": False, "state": "running"}
    # Another worker (e.g. a zombie after redelivery) is told to stop.
    assert worker.post(f"/api/worker/jobs/{job.pk}/progress/", {"worker": "old", "percent": 50},
                       format="json").json()["cancel"] is True

    checkpoint = worker.get("/api/worker/checkpoints/tiny-breast.pt/")
    assert checkpoint.status_code == 200
    assert b"".join(checkpoint.streaming_content) == (checkpoints / "tiny-breast.pt").read_bytes()
    assert worker.get("/api/worker/checkpoints/..%2Fsecret.pt/").status_code == 404

    hu, grid = load_ct_volume(sts_case.ct_series)
    result = Segmenter.from_checkpoint(checkpoints / "tiny-breast.pt").predict(hu, grid.spacing_zyx, "breast", {})
    bad = worker.post(f"/api/worker/jobs/{job.pk}/result/", {
        "worker": "box:1", "mask": io.BytesIO(encode_mask_npz(result.mask[:-1]))}, format="multipart")
    assert bad.status_code == 400 and bad.json()["field"] == "mask"
    bad = worker.post(f"/api/worker/jobs/{job.pk}/result/", {
        "worker": "box:1", "mask": io.BytesIO(encode_mask_npz(result.mask)),
        "probability": io.BytesIO(encode_probability_npz(result.probability[:, :-1]))}, format="multipart")
    assert bad.status_code == 400 and bad.json()["field"] == "probability"
    assert "differs from the CT grid" in bad.json()["detail"]
    sent = encode_probability_npz(result.probability)
    for _ in range(2):  # the second post is a no-op: results are keyed by job id
        stored = worker.post(f"/api/worker/jobs/{job.pk}/result/", {
            "worker": "box:1", "info": '{"timings": {"total": 1.0}}',
            "mask": io.BytesIO(encode_mask_npz(result.mask)),
            "probability": io.BytesIO(sent)}, format="multipart")
        assert stored.status_code == 200 and stored.json()["state"] == "succeeded"
    job.refresh_from_db()
    assert job.progress == 100 and job.attempts == 1
    assert np.array_equal(storage.load_mask(job.mask_path), result.mask)
    assert np.abs(services.load_probability(job.probability_path) - result.probability).max() <= 0.5 / 255 + 1e-6
    # Stored as the worker sent it (checked on upload, not decoded and compressed again).
    assert storage.absolute(job.probability_path).read_bytes() == sent
    assert "dice" in job.metrics and "hd95_mm" in job.metrics  # the case has ground truth: metrics stored
    assert result.mask.any(), "the seeded tiny model marks some voxels"
    import pydicom

    rtstruct = pydicom.dcmread(storage.absolute(job.rtstruct_path))
    assert rtstruct.Modality == "RTSTRUCT" and rtstruct.StructureSetROISequence[0].ROIName.startswith("CTV")

    detail = client_for(users["coordinator"]).get(f"/api/jobs/{job.pk}/").json()
    assert detail["results"]["metrics"] == job.metrics
    contour = client_for(users["coordinator"]).get(f"/api/jobs/{job.pk}/contour/").json()
    from dicom_rt.payload import decode_mask

    assert np.array_equal(decode_mask(contour)[0], result.mask)
    assert decode_mask_npz(encode_mask_npz(result.mask)).shape == result.mask.shape
