"""Inter-rater agreement: ICC for total scores, weighted Cohen's kappa per criterion, correlation helpers.

ICC form: ICC(2,1) of Shrout & Fleiss (1979), two-way random effects, absolute agreement, single rater
(McGraw & Wong's ICC(A,1)), from the two-way ANOVA of an ``n subjects x k raters`` table::

    ICC(2,1) = (MSR - MSE) / (MSR + (k - 1) * MSE + k * (MSC - MSE) / n)

with MSR the between-subject mean square, MSC the between-rater mean square and MSE the residual mean
square. ICC(3,1) (two-way mixed, consistency) ``(MSR - MSE) / (MSR + (k - 1) * MSE)`` is offered too.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

ICC_FORMS = ("ICC(2,1)", "ICC(3,1)")


def _mean_squares(ratings) -> tuple[float, float, float, int, int]:
    table = np.asarray(ratings, dtype=np.float64)
    if table.ndim != 2:
        raise ValueError(f"ratings: expected a 2D table subjects x raters, got shape {table.shape}")
    n, k = table.shape
    if n < 2 or k < 2:
        raise ValueError(f"ratings: need at least 2 subjects and 2 raters, got {n} x {k}")
    if not np.all(np.isfinite(table)):
        raise ValueError("ratings: every subject must be rated by every rater (missing or non-finite value)")
    grand = table.mean()
    ss_rows = k * ((table.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((table.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((table - grand) ** 2).sum() - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_error / ((n - 1) * (k - 1))
    return msr, msc, mse, n, k


def icc(ratings, form: str = "ICC(2,1)") -> float:
    """Intra-class correlation of a ``subjects x raters`` table (see module docstring for the forms)."""
    msr, msc, mse, n, k = _mean_squares(ratings)
    if form == "ICC(2,1)":
        denominator = msr + (k - 1) * mse + k * (msc - mse) / n
    elif form == "ICC(3,1)":
        denominator = msr + (k - 1) * mse
    else:
        raise ValueError(f"form: expected one of {ICC_FORMS}, got {form!r}")
    return float((msr - mse) / denominator) if denominator else math.nan


def weighted_kappa(rater_a: Sequence, rater_b: Sequence, weights: str | None = "linear",
                   labels: Sequence | None = None) -> float:
    """Cohen's kappa with ``"linear"``, ``"quadratic"`` or no (``None``) disagreement weights.

    ``labels`` fixes the ordered categories (e.g. the 1..5 of a rubric criterion); by default the sorted
    union of observed values. ``kappa = 1 - sum(w * observed) / sum(w * expected)``.
    """
    if len(rater_a) != len(rater_b):
        raise ValueError(f"weighted_kappa: {len(rater_a)} ratings vs {len(rater_b)} ratings")
    if len(rater_a) == 0:
        raise ValueError("weighted_kappa: no ratings")
    categories = list(labels) if labels is not None else sorted(set(rater_a) | set(rater_b))
    index = {c: i for i, c in enumerate(categories)}
    unknown = [v for v in list(rater_a) + list(rater_b) if v not in index]
    if unknown:
        raise ValueError(f"weighted_kappa: rating {unknown[0]!r} is not one of labels {categories}")
    m = len(categories)
    observed = np.zeros((m, m))
    for a, b in zip(rater_a, rater_b):
        observed[index[a], index[b]] += 1
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    grid_i, grid_j = np.indices((m, m))
    if weights is None:
        w = (grid_i != grid_j).astype(float)
    elif weights == "linear":
        w = np.abs(grid_i - grid_j).astype(float)
    elif weights == "quadratic":
        w = ((grid_i - grid_j) ** 2).astype(float)
    else:
        raise ValueError(f"weights: expected 'linear', 'quadratic' or None, got {weights!r}")
    disagreement_expected = (w * expected).sum()
    if disagreement_expected == 0:
        return math.nan  # one category only: kappa is undefined
    return float(1.0 - (w * observed).sum() / disagreement_expected)


def _paired_finite(x, y) -> tuple[np.ndarray, np.ndarray]:
    if len(x) != len(y):
        raise ValueError(f"correlation: {len(x)} values vs {len(y)} values")
    a = np.asarray([np.nan if v is None else v for v in x], dtype=float)
    b = np.asarray([np.nan if v is None else v for v in y], dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def pearson(x, y) -> dict:
    """Pearson r and two-sided p over the pairs where both values are finite: ``{"r", "p", "n"}``."""
    a, b = _paired_finite(x, y)
    if a.size < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return {"r": math.nan, "p": math.nan, "n": int(a.size)}
    result = scipy_stats.pearsonr(a, b)
    return {"r": float(result.statistic), "p": float(result.pvalue), "n": int(a.size)}


def spearman(x, y) -> dict:
    """Spearman rho and two-sided p over the pairs where both values are finite: ``{"r", "p", "n"}``."""
    a, b = _paired_finite(x, y)
    if a.size < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return {"r": math.nan, "p": math.nan, "n": int(a.size)}
    result = scipy_stats.spearmanr(a, b)
    return {"r": float(result.statistic), "p": float(result.pvalue), "n": int(a.size)}
