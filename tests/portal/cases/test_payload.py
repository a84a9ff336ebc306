"""Compact contour payload (dicom_rt.payload): exact round trips, size of a realistic CTV, bad payloads."""
import json

import numpy as np
import pytest

from dicom_rt import payload as P
from dicom_rt.geometry import Grid


def ct_grid(shape=(90, 512, 512)):
    return Grid(shape=shape, origin=(-250.0, -250.0, -120.0), row_cosine=(1.0, 0.0, 0.0),
                column_cosine=(0.0, 1.0, 0.0), pixel_spacing=(0.98, 0.98), slice_spacing=3.0)


def ellipsoid(shape, centre, radii):
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2


@pytest.mark.parametrize("encoding", P.MASK_ENCODINGS)
def test_mask_round_trip_is_exact_with_holes_and_irregular_edges(encoding):
    grid = ct_grid((20, 64, 80))
    rng = np.random.default_rng(3)
    mask = ellipsoid(grid.shape, (10, 30, 40), (7, 20, 30)) < 1
    mask &= rng.random(grid.shape) > 0.1  # speckled holes
    mask[:, 0, :5] = True  # runs touching the slice start and the last column
    mask[3, -1, -3:] = True
    payload = json.loads(json.dumps(P.encode_mask(mask, grid, encoding=encoding)))
    decoded, decoded_grid = P.decode_mask(payload)
    assert decoded_grid == grid
    assert np.array_equal(decoded, mask)
    assert payload["voxel_count"] == int(mask.sum())
    assert payload["slices"] == sorted(set(np.nonzero(mask)[0].tolist()))


def test_typical_ctv_is_tens_of_kilobytes_not_megabytes():
    grid = ct_grid()
    # A breast-sized CTV: ~100 cc over 60 slices of a 512 x 512 CT, with an irregular surface.
    rng = np.random.default_rng(0)
    bumpy = ellipsoid(grid.shape, (45, 260, 180), (30, 70, 90)) + 0.15 * rng.random(grid.shape)
    mask = bumpy < 1
    text = json.dumps(P.encode_mask(mask, grid))
    assert mask.sum() > 500_000
    assert len(text) < 100_000, f"{len(text)} bytes"
    smooth = json.dumps(P.encode_mask(ellipsoid(grid.shape, (45, 260, 180), (30, 70, 90)) < 1, grid))
    assert len(smooth) < 20_000


def test_empty_mask_and_contours_in_patient_mm():
    grid = ct_grid((4, 32, 32))
    empty = P.encode_mask(np.zeros(grid.shape, bool), grid)
    assert empty["slices"] == [] and empty["voxel_count"] == 0
    assert not P.decode_mask(empty)[0].any()
    mask = np.zeros(grid.shape, bool)
    mask[2, 10:20, 5:15] = True
    payload = P.encode_mask(mask, grid, contours=True)
    (polys,) = payload["contours_mm"]
    points = np.asarray(polys[0]).reshape(-1, 3)
    # The polygon surrounds the square's voxel centres, on the plane of slice 2.
    assert np.allclose(points[:, 2], grid.voxel_to_patient([[2, 0, 0]])[0, 2])
    lo, hi = grid.voxel_to_patient([[2, 10, 5], [2, 19, 14]])
    assert points[:, 0].min() < lo[0] and points[:, 0].max() > hi[0]
    assert points[:, 1].min() < lo[1] and points[:, 1].max() > hi[1]


@pytest.mark.parametrize("scale", [255, 15])
def test_probability_round_trip_and_size(scale):
    grid = ct_grid((60, 256, 256))
    r = np.sqrt(ellipsoid(grid.shape, (30, 128, 100), (20, 40, 50)))
    probability = 1.0 / (1.0 + np.exp(-(1.0 - r) * 25.0))
    payload = json.loads(json.dumps(P.encode_probability(probability, grid, scale=scale)))
    levels, decoded_grid = P.decode_probability(payload)
    assert decoded_grid == grid
    assert np.array_equal(levels, P.quantise(probability, scale))
    assert np.abs(levels / scale - probability).max() <= 0.5 / scale + 1e-6
    assert len(json.dumps(payload)) < 200_000


def test_bad_input_names_the_field():
    grid = ct_grid((4, 8, 8))
    with pytest.raises(P.PayloadError) as err:
        P.encode_mask(np.zeros((3, 8, 8), bool), grid)
    assert err.value.field == "mask"
    with pytest.raises(P.PayloadError) as err:
        P.encode_mask(np.zeros(grid.shape, bool), grid, encoding="png")
    assert err.value.field == "encoding"
    with pytest.raises(P.PayloadError) as err:
        P.encode_probability(np.zeros(grid.shape), grid, scale=0)
    assert err.value.field == "scale"
    payload = P.encode_mask(np.ones(grid.shape, bool), grid, encoding="json")
    payload["runs"][0] = [60, 10]
    with pytest.raises(P.PayloadError) as err:
        P.decode_mask(payload)
    assert err.value.field == "runs"
    payload["kind"] = "probability"
    with pytest.raises(P.PayloadError) as err:
        P.decode_mask(payload)
    assert err.value.field == "kind"
