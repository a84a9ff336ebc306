"""Contours produced by segmentation jobs as reading-study sources."""
from __future__ import annotations


def job_contour_source(case, spec: dict, where: str):
    from portal.reading.services import ContourSource, ReadingError

    try:
        from portal.jobs.models import Job
    except ImportError:  # jobs app without a Job model yet
        raise ReadingError(f"{where}: job sources are not available", field=where) from None
    job = Job.objects.filter(pk=spec.get("job"), case=case).first()
    mask_path = getattr(job, "mask_path", "") if job else ""
    if job is None or getattr(job, "state", None) != "succeeded" or not mask_path:
        raise ReadingError(f"{where}: job {spec.get('job')} is not a finished segmentation of case {case.label}",
                           field=where)
    label = spec.get("label") or str(getattr(job, "checkpoint", "") or f"job {job.pk}")
    return ContourSource(case=case, source_label=label, mask_path=mask_path, source_ref=f"job:{job.pk}")
