"""Synthetic CTV-like mask pairs (reference and an imperfect prediction) for tests and benchmarks."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

CT_SHAPE = (100, 512, 512)
CT_SPACING_ZYX = (3.0, 0.98, 0.98)


def ctv_like_pair(seed: int, shape=CT_SHAPE, spacing_zyx=CT_SPACING_ZYX, quality: float = 1.0):
    """Return ``(pred, ref)`` boolean masks of ``shape``: a lobed, smooth CTV-like target ~6-9 cm across and
    a prediction that differs by a small shift, a volume change and smooth boundary noise.

    ``quality`` scales the prediction's errors (0 gives the reference itself); ``seed`` makes it repeatable.
    """
    rng = np.random.default_rng(seed)
    spacing = np.asarray(spacing_zyx, dtype=float)
    half_extent_mm = np.array([60.0, 75.0, 75.0])
    box = np.minimum(np.ceil(2 * half_extent_mm / spacing).astype(int), np.asarray(shape))
    zz, yy, xx = [(np.arange(n) - n / 2.0) * s for n, s in zip(box, spacing)]
    z, y, x = np.meshgrid(zz, yy, xx, indexing="ij", sparse=True)

    def field(centre_shift_mm, noise_mm, scale):
        total = np.full(tuple(box), -1.0, dtype=np.float32)
        lobes = [((0, 0, 0), (33, 30, 36)), ((-12, -10, 14), (21, 18, 18)), ((-12, -10, -14), (21, 18, 18)),
                 ((18, 6, 0), (18, 21, 24))]
        for (cz, cy, cx), (rz, ry, rx) in lobes:
            dz, dy, dx = cz + centre_shift_mm[0], cy + centre_shift_mm[1], cx + centre_shift_mm[2]
            r = np.sqrt(((z - dz) / (rz * scale)) ** 2 + ((y - dy) / (ry * scale)) ** 2
                        + ((x - dx) / (rx * scale)) ** 2)
            total = np.maximum(total, (1.0 - r).astype(np.float32))
        if noise_mm:
            noise = ndimage.gaussian_filter(rng.standard_normal(tuple(box)).astype(np.float32),
                                            sigma=(2.0, 8.0, 8.0))
            total += noise / (np.abs(noise).max() + 1e-9) * noise_mm / 30.0
        return total > 0

    ref_local = field((0, 0, 0), 3.0, 1.0)
    shift = rng.normal(0, 2.0, size=3) * quality
    pred_local = field(tuple(shift), 3.0 + 6.0 * quality, 1.0 + rng.normal(0, 0.05) * quality)
    ref, pred = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    start = [(n - b) // 2 + int(rng.integers(-5, 6)) for n, b in zip(shape, box)]
    start = [min(max(s, 0), n - b) for s, n, b in zip(start, shape, box)]
    where = tuple(slice(s, s + b) for s, b in zip(start, box))
    ref[where], pred[where] = ref_local, pred_local
    return pred, ref
