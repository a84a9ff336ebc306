"""Training jobs: a coordinator's tiny training job runs the segmentation trainer in the worker, streams
epoch/step/loss progress, uploads the checkpoint through the worker API, and the checkpoint is then
selectable for inference and downloadable by other workers; cancellation and bad options are honoured."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from gpu_worker.client import InProcessClient
from gpu_worker.runner import run_job
from portal.jobs import services
from portal.jobs.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def checkpoints(settings, tiny_checkpoint_dir, tmp_path):
    """A per-test checkpoint dir (trained checkpoints are written there), seeded with the tiny models."""
    import shutil

    for path in tiny_checkpoint_dir.glob("*.pt"):
        shutil.copy(path, tmp_path / path.name)
    settings.CONTEXTRT_CHECKPOINT_DIR = tmp_path
    settings.CONTEXTRT_DEFAULT_CHECKPOINT = "tiny-breast.pt"
    return tmp_path

TINY = {"cancer_type": "breast", "text": "none", "widths": "4,4,8,8,16", "epochs": 1, "steps_per_epoch": 2,
        "batch_size": 1, "n_train": 2, "n_val": 1, "case_shape": 32, "slab": 16, "seed": 3, "data_fraction": 1.0}


class RecordingClient(InProcessClient):
    """The in-process worker client, remembering every progress message the worker sent."""

    def __init__(self, cancel_after_steps: int | None = None):
        self.messages, self.cancel_after_steps = [], cancel_after_steps

    def progress(self, job_id, worker, percent, message):
        self.messages.append(message)
        if self.cancel_after_steps is not None and sum("step" in m for m in self.messages) >= self.cancel_after_steps:
            # what cancel_job does for a coordinator: the portal answers the next progress post with "cancel"
            Job.objects.filter(pk=job_id).update(cancel_requested=True)
        return super().progress(job_id, worker, percent, message)


def test_training_job_uploads_a_checkpoint_usable_by_inference_and_other_workers(users, checkpoints, sts_case):
    job, _ = services.submit_job(users["coordinator"], "training", params=TINY, dispatch=False)
    client = RecordingClient()
    outcome = run_job(job.pk, "", client=client)
    job.refresh_from_db()
    assert outcome["state"] == "succeeded", job.error
    assert job.state == "succeeded"
    assert any("epoch 1/1 step 2/2 loss" in m for m in client.messages), client.messages
    name = job.result_info["checkpoint"]
    assert name == f"trained-job{job.pk}.pt"
    assert services.checkpoint_path(name).stat().st_size == job.result_info["checkpoint_bytes"]
    assert "val_dice" in job.result_info["metrics"]

    worker_api = APIClient()
    worker_api.credentials(HTTP_AUTHORIZATION="Token " + users["worker_token"])
    download = worker_api.get(f"/api/worker/checkpoints/{name}/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == services.checkpoint_path(name).read_bytes()

    inference, created = services.submit_job(users["coordinator"], "inference", sts_case, name, dispatch=False)
    assert created and inference.checkpoint == name


def test_checkpoint_upload_rejects_non_training_jobs_bad_files_and_non_workers(users, checkpoints, sts_case):
    inference, _ = services.submit_job(users["coordinator"], "inference", sts_case, dispatch=False)
    training, _ = services.submit_job(users["coordinator"], "training", params=TINY, dispatch=False)
    services.claim_job(training.pk, "gpu-box/w1")
    services.claim_job(inference.pk, "gpu-box/w1")
    worker_api = APIClient()
    worker_api.credentials(HTTP_AUTHORIZATION="Token " + users["worker_token"])
    from django.core.files.uploadedfile import SimpleUploadedFile

    bad = worker_api.post(f"/api/worker/jobs/{training.pk}/checkpoint/",
                          {"worker": "w1", "checkpoint": SimpleUploadedFile("c.pt", b"not a checkpoint")})
    assert bad.status_code == 400 and "checkpoint" in str(bad.json())
    wrong_kind = worker_api.post(f"/api/worker/jobs/{inference.pk}/checkpoint/",
                                 {"worker": "w1", "checkpoint": SimpleUploadedFile("c.pt", b"PK\x03\x04")})
    assert wrong_kind.status_code == 400 and "training" in str(wrong_kind.json())
    assert not list(checkpoints.glob("trained-*"))
    user_api = APIClient()
    user_api.force_authenticate(users["coordinator"])
    denied = user_api.post(f"/api/worker/jobs/{training.pk}/checkpoint/",
                           {"worker": "w1", "checkpoint": SimpleUploadedFile("c.pt", b"PK\x03\x04")})
    assert denied.status_code == 403


def test_training_job_cancelled_at_next_step_and_bad_option_fails(users, checkpoints):
    job, _ = services.submit_job(users["coordinator"], "training", params=dict(TINY, steps_per_epoch=50),
                                 dispatch=False)
    client = RecordingClient(cancel_after_steps=1)
    assert run_job(job.pk, "", client=client)["state"] == "cancelled"
    job.refresh_from_db()
    assert job.state == "cancelled"
    assert sum("step" in m for m in client.messages) < 10
    assert not list(checkpoints.glob(f"trained-job{job.pk}*"))

    bad, _ = services.submit_job(users["coordinator"], "training", params={"epochs": "many"}, dispatch=False)
    assert run_job(bad.pk, "", client=InProcessClient())["state"] == "failed"
    bad.refresh_from_db()
    assert "params.epochs" in bad.error
