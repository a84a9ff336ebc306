"""Running one job on a worker: claim it, load the model (warm cache) and the CT (kept in memory by its
content fingerprint, so a what-if or a second model on the same series downloads nothing), predict with
progress, post the result.

Transient errors (network, 5xx) propagate so Dramatiq retries the message with
backoff; bad input fails the job with its message and is not retried;
cancellation stops the model at its next step. The message is acknowledged
only when this function returns, i.e. after the portal stored the result.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

from gpu_worker.client import ProbabilityUpload, encode_probability_box_npz, make_client
from gpu_worker.ct_cache import CTCache, shared_ct_cache
from gpu_worker.errors import BadInput, TransientError
from gpu_worker.model_cache import shared_cache

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    pass


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class ProgressReporter:
    """Posts progress (throttled) and remembers the portal's answer to "should I stop?"."""

    def __init__(self, client, job_id: int, worker: str, min_interval: float = 0.25, poll_interval: float = 2.0):
        self.client, self.job_id, self.worker = client, job_id, worker
        self.min_interval, self.poll_interval = min_interval, poll_interval
        self.cancel = False
        self._last_post = 0.0
        self._last_percent = -1
        self._last_message = None

    def __call__(self, percent: float, message: str = "") -> None:
        percent = int(max(0, min(99, percent)))  # 100 is the portal's to set, with the stored result
        now = time.monotonic()
        changed = percent != self._last_percent or message != self._last_message
        if not changed or (now - self._last_post < self.min_interval and percent - self._last_percent < 5):
            return
        self._post(percent, message)

    def _post(self, percent: int, message: str) -> None:
        answer = self.client.progress(self.job_id, self.worker, percent, message)
        self._last_post = time.monotonic()
        self._last_percent, self._last_message = percent, message
        self.cancel = self.cancel or bool(answer.get("cancel"))

    def should_cancel(self) -> bool:
        if not self.cancel and time.monotonic() - self._last_post > self.poll_interval:
            self._post(max(self._last_percent, 0), self._last_message or "running")
        return self.cancel


def run_job(job_id: int, portal_url: str, *, client=None, cache=None, ct_cache: CTCache | None = None) -> dict:
    client = client or make_client(portal_url)
    worker = worker_identity()
    spec = client.claim(job_id, worker)
    if spec.get("action") != "run":
        log.info("job %s skipped: %s", job_id, spec.get("state"))
        return spec
    reporter = ProgressReporter(client, job_id, worker)
    try:
        if spec["kind"] in ("inference", "what_if"):
            run_segmentation(spec, client, reporter, cache or shared_cache(), worker, ct_cache)
        elif spec["kind"] == "training":
            run_training(spec, client, reporter, worker)
        else:
            raise BadInput(f"job kind {spec['kind']!r} is not run on workers")
    except TransientError:
        raise
    except BaseException as exc:  # noqa: BLE001 - every other outcome is reported, then acknowledged
        if _is_cancellation(exc):
            client.cancelled(job_id, worker)
            return {"job": job_id, "state": "cancelled"}
        if _is_time_limit(exc):
            client.fail(job_id, worker, f"time limit exceeded ({os.environ.get('CONTEXTRT_JOB_TIME_LIMIT_S', 3600)} s)")
            return {"job": job_id, "state": "failed"}
        if not isinstance(exc, Exception):
            raise  # interpreter shutdown / SystemExit: leave the message unacked for redelivery
        message = str(exc) if isinstance(exc, BadInput) else f"{type(exc).__name__}: {exc}"
        log.warning("job %s failed: %s", job_id, message)
        client.fail(job_id, worker, message)
        return {"job": job_id, "state": "failed", "error": message}
    return {"job": job_id, "state": "succeeded"}


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, JobCancelled):
        return True
    try:
        from segmentation.inference import Cancelled
    except ImportError:
        return False
    return isinstance(exc, Cancelled)


def _is_time_limit(exc: BaseException) -> bool:
    from dramatiq.middleware import TimeLimitExceeded

    return isinstance(exc, TimeLimitExceeded)


