"""Slow, plain float64 reference for the surface metrics, built on scipy's ``distance_transform_edt``.

Written independently of ``evaluation.metrics`` (scipy erosion for the surface, a dense Euclidean
distance transform for the distances) so that tests and the benchmark can check the fast panel against
it to 1e-6 mm. Not meant for production use: it is seconds per case on CT-sized volumes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _surface(mask: np.ndarray) -> np.ndarray:
    # scipy's default structure is the 6-connected cross; border_value=0 treats outside as background.
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _crop_to_union(pred: np.ndarray, ref: np.ndarray):
    """Crop both masks to their union's bounding box grown by one voxel, zero-padded beyond the image."""
    union = pred | ref
    coords = np.argwhere(union)
    low, high = coords.min(axis=0) - 1, coords.max(axis=0) + 2
    shape = tuple(int(h - lo) for lo, h in zip(low, high))
    out = []
    for mask in (pred, ref):
        crop = np.zeros(shape, dtype=bool)
        src = tuple(slice(max(lo, 0), min(h, n)) for lo, h, n in zip(low, high, mask.shape))
        dst = tuple(slice(s.start - lo, s.stop - lo) for s, lo in zip(src, low))
        crop[dst] = mask[src]
        out.append(crop)
    return out


def reference_surface_distances(pred, ref, spacing_zyx) -> tuple[np.ndarray, np.ndarray]:
    """``(d(pred->ref), d(ref->pred))`` in mm, float64, from dense EDTs. Both masks must be non-empty."""
    pred, ref = np.asarray(pred) != 0, np.asarray(ref) != 0
    if not pred.any() or not ref.any():
        raise ValueError("reference_surface_distances: pred and ref must both be non-empty")
    pred, ref = _crop_to_union(pred, ref)
    surf_pred, surf_ref = _surface(pred), _surface(ref)
    sampling = np.asarray(spacing_zyx, dtype=np.float64)
    to_ref = ndimage.distance_transform_edt(~surf_ref, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~surf_pred, sampling=sampling)
    return to_ref[surf_pred].astype(np.float64), to_pred[surf_ref].astype(np.float64)


def reference_surface_metrics(pred, ref, spacing_zyx, tolerance_mm: float) -> dict:
    """HD, HD95, ASSD and surface Dice exactly as documented in ``evaluation.metrics``."""
    d_pr, d_rp = reference_surface_distances(pred, ref, spacing_zyx)
    both = np.concatenate([d_pr, d_rp])
    return {
        "hd_mm": float(both.max()),
        "hd95_mm": float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))),
        "assd_mm": float(both.mean()),
        "surface_dice": float(np.count_nonzero(both <= tolerance_mm) / both.size),
    }
