"""Compact contour payloads: a mask or probability map on a CT grid as small JSON the viewer draws at once.

Plain Python (numpy, zlib). The exact format is specified in ``docs/api.md``
("Compact contour payload"); the JavaScript decoder in ``frontend/`` follows it.

* ``encode_mask`` -> ``kind: "mask"``: per-slice run-length encoding of the
  voxels set in each axial slice (row-major within the slice), as alternating
  (gap, length) pairs; either plain JSON integer lists (``encoding="json"``) or
  one unsigned-LEB128 varint stream, zlib-deflated and base64-encoded
  (``encoding="varint-deflate-base64"``, the default, tens of KB for a CTV).
  Optionally per-slice polygons in patient millimetres (``contours=True``).
* ``encode_probability`` -> ``kind: "probability"``: probabilities quantised to
  uint8 levels (q = round(p * scale), scale 255 by default, lower for a smaller
  payload), cropped per slice to the bounding box of q > 0, each row
  difference-filtered (PNG "Sub": d[c] = q[c] - q[c-1] mod 256), concatenated
  and deflated (``encoding="u8sub-deflate-base64"``).

``decode_mask`` / ``decode_probability`` invert them (tests, worker, tools).
"""
from __future__ import annotations

import base64
import zlib

import numpy as np

from dicom_rt.geometry import Grid

FORMAT = "contextrt-contour"
VERSION = 1
MASK_ENCODINGS = ("varint-deflate-base64", "json")
PROBABILITY_ENCODING = "u8sub-deflate-base64"
PROBABILITY_SCALE = 255


class PayloadError(ValueError):
    """A payload or its input is malformed; ``field`` names the offending key."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


# -- varints -----------------------------------------------------------------------------------------------

def _varint_bytes(values: np.ndarray) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant group first, high bit = more bytes follow."""
    values = np.asarray(values, dtype=np.uint64)
    if values.size == 0:
        return b""
    # Vectorised by byte position: most runs need one or two bytes.
    remaining = values.copy()
    nbytes = np.ones(values.shape, dtype=np.int64)
    probe = values >> np.uint64(7)
    while np.any(probe):
        nbytes += probe > 0
        probe >>= np.uint64(7)
    total = int(nbytes.sum())
    buf = np.empty(total, dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum(nbytes)[:-1]])
    for k in range(int(nbytes.max())):
        active = nbytes > k
        group = (remaining[active] & np.uint64(0x7F)).astype(np.uint8)
        more = (nbytes[active] > k + 1).astype(np.uint8) << 7
        buf[offsets[active] + k] = group | more
        remaining[active] >>= np.uint64(7)
    return buf.tobytes()


def _read_varints(data: bytes) -> list[int]:
    values, current, shift = [], 0, 0
    for byte in data:
        current |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 63:
                raise PayloadError("runs", "varint longer than 64 bits")
        else:
            values.append(current)
            current, shift = 0, 0
    if shift:
        raise PayloadError("runs", "truncated varint stream")
    return values


# -- masks -------------------------------------------------------------------------------------------------

def slice_runs(plane: np.ndarray) -> np.ndarray:
    """(gap, length) pairs, flattened, of the set pixels of one 2-D slice in row-major order."""
    flat = np.asarray(plane, dtype=bool).ravel()
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    lengths = ends - starts
    gaps = starts - np.concatenate([[0], ends[:-1]])
    pairs = np.empty(2 * len(starts), dtype=np.int64)
    pairs[0::2], pairs[1::2] = gaps, lengths
    return pairs


def _check_grid(volume: np.ndarray, grid: Grid, field: str) -> None:
    if volume.ndim != 3 or tuple(volume.shape) != tuple(grid.shape):
        raise PayloadError(field, f"array shape {tuple(volume.shape)} differs from the grid {tuple(grid.shape)}")


