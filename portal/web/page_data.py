"""The JSON each browser page starts from: case, schema, context versions, structures and model results.

Plain functions over the models and the shared encoders (``dicom_rt.payload``, ``clinical``), so the
views stay thin and this is testable without a browser.
"""
from __future__ import annotations

import logging

from django.urls import reverse

import clinical

log = logging.getLogger(__name__)

VISION_MARKERS = ("vision", "baseline", "image_only", "imageonly")


def model_family(checkpoint: str) -> str:
    """'vision' for image-only checkpoints, else 'multimodal' (the checkpoint file name says which)."""
    name = (checkpoint or "").lower()
    return "vision" if any(marker in name for marker in VISION_MARKERS) else "multimodal"


def checkpoints_by_family(cancer_type: str | None = None) -> dict:
    """The vision-only and multimodal checkpoint the compare and what-if controls run for a case of
    ``cancer_type`` (its own type's first, never another type's), and every available name."""
    from portal.jobs.services import available_checkpoints, checkpoints_for

    out = {"vision": None, "multimodal": None, "all": available_checkpoints()}
    for name in checkpoints_for(cancer_type):
        family = model_family(name)
        if out[family] is None:
            out[family] = name
    return out


def api_urls(case) -> dict:
    """Routes of the cases and jobs APIs the page calls ("{id}" is filled in by the browser)."""
    cid = case.pk
    job_template = reverse("job-detail", kwargs={"pk": 0}).replace("/0/", "/{id}/")
    return {
        "case": reverse("case-detail", kwargs={"pk": cid}),
        "schema": reverse("context-schema", kwargs={"cancer_type": case.cancer_type}),
        "context_versions": reverse("case-context-versions", kwargs={"pk": cid}),
        "prompt_preview": reverse("case-prompt-preview", kwargs={"pk": cid}),
        "extract_note": reverse("case-extract-note", kwargs={"pk": cid}),
        "jobs": reverse("job-list"),
        "job": job_template,
        "job_contour": reverse("job-contour", kwargs={"pk": 0}).replace("/0/", "/{id}/"),
        "job_ws": "/ws/jobs/{id}/",  # portal.jobs.routing
    }


def version_json(version) -> dict:
    from portal.cases.services import version_json as cases_version_json

    return cases_version_json(version, version.case.cancer_type)


def structures_json(case) -> list[dict]:
    """Ground truth and the other ROIs on the case's CT grid, each as a compact RLE payload."""
    from dicom_rt.payload import encode_mask
    from portal.imaging.models import ROI
    from portal.imaging.volume import roi_mask, series_grid

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
            payload = encode_mask(roi_mask(roi), grid, name=roi.name)
        except (OSError, ValueError) as exc:  # a missing mask file must not take the page down
            log.warning("ROI %s (%s) not shown: %s", roi.pk, roi.name, exc)
            continue
        out.append({"id": roi.pk, "name": roi.name + (" (ground truth)" if roi.pk == case.ground_truth_id else ""),
                    "ground_truth": roi.pk == case.ground_truth_id, "payload": payload})
    out.sort(key=lambda s: not s["ground_truth"])
    return out


def probability_payload(job, grid) -> dict | None:
    """The job's probability map in the compact quantised form, or None when it has none."""
    from dicom_rt.payload import encode_probability
    from portal.jobs.services import load_probability

    if not job.probability_path:
        return None
    try:
        return encode_probability(load_probability(job.probability_path), grid, scale=63)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("probability map of job %s not shown: %s", job.pk, exc)
        return None


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
        except (OSError, ValueError, KeyError) as exc:
            log.warning("result of job %s not shown: %s", job.pk, exc)
            continue
        version = job.context_version.version if job.context_version_id else None
        label = "Vision-only" if family == "vision" else "Multimodal"
        out.append({
            "job": job.pk, "model": family, "checkpoint": job.checkpoint,
            "name": f"{label} ({job.checkpoint}{f', context v{version}' if version else ''})",
            "payload": payload, "metrics": job.metrics or {},
            "probability": probability_payload(job, grid) if with_probability else None,
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
        "checkpoints": checkpoints_by_family(case.cancer_type),
        "api": api_urls(case),
    }
