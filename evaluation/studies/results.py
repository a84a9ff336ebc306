"""Assembles a study's results (summary with CIs and p-values, per-case table, figures) from its stored rows."""

from __future__ import annotations

import math

from evaluation import reports
from evaluation.studies import services
from evaluation.studies.models import Study, StudyKind

CASE_COLUMNS = ("case", "site", "model", "flags")


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def tables(user, study: Study) -> dict:
    """``{"rows": per-case rows, "summary": DataFrame or None, "cases": DataFrame}``."""
    rows = services.report_rows(user, study)
    metrics = [m for m in study.metrics]
    summary = None
    if rows:
        summary = reports.summary_table(rows, metrics=metrics, reference_model=study.reference_arm or None)
    frame = reports.to_frame(rows)
    columns = [c for c in (*CASE_COLUMNS, "train_fraction", "condition", *metrics, "hd95_cm") if c in frame.columns]
    return {"rows": rows, "summary": summary, "cases": frame[columns] if rows else frame}


def results_json(user, study: Study) -> dict:
    built = tables(user, study)
    summary = built["summary"]
    return {
        "study": study.pk,
        "reference_arm": study.reference_arm,
        "metrics": study.metrics,
        "summary": [] if summary is None else [{k: _json_safe(v) for k, v in r.items()}
                                               for r in summary.to_dict(orient="records")],
        "cases": [{k: _json_safe(v) for k, v in r.items()} for r in built["rows"]],
    }


def figures(user, study: Study) -> list:
    """The study's plotly figures, chosen by its kind."""
    rows = services.report_rows(user, study)
    if not rows:
        return []
    out = [reports.box_plot_by_site_model(rows, "dice")]
    if study.kind == StudyKind.DATA_EFFICIENCY:
        out.append(reports.data_efficiency_curve(rows, "dice"))
    if study.kind == StudyKind.COMPONENT_OMISSION:
        out.append(reports.omission_bar_chart(rows, "dice"))
    bar_metrics = [m for m in ("dice", "iou", "hd95_mm") if m in rows[0]]
    out.append(reports.per_patient_bars(rows, bar_metrics))
    return out
