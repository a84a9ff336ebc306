"""Compact contour payload for websocket events: per-slice run-length encoding plus the grid geometry.

A mask of a 100 x 512 x 512 CT becomes a few kilobytes: only slices with
foreground are listed, each as ``[start, length, start, length, ...]`` runs
over the row-major flattened slice. The viewer decodes a slice in one pass.
Uses ``dicom_rt.payload`` when that shared module provides ``encode_mask``.
"""
from __future__ import annotations

import numpy as np


def _runs(flat: np.ndarray) -> list[int]:
    padded = np.concatenate(([0], flat.view(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[0::2], edges[1::2]
    out = np.empty(starts.size * 2, dtype=np.int64)
    out[0::2], out[1::2] = starts, ends - starts
    return out.tolist()


def encode_contour(mask: np.ndarray, grid) -> dict:
    try:  # the project-wide encoder, when present, so the viewer decodes one format
        from dicom_rt.payload import encode_mask as shared_encode
    except ImportError:
        shared_encode = None
    if shared_encode is not None:
        return shared_encode(mask, grid)
    mask = np.asarray(mask, dtype=bool)
    slices = {}
    for k in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)):
        slices[str(int(k))] = _runs(np.ascontiguousarray(mask[k]).reshape(-1))
    return {"encoding": "rle-rowmajor-v1", "shape": list(mask.shape), "grid": grid.to_json(), "slices": slices,
            "voxels": int(mask.sum())}


def decode_contour(payload: dict) -> np.ndarray:
    """Inverse of ``encode_contour`` for the local encoding (tests, benchmarks)."""
    shape = tuple(payload["shape"])
    mask = np.zeros(shape, dtype=bool)
    for k, runs in payload["slices"].items():
        flat = mask[int(k)].reshape(-1)
        for start, length in zip(runs[0::2], runs[1::2]):
            flat[start:start + length] = True
    return mask
