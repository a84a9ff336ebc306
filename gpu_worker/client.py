"""How a worker talks to the portal: over HTTP (REST + DICOMweb, worker token) or, embedded, in-process.

Both clients offer the same calls: ``claim``, ``progress``, ``load_ct``,
``checkpoint``, ``post_result``, ``fail``, ``cancelled``.
"""
from __future__ import annotations

import io
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpu_worker.errors import BadInput, TransientError

IN_PROCESS = "inprocess:"

# A checkpoint is named by a plain file name, never a path: the portal accepts only such names, and a worker
# joins the name to its own directories, so a name must not be able to leave them.
CHECKPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.pt$")


# Upper bound on a decoded volume (voxels): a result never exceeds its CT grid, and an upload's header must
# not make the portal allocate more than a large CT's worth (2048 x 1024 x 1024) before the grid check.
MAX_RESULT_VOXELS = 2048 * 1024 * 1024


class ResultShapeError(ValueError):
    """An uploaded result's header names another grid than the job's CT."""


def _checked_shape(values, name: str, expected=None) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in np.asarray(values).ravel())
    if len(shape) != 3 or min(shape) < 1 or int(np.prod(shape, dtype=np.int64)) > MAX_RESULT_VOXELS:
        raise ValueError(f"{name}: expected three positive sizes totalling at most {MAX_RESULT_VOXELS} voxels, "
                         f"got {shape}")
    if expected is not None and shape != tuple(expected):
        raise ResultShapeError(f"{name} {shape} differs from the CT grid {tuple(expected)}")
    return shape


def encode_mask_npz(mask) -> bytes:
    """Packed bits + shape (the portal's mask storage format)."""
    mask = np.asarray(mask, dtype=bool)
    buf = io.BytesIO()
    np.savez_compressed(buf, mask=np.packbits(mask, axis=None), shape=np.asarray(mask.shape))
    return buf.getvalue()


def decode_mask_npz(data: bytes, shape=None) -> np.ndarray:
    """npz bytes -> boolean mask; ``shape``, when given, is the CT grid the header must name (checked before
    anything of that size is allocated)."""
    with np.load(io.BytesIO(data)) as npz:
        shape = _checked_shape(npz["shape"], "mask shape", shape)
        packed = npz["mask"]
        count = int(np.prod(shape))
        if packed.dtype != np.uint8 or packed.size != (count + 7) // 8:
            raise ValueError(f"mask: {packed.size} packed bytes do not hold the {count} voxels of shape {shape}")
        bits = np.unpackbits(packed, count=count)
    return bits.reshape(shape).astype(bool)


# The probability map travels and is stored as 8-bit levels (p = level / 255). Only the box around the
# non-zero levels is kept: a CTV's confidence map is zero over most of a 512 x 512 CT, and quantising,
# compressing and decompressing the whole volume took 0.7 s of every job on a 100 x 512 x 512 CT.
PROBABILITY_SCALE = 255
# Below half a level a probability is stored as 0; the box is found with a slightly lower bound so that
# float rounding in p * 255 can never put a non-zero level outside it.
_BOX_FLOOR = 0.4 / PROBABILITY_SCALE


def probability_levels(probability) -> np.ndarray:
    """Float probabilities in [0, 1] (or uint8 levels, returned as they are) -> uint8 levels."""
    probability = np.asarray(probability)
    if probability.dtype == np.uint8:
        return probability
    return np.clip(np.rint(probability.astype(np.float32, copy=False) * PROBABILITY_SCALE), 0,
                   PROBABILITY_SCALE).astype(np.uint8)


def _nonzero_box(values: np.ndarray, floor) -> tuple[slice, ...] | None:
    above = values > floor
    spans = []
    for axis in range(values.ndim):
        hits = np.flatnonzero(above.any(axis=tuple(a for a in range(values.ndim) if a != axis)))
        if hits.size == 0:
            return None
        spans.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(spans)


