"""Job life cycle: submission (with de-duplication), dispatch, the worker protocol and cancellation.

Other apps call ``submit_job`` / ``submit_batch`` / ``cancel_job``; the worker
REST views and the in-process worker call ``claim_job``, ``record_progress``,
``store_result``, ``record_failure`` and ``record_cancelled``. Every state
change goes through ``_move`` which enforces ``models.TRANSITIONS`` under a row
lock and publishes the change on the channel layer after commit.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from clinical import CANCER_TYPES
from gpu_worker.client import CHECKPOINT_NAME
from portal.accounts import scoping
from portal.jobs import events
from portal.jobs.models import FINAL_STATES, REUSABLE_STATES, TRANSITIONS, Job, Kind, Queue, State
from portal.imaging.volume import series_fingerprint

MAX_MESSAGE = 200


class JobError(ValueError):
    """Bad input to a job operation; ``field`` names the offending field."""

    def __init__(self, message: str, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


class JobStateError(JobError):
    def __init__(self, message: str):
        super().__init__(message, field="state", status=409)


# ----------------------------------------------------------------- checkpoints

def checkpoint_dir() -> Path:
    return Path(settings.CONTEXTRT_CHECKPOINT_DIR)


def available_checkpoints() -> list[str]:
    directory = checkpoint_dir()
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.glob("*.pt") if CHECKPOINT_NAME.match(p.name))


def checkpoint_cancer_type(name: str) -> str | None:
    """The cancer type a checkpoint's file name says (``<type>_…``), or None for a name that says none."""
    return next((t for t in CANCER_TYPES if name.startswith(f"{t}_")), None)


def checkpoints_for(cancer_type: str | None) -> list[str]:
    """Available checkpoints a case of ``cancer_type`` may run: its own type's first, then the ones whose
    name says no type; another type's are left out (the worker would refuse them)."""
    names = available_checkpoints()
    if not cancer_type:
        return names
    own = [n for n in names if checkpoint_cancer_type(n) == cancer_type]
    return own + [n for n in names if checkpoint_cancer_type(n) is None]


def default_checkpoint(cancer_type: str | None = None) -> str:
    """The checkpoint a job gets when none is named. The configured default, unless its file name says it is
    another cancer type's (``<type>_…``); then ``<type>_multimodal.pt``, any ``<type>_*.pt``, the first by name.
    A breast default thus never reaches a prostate case, which the worker would refuse."""
    configured = getattr(settings, "CONTEXTRT_DEFAULT_CHECKPOINT", "")
    names = available_checkpoints()
    if not names:
        raise JobError(f"no model checkpoint (*.pt) in {checkpoint_dir()}", field="checkpoint")
    configured_type = checkpoint_cancer_type(configured)
    preferred = [configured] if cancer_type is None or configured_type in (None, cancer_type) else []
    if cancer_type:
        preferred += [f"{cancer_type}_multimodal.pt"] + checkpoints_for(cancer_type)
    return next((n for n in preferred if n in names), names[0])


def checkpoint_path(name: str) -> Path:
    """The file of a checkpoint by name; only plain ``*.pt`` names inside the checkpoint dir."""
    if not isinstance(name, str) or not CHECKPOINT_NAME.match(name):
        raise JobError(f"checkpoint {name!r}: expected a file name like 'model.pt'", field="checkpoint")
    path = checkpoint_dir() / name
    if not path.is_file():
        raise JobError(f"checkpoint {name!r} not found in {checkpoint_dir()}", field="checkpoint")
    return path


# ----------------------------------------------------------------- submission

def _dedupe_key(kind: str, case, context_version, checkpoint: str, params: dict) -> str:
    if kind == Kind.INFERENCE:
        return f"inference:{case.pk}:{context_version.pk if context_version else 0}:{checkpoint}"
    if kind == Kind.WHAT_IF:
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:24]
        return f"what_if:{case.pk}:{context_version.pk if context_version else 0}:{checkpoint}:{digest}"
    return ""


