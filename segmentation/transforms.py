"""Preprocessing between a CT on its own grid and the network's working grid, and back.

Orientation convention: volumes arrive as numpy arrays indexed ``[slice, row, column]`` in the
ContextRT convention (see docs/architecture.md): for the axial head-first-supine scans the cohort
uses, slice index runs inferior→superior, row index anterior→posterior and column index patient
right→left (DICOM LPS). The network works in that same index order (no axis permutation), so a
"left" context always means "higher column index". Callers with other patient orientations must
reorient to this convention before calling (dicom_rt.geometry.Grid carries the cosines).

Pipeline: HU clipped to [-1000, 1000] and scaled to [0, 1] (the values of MONAI's ScaleIntensityRange), resampled
to a target spacing (Resize computed from the spacing ratio; trilinear for images, nearest for
labels, thresholded), padded to a multiple of the network's downsampling factor (DivisiblePad). ``Prepared``
remembers every step so ``to_original_grid`` maps a probability map back exactly onto the CT grid:
un-pad, then resample to the original shape.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import DivisiblePad

from segmentation.networks.interpolation import linear_rows

HU_MIN, HU_MAX = -1000.0, 1000.0


@dataclass(frozen=True)
class Prepared:
    """A volume on the working grid plus what is needed to undo the preprocessing."""

    image: torch.Tensor  # float32 [1, Z, Y, X] on the working grid, padded
    original_shape: tuple[int, int, int]
    resampled_shape: tuple[int, int, int]  # before padding
    pad_before: tuple[int, int, int]


def working_shape(shape_zyx, spacing_zyx, target_spacing_zyx) -> tuple[int, int, int]:
    """Shape on the target spacing covering the same physical extent (at least 1 voxel per axis)."""
    return tuple(
        max(1, int(round(n * s / t))) for n, s, t in zip(shape_zyx, spacing_zyx, target_spacing_zyx)
    )


def _check_volume(hu: np.ndarray, spacing_zyx) -> None:
    if not isinstance(hu, np.ndarray) or hu.ndim != 3:
        raise ValueError(f"hu: expected a 3-D numpy array [slice, row, column], got {getattr(hu, 'shape', type(hu))}")
    if min(hu.shape) < 1:
        raise ValueError(f"hu: empty volume of shape {hu.shape}")
    if len(spacing_zyx) != 3 or any(not np.isfinite(s) or s <= 0 for s in spacing_zyx):
        raise ValueError(f"spacing_zyx: expected three positive mm values, got {spacing_zyx!r}")


def normalise_hu(hu: np.ndarray) -> torch.Tensor:
    """HU -> [0, 1] float tensor [1, Z, Y, X] (clip at ±1000).

    Bit for bit the values of MONAI's ``ScaleIntensityRange(a_min=-1000, a_max=1000, b_min=0, b_max=1,
    clip=True)`` (``tests/segmentation`` compares them): clipping the HU first and then scaling is the same
    monotone map, and the same float32 operations. That transform makes five full-size arrays on a MetaTensor;
    this makes one and scales it in place, so the caller's CT is never written. On a 100 x 512 x 512 float32
    CT, as the worker passes it, in one thread: 23 ms against 260 ms, most of a full run's model time."""
    out = np.clip(hu, HU_MIN, HU_MAX, dtype=np.float32)  # a new array, whatever the input's dtype
    return torch.from_numpy(out).sub_(HU_MIN).div_(HU_MAX - HU_MIN)[None]


def resample(volume: torch.Tensor, shape: tuple[int, int, int], *, label: bool = False) -> torch.Tensor:
    """[C, Z, Y, X] -> [C, *shape], trilinear with voxel centres aligned (align_corners=False).

    Labels are interpolated then thresholded at 0.5: torch's "nearest" picks floor(i * scale),
    which shifts a mask by up to half a voxel, whereas this keeps it centred.
    """
    if tuple(volume.shape[1:]) == tuple(shape):
        return volume.float()
    # Trilinear interpolation is separable: linear along z, then bilinear within each slice, gives the
    # same values (to float rounding), and when the slices grow it is cheaper, because torch's trilinear
    # kernel does the 8-neighbour work for every output voxel (32 x 64 x 64 -> 50 x 512 x 512: 38 ms
    # trilinear, 24 ms z then in-plane on 2 threads). Shrinking is cheap either way: one trilinear pass.
    out = volume.float()
    if out.shape[1] == shape[0] or shape[1] * shape[2] > out.shape[2] * out.shape[3]:
        if out.shape[1] != shape[0]:
            out = F.interpolate(out[None], size=(shape[0], *out.shape[2:]), mode="trilinear", align_corners=False)[0]
        out = _resample_in_plane(out, shape[1:])
    else:
        out = F.interpolate(out[None], size=tuple(shape), mode="trilinear", align_corners=False)[0]
    return (out >= 0.5).float() if label else out


def _resample_in_plane(volume: torch.Tensor, size) -> torch.Tensor:
    """[C, Z, Y, X] -> [C, Z, *size], bilinear within each slice (align_corners=False)."""
    if tuple(volume.shape[2:]) == tuple(size):
        return volume
    per_slice = volume.transpose(0, 1)  # [Z, C, Y, X]: slices as the batch
    out = F.interpolate(per_slice, size=tuple(size), mode="bilinear", align_corners=False)
    return out.transpose(0, 1).contiguous()


