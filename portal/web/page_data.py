"""The JSON each browser page starts from: case, schema, context versions, structures and model results.

Plain functions over the models and the shared encoders (``portal.jobs.contour``, ``clinical``), so the
views stay thin and this is testable without a browser.
"""
from __future__ import annotations

import logging

from django.urls import NoReverseMatch, reverse

import clinical

log = logging.getLogger(__name__)

# Probability wash bands: a voxel is painted with the colour of the highest level it reaches.
PROBABILITY_LEVELS = (0.25, 0.5, 0.75, 0.9)
VISION_MARKERS = ("vision", "baseline", "image_only", "imageonly")


def model_family(checkpoint: str) -> str:
    """'vision' for image-only checkpoints, else 'multimodal' (the checkpoint file name says which)."""
    name = (checkpoint or "").lower()
    return "vision" if any(marker in name for marker in VISION_MARKERS) else "multimodal"


def checkpoints_by_family() -> dict:
    from portal.jobs.services import available_checkpoints

    names = available_checkpoints()
    out = {"vision": None, "multimodal": None, "all": names}
    for name in names:
        family = model_family(name)
        if out[family] is None:
            out[family] = name
    return out


def _url(name: str, fallback: str, **kwargs) -> str:
    """The route of another app when it is registered, else its documented path."""
    try:
        return reverse(name, kwargs=kwargs or None)
    except NoReverseMatch:
        return fallback


def api_urls(case) -> dict:
    cid = case.pk
    return {
        "case": _url("case-detail", f"/api/cases/{cid}/", pk=cid),
        "schema": f"/api/context-schema/{case.cancer_type}/",
        "context_versions": _url("case-context-versions", f"/api/cases/{cid}/contexts/", pk=cid),
        "prompt_preview": _url("case-prompt-preview", f"/api/cases/{cid}/prompt-preview/", pk=cid),
        "extract_note": _url("case-extract-note", f"/api/cases/{cid}/extract-note/", pk=cid),
        "jobs": _url("job-list", "/api/jobs/"),
        "job": "/api/jobs/{id}/",
        "job_ws": "/ws/jobs/{id}/",
    }


def version_json(version) -> dict:
    data = version.data or {}
    risk = clinical.nccn_risk_group(data) if version.case.cancer_type == "prostate" else None
    author = version.author
    return {
        "id": version.pk,
        "version": version.version,
        "data": data,
        "prompt_text": version.prompt_text,
        "author": author.get_username() if author else "",
        "created": version.created.isoformat() if version.created else None,
        "risk_group": risk,
    }


def structures_json(case) -> list[dict]:
    """Ground truth and the other ROIs on the case's CT grid, each as a compact RLE payload."""
    from portal.imaging.models import ROI
    from portal.imaging.volume import roi_mask, series_grid
    from portal.jobs.contour import encode_contour

    grid = series_grid(case.ct_series)
    rois = list(ROI.objects.filter(structure_set__ct_series=case.ct_series, empty=False)
                .exclude(mask_path="").select_related("structure_set").order_by("structure_set_id", "number"))
    if case.ground_truth_id and all(r.pk != case.ground_truth_id for r in rois) and case.ground_truth.mask_path:
        rois.insert(0, case.ground_truth)
    out = []
    for roi in rois:
        if roi.structure_set.source == "model":
            continue  # model outputs come from their jobs, with their metrics
        try:
            payload = encode_contour(roi_mask(roi), grid)
        except (OSError, ValueError) as exc:  # a missing mask file must not take the page down
            log.warning("ROI %s (%s) not shown: %s", roi.pk, roi.name, exc)
            continue
        out.append({"id": roi.pk, "name": roi.name + (" (ground truth)" if roi.pk == case.ground_truth_id else ""),
                    "ground_truth": roi.pk == case.ground_truth_id, "payload": payload})
    out.sort(key=lambda s: not s["ground_truth"])
    return out


def probability_bands(job, grid) -> list[dict]:
    from portal.jobs.contour import encode_contour
    from portal.jobs.services import load_probability

    if not job.probability_path:
        return []
    try:
        probability = load_probability(job.probability_path)
    except (OSError, ValueError) as exc:
        log.warning("probability map of job %s not shown: %s", job.pk, exc)
        return []
    return [{"level": level, "payload": encode_contour(probability >= level, grid)} for level in PROBABILITY_LEVELS]


def results_json(case, *, with_probability: bool = True) -> list[dict]:
    """The latest succeeded inference of each checkpoint on this case, oldest first."""
    from portal.imaging.volume import series_grid
    from portal.jobs.models import Kind, State
    from portal.jobs.services import contour_payload

    jobs = case.jobs.filter(kind=Kind.INFERENCE, state=State.SUCCEEDED).exclude(mask_path="").order_by("-finished")
    latest = {}
    for job in jobs:
        latest.setdefault(job.checkpoint, job)
    grid = series_grid(case.ct_series) if latest else None
    out = []
    for job in sorted(latest.values(), key=lambda j: j.finished or j.created):
        family = model_family(job.checkpoint)
        try:
            payload = contour_payload(job)
        except (OSError, ValueError) as exc:
            log.warning("result of job %s not shown: %s", job.pk, exc)
            continue
        version = job.context_version.version if job.context_version_id else None
        label = "Vision-only" if family == "vision" else "Multimodal"
        out.append({
            "job": job.pk, "model": family, "checkpoint": job.checkpoint,
            "name": f"{label} ({job.checkpoint}{f', context v{version}' if version else ''})",
            "payload": payload, "metrics": job.metrics or {},
            "probability_bands": probability_bands(job, grid) if with_probability else [],
        })
    return out


def case_page_config(case, *, dicomweb_root: str = "/dicomweb") -> dict:
    series = case.ct_series
    return {
        "case": {
            "id": case.pk, "label": case.label, "cancer_type": case.cancer_type, "site": case.site.code,
            "study_uid": series.study.study_uid, "series_uid": series.series_uid, "slices": series.num_slices,
        },
        "dicomweb_root": dicomweb_root,
        "schema": clinical.schema_as_json(case.cancer_type),
        "versions": [version_json(v) for v in case.context_versions.select_related("author", "case").order_by("version")],
        "structures": structures_json(case),
        "results": results_json(case),
        "checkpoints": checkpoints_by_family(),
        "api": api_urls(case),
    }