def _check_submitter(user, case) -> None:
    if scoping.role_of(user) is None or scoping.is_worker(user) or scoping.is_rater(user):
        raise JobError("this account may not submit jobs", field="user", status=403)
    if case is not None and not scoping.can_view_case(user, case):
        raise JobError("case not found", field="case", status=404)


def submit_job(user, kind: str, case=None, checkpoint: str | None = None, context_version=None, *,
               params: dict | None = None, study_key: str = "", queue: str | None = None, parent=None,
               dispatch: bool = True) -> tuple[Job, bool]:
    """Create (or find) a job and hand it to the broker after commit; returns ``(job, created)``.

    Submitting the same (case, context version, checkpoint) inference again
    returns the existing queued/running/succeeded job instead of recomputing;
    a failed or cancelled one is retried by a new job.
    """
    if kind not in Kind.values:
        raise JobError(f"unknown job kind {kind!r}; choose one of {', '.join(Kind.values)}", field="kind")
    params = dict(params or {})
    _check_submitter(user, case)
    if kind in (Kind.INFERENCE, Kind.WHAT_IF) and case is None:
        raise JobError(f"a {kind} job needs a case", field="case")
    checkpoint = checkpoint or default_checkpoint(case.cancer_type if case is not None else None)
    checkpoint_path(checkpoint)
    if context_version is None and case is not None:
        context_version = case.current_context
    if context_version is not None and case is not None and context_version.case_id != case.pk:
        raise JobError(f"context version {context_version.pk} belongs to another case", field="context_version")
    if kind == Kind.WHAT_IF:
        params["context"] = _validated_what_if_context(case, params.get("context"))
    if study_key:
        try:
            events.study_group(study_key)
        except ValueError as exc:
            raise JobError(str(exc), field="study") from None
    queue = queue or (Queue.CPU if kind == Kind.BATCH else Queue.GPU)
    if queue not in Queue.values:
        raise JobError(f"unknown queue {queue!r}; choose one of {', '.join(Queue.values)}", field="queue")
    key = _dedupe_key(kind, case, context_version, checkpoint, params)
    if key:
        existing = Job.objects.filter(dedupe_key=key, state__in=REUSABLE_STATES).first()
        if existing is not None:
            return existing, False
    try:
        with transaction.atomic():
            job = Job.objects.create(kind=kind, case=case, checkpoint=checkpoint, context_version=context_version,
                                     params=params, study_key=study_key or "", queue=queue, dedupe_key=key,
                                     parent=parent, submitted_by=user if getattr(user, "pk", None) else None)
    except IntegrityError:
        # A concurrent submission of the same work won the race: answer with its job.
        existing = Job.objects.filter(dedupe_key=key, state__in=REUSABLE_STATES).first()
        if existing is None:
            raise
        return existing, False
    if dispatch and kind != Kind.BATCH:
        transaction.on_commit(lambda: dispatch_job(job))
    transaction.on_commit(lambda: events.publish(job, "state"))
    return job, True


def _validated_what_if_context(case, data) -> dict:
    from clinical.schema import validate_context

    if not isinstance(data, dict):
        raise JobError("what-if jobs need params.context: a clinical-context object", field="params.context")
    try:
        return validate_context(case.cancer_type, data)
    except ValueError as exc:
        raise JobError(f"params.context: {exc}", field="params.context") from exc


def submit_batch(user, cases, checkpoint: str | None = None, *, study_key: str = "") -> Job:
    """One ``batch`` job tracking an inference job per case (existing results are reused)."""
    if not scoping.is_coordinator(user):
        raise JobError("batch runs are for study coordinators and administrators", field="user", status=403)
    cases = list(cases)
    if not cases:
        raise JobError("a batch needs at least one case", field="cases")
    cancer_types = {case.cancer_type for case in cases}
    checkpoint = checkpoint or default_checkpoint(cancer_types.pop() if len(cancer_types) == 1 else None)
    checkpoint_path(checkpoint)
    with transaction.atomic():
        batch, _ = submit_job(user, Kind.BATCH, None, checkpoint, study_key=study_key, dispatch=False)
        children = [submit_job(user, Kind.INFERENCE, case, checkpoint, study_key=study_key, parent=batch)[0]
                    for case in cases]
        batch.params = {"jobs": [c.pk for c in children]}
        batch.save(update_fields=["params", "updated"])
    transaction.on_commit(lambda: refresh_batch(batch.pk))
    return batch


