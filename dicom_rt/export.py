"""A boolean mask on a CT grid -> RTSTRUCT, DICOM SEG (highdicom) or NIfTI bytes.

Plain Python. The CT is given as its pydicom datasets sorted along the slice
normal (the mask's slice axis, ``Grid.from_datasets`` order); pixel data is
only needed for SEG. NIfTI gets the RAS affine: DICOM patient space is LPS, so
the first two rows of ``Grid.index_to_patient_matrix`` are negated, and the
array is stored as [column, row, slice] (NIfTI i, j, k).
"""
from __future__ import annotations

import gzip
import io
from typing import Sequence

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_rt.geometry import Grid

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
DEFAULT_COLOR = (255, 0, 0)


class ExportError(ValueError):
    """The mask cannot be exported; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def _check(mask: np.ndarray, grid: Grid) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != tuple(grid.shape):
        raise ExportError("mask", f"shape {mask.shape} differs from the CT grid {tuple(grid.shape)}")
    return mask.astype(bool)


def dataset_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# -- NIfTI -------------------------------------------------------------------------------------------------

def nifti_affine(grid: Grid) -> np.ndarray:
    """RAS affine taking NIfTI voxel (i=column, j=row, k=slice) to RAS millimetres."""
    return LPS_TO_RAS @ grid.index_to_patient_matrix()


def mask_to_nifti(mask: np.ndarray, grid: Grid) -> bytes:
    """A gzipped NIfTI-1 label image (uint8 0/1) of ``mask`` with qform = sform = the RAS affine."""
    mask = _check(mask, grid)
    affine = nifti_affine(grid)
    img = nib.Nifti1Image(np.ascontiguousarray(mask.transpose(2, 1, 0).astype(np.uint8)), affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=6)


def nifti_to_mask(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``mask_to_nifti`` for tests: the [slice, row, column] mask and the affine."""
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    img = nib.Nifti1Image.from_bytes(raw)
    return np.asarray(img.dataobj).transpose(2, 1, 0) > 0, img.affine


# -- RTSTRUCT ----------------------------------------------------------------------------------------------

def mask_to_rtstruct(ct_datasets_sorted: Sequence[Dataset], rois: Sequence[tuple], *,
                     structure_set_label: str = "ContextRT export") -> Dataset:
    """RTSTRUCT referencing the CT; ``rois`` are (name, mask, color, interpreted_type) tuples."""
    from dicom_rt.rtstruct_write import RTStructWriteError, build_rtstruct

    try:
        return build_rtstruct(list(ct_datasets_sorted), list(rois), structure_set_label=structure_set_label,
                              series_description="ContextRT export")
    except RTStructWriteError as exc:
        raise ExportError(exc.field, str(exc)) from exc


# -- DICOM SEG ---------------------------------------------------------------------------------------------

def mask_to_seg(ct_datasets_sorted: Sequence[Dataset], mask: np.ndarray, *, name: str, color=None,
                interpreted_type: str = "CTV") -> Dataset:
    """A binary DICOM Segmentation (highdicom) of one segment on the CT's frames."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    grid, _ = Grid.from_datasets(list(ct_datasets_sorted))
    mask = _check(mask, grid)
    label = (name or "ROI").strip()[:64] or "ROI"
    rgb = tuple(int(v) for v in (color or DEFAULT_COLOR))
    lab = hd.color.CIELabColor(*_rgb_to_lab(rgb)) if hasattr(hd, "color") else None
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label,
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        display_color=lab,
    )
    seg = hd.seg.Segmentation(
        source_images=list(ct_datasets_sorted),
        pixel_array=mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=generate_uid(),
        series_number=901,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="ContextRT",
        manufacturer_model_name="ContextRT portal",
        software_versions="1",
        device_serial_number="0",
        series_description=f"ContextRT SEG {label}"[:64],
        omit_empty_frames=False,
    )
    return seg


def _rgb_to_lab(rgb) -> tuple[float, float, float]:
    """sRGB 0-255 -> CIE L*a*b* (D65), as DICOM RecommendedDisplayCIELabValue expects."""
    c = np.asarray(rgb, dtype=float) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ c
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return float(116 * f[1] - 16), float(500 * (f[0] - f[1])), float(200 * (f[1] - f[2]))


def seg_to_mask(seg: Dataset, ct_datasets_sorted: Sequence[Dataset]) -> np.ndarray:
    """Inverse of ``mask_to_seg`` for tests: the segment on the CT grid, frames matched by SOP Instance UID."""
    import highdicom as hd

    seg = hd.seg.Segmentation.from_dataset(seg)
    uids = [ds.SOPInstanceUID for ds in ct_datasets_sorted]
    volume = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])
    return np.asarray(volume)[..., 0].astype(bool)