def run_segmentation(spec: dict, client, reporter: ProgressReporter, cache, worker: str,
                     ct_cache: CTCache | None = None) -> None:
    ct_cache = ct_cache if ct_cache is not None else shared_ct_cache()
    job_id = spec["job"]
    reporter(1, "loading model")
    model = cache.get(client.checkpoint(spec["checkpoint"]))
    if reporter.should_cancel():
        raise JobCancelled()
    fingerprint = spec["ct"].get("fingerprint")
    held = fingerprint is not None and ct_cache.capacity and fingerprint in ct_cache
    reporter(4, "using the CT already in memory" if held else "reading CT")
    hu, grid, ct_reused = ct_cache.get(fingerprint, lambda: client.load_ct(spec))
    if list(hu.shape) != list(spec["ct"]["shape"]):
        raise BadInput(f"CT volume {list(hu.shape)} does not match the series {spec['ct']['shape']}")
    if reporter.should_cancel():
        raise JobCancelled()

    def model_progress(percent, message=""):
        reporter(8 + 0.88 * float(percent), message or "segmenting")

    context = spec.get("context")
    if getattr(model, "uses_text", False) and not context:
        # An empty context would silently become the "everything unknown" prompt (LLMSeg's "Nnan" defect).
        raise BadInput("context: this multimodal checkpoint reads the clinical context, and the job carries none; "
                       "save a clinical context for the case first")
    predict = model.what_if if spec["kind"] == "what_if" and hasattr(model, "what_if") else model.predict
    result = predict(hu, grid.spacing_zyx, spec["case"]["cancer_type"], context if context else None,
                     progress=model_progress, should_cancel=reporter.should_cancel)
    if reporter.should_cancel():
        raise JobCancelled()
    reporter(97, "storing result")
    info = {"timings": _jsonable(getattr(result, "timings", {})), "prompt_text": getattr(result, "prompt_text", ""),
            "device": getattr(cache, "device", ""), "attempt": spec.get("attempt"), "ct_reused": ct_reused}
    client.post_result(job_id, worker, result.mask, _probability_to_send(result), info)


def _probability_to_send(result):
    """The result's probability map for the portal: encoded from the box a ``SegmentationResult`` holds, so
    the worker never builds the full float grid (52 MB for 50 x 512 x 512); other models' full arrays as
    they are."""
    box = getattr(result, "probability_box", _MISSING)
    if box is _MISSING:
        return getattr(result, "probability", None)
    data = encode_probability_box_npz(result.shape, box, result.box_probability)
    return ProbabilityUpload(data, tuple(result.shape))


_MISSING = object()


# Training options a coordinator may set (segmentation.train's CLI options, underscored); the cohort is the
# synthetic one generated in-worker from fixtures/, so a GPU box needs no shared disk.
TRAINING_OPTIONS = {"cancer_type": str, "text": str, "fusion": str, "tuning": str, "widths": str, "epochs": int,
                    "steps_per_epoch": int, "batch_size": int, "lr": float, "slab": int, "n_train": int,
                    "n_val": int, "case_shape": int, "data_fraction": float, "seed": int, "cohort_seed": int,
                    "spacing": str, "roi": str, "n_prompts": int, "prompt_length": int}


def training_options(params: dict) -> dict:
    """Validated keyword options for ``segmentation.train.run_training``; unknown or mistyped keys are bad input."""
    options = {}
    for key, value in (params or {}).items():
        if key not in TRAINING_OPTIONS:
            raise BadInput(f"params.{key}: not a training option (allowed: {', '.join(sorted(TRAINING_OPTIONS))})")
        cast = TRAINING_OPTIONS[key]
        try:
            options[key] = cast(value)
        except (TypeError, ValueError):
            raise BadInput(f"params.{key}: expected {cast.__name__}, got {value!r}") from None
    if not 0 < options.get("data_fraction", 1.0) <= 1:
        raise BadInput("params.data_fraction: must be in (0, 1]")
    return options


def run_training(spec: dict, client, reporter: ProgressReporter, worker: str) -> None:
    import tempfile

    try:
        from segmentation.train import run_training as train_segmentation
    except ImportError:
        raise BadInput("this worker has no segmentation.train module; training jobs cannot run here") from None
    options = training_options(spec.get("params") or {})
    reporter(1, "preparing cohort")

    def progress(info):
        # Raising here stops training at the next step (the trainer calls back after every step).
        if reporter.should_cancel():
            raise JobCancelled()
        reporter(2 + 93 * info["step"] / max(1, info["total_steps"]),
                 f"epoch {info['epoch']}/{info['epochs']} step {info['step']}/{info['total_steps']} "
                 f"loss {info['loss']:.4f} eta {info['eta_s']:.0f}s")

    with tempfile.TemporaryDirectory(prefix="contextrt-train-") as tmp:
        out = os.path.join(tmp, "model.pt")
        with open(os.devnull, "w") as quiet:
            result = train_segmentation(out, progress=progress, stdout=quiet, no_progress=True, **options)
        if reporter.should_cancel():
            raise JobCancelled()
        reporter(97, "uploading checkpoint")
        client.post_checkpoint(spec["job"], worker, out, {"metrics": _jsonable(result.get("metrics") or {}),
                                                          "history": _jsonable(result.get("history") or []),
                                                          "checkpoint_id": str(result.get("checkpoint_id") or ""),
                                                          "options": options, "attempt": spec.get("attempt")})


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