def encode_mask(mask: np.ndarray, grid: Grid, *, encoding: str = "varint-deflate-base64", contours: bool = False,
                contour_tolerance_px: float = 0.5, name: str | None = None, color=None) -> dict:
    """The compact payload of a boolean mask [slice, row, column] on ``grid`` (see docs/api.md)."""
    if encoding not in MASK_ENCODINGS:
        raise PayloadError("encoding", f"{encoding!r} is not one of {', '.join(MASK_ENCODINGS)}")
    mask = np.asarray(mask).astype(bool, copy=False)
    _check_grid(mask, grid, "mask")
    occupied = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    per_slice = [slice_runs(mask[k]) for k in occupied]
    voxel_count = int(mask.sum())
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "mask",
        "grid": grid.to_json(),
        "voxel_count": voxel_count,
        "volume_cc": round(voxel_count * grid.voxel_volume_mm3 / 1000.0, 4),
        "slices": [int(k) for k in occupied],
        "encoding": encoding,
    }
    if name is not None:
        payload["name"] = name
    if color is not None:
        payload["color"] = [int(v) for v in color]
    if encoding == "json":
        payload["runs"] = [pairs.tolist() for pairs in per_slice]
    else:
        payload["runs_per_slice"] = [len(pairs) // 2 for pairs in per_slice]
        stream = np.concatenate(per_slice) if per_slice else np.zeros(0, dtype=np.int64)
        payload["runs"] = base64.b64encode(zlib.compress(_varint_bytes(stream), 9)).decode("ascii")
    if contours:
        payload["contours_mm"] = _contours_mm(mask, grid, occupied, contour_tolerance_px)
    return payload


def _contours_mm(mask: np.ndarray, grid: Grid, occupied, tolerance_px: float) -> list[list[list[float]]]:
    """Per listed slice, closed polygons as flat [x0, y0, z0, x1, y1, z1, ...] patient mm (0.01 mm)."""
    from dicom_rt.rtstruct_write import mask_slice_contours  # scikit-image only when polygons are asked for

    out = []
    for k in occupied:
        polys = []
        for rc in mask_slice_contours(mask[k], tolerance_px=tolerance_px):
            idx = np.c_[np.full(len(rc), float(k)), rc]
            polys.append(np.round(grid.voxel_to_patient(idx), 2).ravel().tolist())
        out.append(polys)
    return out


def _header(payload: dict, kind: str) -> Grid:
    if not isinstance(payload, dict):
        raise PayloadError("payload", "not a JSON object")
    if payload.get("format") != FORMAT or payload.get("version") != VERSION:
        raise PayloadError("format", f"expected {FORMAT} version {VERSION}")
    if payload.get("kind") != kind:
        raise PayloadError("kind", f"expected {kind!r}, got {payload.get('kind')!r}")
    try:
        return Grid.from_json(payload["grid"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError("grid", f"invalid grid ({exc})") from exc


def decode_mask(payload: dict) -> tuple[np.ndarray, Grid]:
    """Inverse of ``encode_mask``: the boolean mask and its grid."""
    grid = _header(payload, "mask")
    mask = np.zeros(grid.shape, dtype=bool)
    slices = payload["slices"]
    if payload["encoding"] == "json":
        per_slice = payload["runs"]
    elif payload["encoding"] == "varint-deflate-base64":
        stream = _read_varints(zlib.decompress(base64.b64decode(payload["runs"])))
        counts = payload["runs_per_slice"]
        if sum(counts) * 2 != len(stream) or len(counts) != len(slices):
            raise PayloadError("runs_per_slice", "does not match the run stream")
        per_slice, pos = [], 0
        for n in counts:
            per_slice.append(stream[pos:pos + 2 * n])
            pos += 2 * n
    else:
        raise PayloadError("encoding", f"unknown encoding {payload['encoding']!r}")
    plane_size = grid.shape[1] * grid.shape[2]
    for k, pairs in zip(slices, per_slice):
        if not 0 <= k < grid.shape[0]:
            raise PayloadError("slices", f"slice index {k} outside the grid")
        flat = mask[k].reshape(-1)
        pos = 0
        for gap, length in zip(pairs[0::2], pairs[1::2]):
            pos += gap
            if pos + length > plane_size:
                raise PayloadError("runs", f"run past the end of slice {k}")
            flat[pos:pos + length] = True
            pos += length
    return mask, grid


# -- probability maps --------------------------------------------------------------------------------------

def quantise(probability: np.ndarray, scale: int = PROBABILITY_SCALE) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 levels q = round(p * scale) (NaN -> 0, values outside [0, 1] clipped)."""
    p = np.nan_to_num(np.asarray(probability, dtype=np.float32), nan=0.0)
    return np.rint(np.clip(p, 0.0, 1.0) * scale).astype(np.uint8)


def encode_probability(probability: np.ndarray, grid: Grid, *, scale: int = PROBABILITY_SCALE,
                       name: str | None = None) -> dict:
    """The compact payload of a probability map [slice, row, column] on ``grid`` (see docs/api.md)."""
    if not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 255:
        raise PayloadError("scale", "must be an integer from 1 to 255")
    probability = np.asarray(probability)
    _check_grid(probability, grid, "probability")
    q = quantise(probability, int(scale))
    slices, boxes, chunks = [], [], []
    for k in range(q.shape[0]):
        rows = np.flatnonzero(q[k].any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(q[k].any(axis=0))
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        slices.append(k)
        boxes.append([r0, c0, r1 - r0, c1 - c0])
        block = q[k, r0:r1, c0:c1].astype(np.int16)
        # Row differences make smooth ramps mostly small repeated values, which deflate well.
        chunks.append(np.diff(block, axis=1, prepend=0).astype(np.uint8).tobytes())
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": "probability",
        "grid": grid.to_json(),
        "scale": int(scale),
        "slices": slices,
        "boxes": boxes,
        "encoding": PROBABILITY_ENCODING,
        "data": base64.b64encode(zlib.compress(b"".join(chunks), 6)).decode("ascii"),
    }
    if name is not None:
        payload["name"] = name
    return payload


def decode_probability(payload: dict) -> tuple[np.ndarray, Grid]:
    """Inverse of ``encode_probability``: the uint8 levels (p = level / ``scale``) and the grid."""
    grid = _header(payload, "probability")
    if payload.get("encoding") != PROBABILITY_ENCODING:
        raise PayloadError("encoding", f"unknown encoding {payload.get('encoding')!r}")
    raw = zlib.decompress(base64.b64decode(payload["data"]))
    levels = np.zeros(grid.shape, dtype=np.uint8)
    pos = 0
    for k, (r0, c0, h, w) in zip(payload["slices"], payload["boxes"]):
        if not (0 <= k < grid.shape[0] and r0 >= 0 and c0 >= 0 and r0 + h <= grid.shape[1] and c0 + w <= grid.shape[2]):
            raise PayloadError("boxes", f"box {[r0, c0, h, w]} of slice {k} lies outside the grid")
        if pos + h * w > len(raw):
            raise PayloadError("data", "shorter than the boxes need")
        diffs = np.frombuffer(raw, dtype=np.uint8, count=h * w, offset=pos).reshape(h, w)
        levels[k, r0:r0 + h, c0:c0 + w] = np.cumsum(diffs, axis=1, dtype=np.uint8)  # wraps mod 256
        pos += h * w
    if pos != len(raw):
        raise PayloadError("data", "decoded length does not match the boxes")
    return levels, grid
