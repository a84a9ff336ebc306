"""Blinded contour payloads for raters: geometry and mask only, one neutral colour for every source.

Nothing in the payload depends on which model made the contour except the
mask itself (no labels, ids, colours or names of the source).
"""
from __future__ import annotations

from dicom_rt.geometry import Grid
from portal.imaging import storage

BLINDED_COLOUR = [255, 215, 0]
REFERENCE_COLOUR = [0, 200, 255]


def series_grid(series) -> Grid:
    iop = series.image_orientation or [1, 0, 0, 0, 1, 0]
    return Grid(
        shape=(int(series.num_slices), int(series.rows), int(series.columns)),
        origin=tuple(series.origin or (0.0, 0.0, 0.0)),
        row_cosine=tuple(iop[:3]),
        column_cosine=tuple(iop[3:]),
        pixel_spacing=tuple(series.pixel_spacing or (1.0, 1.0)),
        slice_spacing=float(series.slice_spacing or 1.0),
    )


def _payload(mask_path: str, series, name: str, colour) -> dict:
    from dicom_rt.payload import encode_mask  # written alongside; imported lazily

    mask = storage.load_mask(mask_path)
    payload = encode_mask(mask, series_grid(series))
    payload["name"] = name
    payload["color"] = colour
    return payload


def contour_payload(rater_item) -> dict:
    return _payload(rater_item.item.mask_path, rater_item.item.ct_series, f"Contour {rater_item.letter}", BLINDED_COLOUR)


def reference_payload(rater_item) -> dict:
    case = rater_item.item.case
    return _payload(case.ground_truth.mask_path, rater_item.item.ct_series, "Reference", REFERENCE_COLOUR)
