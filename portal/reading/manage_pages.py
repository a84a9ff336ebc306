"""Page data for the coordinators' reading-study pages (no HTTP here): the contour sources a new study can
draw on, the form → service request mapping, and the results page's tables and plotly charts."""
from __future__ import annotations

from collections import defaultdict

from portal.reading import services
from portal.reading.access import coordinator_site_ids


def manageable_sites(user):
    from portal.accounts.models import Site

    ids = coordinator_site_ids(user)
    sites = Site.objects.all() if ids is None else Site.objects.filter(pk__in=ids)
    return sites.order_by("code")


def available_sources(user) -> list[dict]:
    """Every contour a coordinator may put into a study: ground truths (as hidden controls) and finished
    segmentation jobs of cases at the sites they manage. ``value`` is what the form posts back."""
    from portal.cases.models import Case
    from portal.jobs.models import Job

    sites = manageable_sites(user)
    cases = Case.objects.filter(site__in=sites).select_related("site", "ground_truth").order_by("site__code", "label")
    out = []
    for case in cases:
        if case.ground_truth_id and case.ground_truth.mask_path:
            out.append({"value": f"{case.pk}:ground_truth", "case": case.label, "site": case.site.code,
                        "cancer_type": case.cancer_type, "cohort": case.cohort, "label": "ground truth (hidden control)"})
    jobs = (Job.objects.filter(case__in=cases, state="succeeded").exclude(mask_path="")
            .select_related("case__site").order_by("case__site__code", "case__label", "checkpoint", "pk"))
    arms = validation_arms([j.pk for j in jobs])
    for job in jobs:
        arm = arms.get(job.pk)
        origin = f"validation study {arm['study']} · arm {arm['label']}" if arm else job.get_kind_display()
        out.append({"value": f"{job.case_id}:job:{job.pk}", "case": job.case.label, "site": job.case.site.code,
                    "cancer_type": job.case.cancer_type, "cohort": job.case.cohort,
                    "label": f"{origin} · {job.checkpoint} · job {job.pk}"})
    return out


def validation_arms(job_ids) -> dict[int, dict]:
    """Job id → ``{"study", "label"}`` of the validation-study arm whose prediction it is. The arm label
    becomes the item's source label, so two arms on one checkpoint (component omission) stay distinct."""
    from evaluation.studies.models import CaseResult

    results = CaseResult.objects.filter(job_id__in=list(job_ids)).select_related("arm", "study")
    return {r.job_id: {"study": r.study.name, "label": r.arm.label} for r in results}


class FormError(ValueError):
    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def request_from_form(post) -> dict:
    """The create-study form → the dict ``services.create_study_from_request`` takes (named field errors)."""
    name = (post.get("name") or "").strip()
    if not name:
        raise FormError("give the study a name", "name")
    try:
        rubric = int(post.get("rubric_set") or "")
    except ValueError:
        raise FormError("choose a rubric set", "rubric_set") from None
    raters = [r for r in post.getlist("raters") if r]
    if not raters:
        raise FormError("choose at least one rater", "raters")
    items = []
    for value in post.getlist("sources"):
        parts = value.split(":")
        try:
            if parts[1] == "ground_truth" and len(parts) == 2:
                items.append({"case": int(parts[0]), "source": "ground_truth"})
            elif parts[1] == "job" and len(parts) == 3:
                items.append({"case": int(parts[0]), "source": "job", "job": int(parts[2])})
                arm = validation_arms([int(parts[2])]).get(int(parts[2]))
                if arm:
                    items[-1]["label"] = arm["label"]
            else:
                raise ValueError(value)
        except (ValueError, IndexError):
            raise FormError(f"unknown contour source {value!r}", "sources") from None
    if not items:
        raise FormError("choose at least one contour to score", "sources")
    return {"name": name, "site": post.get("site") or "", "rubric_set": rubric,
            "show_reference": post.get("show_reference") == "on", "raters": raters, "items": items}


def _fmt(value, digits=2):
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def results_page_data(study) -> dict:
    """Tables (formatted) and plotly figures of a closed study, all from the stored scores and masks."""
    import plotly.graph_objects as go

    from evaluation import reports
    from portal.reading.contour_metrics import study_contour_metrics
    from portal.reading.results import summarise

    rows = services.unblinded_rows(study)
    summary = summarise(study, rows, study_contour_metrics(study))
    means = summary["means"]
    criteria = summary["criteria"]

    mean_rows = []
    for m in means:
        mean_rows.append({"criterion": m.get("criterion"), "source": m.get("source"), "site": m.get("site", "all"),
                          "n": m.get("n"), "mean": _fmt(m.get("mean")),
                          "ci": f"{_fmt(m.get('ci_low'))} – {_fmt(m.get('ci_high'))}"})
    figures = []
    by_source = defaultdict(dict)
    for m in means:
        if m.get("site", "all") in ("all", None, "overall"):
            by_source[m.get("source")][m.get("criterion")] = m
    sources = sorted(k for k in by_source if k is not None)
    for criterion in criteria:
        fig = go.Figure()
        values = [by_source[s].get(criterion, {}) for s in sources]
        fig.add_bar(x=sources, y=[v.get("mean") for v in values],
                    error_y={"type": "data", "symmetric": False,
                             "array": [(v.get("ci_high") or 0) - (v.get("mean") or 0) for v in values],
                             "arrayminus": [(v.get("mean") or 0) - (v.get("ci_low") or 0) for v in values]})
        fig.update_layout(title=f"{criterion}: mean score with bootstrap 95% CI", yaxis_title="score",
                          template="plotly_white", height=320, margin={"t": 40, "b": 40, "l": 50, "r": 10})
        figures.append(fig)
    charts = [reports.figure_html(fig, full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    return {"summary": summary, "mean_rows": mean_rows, "paired": summary["paired"],
            "agreement": summary["agreement"], "correlation": summary["metric_correlation"], "charts": charts,
            "n_rows": summary["n_rows"]}