def encode_probability_npz(probability) -> bytes:
    """Probability map (float in [0, 1], or uint8 levels) -> npz of ``shape``, ``box_start`` and the uint8
    ``levels`` inside the box of non-zero levels (all zero outside it)."""
    probability = np.asarray(probability)
    if probability.ndim != 3:
        raise ValueError(f"probability: expected a 3-D array, got shape {probability.shape}")
    return encode_probability_box_npz(probability.shape, tuple(slice(0, n) for n in probability.shape), probability)


def encode_probability_box_npz(shape, box, values) -> bytes:
    """The same npz from a map known only inside ``box`` (a tuple of slices of the grid ``shape``; None: the
    map is 0 everywhere): ``values`` are its probabilities (or uint8 levels) there and 0 is assumed outside,
    as ``segmentation.inference.SegmentationResult`` holds a contour. The full grid is never allocated."""
    shape = tuple(int(n) for n in shape)
    values = np.asarray(values)
    if len(shape) != 3:
        raise ValueError(f"probability: expected a 3-D grid, got shape {shape}")
    if box is None:
        values, box = np.zeros((0, 0, 0), dtype=np.uint8), (slice(0, 0),) * 3
    box = tuple(slice(*b.indices(n)[:2]) for b, n in zip(box, shape))
    if values.shape != tuple(b.stop - b.start for b in box):
        raise ValueError(f"probability: values of shape {values.shape} do not fill the box {box} of the grid {shape}")
    floor = 0 if values.dtype == np.uint8 else _BOX_FLOOR
    inner = _nonzero_box(values, floor) if values.size else None
    if inner is None:
        start, levels = [0, 0, 0], np.zeros((0, 0, 0), dtype=np.uint8)
    else:
        start = [b.start + i.start for b, i in zip(box, inner)]
        levels = probability_levels(values[inner])
    buf = io.BytesIO()
    np.savez_compressed(buf, shape=np.asarray(shape), box_start=np.asarray(start), levels=levels)
    return buf.getvalue()


def _read_probability(data: bytes, shape=None):
    """Check a probability npz -> (full shape, box start or None for the full-volume format, uint8 levels).
    ``shape``, when given, is the CT grid the header must name; nothing of the grid's size is allocated."""
    with np.load(io.BytesIO(data)) as npz:
        if "probability_u8" in npz.files:
            levels = npz["probability_u8"]
            full_shape = _checked_shape(levels.shape, "probability shape", shape)
            start = None
        else:
            full_shape = _checked_shape(npz["shape"], "probability shape", shape)
            start = [int(v) for v in np.asarray(npz["box_start"]).ravel()]
            levels = npz["levels"]
    if levels.dtype != np.uint8:
        raise ValueError(f"probability: levels must be uint8, got {levels.dtype}")
    if start is not None and (levels.ndim != 3 or len(start) != 3 or any(
            b < 0 or b + n > s for b, n, s in zip(start, levels.shape, full_shape))):
        raise ValueError(f"probability: box at {start} of size {levels.shape} lies outside the grid {full_shape}")
    return full_shape, start, levels


@dataclass(frozen=True)
class ProbabilityUpload:
    """A probability npz as a worker sent it, checked by ``check_probability_npz``: the portal stores these
    bytes as they are instead of decoding and compressing the map again."""

    data: bytes
    shape: tuple[int, int, int]


def check_probability_npz(data: bytes, shape=None) -> ProbabilityUpload:
    """Check an uploaded probability npz (format, uint8 levels, box inside the grid, ``shape`` when given) and
    keep its bytes."""
    full_shape, _, _ = _read_probability(data, shape)
    return ProbabilityUpload(bytes(data), full_shape)


def decode_probability_levels(data: bytes, shape=None) -> np.ndarray:
    """npz bytes -> uint8 levels on the full grid; ``shape``, when given, is the CT grid the map must have
    (checked before the full grid is allocated). Also reads the earlier full-volume format (``probability_u8``)."""
    full_shape, start, levels = _read_probability(data, shape)
    if start is None:
        return levels
    full = np.zeros(full_shape, dtype=np.uint8)
    full[tuple(slice(b, b + n) for b, n in zip(start, levels.shape))] = levels
    return full