def dispatch_job(job: Job) -> None:
    """Send the job's message (job id + portal URL) to its queue."""
    from gpu_worker import dispatch

    dispatch.send_job(job.pk, job.kind, job.queue)


# ----------------------------------------------------------------- state machine

def _move(job: Job, new_state: str, **fields) -> Job:
    """Apply one transition to a row-locked ``job``; raises JobStateError for a forbidden move."""
    if new_state not in TRANSITIONS[job.state]:
        raise JobStateError(f"job {job.pk} is {job.state}; it cannot become {new_state}")
    now = timezone.now()
    job.state = new_state
    if new_state == State.RUNNING and job.started is None:
        job.started = now
    if new_state in FINAL_STATES:
        job.finished = now
        if new_state == State.SUCCEEDED:
            job.progress = 100
    for name, value in fields.items():
        setattr(job, name, value)
    job.seq = job.seq + 1
    job.save()
    return job


def _locked(job_id: int) -> Job:
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    if job is None:
        raise JobError(f"job {job_id} not found", field="job", status=404)
    return job


def _after_commit_publish(job: Job, event_type: str, extra_fn=None) -> None:
    def send():
        fresh = Job.objects.filter(pk=job.pk).first()
        if fresh is not None:
            events.publish(fresh, event_type, extra_fn(fresh) if extra_fn else None)
            if fresh.parent_id and fresh.is_final:
                refresh_batch(fresh.parent_id)

    transaction.on_commit(send)


