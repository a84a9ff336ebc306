"""Pages of validation studies (coordinators, site-scoped): list and results with plotly charts."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseForbidden
from django.shortcuts import render

from evaluation import reports
from evaluation.studies import results, services


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@login_required
def study_list(request):
    if not services.scoping.is_coordinator(request.user):
        return HttpResponseForbidden("validation studies are for study coordinators")
    return render(request, "studies/list.html", {"studies": services.visible_studies(request.user)})


@login_required
def study_results(request, pk):
    if not services.scoping.is_coordinator(request.user):
        return HttpResponseForbidden("validation studies are for study coordinators")
    try:
        study = services.get_visible_study(request.user, pk)
    except services.StudyError:
        raise Http404("study not found") from None
    built = results.tables(request.user, study)
    # plotly.js is embedded once (first figure) so the page works without any outside network.
    charts = [reports.figure_html(fig, full_html=False, include_plotlyjs=(i == 0))
              for i, fig in enumerate(results.figures(request.user, study))]
    summary = built["summary"]
    summary_columns = ["site", "model", "n_cases"] + [m for m in study.metrics]
    p_columns = [f"{m}_p_wilcoxon" for m in study.metrics]
    summary_rows = [] if summary is None else [
        {"cells": [r.get(c, "") for c in summary_columns],
         "p": [("" if r.get(c) is None or r.get(c) != r.get(c) else f"{r[c]:.4f}") for c in p_columns]}
        for r in summary.to_dict(orient="records")]
    case_rows = [{"case": r["case"], "case_id": r["case_id"], "site": r["site"], "model": r["model"],
                  "flags": r["flags"], "values": [_cell(r.get(m)) for m in study.metrics]} for r in built["rows"]]
    return render(request, "studies/results.html", {
        "study": study, "charts": charts, "summary_columns": summary_columns, "p_columns": p_columns,
        "summary_rows": summary_rows, "case_rows": case_rows, "metrics": study.metrics,
    })
