"""Bootstrap CIs, paired tests against scipy, ICC against Shrout & Fleiss, kappa against sklearn."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import cohen_kappa_score

from evaluation.agreement import icc, pearson, spearman, weighted_kappa
from evaluation.stats import bootstrap_ci_mean, compare_to_reference, paired_tests, summarise_metric


def test_bootstrap_is_seeded_and_matches_hand_resampling():
    values = [0.71, 0.80, 0.65, 0.90, 0.77, 0.84, 0.69, 0.73]
    first, second = bootstrap_ci_mean(values, seed=3), bootstrap_ci_mean(values, seed=3)
    assert first == second
    rng = np.random.default_rng(3)
    data = np.asarray(values)
    means = data[rng.integers(0, data.size, size=(1000, data.size))].mean(axis=1)
    assert first["ci_low"] == pytest.approx(np.quantile(means, 0.025))
    assert first["ci_high"] == pytest.approx(np.quantile(means, 0.975))
    assert first["ci_low"] < first["mean"] < first["ci_high"]
    assert first["mean"] == pytest.approx(np.mean(values))
    assert first["n"] == 8 and first["n_missing"] == 0


def test_bootstrap_drops_missing_values_and_handles_empty():
    result = bootstrap_ci_mean([1.0, None, float("nan"), 3.0])
    assert result["n"] == 2 and result["n_missing"] == 2 and result["mean"] == 2.0
    assert math.isnan(bootstrap_ci_mean([])["mean"])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci_mean([1.0], confidence=1.5)


def test_paired_tests_equal_scipy():
    a = [0.82, 0.79, 0.88, 0.91, 0.75, 0.84, 0.86, 0.80, 0.77, 0.90]
    b = [0.78, 0.80, 0.81, 0.85, 0.70, 0.83, 0.79, 0.76, 0.78, 0.84]
    result = paired_tests(a, b)
    assert result["t_pvalue"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
    assert result["wilcoxon_pvalue"] == pytest.approx(scipy_stats.wilcoxon(a, b).pvalue)
    assert result["mean_difference"] == pytest.approx(np.mean(np.subtract(a, b)))
    identical = paired_tests(a, a)
    assert identical["t_pvalue"] == 1.0 and identical["wilcoxon_pvalue"] == 1.0
    with pytest.raises(ValueError, match="reference values"):
        paired_tests(a, b[:-1])


def test_summary_and_comparison_per_site_and_overall():
    rows = []
    for site, boost in (("internal", 0.0), ("external1", 0.05)):
        for case in range(8):
            rows.append({"site": site, "model": "vision", "case": f"{site}-{case}", "dice": 0.7 + 0.01 * case})
            rows.append({"site": site, "model": "multimodal", "case": f"{site}-{case}",
                         "dice": 0.72 + 0.01 * case + boost + 0.002 * (case % 3)})
    summary = summarise_metric(rows, "dice")
    keys = {(r["site"], r["model"]) for r in summary}
    assert ("overall", "vision") in keys and ("internal", "multimodal") in keys
    overall_mm = next(r for r in summary if r["site"] == "overall" and r["model"] == "multimodal")
    assert overall_mm["n"] == 16
    comparison = compare_to_reference(rows, "dice", reference_model="vision")
    external = next(r for r in comparison if r["group"] == "external1")
    assert external["model"] == "multimodal" and external["n"] == 8
    assert external["mean_difference"] > 0 and external["t_pvalue"] < 0.001


# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges; published ICC(2,1) = 0.29, ICC(3,1) = 0.71.
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def test_icc_matches_shrout_fleiss():
    assert icc(SHROUT_FLEISS, "ICC(2,1)") == pytest.approx(0.2898, abs=5e-4)
    assert icc(SHROUT_FLEISS, "ICC(3,1)") == pytest.approx(0.7148, abs=5e-4)
    assert icc([[1, 1], [2, 2], [3, 3]]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ratings"):
        icc([[1, 2, 3]])
    with pytest.raises(ValueError, match="form"):
        icc(SHROUT_FLEISS, "ICC(1,k)")


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_weighted_kappa_equals_sklearn(weights):
    rng = np.random.default_rng(11)
    a = rng.integers(1, 6, size=60)
    b = np.clip(a + rng.integers(-1, 2, size=60), 1, 5)
    assert weighted_kappa(list(a), list(b), weights=weights) == pytest.approx(
        cohen_kappa_score(a, b, weights=weights))
    # Fixed rubric labels including an unused category.
    assert weighted_kappa([1, 2, 3], [1, 2, 2], weights=weights, labels=[1, 2, 3, 4, 5]) == pytest.approx(
        cohen_kappa_score([1, 2, 3], [1, 2, 2], weights=weights, labels=[1, 2, 3, 4, 5]))


def test_kappa_rejects_unknown_rating():
    with pytest.raises(ValueError, match="not one of labels"):
        weighted_kappa([1, 7], [1, 2], labels=[1, 2, 3])


def test_correlations_equal_scipy():
    x = [1.0, 2.5, 3.1, 4.8, 5.0, 6.2, None]
    y = [2.1, 2.9, 3.5, 5.5, 4.9, 7.0, 1.0]
    assert pearson(x, y)["r"] == pytest.approx(scipy_stats.pearsonr(x[:-1], y[:-1]).statistic)
    assert spearman(x, y)["r"] == pytest.approx(scipy_stats.spearmanr(x[:-1], y[:-1]).statistic)
    assert pearson(x, y)["n"] == 6