def cancel_job(user, job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop at its next step."""
    if not (scoping.is_coordinator(user) or (job.submitted_by_id and job.submitted_by_id == user.pk)):
        raise JobError("only the submitter or a coordinator may cancel this job", field="job", status=403)
    with transaction.atomic():
        job = _locked(job.pk)
        if job.is_final:
            raise JobStateError(f"job {job.pk} is already {job.state}")
        if job.state == State.QUEUED:
            _move(job, State.CANCELLED, message="cancelled before it started", cancel_requested=True)
        else:
            job.cancel_requested = True
            job.message = "cancelling at the next step"
            job.seq += 1
            job.save(update_fields=["cancel_requested", "message", "seq", "updated"])
        _after_commit_publish(job, "state")
    if job.kind == Kind.BATCH:
        for child_id in job.params.get("jobs", []):
            child = Job.objects.filter(pk=child_id, parent=job).first()
            if child is not None and not child.is_final:
                cancel_job(user, child)
    return job


def refresh_batch(batch_id: int) -> None:
    """Derive a batch job's progress and final state from the jobs it tracks."""
    with transaction.atomic():
        batch = Job.objects.select_for_update().filter(pk=batch_id, kind=Kind.BATCH).first()
        if batch is None or batch.is_final:
            return
        ids = batch.params.get("jobs", [])
        states = list(Job.objects.filter(pk__in=ids).values_list("state", flat=True))
        done = sum(s in FINAL_STATES for s in states)
        progress = int(100 * done / len(ids)) if ids else 100
        message = f"{done}/{len(ids)} jobs finished"
        if batch.state == State.QUEUED and any(s != State.QUEUED for s in states):
            _move(batch, State.RUNNING, progress=progress, message=message)
        if done == len(ids) and batch.state == State.RUNNING:
            failed = sum(s == State.FAILED for s in states)
            if batch.cancel_requested:
                _move(batch, State.CANCELLED, message=message)
            elif failed:
                _move(batch, State.FAILED, message=message, error=f"{failed} of {len(ids)} jobs failed")
            else:
                _move(batch, State.SUCCEEDED, message=message)
        elif (batch.progress, batch.message) != (progress, message):
            batch.progress, batch.message, batch.seq = progress, message, batch.seq + 1
            batch.save(update_fields=["progress", "message", "seq", "updated"])
        _after_commit_publish(batch, "state")


# ----------------------------------------------------------------- worker protocol

def job_spec(job: Job) -> dict:
    """Everything a worker needs to run the job, with no database or disk access of its own."""
    spec = {"action": "run", "job": job.pk, "kind": job.kind, "checkpoint": job.checkpoint,
            "params": {k: v for k, v in job.params.items() if k != "context"}, "attempt": job.attempts}
    case = job.case
    if case is not None:
        series = case.ct_series
        context = job.context_version.data if job.context_version else {}
        if job.kind == Kind.WHAT_IF:
            context = job.params.get("context", context)
        spec.update({
            "case": {"id": case.pk, "label": case.label, "cancer_type": case.cancer_type},
            "context": context,
            "ct": {"study_uid": series.study.study_uid, "series_uid": series.series_uid,
                   "shape": [series.num_slices, series.rows, series.columns],
                   "fingerprint": series_fingerprint(series)},
        })
    return spec


def claim_job(job_id: int, worker_id: str) -> dict:
    """A worker starts (or, after another worker died, restarts) a job; finished jobs are skipped."""
    with transaction.atomic():
        job = _locked(job_id)
        if job.is_final:
            return {"action": "skip", "job": job.pk, "state": job.state}
        if job.cancel_requested:
            _move(job, State.CANCELLED, message="cancelled before it started")
            _after_commit_publish(job, "state")
            return {"action": "skip", "job": job.pk, "state": job.state}
        restarted = job.state == State.RUNNING
        _move(job, State.RUNNING, worker_id=str(worker_id)[:128], attempts=job.attempts + 1, progress=0,
              message="restarted after a worker was lost" if restarted else "started")
        _after_commit_publish(job, "state")
    return job_spec(job)


def record_progress(job_id: int, worker_id: str, percent, message: str = "") -> dict:
    """Store progress and relay it; the answer tells the worker whether to stop."""
    try:
        percent = max(0, min(100, int(percent)))
    except (TypeError, ValueError):
        raise JobError(f"percent must be a number 0-100, got {percent!r}", field="percent") from None
    message = str(message or "")[:MAX_MESSAGE]
    updated = Job.objects.filter(pk=job_id, state=State.RUNNING, worker_id=str(worker_id)[:128]).update(
        progress=percent, message=message, seq=F("seq") + 1, updated=timezone.now())
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise JobError(f"job {job_id} not found", field="job", status=404)
    if updated:
        events.publish(job, "progress")
    # A worker that no longer owns the job (it was reclaimed or finished) must stop too.
    return {"cancel": bool(job.cancel_requested or not updated), "state": job.state}


def result_shape(job_id: int) -> tuple[int, int, int]:
    """The CT grid a job's result must lie on, known before an upload is decoded, so that an upload's header
    cannot make the portal allocate more than the case's CT."""
    from portal.imaging.volume import series_grid

    job = _result_job(job_id)
    try:
        return tuple(series_grid(job.case.ct_series).shape)
    except ValueError as exc:
        raise JobError(str(exc), field="ct") from None


def _result_job(job_id: int) -> Job:
    job = Job.objects.select_related("case__ct_series").filter(pk=job_id).first()
    if job is None:
        raise JobError(f"job {job_id} not found", field="job", status=404)
    if job.case is None:
        raise JobError(f"job {job.pk} ({job.kind}) has no case to store a mask for", field="mask")
    return job


def store_result(job_id: int, worker_id: str, mask, probability=None, info: dict | None = None) -> Job:
    """Store a job's result once (idempotent by job id) and mark it succeeded.

    ``mask`` is a boolean [slice, row, column] array on the case's CT grid;
    ``probability`` (optional) a float array in [0, 1] of the same shape, its uint8 levels (p = level / 255), or
    a checked upload (``gpu_worker.client.ProbabilityUpload``), stored as it came.
    A repeated post for a job that already succeeded returns it unchanged.
    """
    import numpy as np

    from gpu_worker.client import ProbabilityUpload, encode_probability_npz
    from portal.imaging import storage
    from portal.imaging.volume import series_grid

    job = _result_job(job_id)
    if job.state == State.SUCCEEDED:
        return job
    if job.state != State.RUNNING:
        raise JobStateError(f"job {job.pk} is {job.state}; its result is not accepted")
    grid = series_grid(job.case.ct_series)
    mask = np.asarray(mask)
    if mask.shape != tuple(grid.shape):
        raise JobError(f"mask shape {mask.shape} differs from the CT grid {tuple(grid.shape)}", field="mask")
    mask = mask.astype(bool)
    mask_rel = storage.result_relpath("job_mask", str(job.pk), ".npz")
    storage.save_mask(mask_rel, mask)
    prob_rel = ""
    if probability is not None:
        if isinstance(probability, ProbabilityUpload):  # checked on upload: stored as the worker sent it
            shape, encoded = probability.shape, probability.data
        else:  # float in [0, 1], or uint8 levels (the in-process worker)
            probability = np.asarray(probability)
            shape, encoded = probability.shape, None
        if tuple(shape) != mask.shape:
            raise JobError(f"probability shape {tuple(shape)} differs from the mask {mask.shape}", field="probability")
        prob_rel = storage.result_relpath("job_probability", str(job.pk), ".npz")
        storage.write_bytes_atomic(prob_rel, encoded if encoded is not None else encode_probability_npz(probability))
    metrics = _metrics_against_ground_truth(job, mask, grid)
    info = dict(info or {})
    rtstruct_rel = ""
    if job.kind == Kind.WHAT_IF:
        # A what-if is exploratory and waited for in the viewer: its RTSTRUCT is built when someone asks for it
        # (GET /api/cases/<case>/export/rtstruct/?job=<id>, as for every job), not here, where it cost 4.3 s of
        # a 5 s what-if on a 100 x 512 x 512 CT.
        info["rtstruct_on_request"] = True
    elif mask.any():
        try:
            rtstruct_rel = _write_rtstruct(job, mask)
        except ValueError as exc:  # the export is a convenience; the mask itself is the result
            info["rtstruct_error"] = str(exc)
    else:
        info["rtstruct_error"] = "empty mask: no RTSTRUCT written"
    info["voxels"] = int(mask.sum())
    info["volume_cc"] = float(mask.sum() * grid.voxel_volume_mm3 / 1000.0)
    with transaction.atomic():
        locked = _locked(job.pk)
        if locked.state == State.SUCCEEDED:
            return locked
        _move(locked, State.SUCCEEDED, mask_path=mask_rel, probability_path=prob_rel, rtstruct_path=rtstruct_rel,
              metrics=metrics, result_info=info, message="finished", worker_id=str(worker_id)[:128])
        _after_commit_publish(locked, "result", lambda fresh: {"contour": contour_payload(fresh)})
    return locked


def load_probability(relative: str):
    """A stored probability map as float32 in [0, 1] on the CT grid."""
    from gpu_worker.client import decode_probability_npz
    from portal.imaging import storage

    return decode_probability_npz(storage.absolute(relative).read_bytes())


def _metrics_against_ground_truth(job: Job, mask, grid) -> dict:
    roi = job.case.ground_truth
    if roi is None or not roi.mask_path:
        return {}
    from evaluation.metrics import compute_panel
    from portal.imaging.volume import roi_mask

    panel = compute_panel(mask, roi_mask(roi), grid.spacing_zyx)
    # NaN (undefined, e.g. an empty prediction) becomes null: PostgreSQL's jsonb has no NaN.
    clean = {}
    for key, value in panel.items():
        if isinstance(value, float) and value != value:
            clean[key] = None
        elif isinstance(value, (int, float, str, list)) and key != "apl_per_slice_mm":
            clean[key] = value
    return clean


def _write_rtstruct(job: Job, mask) -> str:
    """RTSTRUCT export of the result (``dicom_rt.rtstruct_write`` on the stored CT headers)."""
    from portal.jobs.export import write_job_rtstruct

    return write_job_rtstruct(job, mask)


def contour_payload(job: Job) -> dict | None:
    """The finished contour as ``dicom_rt.payload.encode_mask`` (per-slice RLE + grid; tens of KB at most)."""
    if job.state != State.SUCCEEDED or not job.mask_path or job.case is None:
        return None
    from portal.imaging import storage
    from portal.imaging.volume import series_grid
    from dicom_rt.payload import encode_mask

    return encode_mask(storage.load_mask(job.mask_path), series_grid(job.case.ct_series))


def record_failure(job_id: int, worker_id: str, error: str) -> Job:
    error = str(error or "unknown error")[:4000]
    with transaction.atomic():
        job = _locked(job_id)
        if job.is_final:
            return job
        _move(job, State.FAILED, error=error, message="failed", worker_id=str(worker_id)[:128])
        _after_commit_publish(job, "state")
    return job


def record_cancelled(job_id: int, worker_id: str) -> Job:
    with transaction.atomic():
        job = _locked(job_id)
        if job.is_final:
            return job
        _move(job, State.CANCELLED, message="cancelled", worker_id=str(worker_id)[:128])
        _after_commit_publish(job, "state")
    return job


# ----------------------------------------------------------------- reading

def visible_jobs(user, queryset=None):
    """Jobs of cases the user may see (batch jobs: coordinators and admins)."""
    from django.db.models import Q

    from portal.cases.models import Case

    queryset = Job.objects.all() if queryset is None else queryset
    if scoping.is_worker(user):
        return queryset.none()
    if scoping.is_admin(user):
        return queryset
    condition = Q(case__in=scoping.scope_cases(user, Case.objects.all()).values("pk"))
    if scoping.is_coordinator(user):
        condition |= Q(case__isnull=True, submitted_by=user)
    return queryset.filter(condition)


def snapshot(job: Job) -> dict:
    """Current state of a job, with the finished contour when there is one (for late websocket clients)."""
    data = events.job_state(job)
    if job.state == State.SUCCEEDED:
        data["contour"] = contour_payload(job)
        data["metrics"] = job.metrics
    return data


def requeue_unfinished() -> int:
    """Send again every queued or running job (the embedded broker keeps messages in memory only,
    so after a restart they would be lost; a job that already finished is skipped by its worker)."""
    count = 0
    for job in Job.objects.filter(state__in=[State.QUEUED, State.RUNNING]).exclude(kind=Kind.BATCH):
        dispatch_job(job)
        count += 1
    return count


# ----------------------------------------------------------------- trained checkpoints

def trained_checkpoint_name(job: Job) -> str:
    return f"trained-job{job.pk}.pt"


def store_checkpoint(job_id: int, worker_id: str, data: bytes, info: dict | None = None) -> Job:
    """Store a training job's checkpoint in the checkpoint dir (so inference jobs can select it by name
    and other workers download it) and mark the job succeeded; a repeated upload returns the job unchanged."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise JobError(f"job {job_id} not found", field="job", status=404)
    if job.kind != Kind.TRAINING:
        raise JobError(f"job {job.pk} is a {job.kind} job; only training jobs upload checkpoints", field="checkpoint")
    if job.state == State.SUCCEEDED:
        return job
    if job.state != State.RUNNING:
        raise JobStateError(f"job {job.pk} is {job.state}; its checkpoint is not accepted")
    if not data or not data.startswith(b"PK"):  # torch.save writes a zip archive
        raise JobError("checkpoint: not a torch checkpoint (expected a zip-format .pt file)", field="checkpoint")
    name = trained_checkpoint_name(job)
    directory = checkpoint_dir()
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / (name + ".partial")
    partial.write_bytes(data)
    partial.replace(directory / name)  # atomic: never a half-written checkpoint under the real name
    info = dict(info or {}, checkpoint=name, checkpoint_bytes=len(data))
    with transaction.atomic():
        locked = _locked(job.pk)
        if locked.state == State.SUCCEEDED:
            return locked
        _move(locked, State.SUCCEEDED, result_info=info, metrics=dict(info.get("metrics") or {}),
              message="checkpoint stored", worker_id=str(worker_id)[:128])
        _after_commit_publish(locked, "state")
    return locked
