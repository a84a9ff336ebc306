"""RTSTRUCT ROIs -> boolean masks on a CT Grid (pixel-centre inclusion, even-odd holes).

Plain Python (pydicom + numpy). Contour points (patient mm) are mapped to
fractional [slice, row, column] indices through ``Grid.patient_to_voxel``; a
closed planar contour is assigned to the slice whose plane it lies on (by plane
position, so it works even when ContourImageSequence references point to
instances that are not present), and the pixels whose centres fall inside are
set. Contours on the same slice are combined by XOR, so nested contours make
holes (even-odd rule), as RTSTRUCT exporters (Eclipse, MIM) write them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dicom_rt.geometry import Grid


class StructureSetError(ValueError):
    """An RTSTRUCT cannot be parsed; ``tag`` names the offending attribute or sequence."""

    def __init__(self, message: str, tag: str | None = None):
        self.tag = tag
        super().__init__(message)


@dataclass
class Contour:
    points: np.ndarray  # (N, 3) patient mm
    geometric_type: str
    referenced_sop_uids: list[str]


@dataclass
class RoiContours:
    number: int
    name: str
    interpreted_type: str
    color: list[int] | None
    frame_of_reference_uid: str
    contours: list[Contour] = field(default_factory=list)


@dataclass
class RasterResult:
    mask: np.ndarray  # bool [slice, row, column]
    warnings: list[str]
    unresolved_sop_uids: list[str]  # ContourImageSequence references not among the grid's instances
    off_grid_contours: list[dict]  # contours whose plane is not a slice of the grid: {"position_mm", "sop_uids"}


def parse_structure_set(ds) -> list[RoiContours]:
    """Read every ROI of an RTSTRUCT dataset (ROIs without contours are kept, empty)."""
    if "StructureSetROISequence" not in ds:
        raise StructureSetError("RTSTRUCT has no StructureSetROISequence", "StructureSetROISequence")
    rois: dict[int, RoiContours] = {}
    for item in ds.StructureSetROISequence:
        if "ROINumber" not in item:
            raise StructureSetError("a StructureSetROISequence item has no ROINumber", "ROINumber")
        number = int(item.ROINumber)
        rois[number] = RoiContours(number=number, name=str(item.get("ROIName", f"ROI {number}")), interpreted_type="",
                                   color=None, frame_of_reference_uid=str(item.get("ReferencedFrameOfReferenceUID", "")))
    for obs in ds.get("RTROIObservationsSequence", []):
        ref = obs.get("ReferencedROINumber")
        if ref is not None and int(ref) in rois:
            rois[int(ref)].interpreted_type = str(obs.get("RTROIInterpretedType", "") or "")
    for item in ds.get("ROIContourSequence", []):
        if "ReferencedROINumber" not in item:
            raise StructureSetError("a ROIContourSequence item has no ReferencedROINumber", "ReferencedROINumber")
        number = int(item.ReferencedROINumber)
        if number not in rois:
            raise StructureSetError(f"ROIContourSequence refers to ROI {number}, which StructureSetROISequence does not define",
                                    "ReferencedROINumber")
        roi = rois[number]
        if "ROIDisplayColor" in item:
            roi.color = [int(v) for v in item.ROIDisplayColor]
        for contour in item.get("ContourSequence", []):
            data = contour.get("ContourData")
            if data is None or len(data) % 3 != 0:
                raise StructureSetError(f"ROI {number} ({roi.name}) has a contour whose ContourData is not x,y,z triplets",
                                        "ContourData")
            refs = [str(img.ReferencedSOPInstanceUID) for img in contour.get("ContourImageSequence", [])
                    if "ReferencedSOPInstanceUID" in img]
            roi.contours.append(Contour(points=np.asarray([float(v) for v in data], dtype=float).reshape(-1, 3),
                                        geometric_type=str(contour.get("ContourGeometricType", "CLOSED_PLANAR")),
                                        referenced_sop_uids=refs))
    return [rois[k] for k in sorted(rois)]


def fill_polygon(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres lie inside the polygon (even-odd rule; fractional row/column vertices)."""
    out = np.zeros(shape, dtype=bool)
    if len(rows) < 3:
        return out
    r0, c0 = rows, cols
    r1, c1 = np.roll(rows, -1), np.roll(cols, -1)
    lo = max(0, int(np.ceil(rows.min())))
    hi = min(shape[0] - 1, int(np.floor(rows.max())))
    for r in range(lo, hi + 1):
        # Half-open rule on edges so a vertex on the scanline counts once.
        crosses = ((r0 <= r) & (r1 > r)) | ((r1 <= r) & (r0 > r))
        if not crosses.any():
            continue
        t = (r - r0[crosses]) / (r1[crosses] - r0[crosses])
        xs = np.sort(c0[crosses] + t * (c1[crosses] - c0[crosses]))
        for a, b in zip(xs[0::2], xs[1::2]):
            start = max(0, int(np.ceil(a)))
            stop = min(shape[1], int(np.ceil(b)))  # centre c inside when a <= c < b
            if stop > start:
                out[r, start:stop] ^= True
    return out


