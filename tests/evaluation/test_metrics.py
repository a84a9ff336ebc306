"""Metric panel: hand-made shapes with known answers, MONAI and the float64 scipy-EDT reference, empties, bad input."""

import math
import warnings

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

from evaluation.metrics import MetricInputError, PANEL_KEYS, compute_panel, surface_distances
from evaluation.reference_metrics import reference_surface_metrics
from evaluation.synthetic_masks import ctv_like_pair

SPACING = (3.0, 0.98, 0.98)


def cube(shape, start, size):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + n) for s, n in zip(start, size))] = True
    return mask


def monai_values(pred, ref, spacing, tolerance):
    p, r = torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "hd95_mm": compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=spacing).item(),
            "hd_mm": compute_hausdorff_distance(p, r, include_background=True, spacing=spacing).item(),
            "assd_mm": compute_average_surface_distance(p, r, include_background=True, symmetric=True,
                                                        spacing=spacing).item(),
            "surface_dice": compute_surface_dice(p, r, [tolerance], include_background=True, spacing=spacing).item(),
        }


def test_identical_masks_are_perfect():
    mask = cube((20, 30, 30), (5, 5, 5), (6, 10, 12))
    panel = compute_panel(mask, mask, SPACING)
    assert panel["dice"] == panel["iou"] == panel["f1"] == panel["surface_dice"] == 1.0
    assert panel["hd_mm"] == panel["hd95_mm"] == panel["assd_mm"] == panel["apl_mm"] == 0.0
    assert panel["sensitivity"] == panel["precision"] == panel["specificity"] == 1.0
    assert panel["volume_pred_cc"] == pytest.approx(6 * 10 * 12 * 3.0 * 0.98 * 0.98 / 1000)
    assert panel["flags"] == []
    assert set(PANEL_KEYS) <= set(panel)


def test_cube_shifted_one_voxel_along_columns():
    spacing = (2.0, 1.0, 0.5)
    ref = cube((20, 20, 20), (5, 5, 5), (10, 10, 10))
    pred = cube((20, 20, 20), (5, 5, 6), (10, 10, 10))
    panel = compute_panel(pred, ref, spacing, tolerance_mm=0.4)
    assert panel["dice"] == pytest.approx(0.9)
    assert panel["iou"] == pytest.approx(900 / 1100)
    assert panel["sensitivity"] == panel["precision"] == pytest.approx(0.9)
    assert panel["specificity"] == pytest.approx((8000 - 1100) / (8000 - 1000))
    # Only the two end faces move, each by one column (0.5 mm): HD is exactly that step.
    assert panel["hd_mm"] == pytest.approx(0.5)
    assert panel["volume_diff_cc"] == 0.0


def test_sphere_volume_and_surface_distance_to_larger_sphere():
    spacing = (1.0, 1.0, 1.0)
    z, y, x = np.ogrid[:60, :60, :60]
    r2 = (z - 30) ** 2 + (y - 30) ** 2 + (x - 30) ** 2
    ref, pred = r2 <= 15 ** 2, r2 <= 18 ** 2
    panel = compute_panel(pred, ref, spacing)
    assert panel["volume_ref_cc"] == pytest.approx(4 / 3 * math.pi * 15 ** 3 / 1000, rel=0.02)
    assert panel["hd_mm"] == pytest.approx(3.0, abs=0.6)
    assert panel["dice"] == pytest.approx(2 * 15 ** 3 / (15 ** 3 + 18 ** 3), rel=0.02)