def decode_probability_npz(data: bytes) -> np.ndarray:
    """npz bytes -> float32 probabilities in [0, 1] on the full grid."""
    return decode_probability_levels(data).astype(np.float32) / PROBABILITY_SCALE


def hu_volume(datasets) -> tuple[np.ndarray, object]:
    """HU [slice, row, column] float32 and the Grid of CT datasets (sorted along the slice normal)."""
    from dicom_rt.geometry import GeometryError, Grid

    try:
        grid, ordered = Grid.from_datasets(list(datasets))
    except GeometryError as exc:
        raise BadInput(f"CT geometry: {exc}") from exc
    volume = np.empty(grid.shape, dtype=np.float32)
    for k, ds in enumerate(ordered):
        slope = float(getattr(ds, "RescaleSlope", 1.0))
        intercept = float(getattr(ds, "RescaleIntercept", 0.0))
        volume[k] = ds.pixel_array.astype(np.float32) * slope + intercept
    return volume, grid


def make_client(portal_url: str):
    """In-process messages come only from the embedded portal itself; otherwise HTTP, where the worker's own
    ``CONTEXTRT_PORTAL_URL`` (its route to the portal) wins over the URL in the message."""
    if portal_url == IN_PROCESS:
        return InProcessClient()
    override = os.environ.get("CONTEXTRT_PORTAL_URL", "").strip()
    return HttpClient(override or portal_url, os.environ.get("CONTEXTRT_WORKER_TOKEN", ""))


