"""Geometry of a CT image grid in DICOM patient coordinates (LPS, mm).

Array convention used across ContextRT: a volume is a numpy array indexed
``[slice, row, column]`` (z, y, x for an axial HFS scan), slices sorted by
ascending position along the slice normal. ``Grid`` maps those indices to
patient millimetres from ImagePositionPatient / ImageOrientationPatient /
PixelSpacing and checks the series is one consistent, evenly spaced volume.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


class GeometryError(ValueError):
    """A series is not one consistent volume; ``uid`` names the offending instance when known."""

    def __init__(self, message: str, uid: str | None = None):
        self.uid = uid
        super().__init__(message)


@dataclass(frozen=True)
class Grid:
    shape: tuple[int, int, int]  # (slices, rows, columns)
    origin: tuple[float, float, float]  # patient (x, y, z) mm of the centre of voxel [0, 0, 0]
    row_cosine: tuple[float, float, float]  # IOP[0:3]: direction of increasing column index
    column_cosine: tuple[float, float, float]  # IOP[3:6]: direction of increasing row index
    pixel_spacing: tuple[float, float]  # DICOM order: (between rows, between columns) mm
    slice_spacing: float  # mm between consecutive slices along ``normal``

    @property
    def normal(self) -> np.ndarray:
        return np.cross(np.asarray(self.row_cosine), np.asarray(self.column_cosine))

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Spacing per array axis (slice, row, column) in mm."""
        return (float(self.slice_spacing), float(self.pixel_spacing[0]), float(self.pixel_spacing[1]))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(self.slice_spacing * self.pixel_spacing[0] * self.pixel_spacing[1])

    def index_to_patient_matrix(self) -> np.ndarray:
        """4x4 matrix taking homogeneous (column, row, slice, 1) to patient (x, y, z, 1)."""
        m = np.eye(4)
        m[:3, 0] = np.asarray(self.row_cosine) * self.pixel_spacing[1]
        m[:3, 1] = np.asarray(self.column_cosine) * self.pixel_spacing[0]
        m[:3, 2] = self.normal * self.slice_spacing
        m[:3, 3] = self.origin
        return m

    def voxel_to_patient(self, slice_row_col: np.ndarray) -> np.ndarray:
        """(N, 3) [slice, row, column] indices -> (N, 3) patient mm."""
        idx = np.atleast_2d(np.asarray(slice_row_col, dtype=float))
        crs = np.c_[idx[:, 2], idx[:, 1], idx[:, 0], np.ones(len(idx))]
        return (self.index_to_patient_matrix() @ crs.T).T[:, :3]

    def patient_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) patient mm -> (N, 3) fractional [slice, row, column] indices."""
        pts = np.atleast_2d(np.asarray(xyz, dtype=float))
        inv = np.linalg.inv(self.index_to_patient_matrix())
        crs = (inv @ np.c_[pts, np.ones(len(pts))].T).T[:, :3]
        return crs[:, ::-1].copy()

    def slice_positions(self) -> np.ndarray:
        """Position of each slice along the normal (mm)."""
        start = float(np.dot(self.normal, self.origin))
        return start + self.slice_spacing * np.arange(self.shape[0])

    def to_json(self) -> dict:
        return {
            "shape": list(self.shape),
            "origin": list(self.origin),
            "row_cosine": list(self.row_cosine),
            "column_cosine": list(self.column_cosine),
            "pixel_spacing": list(self.pixel_spacing),
            "slice_spacing": self.slice_spacing,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Grid":
        return cls(
            shape=tuple(int(v) for v in data["shape"]),
            origin=tuple(float(v) for v in data["origin"]),
            row_cosine=tuple(float(v) for v in data["row_cosine"]),
            column_cosine=tuple(float(v) for v in data["column_cosine"]),
            pixel_spacing=tuple(float(v) for v in data["pixel_spacing"]),
            slice_spacing=float(data["slice_spacing"]),
        )

    @classmethod
    def from_datasets(cls, datasets: Sequence, *, tolerance_mm: float = 0.01) -> tuple["Grid", list]:
        """Build the grid of an image series and return it with the datasets sorted by position.

        Raises GeometryError naming the instance when orientation, spacing or
        matrix size differ, or slice positions are duplicated, uneven or gapped.
        """
        if not datasets:
            raise GeometryError("the series has no images")
        first = datasets[0]
        for tag in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "Columns"):
            for ds in datasets:
                if tag not in ds:
                    raise GeometryError(f"missing {tag}", getattr(ds, "SOPInstanceUID", None))
        iop = np.asarray([float(v) for v in first.ImageOrientationPatient])
        spacing = np.asarray([float(v) for v in first.PixelSpacing])
        rows, cols = int(first.Rows), int(first.Columns)
        for ds in datasets[1:]:
            uid = getattr(ds, "SOPInstanceUID", None)
            if not np.allclose([float(v) for v in ds.ImageOrientationPatient], iop, atol=1e-4):
                raise GeometryError("ImageOrientationPatient differs within the series", uid)
            if not np.allclose([float(v) for v in ds.PixelSpacing], spacing, atol=1e-4):
                raise GeometryError("PixelSpacing differs within the series", uid)
            if int(ds.Rows) != rows or int(ds.Columns) != cols:
                raise GeometryError("Rows/Columns differ within the series", uid)
        row_cos, col_cos = iop[:3], iop[3:]
        normal = np.cross(row_cos, col_cos)
        positions = np.asarray([np.dot(normal, [float(v) for v in ds.ImagePositionPatient]) for ds in datasets])
        order = np.argsort(positions, kind="stable")
        sorted_ds = [datasets[i] for i in order]
        pos = positions[order]
        if len(pos) > 1:
            gaps = np.diff(pos)
            dup = np.where(gaps < tolerance_mm)[0]
            if dup.size:
                raise GeometryError(
                    f"two slices at the same position {pos[dup[0]]:.3f} mm", getattr(sorted_ds[dup[0] + 1], "SOPInstanceUID", None)
                )
            step = float(np.median(gaps))
            bad = np.where(np.abs(gaps - step) > max(tolerance_mm, 0.01 * step))[0]
            if bad.size:
                i = int(bad[0])
                raise GeometryError(
                    f"slice positions are not evenly spaced: gap of {gaps[i]:.3f} mm after {pos[i]:.3f} mm "
                    f"where {step:.3f} mm is expected (missing or extra slice)",
                    getattr(sorted_ds[i + 1], "SOPInstanceUID", None),
                )
            # In-plane origins must lie on one line along the normal.
            ipps = np.asarray([[float(v) for v in ds.ImagePositionPatient] for ds in sorted_ds])
            expected = ipps[0] + np.outer(pos - pos[0], normal)
            off = np.linalg.norm(ipps - expected, axis=1)
            if off.max() > max(0.05, 0.05 * step):
                i = int(off.argmax())
                raise GeometryError("ImagePositionPatient is off the slice normal (tilted or shifted slice)",
                                    getattr(sorted_ds[i], "SOPInstanceUID", None))
        else:
            thickness = float(getattr(first, "SpacingBetweenSlices", 0) or getattr(first, "SliceThickness", 0) or 1.0)
            step = thickness
        grid = cls(
            shape=(len(sorted_ds), rows, cols),
            origin=tuple(float(v) for v in sorted_ds[0].ImagePositionPatient),
            row_cosine=tuple(float(v) for v in row_cos),
            column_cosine=tuple(float(v) for v in col_cos),
            pixel_spacing=(float(spacing[0]), float(spacing[1])),
            slice_spacing=float(step),
        )
        return grid, sorted_ds