@pytest.mark.parametrize("seed, spacing, tolerance", [
    (0, (3.0, 0.98, 0.98), 2.0), (1, (2.5, 0.7, 1.1), 1.5), (2, (1.0, 1.0, 1.0), 3.0), (3, (3.0, 0.98, 0.98), 5.0),
])
def test_equals_monai_and_float64_reference(seed, spacing, tolerance):
    pred, ref = ctv_like_pair(seed, shape=(48, 176, 176), spacing_zyx=spacing)
    panel = compute_panel(pred, ref, spacing, tolerance_mm=tolerance)
    reference = reference_surface_metrics(pred, ref, spacing, tolerance)
    monai = monai_values(pred, ref, spacing, tolerance)
    for key in ("hd_mm", "hd95_mm", "assd_mm", "surface_dice"):
        assert abs(panel[key] - reference[key]) <= 1e-6, key
        assert abs(panel[key] - monai[key]) <= 1e-3, key


def test_masks_touching_the_image_border_and_far_outliers_match_reference():
    rng = np.random.default_rng(5)
    ref = cube((12, 40, 40), (0, 0, 3), (6, 20, 20))
    pred = cube((12, 40, 40), (0, 2, 0), (7, 18, 25))
    pred[11, 39, 39] = True  # a far, isolated voxel in the image corner
    ref |= rng.random(ref.shape) > 0.995
    spacing = (2.0, 0.8, 1.3)
    panel = compute_panel(pred, ref, spacing, tolerance_mm=1.0)
    reference = reference_surface_metrics(pred, ref, spacing, 1.0)
    monai = monai_values(pred, ref, spacing, 1.0)
    for key in reference:
        assert abs(panel[key] - reference[key]) <= 1e-6, key
        assert abs(panel[key] - monai[key]) <= 1e-3, key


def test_directed_distances_equal_reference_elementwise_as_a_multiset():
    pred, ref = ctv_like_pair(7, shape=(40, 150, 150), spacing_zyx=SPACING)
    d_pr, d_rp = surface_distances(pred, ref, SPACING)
    from evaluation.reference_metrics import reference_surface_distances
    r_pr, r_rp = reference_surface_distances(pred, ref, SPACING)
    np.testing.assert_allclose(np.sort(d_pr), np.sort(r_pr), atol=1e-9)
    np.testing.assert_allclose(np.sort(d_rp), np.sort(r_rp), atol=1e-9)


def _far_apart_pair():
    """A CTV-like contour and the same contour moved 50 voxels (49 mm) along the columns, as a contour drawn on
    the wrong side is: far enough that the row search gives up and the planar distance map answers."""
    pred, ref = ctv_like_pair(3, shape=(40, 150, 200), spacing_zyx=SPACING)
    return np.roll(pred, 50, axis=2), ref


@pytest.mark.parametrize("visits_per_box_voxel", [0, 2, 1e9], ids=["planar-map", "default-budget", "row-search"])
def test_both_distance_paths_equal_the_reference_elementwise(visits_per_box_voxel):
    from evaluation.metrics import _directed_distances, _pad_zero, _surface_3d, _union_or_none
    from evaluation.reference_metrics import reference_surface_distances

    spacing = np.asarray((2.5, 0.9, 1.1))
    for pred, ref in (_far_apart_pair(), ctv_like_pair(8, shape=(40, 150, 150), spacing_zyx=tuple(spacing))):
        box = _union_or_none(pred, ref)
        surf_pred, surf_ref = _surface_3d(_pad_zero(pred[box])), _surface_3d(_pad_zero(ref[box]))
        d_pr = _directed_distances(surf_pred, surf_ref, spacing, int(surf_pred.sum()), visits_per_box_voxel)
        d_rp = _directed_distances(surf_ref, surf_pred, spacing, int(surf_ref.sum()), visits_per_box_voxel)
        r_pr, r_rp = reference_surface_distances(pred, ref, tuple(spacing))
        np.testing.assert_allclose(np.sort(d_pr), np.sort(r_pr), atol=1e-9)
        np.testing.assert_allclose(np.sort(d_rp), np.sort(r_rp), atol=1e-9)


