"""Study reports from per-case rows: plotly figures, the Table-1-style summary, and CSV/XLSX/HTML/PNG export.

Input everywhere is the list of per-case rows (dicts or a pandas DataFrame) with at least ``case``,
``site``, ``model`` and metric columns named as in ``evaluation.metrics.PANEL_KEYS``; every number shown is
recomputed from those rows (bootstrap CIs and paired tests from ``evaluation.stats``).
"""

from __future__ import annotations

import io
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from evaluation.metrics import METRIC_LABELS
from evaluation.stats import DEFAULT_SEED, N_BOOTSTRAP, OVERALL, bootstrap_ci_mean, paired_tests

DEFAULT_SUMMARY_METRICS = ("dice", "iou", "hd95_mm", "assd_mm", "surface_dice", "apl_mm")
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


class ReportInputError(ValueError):
    """Rows lack a column a report needs; the message names it."""


def to_frame(rows) -> pd.DataFrame:
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    # Per-case rows get HD95 in cm too (LLMSeg reports cm); a formatted summary column is left alone.
    if "hd95_mm" in frame and "hd95_cm" not in frame and pd.api.types.is_numeric_dtype(frame["hd95_mm"]):
        frame["hd95_cm"] = frame["hd95_mm"] / 10.0
    return frame


