"""Pages of validation studies (coordinators, site-scoped): list and results with plotly charts."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

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


def _study_action(request, pk, action):
    if not services.scoping.is_coordinator(request.user):
        return HttpResponseForbidden("validation studies are for study coordinators")
    try:
        study = services.get_visible_study(request.user, pk)
        outcome = action(request.user, study)
    except services.StudyError as exc:
        if exc.status == 404:
            raise Http404("study not found") from None
        messages.error(request, str(exc))
    else:
        messages.info(request, ", ".join(f"{k}: {len(v) if isinstance(v, list) else v}" for k, v in outcome.items()))
    return redirect("studies:results", pk=pk)


@login_required
@require_POST
def study_run(request, pk):
    """Dispatch the study's missing case x arm inference (CSRF-protected form post)."""
    return _study_action(request, pk, services.run_study)


@login_required
@require_POST
def study_collect(request, pk):
    """Compute per-case rows of finished predictions (CSRF-protected form post)."""
    return _study_action(request, pk, services.collect_results)
