"""CT volumes and ROI masks from the store, on the Grid of their series (no re-parsing of whole files)."""
from __future__ import annotations

import hashlib

import numpy as np

from dicom_rt.geometry import Grid
from portal.imaging import storage


def series_grid(series) -> Grid:
    if not series.num_slices or series.origin is None:
        raise ValueError(f"series {series.series_uid} has no image geometry (modality {series.modality})")
    return Grid(shape=(series.num_slices, series.rows, series.columns), origin=tuple(series.origin),
                row_cosine=tuple(series.image_orientation[:3]), column_cosine=tuple(series.image_orientation[3:]),
                pixel_spacing=tuple(series.pixel_spacing), slice_spacing=series.slice_spacing)


def series_fingerprint(series) -> str:
    """SHA-256 over every instance's SOP Instance UID and stored-file SHA-256 (and size), in UID order: it
    changes whenever an instance is added, removed or stored with other content, so a worker may keep a
    decoded volume under it (``gpu_worker.ct_cache``)."""
    h = hashlib.sha256(series.series_uid.encode())
    for sop_uid, sha, size in series.instances.order_by("sop_uid").values_list("sop_uid", "source_sha256", "file_size"):
        h.update(f"\n{sop_uid}:{sha}:{size}".encode())
    return h.hexdigest()


def _first_value(metadata: dict, tag: str, default):
    value = metadata.get(tag, {}).get("Value")
    return value[0] if value else default


def load_ct_volume(series) -> tuple[np.ndarray, Grid]:
    """HU as int16 [slice, row, column] (Rescale Slope/Intercept applied, clipped to int16) and the Grid."""
    grid = series_grid(series)
    volume = np.empty(grid.shape, dtype=np.int16)
    instances = list(series.instances.order_by("slice_index"))
    if len(instances) != grid.shape[0]:
        raise ValueError(f"series {series.series_uid}: {len(instances)} stored instances for {grid.shape[0]} slices")
    for k, inst in enumerate(instances):
        meta = inst.metadata
        signed = int(_first_value(meta, "00280103", 0)) == 1  # PixelRepresentation
        with open(storage.absolute(inst.file_path), "rb") as fh:
            fh.seek(inst.pixel_offset)
            raw = fh.read(grid.shape[1] * grid.shape[2] * 2)
        pixels = np.frombuffer(raw, dtype="<i2" if signed else "<u2").reshape(grid.shape[1:])
        slope = float(_first_value(meta, "00281053", 1.0))
        intercept = float(_first_value(meta, "00281052", 0.0))
        hu = pixels.astype(np.float32) * slope + intercept
        volume[k] = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
    return volume, grid


def roi_mask(roi) -> np.ndarray:
    """The stored boolean mask of an ROI, [slice, row, column] on its CT series grid."""
    if not roi.mask_path:
        raise ValueError(f"ROI {roi.pk} ({roi.name}) has no stored mask")
    return storage.load_mask(roi.mask_path)
