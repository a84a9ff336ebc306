"""Where stored files live: paths derived only from UIDs and ids, never from user input.

All paths returned are relative to ``settings.CONTEXTRT_STORAGE``; ``absolute``
resolves them and refuses anything that would leave the store.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import numpy as np
from django.conf import settings

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class StoragePathError(ValueError):
    pass


def _checked_uid(uid: str) -> str:
    if not uid or len(uid) > 64 or not _UID_RE.match(uid):
        raise StoragePathError(f"not a valid DICOM UID: {uid!r}")
    return uid


def root() -> Path:
    return Path(settings.CONTEXTRT_STORAGE)


def absolute(relative: str) -> Path:
    base = root().resolve()
    path = (base / relative).resolve()
    if base != path and base not in path.parents:
        raise StoragePathError(f"path escapes the store: {relative!r}")
    return path


def instance_relpath(study_uid: str, series_uid: str, sop_uid: str) -> str:
    return "/".join(["dicom", _checked_uid(study_uid), _checked_uid(series_uid), _checked_uid(sop_uid) + ".dcm"])


def mask_relpath(series_uid: str, key: str) -> str:
    """A mask on the grid of ``series_uid``; ``key`` is hashed so any label is safe."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return "/".join(["masks", _checked_uid(series_uid), digest + ".npz"])


def result_relpath(kind: str, ident: str, suffix: str) -> str:
    if not re.match(r"^[a-z_]+$", kind) or not re.match(r"^[A-Za-z0-9_-]+$", ident) or not re.match(r"^\.[a-z0-9.]+$", suffix):
        raise StoragePathError("invalid result path component")
    return "/".join(["results", kind, ident + suffix])


def write_bytes_atomic(relative: str, data: bytes) -> Path:
    path = absolute(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return path


def encode_mask(mask: np.ndarray) -> bytes:
    """The bytes ``save_mask`` stores (lets ingest stage a mask before moving it into the store)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, mask=np.packbits(mask.astype(bool), axis=None), shape=np.asarray(mask.shape))
    return buf.getvalue()


def save_mask(relative: str, mask: np.ndarray) -> Path:
    """Store a boolean mask ([slice, row, column] on its CT grid) compressed."""
    return write_bytes_atomic(relative, encode_mask(mask))


def load_mask(relative: str) -> np.ndarray:
    with np.load(absolute(relative)) as data:
        shape = tuple(int(v) for v in data["shape"])
        bits = np.unpackbits(data["mask"], count=int(np.prod(shape)))
    return bits.reshape(shape).astype(bool)
