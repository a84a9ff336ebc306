"""The viewer's JavaScript payload decoder (frontend/src/rle.js) against dicom_rt.payload, run in Node."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dicom_rt.geometry import Grid
from dicom_rt.payload import encode_mask, encode_probability

SCRIPT = Path(__file__).with_name("decode_payload.mjs")
GRID = Grid(shape=(6, 40, 50), origin=(-100.0, -80.0, 20.0), row_cosine=(1.0, 0.0, 0.0),
            column_cosine=(0.0, 1.0, 0.0), pixel_spacing=(0.9, 0.8), slice_spacing=2.5)


def _decode_in_node(payload: dict) -> dict:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    done = subprocess.run(["node", str(SCRIPT)], input=json.dumps(payload), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return {int(k): v for k, v in json.loads(done.stdout).items()}


@pytest.mark.parametrize("encoding", ["varint-deflate-base64", "json"])
def test_mask_decoder_matches_python(encoding):
    rng = np.random.default_rng(3)
    mask = np.zeros(GRID.shape, dtype=bool)
    mask[1:4, 5:30, 10:45] = rng.random((3, 25, 35)) > 0.4  # many short runs
    mask[5, 0, 0] = mask[5, -1, -1] = True  # runs touching both ends of a slice
    decoded = _decode_in_node(encode_mask(mask, GRID, encoding=encoding))
    assert sorted(decoded) == [1, 2, 3, 5]
    for k in range(GRID.shape[0]):
        expected = np.flatnonzero(mask[k].ravel()).tolist()
        assert [i for i, _ in decoded.get(k, [])] == expected


def test_probability_decoder_matches_python():
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in GRID.shape], indexing="ij")
    probability = np.clip(1.0 - np.sqrt(x ** 2 + y ** 2 + z ** 2), 0, 1)
    payload = encode_probability(probability, GRID, scale=63)
    decoded = _decode_in_node(payload)
    levels = np.rint(np.clip(probability, 0, 1) * 63)
    for k in range(GRID.shape[0]):
        expected = {i: round(v * 255 / 63) for i, v in enumerate(levels[k].ravel()) if v}
        assert dict((i, v) for i, v in decoded.get(k, [])) == expected


def test_decoder_rejects_foreign_payload():
    done = subprocess.run(["node", str(SCRIPT)], input=json.dumps({"format": "other", "version": 1}),
                          capture_output=True, text=True, timeout=60, check=False) if shutil.which("node") else None
    if done is None:
        pytest.skip("node is not installed")
    assert done.returncode != 0 and "contextrt-contour" in done.stderr


def _plane_in_node(payload: dict, focal, normal):
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    done = subprocess.run(["node", str(SCRIPT.with_name("reformat_planes.mjs"))],
                          input=json.dumps({"payload": payload, "focal": list(focal), "normal": list(normal)}),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("view, normal", [("sagittal", (1, 0, 0)), ("coronal", (0, -1, 0)), ("axial", (0, 0, 1))])
def test_reformatted_planes_of_mask_and_probability_match_numpy(view, normal):
    rng = np.random.default_rng(7)
    mask = np.zeros(GRID.shape, dtype=bool)
    mask[1:5, 3:35, 4:44] = rng.random((4, 32, 40)) > 0.5
    probability = np.where(mask, rng.random(GRID.shape), 0.0)
    slice_, row, col = 3, 17, 21
    focal = GRID.voxel_to_patient([[slice_, row, col]])[0]
    for payload, values in ((encode_mask(mask, GRID), mask.astype(int)),
                            (encode_probability(probability, GRID, scale=63),
                             np.rint(np.rint(probability * 63) * 255 / 63).astype(int))):
        out = _plane_in_node(payload, focal, normal)
        expected = {"sagittal": values[:, :, col], "coronal": values[:, row, :], "axial": values[slice_]}[view]
        assert out["axis"] == {"sagittal": "column", "coronal": "row", "axial": "slice"}[view]
        assert out["index"] == {"sagittal": col, "coronal": row, "axial": slice_}[view]
        got = np.asarray(out["values"]).reshape(out["height"], out["width"])
        np.testing.assert_array_equal(got, expected)
        # Bitmap pixel centres sit on voxel centres: (0.5, 0.5) is voxel (0, 0) of the plane.
        first = {"sagittal": [0, 0, col], "coronal": [0, row, 0], "axial": [slice_, 0, 0]}[view]
        np.testing.assert_allclose(out["corner"], GRID.voxel_to_patient([first])[0], atol=1e-9)
    # An oblique view has no axis-aligned plane to draw.
    assert _plane_in_node(encode_mask(mask, GRID), focal, (0.6, 0.8, 0.0)) is None