class HttpClient:
    """REST + DICOMweb with ``Authorization: Token``; 5xx and network errors become TransientError."""

    def __init__(self, base_url: str, token: str, timeout: float = 60.0):
        import requests

        if not token:
            raise BadInput("CONTEXTRT_WORKER_TOKEN is not set: the worker needs a worker-account API token")
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"
        self.timeout = timeout

    def _call(self, method: str, path: str, attempts: int = 3, **kwargs):
        import requests

        last = None
        for attempt in range(attempts):
            try:
                response = self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                last = TransientError(f"{method} {path}: {exc}")
            else:
                if response.status_code < 400:
                    return response
                if response.status_code >= 500 or response.status_code == 429:
                    last = TransientError(f"{method} {path}: HTTP {response.status_code}")
                else:
                    raise BadInput(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
            time.sleep(0.5 * 2 ** attempt)
        raise last

    def claim(self, job_id: int, worker: str) -> dict:
        return self._call("POST", f"/api/worker/jobs/{job_id}/claim/", json={"worker": worker}).json()

    def progress(self, job_id: int, worker: str, percent: int, message: str) -> dict:
        return self._call("POST", f"/api/worker/jobs/{job_id}/progress/",
                          json={"worker": worker, "percent": percent, "message": message}).json()

    def load_ct(self, spec: dict):
        from dicomweb_client.api import DICOMwebClient

        client = DICOMwebClient(url=self.base + "/dicomweb", headers=dict(self.session.headers))
        try:
            datasets = client.retrieve_series(spec["ct"]["study_uid"], spec["ct"]["series_uid"])
        except Exception as exc:  # noqa: BLE001 - dicomweb-client raises requests' HTTPError
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status is not None and 400 <= status < 500:
                raise BadInput(f"DICOMweb: CT series {spec['ct']['series_uid']}: HTTP {status}") from exc
            raise TransientError(f"DICOMweb: {exc}") from exc
        return hu_volume(datasets)

    def checkpoint(self, name: str) -> Path:
        """The local file of a checkpoint: the worker's own checkpoint dir, else downloaded once from the portal."""
        if not isinstance(name, str) or not CHECKPOINT_NAME.match(name):
            raise BadInput(f"checkpoint {name!r}: expected a file name like 'model.pt'")
        local_dir = Path(os.environ.get("CONTEXTRT_CHECKPOINT_DIR", "segmentation/checkpoints"))
        if (local_dir / name).is_file():
            return local_dir / name
        cache = Path(os.environ.get("CONTEXTRT_WORKER_CACHE", Path.home() / ".cache" / "contextrt")) / "checkpoints"
        target = cache / name
        if not target.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            response = self._call("GET", f"/api/worker/checkpoints/{name}/")
            tmp = target.with_name(target.name + f".part{os.getpid()}")
            tmp.write_bytes(response.content)
            os.replace(tmp, target)
        return target

    def post_result(self, job_id: int, worker: str, mask, probability=None, info: dict | None = None) -> dict:
        import json

        files = {"mask": ("mask.npz", encode_mask_npz(mask), "application/octet-stream")}
        if probability is not None:
            if isinstance(probability, ProbabilityUpload):  # already encoded (from a result's box)
                data = probability.data
            else:
                data = encode_probability_npz(probability)
            files["probability"] = ("probability.npz", data, "application/octet-stream")
        return self._call("POST", f"/api/worker/jobs/{job_id}/result/", files=files,
                          data={"worker": worker, "info": json.dumps(info or {})}).json()

    def post_checkpoint(self, job_id: int, worker: str, path, info: dict | None = None) -> dict:
        import json

        files = {"checkpoint": ("checkpoint.pt", Path(path).read_bytes(), "application/octet-stream")}
        return self._call("POST", f"/api/worker/jobs/{job_id}/checkpoint/", files=files,
                          data={"worker": worker, "info": json.dumps(info or {})}).json()

    def fail(self, job_id: int, worker: str, error: str) -> None:
        self._call("POST", f"/api/worker/jobs/{job_id}/failure/", json={"worker": worker, "error": error})

    def cancelled(self, job_id: int, worker: str) -> None:
        self._call("POST", f"/api/worker/jobs/{job_id}/cancelled/", json={"worker": worker})


class InProcessClient:
    """The embedded shortcut: the same calls straight into ``portal.jobs.services`` (needs Django)."""

    def _db(self, fn, *args, **kwargs):
        from django.db import close_old_connections

        close_old_connections()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            from portal.jobs.services import JobError

            if isinstance(exc, JobError):
                raise BadInput(str(exc)) from exc
            raise
        finally:
            close_old_connections()

    def claim(self, job_id, worker):
        from portal.jobs import services

        return self._db(services.claim_job, job_id, worker)

    def progress(self, job_id, worker, percent, message):
        from portal.jobs import services

        return self._db(services.record_progress, job_id, worker, percent, message)

    def load_ct(self, spec):
        from portal.imaging.models import Series
        from portal.imaging.volume import load_ct_volume

        def load():
            series = Series.objects.filter(series_uid=spec["ct"]["series_uid"]).first()
            if series is None:
                raise BadInput(f"CT series {spec['ct']['series_uid']} not found")
            try:
                hu, grid = load_ct_volume(series)
            except (OSError, ValueError) as exc:
                raise BadInput(f"CT series {series.series_uid}: {exc}") from exc
            return hu.astype(np.float32), grid

        return self._db(load)

    def checkpoint(self, name):
        from portal.jobs import services

        return self._db(services.checkpoint_path, name)

    def post_result(self, job_id, worker, mask, probability=None, info=None):
        from portal.jobs import services

        job = self._db(services.store_result, job_id, worker, mask, probability, info)
        return {"job": job.pk, "state": job.state}

    def post_checkpoint(self, job_id, worker, path, info=None):
        from portal.jobs import services

        job = self._db(services.store_checkpoint, job_id, worker, Path(path).read_bytes(), info)
        return {"job": job.pk, "state": job.state, "checkpoint": job.result_info.get("checkpoint")}

    def fail(self, job_id, worker, error):
        from portal.jobs import services

        self._db(services.record_failure, job_id, worker, error)

    def cancelled(self, job_id, worker):
        from portal.jobs import services

        self._db(services.record_cancelled, job_id, worker)
