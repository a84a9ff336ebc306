"""Dice / HD95 of every scored contour against its case's ground truth, computed from the stored masks
(``evaluation.metrics.compute_panel``), for the rubric-total-vs-geometry correlation in the results.

Keyed like ``results.summarise`` expects: ``(case label, source label) -> {"dice", "hd95"}``. Items of
cases without a ground truth are left out (nothing to compare with). Each (contour, reference) pair is
cached under a key built from both files' paths, sizes and modification times, so a re-stored mask is
measured again while re-opening a results page does not repeat the HD95 distance transforms.
"""
from __future__ import annotations

import hashlib
import math

from django.core.cache import cache

from evaluation.metrics import compute_panel
from portal.imaging import storage
from portal.reading.blinded import series_grid

CACHE_SECONDS = 7 * 24 * 3600


def _file_stamp(relative: str) -> str:
    st = storage.absolute(relative).stat()
    return f"{relative}:{st.st_size}:{st.st_mtime_ns}"


def _cache_key(mask_path: str, reference_path: str, spacing) -> str:
    raw = "|".join([_file_stamp(mask_path), _file_stamp(reference_path), repr(tuple(spacing))])
    return "reading:contour-metrics:" + hashlib.sha256(raw.encode()).hexdigest()


def pair_metrics(mask_path: str, reference_path: str, spacing_zyx, label: str, references: dict) -> dict:
    """Dice and HD95 (mm) of one stored contour vs one stored reference; ``label`` names the case in errors."""
    key = _cache_key(mask_path, reference_path, spacing_zyx)
    hit = cache.get(key)
    if hit is not None:
        return hit
    if reference_path not in references:
        references[reference_path] = storage.load_mask(reference_path)
    reference = references[reference_path]
    mask = storage.load_mask(mask_path)
    if mask.shape != reference.shape:
        raise ValueError(f"reading item of case {label}: contour grid {mask.shape} differs from the "
                         f"ground truth grid {reference.shape}")
    panel = compute_panel(mask, reference, spacing_zyx)
    hd95 = panel["hd95_mm"]
    value = {"dice": float(panel["dice"]), "hd95": None if hd95 is None or math.isnan(hd95) else float(hd95)}
    cache.set(key, value, CACHE_SECONDS)
    return value


def study_contour_metrics(study) -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    references: dict[str, object] = {}  # ground-truth masks loaded once per study computation
    for item in study.items.select_related("case__ground_truth", "ct_series"):
        truth = item.case.ground_truth
        if truth is None or not truth.mask_path:
            continue
        out[(item.case.label, item.source_label)] = pair_metrics(
            item.mask_path, truth.mask_path, series_grid(item.ct_series).spacing_zyx, item.case.label, references)
    return out
