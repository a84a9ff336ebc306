"""Statistics and exports of an unblinded reading study: means with CIs, paired tests, agreement, files.

All the numerics come from the evaluation package (``evaluation.stats`` / ``evaluation.agreement``) so the
reading results use the same bootstrap, paired tests, ICC and kappa as the contour-metric reports.
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from itertools import combinations
from typing import Iterable, Mapping

from evaluation import agreement, stats

N_RESAMPLES = 1000
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _clean(value):
    """JSON-safe float: NaN/inf become None so DRF can render the summary."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _submitted(rows: Iterable[Mapping]) -> list[Mapping]:
    return [r for r in rows if r.get("status") == "submitted"]


def _means(rows: list[Mapping], keys: list[str], seed: int) -> list[dict]:
    """Mean + bootstrap CI per (key, source, site) and per (key, source) over all sites (site "all")."""
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        for key in keys:
            for site in (r["site"], "all"):
                groups[(key, r["source"], site)].append(r.get(key))
    out = []
    for (key, source, site), values in sorted(groups.items()):
        ci = stats.bootstrap_ci_mean(values, n_resamples=N_RESAMPLES, seed=seed)
        out.append(_clean({"criterion": key, "source": source, "site": site, **ci}))
    return out


def _paired(rows: list[Mapping], keys: list[str]) -> list[dict]:
    """Paired tests between every two sources on the same (rater, case) pairs."""
    by_pair: dict[tuple, dict] = defaultdict(dict)
    for r in rows:
        by_pair[(r["rater"], r["case"])][r["source"]] = r
    sources = sorted({r["source"] for r in rows})
    out = []
    for a, b in combinations(sources, 2):
        both = [p for p in by_pair.values() if a in p and b in p]
        for key in keys:
            result = stats.paired_tests([p[a].get(key) for p in both], [p[b].get(key) for p in both])
            out.append(_clean({"criterion": key, "source_a": a, "source_b": b, **result}))
    return out


def _agreement(rows: list[Mapping], criteria: list[dict]) -> dict:
    """ICC(2,1) of totals over (case, source) subjects rated by every rater; weighted kappa per criterion per rater pair."""
    raters = sorted({r["rater"] for r in rows})
    if len(raters) < 2:
        return {"raters": raters, "icc_total": None, "kappa": []}
    table: dict[tuple, dict] = defaultdict(dict)
    for r in rows:
        table[(r["case"], r["source"])][r["rater"]] = r
    complete = [t for t in table.values() if all(x in t for x in raters)]
    icc_total = None
    if len(complete) >= 2:
        icc_total = agreement.icc([[t[x]["total"] for x in raters] for t in complete], form="ICC(2,1)")
    kappas = []
    for a, b in combinations(raters, 2):
        shared = [t for t in table.values() if a in t and b in t]
        for c in criteria:
            pairs = [(t[a].get(c["key"]), t[b].get(c["key"])) for t in shared]
            pairs = [p for p in pairs if p[0] is not None and p[1] is not None]
            if len(pairs) < 2:
                continue
            kappa = agreement.weighted_kappa([p[0] for p in pairs], [p[1] for p in pairs], weights="linear",
                                             labels=c.get("levels"))
            kappas.append(_clean({"criterion": c["key"], "rater_a": a, "rater_b": b, "n": len(pairs),
                                  "kappa_linear": kappa}))
    return {"raters": raters, "n_subjects": len(complete), "icc_total": _clean(icc_total), "kappa": kappas}


def _metric_correlation(rows: list[Mapping], contour_metrics: Mapping | None) -> list[dict]:
    """Spearman/Pearson of the raters' mean rubric total per contour vs its Dice / HD95.

    A contour has one Dice but several raters' totals, so totals are averaged per (case, source) first.
    """
    if not contour_metrics:
        return []
    totals: dict[tuple, list] = defaultdict(list)
    for r in rows:
        if r.get("total") is not None:
            totals[(r["case"], r["source"])].append(r["total"])
    out = []
    for metric in ("dice", "hd95"):
        xs, ys = [], []
        for contour, values in sorted(totals.items()):
            m = contour_metrics.get(contour)
            if m is not None and m.get(metric) is not None:
                xs.append(sum(values) / len(values))
                ys.append(float(m[metric]))
        if len(xs) >= 3:
            out.append(_clean({"metric": metric, "n": len(xs), "spearman": agreement.spearman(xs, ys),
                               "pearson": agreement.pearson(xs, ys)}))
    return out


def _criteria(study) -> list[dict]:
    out = []
    for c in study.rubric_set.criteria.all():
        # steps are stored as strings ("0", "0.5", "1"); rows carry floats, so the kappa labels must too
        out.append({"key": c.key, "levels": [float(s) for s in c.steps] if c.steps else None})
    return out


def summarise(study, rows: list[Mapping], contour_metrics: Mapping | None = None) -> dict:
    """Summary of submitted scores: ``{"means", "paired", "agreement", "metric_correlation", "n_rows"}``.

    ``rows`` are ``services.unblinded_rows(study)``; drafts are ignored. ``contour_metrics`` optionally maps
    ``(case_label, source_label)`` to ``{"dice", "hd95"}`` computed with ``evaluation.metrics``.
    """
    criteria = _criteria(study)
    keys = [c["key"] for c in criteria] + ["total"]
    done = _submitted(rows)
    seed = int(getattr(study, "seed", 0) or 0)
    return {"study": study.pk, "n_rows": len(done), "criteria": keys, "means": _means(done, keys, seed),
            "paired": _paired(done, keys), "agreement": _agreement(done, criteria),
            "metric_correlation": _metric_correlation(done, contour_metrics)}


def rows_to_file(rows: list[Mapping], fmt: str) -> tuple[bytes, str]:
    """Serialise unblinded rows as ``csv`` or ``xlsx``; returns ``(content, content_type)``."""
    columns = list(rows[0].keys()) if rows else ["rater", "case", "site", "source"]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().encode("utf-8"), "text/csv"
    if fmt == "xlsx":
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        sheet.title = "scores"
        sheet.append(columns)
        for r in rows:
            sheet.append([r.get(c) for c in columns])
        out = io.BytesIO()
        book.save(out)
        return out.getvalue(), XLSX_TYPE
    raise ValueError(f"format_type: expected 'csv' or 'xlsx', got {fmt!r}")
