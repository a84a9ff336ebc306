"""Statistics over per-case metric values: seeded bootstrap CIs of the mean and paired model comparisons.

Protocol (LLMSeg): the 95 % CI of a mean is the percentile interval of 1,000 non-parametric bootstrap
resamples of the case set (with replacement, fixed seed); two models are compared on the same cases with a
two-tailed paired t-test and a two-sided Wilcoxon signed-rank test (scipy.stats). Cases whose value is
missing or NaN (e.g. HD95 with an empty prediction) are dropped and counted in ``n_missing``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

N_BOOTSTRAP = 1000
DEFAULT_SEED = 20240101
OVERALL = "overall"


def _finite(values) -> tuple[np.ndarray, int]:
    array = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    keep = np.isfinite(array)
    return array[keep], int(array.size - keep.sum())


def bootstrap_ci_mean(values: Iterable[float], n_resamples: int = N_BOOTSTRAP, seed: int = DEFAULT_SEED,
                      confidence: float = 0.95) -> dict:
    """Mean and percentile bootstrap CI: ``{"mean", "ci_low", "ci_high", "n", "n_missing"}``.

    With no finite value every number is NaN; with one value the interval collapses onto it.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a value in (0, 1), got {confidence!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples: expected >= 1, got {n_resamples!r}")
    data, n_missing = _finite(values)
    if data.size == 0:
        return {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0, "n_missing": n_missing}
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(n_resamples, data.size))
    means = data[picks].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return {"mean": float(data.mean()), "ci_low": float(low), "ci_high": float(high), "n": int(data.size),
            "n_missing": n_missing}


def paired_tests(model_values: Sequence[float], reference_values: Sequence[float]) -> dict:
    """Two-tailed paired t-test and Wilcoxon signed-rank test of model vs reference on the same cases.

    Returns ``{"n", "mean_difference", "t_statistic", "t_pvalue", "wilcoxon_statistic", "wilcoxon_pvalue"}``;
    pairs with a missing value on either side are dropped. Fewer than two pairs gives NaN p-values; all
    differences zero gives p = 1 (the models agree on every case).
    """
    if len(model_values) != len(reference_values):
        raise ValueError(f"paired_tests: {len(model_values)} model values vs {len(reference_values)} reference values")
    a = np.asarray([np.nan if v is None else v for v in model_values], dtype=np.float64)
    b = np.asarray([np.nan if v is None else v for v in reference_values], dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    out = {"n": int(a.size), "mean_difference": float((a - b).mean()) if a.size else math.nan,
           "t_statistic": math.nan, "t_pvalue": math.nan, "wilcoxon_statistic": math.nan,
           "wilcoxon_pvalue": math.nan}
    if a.size < 2:
        return out
    differences = a - b
    if np.all(differences == 0):
        out.update(t_statistic=0.0, t_pvalue=1.0, wilcoxon_statistic=0.0, wilcoxon_pvalue=1.0)
        return out
    t = scipy_stats.ttest_rel(a, b)
    w = scipy_stats.wilcoxon(a, b, alternative="two-sided")
    out.update(t_statistic=float(t.statistic), t_pvalue=float(t.pvalue),
               wilcoxon_statistic=float(w.statistic), wilcoxon_pvalue=float(w.pvalue))
    return out


def group_rows(rows: Iterable[Mapping], key: str, include_overall: bool = True) -> dict:
    """Rows grouped by ``row[key]`` (e.g. site), plus an ``"overall"`` group holding every row."""
    groups: dict = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)
        if include_overall:
            groups[OVERALL].append(row)
    return dict(groups)


def summarise_metric(rows: Iterable[Mapping], metric: str, by: Sequence[str] = ("site", "model"),
                     n_resamples: int = N_BOOTSTRAP, seed: int = DEFAULT_SEED) -> list[dict]:
    """Mean and bootstrap CI of ``metric`` per combination of ``by`` keys, and per model over all sites.

    Each result row has the ``by`` keys (``"overall"`` in place of the first key for the pooled rows),
    ``metric`` and the fields of ``bootstrap_ci_mean``.
    """
    rows = list(rows)
    cells: dict = defaultdict(list)
    for row in rows:
        cells[tuple(row[k] for k in by)].append(row.get(metric))
        if len(by) > 1:
            cells[(OVERALL,) + tuple(row[k] for k in by[1:])].append(row.get(metric))
    out = []
    for key in sorted(cells, key=lambda k: tuple((k[0] == OVERALL, str(v)) for v in k)):
        result = dict(zip(by, key))
        result["metric"] = metric
        result.update(bootstrap_ci_mean(cells[key], n_resamples=n_resamples, seed=seed))
        out.append(result)
    return out


def compare_to_reference(rows: Iterable[Mapping], metric: str, reference_model: str, model_key: str = "model",
                         case_key: str = "case", group_key: str | None = "site") -> list[dict]:
    """Paired tests of every model against ``reference_model`` on the cases both have, per group and overall."""
    rows = list(rows)
    grouped = group_rows(rows, group_key) if group_key else {OVERALL: rows}
    out = []
    for group, group_members in grouped.items():
        by_model: dict = defaultdict(dict)
        for row in group_members:
            by_model[row[model_key]][row[case_key]] = row.get(metric)
        reference = by_model.get(reference_model, {})
        for model in sorted(m for m in by_model if m != reference_model):
            shared = sorted(set(by_model[model]) & set(reference), key=str)
            result = paired_tests([by_model[model][c] for c in shared], [reference[c] for c in shared])
            out.append({"group": group, "model": model, "reference": reference_model, "metric": metric, **result})
    return out
