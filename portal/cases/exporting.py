"""Export of a case's ROI or model-output mask as RTSTRUCT, DICOM SEG or NIfTI, and its compact payload.

The mask comes from the store (an ROI on the case's CT grid, or a finished job's
mask); the CT headers come from the stored, de-identified instances, so exports
reference the catalogue's UIDs. File names are built from ids, never from input.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pydicom
from django.http import Http404

from dicom_rt import export as rt_export
from dicom_rt import payload as rt_payload
from portal.cases.services import CaseInputError, get_case_roi
from portal.imaging import storage
from portal.imaging.volume import roi_mask, series_grid

FORMATS = {
    "rtstruct": ("application/dicom", ".dcm"),
    "seg": ("application/dicom", ".dcm"),
    "nifti": ("application/gzip", ".nii.gz"),
}
DEFAULT_COLOR = (255, 0, 0)


@dataclass
class MaskSource:
    name: str
    mask: np.ndarray
    color: tuple
    interpreted_type: str
    key: str  # "roi-12" / "job-7": used in the download file name


def roi_source(case, roi_id) -> MaskSource:
    roi = get_case_roi(case, roi_id)
    if not roi.mask_path:
        raise CaseInputError({"roi": f"ROI {roi.pk} ({roi.name}) has no stored mask"})
    return MaskSource(roi.name, roi_mask(roi), tuple(roi.color or DEFAULT_COLOR),
                      roi.interpreted_type or "CTV", f"roi-{roi.pk}")


def job_source(case, job_id) -> MaskSource:
    from portal.jobs.models import Job

    try:
        job = Job.objects.get(pk=int(job_id), case=case)
    except (Job.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("no such job on this case") from None
    if not job.mask_path:
        raise CaseInputError({"job": f"job {job.pk} has no contour (state {job.state})"})
    return MaskSource(f"CTV model job {job.pk}"[:64], storage.load_mask(job.mask_path), (0, 160, 255), "CTV",
                      f"job-{job.pk}")


def mask_source(case, params) -> MaskSource:
    """The mask named by ``roi`` or ``job`` in the query parameters (exactly one)."""
    roi, job = params.get("roi"), params.get("job")
    if bool(roi) == bool(job):
        raise CaseInputError({"roi": "give exactly one of roi=<ROI id> or job=<job id>"})
    return roi_source(case, roi) if roi else job_source(case, job)


def ct_datasets(series, *, with_pixels: bool) -> list:
    """The stored CT instances of ``series`` as datasets, in slice order (the mask's slice axis)."""
    instances = list(series.instances.order_by("slice_index"))
    if len(instances) != series.num_slices:
        raise CaseInputError({"ct": f"series {series.series_uid} has {len(instances)} of {series.num_slices} slices stored"})
    return [pydicom.dcmread(storage.absolute(i.file_path), stop_before_pixels=not with_pixels) for i in instances]


def export_mask(case, fmt: str, params) -> tuple[bytes, str, str]:
    """(content, content type, file name) of the chosen mask in ``fmt``: rtstruct, seg or nifti."""
    if fmt not in FORMATS:
        raise CaseInputError({"format": f"{fmt!r} is not one of {', '.join(FORMATS)}"})
    source = mask_source(case, params)
    grid = series_grid(case.ct_series)
    if source.mask.shape != tuple(grid.shape):
        raise CaseInputError({"mask": f"stored mask shape {source.mask.shape} differs from the CT grid {grid.shape}"})
    try:
        if fmt == "nifti":
            content = rt_export.mask_to_nifti(source.mask, grid)
        elif fmt == "rtstruct":
            ds = rt_export.mask_to_rtstruct(ct_datasets(case.ct_series, with_pixels=False),
                                            [(source.name, source.mask, source.color, source.interpreted_type)])
            content = rt_export.dataset_bytes(ds)
        else:
            ds = rt_export.mask_to_seg(ct_datasets(case.ct_series, with_pixels=True), source.mask,
                                       name=source.name, color=source.color)
            content = rt_export.dataset_bytes(ds)
    except rt_export.ExportError as exc:
        raise CaseInputError({exc.field: str(exc)}) from None
    content_type, suffix = FORMATS[fmt]
    label = re.sub(r"[^A-Za-z0-9_-]", "_", case.label)
    return content, content_type, f"{label}_{source.key}_{fmt}{suffix}"


def mask_payload(case, params) -> dict:
    """The compact contour payload (``dicom_rt.payload``) of the chosen mask."""
    encoding = params.get("encoding") or "varint-deflate-base64"
    contours = str(params.get("contours", "")).lower() in ("1", "true", "yes")
    source = mask_source(case, params)
    try:
        return rt_payload.encode_mask(source.mask, series_grid(case.ct_series), encoding=encoding,
                                      contours=contours, name=source.name, color=source.color)
    except rt_payload.PayloadError as exc:
        raise CaseInputError({exc.field: str(exc)}) from None