def test_a_contour_far_from_the_reference_is_measured_through_the_planar_map(monkeypatch):
    from evaluation import distance_kernels

    calls = []
    original = distance_kernels.planar_sq_distance_map
    monkeypatch.setattr(distance_kernels, "planar_sq_distance_map", lambda *a: calls.append(1) or original(*a))
    pred, ref = _far_apart_pair()
    panel = compute_panel(pred, ref, SPACING, tolerance_mm=2.0)
    assert len(calls) == 2  # both directions ran out of search budget
    reference = reference_surface_metrics(pred, ref, SPACING, 2.0)
    for key in ("hd_mm", "hd95_mm", "assd_mm", "surface_dice"):
        assert abs(panel[key] - reference[key]) <= 1e-6, key
    assert panel["hd95_mm"] > 40
    calls.clear()
    compute_panel(*ctv_like_pair(3, shape=(40, 150, 200), spacing_zyx=SPACING), SPACING)
    assert calls == []  # a near contour never pays for the map


def test_label_and_noncontiguous_inputs_give_the_same_panel():
    pred, ref = ctv_like_pair(3, shape=(30, 128, 128), spacing_zyx=SPACING)
    as_bool = compute_panel(pred, ref, SPACING)
    as_labels = compute_panel(pred.astype(np.uint8) * 3, ref.astype(np.float32), SPACING)
    flipped = compute_panel(np.ascontiguousarray(pred[:, :, ::-1])[:, :, ::-1], ref[:, ::1, :], SPACING)
    for key in PANEL_KEYS:
        assert as_labels[key] == pytest.approx(as_bool[key], nan_ok=True)
        assert flipped[key] == pytest.approx(as_bool[key], nan_ok=True)


def test_empty_prediction_is_flagged_not_crashing():
    ref = cube((10, 20, 20), (2, 2, 2), (4, 5, 5))
    panel = compute_panel(np.zeros_like(ref), ref, SPACING)
    assert panel["flags"] == ["empty_pred"]
    assert panel["dice"] == 0.0 and panel["surface_dice"] == 0.0 and panel["sensitivity"] == 0.0
    assert math.isnan(panel["hd95_mm"]) and math.isnan(panel["assd_mm"]) and math.isnan(panel["precision"])
    assert panel["apl_mm"] == 0.0


def test_empty_reference_counts_all_predicted_contour_as_added():
    pred = cube((10, 20, 20), (2, 2, 2), (3, 5, 5))
    panel = compute_panel(pred, np.zeros_like(pred), SPACING, with_apl_per_slice=True)
    assert panel["flags"] == ["empty_ref"]
    assert panel["dice"] == 0.0 and math.isnan(panel["hd_mm"]) and math.isnan(panel["sensitivity"])
    # A 5x5 square has 16 border pixels on each of its 3 slices.
    assert panel["apl_mm"] == pytest.approx(3 * 16 * 0.98)
    assert panel["apl_per_slice_mm"][2:5] == pytest.approx([16 * 0.98] * 3)
    assert panel["apl_per_slice_mm"][0] == 0.0


def test_both_empty():
    empty = np.zeros((5, 8, 8), dtype=bool)
    panel = compute_panel(empty, empty, SPACING)
    assert panel["flags"] == ["both_empty"]
    assert panel["dice"] == 1.0 and panel["hd95_mm"] == 0.0 and panel["surface_dice"] == 1.0
    assert panel["apl_mm"] == 0.0 and math.isnan(panel["sensitivity"])


def test_added_path_length_per_slice():
    spacing = (3.0, 1.0, 1.0)
    ref = cube((6, 30, 30), (1, 5, 5), (3, 10, 10))
    pred = ref.copy()
    pred[4] = cube((6, 30, 30), (4, 5, 5), (1, 10, 10))[4]     # slice only the prediction has
    pred[2, 5:15, 15:19] = True                                  # bulge of 4 columns on slice 2
    panel = compute_panel(pred, ref, spacing, apl_tolerance_mm=1.0, with_apl_per_slice=True)
    per_slice = panel["apl_per_slice_mm"]
    assert per_slice[1] == 0.0 and per_slice[3] == 0.0
    assert per_slice[4] == pytest.approx(36.0)  # full 10x10 square contour: 36 pixels
    # Bulge on slice 2 (columns 15..18): top and bottom rows add columns 16..18 (column 15 is 1 mm from
    # the reference corner), the new right edge adds its 8 inner rows.
    assert per_slice[2] == pytest.approx(3 + 3 + 8)
    assert panel["apl_mm"] == pytest.approx(sum(per_slice))