def _require(frame: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReportInputError(f"rows: missing column(s) {missing}; have {sorted(frame.columns)}")


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _colour(index: int) -> str:
    return _PALETTE[index % len(_PALETTE)]


def box_plot_by_site_model(rows, metric: str = "dice", site_key: str = "site", model_key: str = "model",
                           title: str | None = None) -> go.Figure:
    """Box plot of a metric per site (x) and model (colour), every case shown as a point (LLMSeg Fig. 1b)."""
    frame = to_frame(rows)
    _require(frame, metric, site_key, model_key)
    figure = go.Figure()
    for index, (model, part) in enumerate(frame.groupby(model_key, sort=False)):
        figure.add_trace(go.Box(x=part[site_key], y=part[metric], name=str(model), boxpoints="all",
                                jitter=0.4, pointpos=0, marker_color=_colour(index)))
    figure.update_layout(boxmode="group", title=title or f"{_label(metric)} per site and model",
                         yaxis_title=_label(metric), xaxis_title="Site", template="plotly_white")
    return figure


def _hex_to_rgba(colour: str, alpha: float) -> str:
    colour = colour.lstrip("#")
    r, g, b = (int(colour[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def data_efficiency_curve(rows, metric: str = "dice", fraction_key: str = "train_fraction",
                          series_key: str = "site", n_resamples: int = N_BOOTSTRAP,
                          seed: int = DEFAULT_SEED) -> go.Figure:
    """Mean metric vs fraction of training data, one line per series with its bootstrap 95 % CI band (Fig. 2a)."""
    frame = to_frame(rows)
    _require(frame, metric, fraction_key, series_key)
    figure = go.Figure()
    for index, (series, part) in enumerate(frame.groupby(series_key, sort=True)):
        points = []
        for fraction, cell in part.groupby(fraction_key, sort=True):
            ci = bootstrap_ci_mean(cell[metric].tolist(), n_resamples=n_resamples, seed=seed)
            points.append((float(fraction), ci["mean"], ci["ci_low"], ci["ci_high"]))
        x = [100 * p[0] if p[0] <= 1 else p[0] for p in points]
        colour = _colour(index)
        figure.add_trace(go.Scatter(x=x + x[::-1], y=[p[3] for p in points] + [p[2] for p in points][::-1],
                                    fill="toself", fillcolor=_hex_to_rgba(colour, 0.2), line={"width": 0},
                                    hoverinfo="skip", showlegend=False, name=f"{series} 95% CI"))
        figure.add_trace(go.Scatter(x=x, y=[p[1] for p in points], mode="lines+markers", name=str(series),
                                    line={"color": colour}))
    figure.update_layout(title=f"Data efficiency: {_label(metric)} vs training data", template="plotly_white",
                         xaxis_title="Training data used (%)", yaxis_title=_label(metric))
    return figure


def per_patient_bars(rows, metrics: Sequence[str] = ("dice", "iou", "hd95_mm"), case_key: str = "case",
                     model_key: str = "model") -> go.Figure:
    """One panel per metric; bars per case, grouped by model."""
    frame = to_frame(rows)
    _require(frame, case_key, model_key, *metrics)
    figure = make_subplots(rows=len(metrics), cols=1, shared_xaxes=True,
                           subplot_titles=[_label(m) for m in metrics], vertical_spacing=0.06)
    for index, (model, part) in enumerate(frame.groupby(model_key, sort=False)):
        for row_index, metric in enumerate(metrics, start=1):
            figure.add_trace(go.Bar(x=part[case_key].astype(str), y=part[metric], name=str(model),
                                    marker_color=_colour(index), legendgroup=str(model),
                                    showlegend=row_index == 1), row=row_index, col=1)
    figure.update_layout(barmode="group", title="Per-patient metrics", template="plotly_white",
                         height=260 * len(metrics) + 120)
    return figure


def omission_bar_chart(rows, metric: str = "dice", condition_key: str = "condition", site_key: str = "site",
                       n_resamples: int = N_BOOTSTRAP, seed: int = DEFAULT_SEED) -> go.Figure:
    """Mean metric with bootstrap 95 % CI error bars per omitted-component condition, per site (Table 4)."""
    frame = to_frame(rows)
    _require(frame, metric, condition_key, site_key)
    figure = go.Figure()
    conditions = list(dict.fromkeys(frame[condition_key].astype(str)))
    for index, (site, part) in enumerate(frame.groupby(site_key, sort=True)):
        means, lows, highs = [], [], []
        for condition in conditions:
            ci = bootstrap_ci_mean(part.loc[part[condition_key].astype(str) == condition, metric].tolist(),
                                   n_resamples=n_resamples, seed=seed)
            means.append(ci["mean"])
            lows.append(ci["mean"] - ci["ci_low"])
            highs.append(ci["ci_high"] - ci["mean"])
        figure.add_trace(go.Bar(x=conditions, y=means, name=str(site), marker_color=_colour(index),
                                error_y={"type": "data", "symmetric": False, "array": highs, "arrayminus": lows}))
    figure.update_layout(barmode="group", title=f"Component omission: {_label(metric)}", template="plotly_white",
                         xaxis_title="Context given to the model", yaxis_title=_label(metric))
    return figure


def summary_table(rows, metrics: Iterable[str] = DEFAULT_SUMMARY_METRICS, reference_model: str | None = None,
                  site_key: str = "site", model_key: str = "model", case_key: str = "case",
                  n_resamples: int = N_BOOTSTRAP, seed: int = DEFAULT_SEED, digits: int = 3) -> pd.DataFrame:
    """LLMSeg Table-1-style summary: one row per site (and ``overall``) x model; per metric the mean, its 95 %
    bootstrap CI, a formatted ``mean (low-high)`` cell and, against ``reference_model`` on the same cases,
    the paired t-test and Wilcoxon p-values (blank for the reference itself)."""
    frame = to_frame(rows)
    metrics = [m for m in metrics if m in frame.columns]
    _require(frame, site_key, model_key, case_key)
    if not metrics:
        raise ReportInputError("rows: none of the requested metric columns is present")
    pooled = frame.copy()
    pooled[site_key] = OVERALL
    both = pd.concat([frame, pooled], ignore_index=True)
    sites = [s for s in dict.fromkeys(frame[site_key])] + [OVERALL]
    models = list(dict.fromkeys(frame[model_key]))
    out = []
    for site in sites:
        at_site = both[both[site_key] == site]
        for model in models:
            part = at_site[at_site[model_key] == model]
            if part.empty:
                continue
            line = {site_key: site, model_key: model, "n_cases": int(part[case_key].nunique())}
            for metric in metrics:
                ci = bootstrap_ci_mean(part[metric].tolist(), n_resamples=n_resamples, seed=seed)
                line[f"{metric}_mean"] = ci["mean"]
                line[f"{metric}_ci_low"] = ci["ci_low"]
                line[f"{metric}_ci_high"] = ci["ci_high"]
                line[metric] = (f"{ci['mean']:.{digits}f} ({ci['ci_low']:.{digits}f}-{ci['ci_high']:.{digits}f})"
                                if ci["n"] else "n/a")
                if reference_model is not None and model != reference_model:
                    ref = at_site[at_site[model_key] == reference_model].set_index(case_key)[metric]
                    mine = part.set_index(case_key)[metric]
                    shared = [c for c in mine.index if c in ref.index]
                    tests = paired_tests(mine.loc[shared].tolist(), ref.loc[shared].tolist())
                    line[f"{metric}_p_ttest"] = tests["t_pvalue"]
                    line[f"{metric}_p_wilcoxon"] = tests["wilcoxon_pvalue"]
            out.append(line)
    return pd.DataFrame(out)


def to_csv_bytes(table) -> bytes:
    return to_frame(table).to_csv(index=False).encode("utf-8")


def to_xlsx_bytes(tables: Mapping[str, object]) -> bytes:
    """One sheet per named table (sheet names cut to Excel's 31 characters)."""
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, table in tables.items():
            frame = to_frame(table)
            # Excel cannot hold lists (e.g. flags): store them as text.
            for column in frame.columns:
                if frame[column].map(lambda v: isinstance(v, (list, tuple, dict))).any():
                    frame[column] = frame[column].map(lambda v: ", ".join(map(str, v)) if isinstance(v, (list, tuple))
                                                      else v)
            frame.to_excel(writer, sheet_name=str(name)[:31] or "table", index=False)
    return buffer.getvalue()


def figure_html(figure: go.Figure, full_html: bool = True, include_plotlyjs=True, div_id: str | None = None) -> str:
    """HTML of a figure; by default a self-contained page (plotly.js embedded, works offline)."""
    return pio.to_html(figure, full_html=full_html, include_plotlyjs=include_plotlyjs, div_id=div_id)


def figure_png(figure: go.Figure, width: int = 1000, height: int = 600) -> bytes:
    """PNG through kaleido (needs a Chrome/Chromium on the host); raises RuntimeError naming the cause."""
    try:
        return pio.to_image(figure, format="png", width=width, height=height)
    except Exception as exc:  # kaleido raises several types when no browser is usable
        raise RuntimeError(f"PNG export unavailable (kaleido/Chromium): {exc}") from exc


def finite_or_none(value):
    """JSON-safe number: NaN and infinities become None."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return number if np.isfinite(number) else None
