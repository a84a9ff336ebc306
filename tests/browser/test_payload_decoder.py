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