def rasterise_roi(roi: RoiContours, grid: Grid, slice_sop_uids: list[str] | None = None,
                  *, plane_tolerance: float = 0.25) -> RasterResult:
    """Rasterise one ROI on ``grid``.

    ``slice_sop_uids`` (SOP Instance UIDs of the grid's slices, in slice order)
    lets references be checked; contours are always placed by plane position.
    ``plane_tolerance`` is a fraction of the slice spacing.
    """
    mask = np.zeros(grid.shape, dtype=bool)
    warnings: list[str] = []
    known = set(slice_sop_uids or [])
    unresolved: list[str] = []
    off_grid: list[dict] = []
    normal = grid.normal
    for contour in roi.contours:
        for uid in contour.referenced_sop_uids:
            if uid not in known and uid not in unresolved:
                unresolved.append(uid)
        if contour.geometric_type == "POINT" or len(contour.points) < 3:
            continue  # points and degenerate contours enclose no pixel centre
        idx = grid.patient_to_voxel(contour.points)  # [slice, row, column]
        slice_f = float(np.median(idx[:, 0]))
        slice_i = int(round(slice_f))
        if np.ptp(idx[:, 0]) > 2 * plane_tolerance:
            warnings.append(f"ROI {roi.number} ({roi.name}): a contour is not parallel to the image planes; skipped")
            continue
        if abs(slice_f - slice_i) > plane_tolerance or not 0 <= slice_i < grid.shape[0]:
            off_grid.append({"position_mm": round(float(np.dot(normal, contour.points[0])), 3),
                             "sop_uids": list(contour.referenced_sop_uids)})
            continue
        mask[slice_i] ^= fill_polygon(idx[:, 1], idx[:, 2], grid.shape[1:])
    if off_grid:
        planes = sorted({c["position_mm"] for c in off_grid})
        warnings.append(f"ROI {roi.number} ({roi.name}): {len(off_grid)} contour(s) on plane(s) "
                        f"{', '.join(f'{p:g}' for p in planes[:10])}{' ...' if len(planes) > 10 else ''} mm "
                        "are not on a slice of the CT series and were dropped")
    return RasterResult(mask=mask, warnings=warnings, unresolved_sop_uids=unresolved, off_grid_contours=off_grid)


def contour_plane_grid(grid: Grid, roi_list: list[RoiContours]) -> Grid:
    """The CT's in-plane geometry extended over every contour plane (for structure sets on incomplete series)."""
    normal = grid.normal
    planes = sorted({round(float(np.dot(normal, c.points[0])), 3) for r in roi_list for c in r.contours if len(c.points)})
    if not planes:
        return grid
    steps = np.diff(planes)
    step = float(np.median(steps)) if len(steps) else grid.slice_spacing
    count = int(round((planes[-1] - planes[0]) / step)) + 1
    origin = np.asarray(grid.origin) + (planes[0] - float(np.dot(normal, grid.origin))) * normal
    return Grid(shape=(count, grid.shape[1], grid.shape[2]), origin=tuple(float(v) for v in origin),
                row_cosine=grid.row_cosine, column_cosine=grid.column_cosine,
                pixel_spacing=grid.pixel_spacing, slice_spacing=step)