def prepare(hu: np.ndarray, spacing_zyx, target_spacing_zyx, divisor: int) -> Prepared:
    """CT on its own grid -> padded working-grid tensor with its inverse-mapping record."""
    _check_volume(hu, spacing_zyx)
    image = normalise_hu(hu)
    shape = working_shape(hu.shape, spacing_zyx, target_spacing_zyx)
    image = resample(image, shape)
    padder = DivisiblePad(k=divisor, mode="constant", value=0.0)
    padded = torch.as_tensor(padder(image))
    total = [p - s for p, s in zip(padded.shape[1:], shape)]
    # DivisiblePad centres the volume: the lower margin is floor(total / 2).
    pad_before = tuple(t // 2 for t in total)
    return Prepared(image=padded.float(), original_shape=tuple(hu.shape), resampled_shape=shape, pad_before=pad_before)


def prepare_label(mask: np.ndarray, spacing_zyx, target_spacing_zyx, divisor: int) -> torch.Tensor:
    """A mask on the CT grid -> the same working grid as ``prepare`` (nearest neighbour)."""
    shape = working_shape(mask.shape, spacing_zyx, target_spacing_zyx)
    label = resample(torch.as_tensor(np.asarray(mask, dtype=np.float32))[None], shape, label=True)
    padder = DivisiblePad(k=divisor, mode="constant", value=0.0)
    return torch.as_tensor(padder(label)).float()


def _unpadded_probability(prob: torch.Tensor, prepared: Prepared) -> torch.Tensor:
    """Working-grid probability [Z, Y, X] or [1, Z, Y, X] -> [1, *resampled_shape], clamped to [0, 1]."""
    if prob.ndim == 3:
        prob = prob[None]
    z0, y0, x0 = prepared.pad_before
    dz, dy, dx = prepared.resampled_shape
    # Clamped on the working grid: interpolation only forms convex combinations, so the result stays in
    # [0, 1] and the 16x larger CT-grid array is neither clamped nor copied again.
    return prob[:, z0:z0 + dz, y0:y0 + dy, x0:x0 + dx].float().clamp(0.0, 1.0)


def to_original_grid(prob: torch.Tensor, prepared: Prepared) -> np.ndarray:
    """Working-grid probability [Z, Y, X] (or [1, Z, Y, X]) -> float32 array on the original CT grid."""
    back = resample(_unpadded_probability(prob, prepared), prepared.original_shape)
    return back[0].cpu().numpy()


# The portal keeps a probability map as 8-bit levels (round(p x 255), gpu_worker.client): whatever a
# probability at or below 0.4 / 255 is computed to be, it is stored as level 0.
NEGLIGIBLE_PROBABILITY = 0.4 / 255
# Above this share of the CT grid the box is not worth its bookkeeping: one dense pass is as fast.
_DENSE_BOX_SHARE = 0.5


def to_original_grid_boxed(prob: torch.Tensor, prepared: Prepared, negligible: float = NEGLIGIBLE_PROBABILITY):
    """Like ``to_original_grid``, but only the box of CT voxels that can exceed ``negligible`` is computed.

    Returns ``(box, values)``: a tuple of slices of the original CT grid and the float32 probabilities
    inside it (``values.shape`` is the box's shape); every voxel outside the box counts as 0. ``box`` is None
    when no probability exceeds ``negligible``. Inside the box the values are those of ``to_original_grid``
    (to float rounding: the same separable interpolation, summed in another order). Outside it the dense
    map holds at most ``negligible``: interpolation forms convex combinations, so a CT voxel whose every
    source sample is at most ``negligible`` is too. ``paste_box`` gives the full grid.

    Why: a CTV fills a few per cent of a 512 x 512 CT. Interpolating and writing the whole grid (13 M
    voxels for 50 slices, 52 MB of new memory) was about a quarter of a what-if, and a full run pays it too;
    the box is 8-50 % of the grid on breast CTs, and the portal stores only the box (gpu_worker.client)."""
    values = _unpadded_probability(prob, prepared)[0].cpu()
    shape = prepared.original_shape
    above = values > negligible
    spans = []
    for axis in range(3):
        hits = torch.nonzero(above.any(dim=tuple(a for a in range(3) if a != axis))).flatten()
        if hits.numel() == 0:
            return None, np.zeros((0, 0, 0), dtype=np.float32)
        spans.append((int(hits[0]), int(hits[-1])))
    rows = [linear_rows(n_in, n_out, lo, hi) for n_in, n_out, (lo, hi) in zip(values.shape, shape, spans)]
    box = tuple(slice(r[0], r[1]) for r in rows)
    if np.prod([b.stop - b.start for b in box]) > _DENSE_BOX_SHARE * np.prod(shape):
        return tuple(slice(0, n) for n in shape), resample(values[None], shape)[0].numpy()
    (_, _, z_first, wz), (_, _, y_first, wy), (_, _, x_first, wx) = rows
    sub = values[z_first:z_first + wz.shape[1], y_first:y_first + wy.shape[1], x_first:x_first + wx.shape[1]]
    # z, then x on the small grid; the y pass is the one that writes the box's many voxels.
    sub = (wz @ sub.reshape(sub.shape[0], -1)).reshape(wz.shape[0], sub.shape[1], sub.shape[2])
    sub = sub @ wx.T
    return box, torch.matmul(wy, sub).numpy()


def paste_box(shape, box, values: np.ndarray, fill=0) -> np.ndarray:
    """``values`` placed at ``box`` (a tuple of slices, or None for nothing) of a new ``shape`` array of ``fill``;
    ``values`` itself when the box is the whole grid."""
    if box is not None and all(b.start == 0 and b.stop == n for b, n in zip(box, shape)):
        return values
    full = np.full(shape, fill, dtype=values.dtype)
    if box is not None:
        full[box] = values
    return full