@pytest.mark.parametrize("kwargs, field", [
    (dict(pred=np.zeros((4, 4)), ref=np.zeros((4, 4)), spacing_zyx=SPACING), "pred"),
    (dict(pred=np.zeros((4, 4, 4)), ref=np.zeros((4, 4, 5)), spacing_zyx=SPACING), "pred/ref"),
    (dict(pred=np.zeros((4, 4, 4)), ref=np.zeros((4, 4, 4)), spacing_zyx=(1, 0, 1)), "spacing_zyx"),
    (dict(pred=np.zeros((4, 4, 4)), ref=np.zeros((4, 4, 4)), spacing_zyx=(1, 1)), "spacing_zyx"),
    (dict(pred=np.zeros((4, 4, 4)), ref=np.zeros((4, 4, 4)), spacing_zyx=SPACING, tolerance_mm=-1), "tolerance_mm"),
])
def test_bad_input_names_the_argument(kwargs, field):
    with pytest.raises(MetricInputError, match=field):
        compute_panel(**kwargs)


def _reference_added_path_length(pred, ref, spacing, tolerance):
    """Per-slice APL from scipy: in-plane contours by 2D erosion, coverage by a 2D Euclidean distance transform."""
    from scipy import ndimage
    cross = ndimage.generate_binary_structure(2, 1)
    pixel = (spacing[1] + spacing[2]) / 2.0
    out = []
    for pred_slice, ref_slice in zip(pred, ref):
        pred_contour = pred_slice & ~ndimage.binary_erosion(pred_slice, cross, border_value=0)
        ref_contour = ref_slice & ~ndimage.binary_erosion(ref_slice, cross, border_value=0)
        if not ref_contour.any():
            out.append(np.count_nonzero(pred_contour) * pixel)
            continue
        distance = ndimage.distance_transform_edt(~ref_contour, sampling=spacing[1:])
        out.append(np.count_nonzero(pred_contour & (distance > tolerance)) * pixel)
    return out


@pytest.mark.parametrize("tolerance", [0.0, 1.5, 3.0])
def test_added_path_length_equals_scipy_reference(tolerance):
    # Anisotropic in-plane pixels and tolerances that fall between lattice distances, so the two
    # implementations cannot disagree on a tie.
    spacing = (2.5, 0.9, 1.1)
    pred, ref = ctv_like_pair(11, shape=(40, 160, 150), spacing_zyx=spacing)
    pred[3:5, 10:20, 120:140] = True  # slices where only the prediction has contour
    panel = compute_panel(pred, ref, spacing, apl_tolerance_mm=tolerance, with_apl_per_slice=True)
    expected = _reference_added_path_length(pred, ref, spacing, tolerance)
    assert panel["apl_per_slice_mm"] == pytest.approx(expected, abs=1e-9)
    assert panel["apl_mm"] > 0


def test_column_count_not_a_multiple_of_eight_gives_the_same_panel():
    # 176 columns take the word-wise bounding-box scan, 177 the plain one; the masks are otherwise equal.
    pred, ref = ctv_like_pair(4, shape=(36, 160, 176), spacing_zyx=SPACING)
    wide_pred, wide_ref = (np.pad(mask, ((0, 0), (0, 0), (0, 1))) for mask in (pred, ref))
    narrow, wide = compute_panel(pred, ref, SPACING), compute_panel(wide_pred, wide_ref, SPACING)
    for key in set(PANEL_KEYS) - {"specificity"}:  # the extra column adds true negatives
        assert wide[key] == pytest.approx(narrow[key], nan_ok=True), key
