"""The Job record: what to run, its enforced state machine, progress and stored results."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class Kind(models.TextChoices):
    INFERENCE = "inference", "Inference"
    WHAT_IF = "what_if", "What-if re-contouring"
    BATCH = "batch", "Batch (study run)"
    TRAINING = "training", "Training"


class State(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# Allowed moves of the state machine. ``running -> running`` is a redelivery
# after a worker died mid-job: another worker claims the job again.
TRANSITIONS: dict[str, set[str]] = {
    State.QUEUED: {State.RUNNING, State.CANCELLED, State.FAILED},
    State.RUNNING: {State.RUNNING, State.SUCCEEDED, State.FAILED, State.CANCELLED},
    State.SUCCEEDED: set(),
    State.FAILED: set(),
    State.CANCELLED: set(),
}
FINAL_STATES = {State.SUCCEEDED, State.FAILED, State.CANCELLED}
# A job in one of these states answers a repeated submission of the same work.
REUSABLE_STATES = [State.QUEUED, State.RUNNING, State.SUCCEEDED]


class Queue(models.TextChoices):
    GPU = "gpu", "GPU workers"
    CPU = "cpu", "CPU workers"


class Job(models.Model):
    kind = models.CharField(max_length=16, choices=Kind.choices)
    case = models.ForeignKey("cases.Case", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    # Validation-study reference (evaluation.studies); a key so the jobs app does not depend on that model.
    study_key = models.CharField(max_length=64, blank=True, db_index=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    checkpoint = models.CharField(max_length=128)  # file name inside CONTEXTRT_CHECKPOINT_DIR
    context_version = models.ForeignKey("cases.ClinicalContextVersion", null=True, blank=True,
                                        on_delete=models.PROTECT, related_name="jobs")
    params = models.JSONField(default=dict, blank=True)  # e.g. what-if context overrides
    queue = models.CharField(max_length=8, choices=Queue.choices, default=Queue.GPU)
    # Same work -> same key; a partial unique constraint makes repeated submissions return one job.
    dedupe_key = models.CharField(max_length=200, blank=True)

    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Bumped on every change so websocket clients can drop events older than their snapshot.
    seq = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    worker_id = models.CharField(max_length=128, blank=True)

    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    # Results, paths relative to CONTEXTRT_STORAGE (portal.imaging.storage).
    mask_path = models.CharField(max_length=255, blank=True)
    probability_path = models.CharField(max_length=255, blank=True)
    rtstruct_path = models.CharField(max_length=255, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    result_info = models.JSONField(default=dict, blank=True)  # timings, prompt text, voxel count

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(fields=["dedupe_key"], name="job_unique_live_work",
                                    condition=models.Q(state__in=REUSABLE_STATES) & ~models.Q(dedupe_key="")),
        ]
        indexes = [models.Index(fields=["case", "state"])]

    def __str__(self):
        return f"job {self.pk} {self.kind} {self.state}"

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES
