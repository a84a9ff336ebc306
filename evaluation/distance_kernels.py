"""Compiled inner loops of the contour metrics: exact nearest-surface distances and added-path-length coverage.

Concern: the hot loops of ``evaluation.metrics`` (a study computes thousands of panels on CT-sized masks),
compiled with numba and kept free of any metric definition -- the definitions live in ``evaluation.metrics``.

Exact distances without a distance transform of the volume:

1. ``row_gaps``: for every voxel of a (cropped) target mask, the column distance in voxels to the nearest
   target voxel *of the same row* (same slice and row), filled segment by segment between the row's target
   voxels; ``gap_squares`` turns a gap into squared mm (``inf`` for a row without target).
2. ``directed_sq_distances``: for every source voxel at ``(z, y, x)``, the exact squared distance to the
   nearest target voxel is ``min over (dz, dy) of gap_squares[row_gaps[z+dz, y+dy, x]] + (dz*sz)^2 +
   (dy*sy)^2``. Slices are visited by growing ``|dz|`` and rows by growing ``|dy|``; a visit stops as soon
   as its ``(dz*sz)^2 + (dy*sy)^2`` alone reaches the best value found, so a point near the target stops at
   its exact answer after a handful of rows. A point far from the target (a contour on the wrong side: a
   vision-only guess, a what-if with the laterality flipped) visits every row and slice within that
   distance, so the search carries a budget of row visits and gives up when it is spent.
2b. ``planar_sq_distance_map`` then gives, for every voxel of the box, the exact squared in-plane distance to
   the nearest target voxel of its slice: ``min over dy of gap_squares[row_gaps[z, y+dy, x]] + (dy*sy)^2``,
   the lower envelope of one parabola per row (Felzenszwalb & Huttenlocher's 1-D distance transform, run
   down each column), in time linear in the box. ``directed_sq_distances_planar`` finishes each source
   voxel over slices only, by growing ``|dz|`` with the same stop, so a far point costs one visit per slice
   instead of one per row and slice. Both paths minimise over the same candidates and agree to rounding.
3. ``uncovered_per_slice`` runs the same search within one slice, only up to the APL tolerance.
4. ``occupancy`` finds which slices, rows and columns of a full mask are occupied (its bounding box).

All arithmetic is float64. Kernels release the GIL (``nogil``) and are cached on disk after the first
compilation (``cache=True``), so only the first call of a fresh install pays the compile time (seconds).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def occupancy(words):
    """Which slices, rows and columns of a mask hold a True voxel, from the mask's bytes viewed as ``uint64``
    words of shape ``(slices, rows, columns / 8)``: one read of the volume, eight voxels per operation.

    Returns ``(slices, rows, column_bits)``: two boolean vectors and the OR of all words per column word
    (byte ``k`` of word ``w`` is column ``8 * w + k``; non-zero byte: occupied column).
    """
    nz, ny, nw = words.shape
    slices = np.zeros(nz, dtype=np.bool_)
    rows = np.zeros(ny, dtype=np.bool_)
    column_bits = np.zeros(nw, dtype=np.uint64)
    for z in range(nz):
        for y in range(ny):
            acc = np.uint64(0)
            for w in range(nw):
                acc |= words[z, y, w]
            # Most rows are empty: the cheap OR above decides, and only occupied rows pay for the columns.
            if acc:
                slices[z] = True
                rows[y] = True
                for w in range(nw):
                    column_bits[w] |= words[z, y, w]
    return slices, rows, column_bits


# Gaps are stored as int16 (a smaller array stays in cache during the point searches).
MAX_COLUMNS = np.iinfo(np.int16).max - 1


@njit(cache=True, nogil=True)
def row_gaps(target):
    """Per voxel, the column distance (in voxels) to the nearest True voxel of the same row; rows without
    one hold ``ncols`` (an impossible gap, mapped to ``inf`` by ``gap_squares``). At most ``MAX_COLUMNS``
    columns."""
    nz, ny, nx = target.shape
    out = np.empty((nz, ny, nx), dtype=np.int16)
    for z in range(nz):
        for y in range(ny):
            previous = -1  # column of the last target seen
            for x in range(nx):
                if target[z, y, x]:
                    if previous < 0:
                        for u in range(x + 1):
                            out[z, y, u] = x - u
                    else:
                        middle = (previous + x) // 2
                        for u in range(previous + 1, middle + 1):
                            out[z, y, u] = u - previous
                        for u in range(middle + 1, x + 1):
                            out[z, y, u] = x - u
                    previous = x
            if previous < 0:
                for u in range(nx):
                    out[z, y, u] = nx
            else:
                for u in range(previous + 1, nx):
                    out[z, y, u] = u - previous
    return out


def gap_squares(ncols: int, step_x: float) -> np.ndarray:
    """Squared mm length of each possible column gap ``0..ncols-1``, and ``inf`` for ``ncols`` (no target)."""
    gaps = np.arange(ncols + 1, dtype=np.float64) * step_x
    squares = gaps * gaps
    squares[ncols] = math.inf
    return squares


# A budget no search can spend (an int64, as the kernels take it).
UNLIMITED_VISITS = 2 ** 62


@njit(cache=True, nogil=True)
def _nearest_sq_at(z, y, x, gaps, squares, step_z, step_y, planar, limit_sq, budget):
    """Squared distance from voxel ``(z, y, x)`` to the nearest target voxel, given the target's ``row_gaps``
    and their ``gap_squares`` (see the module docstring), or ``limit_sq`` when nothing is nearer than that.

    Returns ``(squared distance, row visits made)``. The search stops after ``budget`` row visits; the distance
    is exact when the visits stayed within the budget."""
    nz, ny, _ = gaps.shape
    best = limit_sq
    visits = 0
    max_dz = 0 if planar else nz - 1
    for adz in range(max_dz + 1):
        bz = (adz * step_z) * (adz * step_z)
        if bz >= best or (adz > z and z + adz >= nz):
            break
        for side in range(2):
            if adz == 0 and side == 1:
                break
            z2 = z + adz if side == 0 else z - adz
            if z2 < 0 or z2 >= nz:
                continue
            for ady in range(ny):
                b = bz + (ady * step_y) * (ady * step_y)
                if b >= best or (ady > y and y + ady >= ny):
                    break
                visits += 1
                if visits > budget:
                    return best, visits
                if y + ady < ny:
                    c = squares[gaps[z2, y + ady, x]] + b
                    if c < best:
                        best = c
                if ady and ady <= y:
                    c = squares[gaps[z2, y - ady, x]] + b
                    if c < best:
                        best = c
    return best, visits


@njit(cache=True, nogil=True)
def directed_sq_distances(source, gaps, squares, step_z, step_y, count, budget):
    """Squared distances (mm^2) from each True voxel of ``source`` (C order, ``count`` of them) to the nearest
    target voxel, given the target's ``row_gaps`` (same shape as ``source``) and ``gap_squares``.

    Returns ``(distances, complete)``. The search stops once it has made ``budget`` row visits in all; then
    ``complete`` is False and the distances are not to be used (``directed_sq_distances_planar`` answers
    in time linear in the box instead)."""
    nz, ny, nx = source.shape
    out = np.empty(count, dtype=np.float64)
    i = 0
    left = budget
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if source[z, y, x]:
                    best, visits = _nearest_sq_at(z, y, x, gaps, squares, step_z, step_y, False, math.inf, left)
                    left -= visits
                    if left < 0:
                        return out, False
                    out[i] = best
                    i += 1
    return out, True


@njit(cache=True, nogil=True)
def planar_sq_distance_map(gaps, squares, step_y):
    """Per voxel, the exact squared in-plane distance (mm^2) to the nearest target voxel of the same slice
    (``inf`` in a slice without target), from the target's ``row_gaps`` and ``gap_squares``: down each
    column, the lower envelope of the parabolas ``f(q) + ((p - q) * step_y)^2``, one per row ``q`` that holds
    target, where ``f(q)`` is the squared column gap at ``(q, x)``."""
    nz, ny, nx = gaps.shape
    out = np.empty((nz, ny, nx), dtype=np.float64)
    rows = np.empty(ny, dtype=np.int64)  # the rows whose parabolas form the envelope, left to right
    starts = np.empty(ny, dtype=np.float64)  # where along the column each of them starts to be lowest
    heights = np.empty(ny, dtype=np.float64)
    sy2 = step_y * step_y
    for z in range(nz):
        for x in range(nx):
            k = -1
            for q in range(ny):
                fq = squares[gaps[z, q, x]]
                heights[q] = fq
                if fq == math.inf:
                    continue
                s = -math.inf
                while k >= 0:
                    r = rows[k]
                    s = ((fq + q * q * sy2) - (heights[r] + r * r * sy2)) / (2.0 * sy2 * (q - r))
                    if s > starts[k]:
                        break
                    k -= 1
                    s = -math.inf
                k += 1
                rows[k] = q
                starts[k] = s
            if k < 0:
                for p in range(ny):
                    out[z, p, x] = math.inf
                continue
            j = 0
            for p in range(ny):
                while j < k and starts[j + 1] <= p:
                    j += 1
                d = (p - rows[j]) * step_y
                out[z, p, x] = heights[rows[j]] + d * d
    return out


@njit(cache=True, nogil=True)
def directed_sq_distances_planar(source, planar, step_z, count):
    """Squared distances (mm^2) from each True voxel of ``source`` (C order, ``count`` of them) to the nearest
    target voxel, given the target's ``planar_sq_distance_map``: slices are visited by growing ``|dz|`` until
    ``(dz*sz)^2`` alone reaches the best value found."""
    nz, ny, nx = source.shape
    out = np.empty(count, dtype=np.float64)
    i = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if source[z, y, x]:
                    best = planar[z, y, x]
                    for adz in range(1, nz):
                        bz = (adz * step_z) * (adz * step_z)
                        if bz >= best:
                            break
                        if z + adz < nz:
                            c = planar[z + adz, y, x] + bz
                            if c < best:
                                best = c
                        if z - adz >= 0:
                            c = planar[z - adz, y, x] + bz
                            if c < best:
                                best = c
                    out[i] = best
                    i += 1
    return out


@njit(cache=True, nogil=True)
def uncovered_per_slice(source, gaps, squares, step_y, tolerance_mm):
    """Per slice, the count of True voxels of ``source`` with no target voxel of the same slice within
    ``tolerance_mm`` (in-plane Euclidean distance, compared as ``sqrt(d^2) <= tolerance``), given the
    target's ``row_gaps`` and ``gap_squares``."""
    nz, ny, nx = source.shape
    counts = np.zeros(nz, dtype=np.int64)
    # Exact squared distances are only needed up to just past the tolerance: nearer ones decide "covered",
    # and anything at or beyond this limit is certainly farther than the tolerance.
    limit_sq = (tolerance_mm * (1.0 + 1e-9)) ** 2 if tolerance_mm > 0 else 1e-300
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if source[z, y, x]:
                    d2, _ = _nearest_sq_at(z, y, x, gaps, squares, 0.0, step_y, True, limit_sq, UNLIMITED_VISITS)
                    if d2 >= limit_sq or not math.sqrt(d2) <= tolerance_mm:
                        counts[z] += 1
    return counts
