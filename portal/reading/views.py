"""Server-rendered reading pages (thin): the rater's worklist with progress and resume links, the scoring
page (viewer + rubric form; the Vite bundle fills it from the rater item API), and the coordinators'
study pages (list, create, open/close, results after closing; data from ``manage_pages``)."""
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse

from portal.reading import services
from portal.reading.models import RaterAssignment, RaterItem, ReadingStudy
from portal.web.assets import entry_assets


@login_required
def worklist(request):
    """Open studies assigned to the logged-in rater; no source information is rendered."""
    assignments = (RaterAssignment.objects.filter(rater=request.user, study__state=ReadingStudy.State.OPEN)
                   .select_related("study").order_by("study__name"))
    rows = []
    for assignment in assignments:
        p = services.progress(assignment)
        percent = round(100 * p["submitted"] / p["total"]) if p["total"] else 0
        rows.append({"study": assignment.study, "progress": p, "percent": percent})
    return render(request, "reading/worklist.html", {"rows": rows, "finished": request.GET.get("finished") == "1"})


@login_required
def score_page(request, token: str):
    """One blinded item for its own rater: 404 for anyone else (the token is the only handle)."""
    exists = RaterItem.objects.filter(
        token=token, assignment__rater=request.user,
        assignment__study__state__in=[ReadingStudy.State.OPEN, ReadingStudy.State.CLOSED]).exists()
    if not exists:
        raise Http404("No such reading item.")
    config = {
        "dicomweb_root": "/dicomweb",
        "item_url": reverse("reading-item", args=[token]),
        "item_page": reverse("reading-score", args=["__token__"]),
        "worklist_url": reverse("reading-worklist"),
    }
    # Its own Vite entry: a rater's scripts hold the viewer and the rubric form, no model-comparison code.
    return render(request, "reading/score.html",
                  {"assets": entry_assets("src/scoring_page.js"), "config": config, "page": "score"})


# --- Coordinator pages (study coordinators and admins, scoped to the sites they manage) ----------------


def _manager_or_403(request):
    from portal.reading.access import is_coordinator_or_admin

    if not is_coordinator_or_admin(request.user):
        raise PermissionDenied("reading studies are managed by study coordinators")


def _managed_study_or_404(request, pk: int) -> ReadingStudy:
    from portal.reading.access import managed_studies

    _manager_or_403(request)
    study = managed_studies(request.user, ReadingStudy.objects.select_related("rubric_set", "site")).filter(pk=pk).first()
    if study is None:
        raise Http404("No such reading study.")
    return study


@login_required
def manage_list(request):
    from portal.reading.access import managed_studies

    _manager_or_403(request)
    studies = managed_studies(request.user, ReadingStudy.objects.select_related("rubric_set", "site")).order_by("-created")
    rows = [{"study": s, "progress": [dict(rater=a.rater.username, **services.progress(a))
                                      for a in s.assignments.select_related("rater")]} for s in studies]
    return render(request, "reading/manage_list.html", {"rows": rows})


@login_required
def manage_new(request):
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from portal.accounts.models import Role
    from portal.reading import manage_pages
    from portal.reading.models import RubricSet

    _manager_or_403(request)
    sites = manage_pages.manageable_sites(request.user)
    error, field = None, None
    if request.method == "POST":
        try:
            data = manage_pages.request_from_form(request.POST)
            with transaction.atomic():
                study = services.create_study_from_request(request.user, data)
            return redirect("reading-manage-detail", pk=study.pk)
        except manage_pages.FormError as exc:
            error, field = str(exc), exc.field
        except services.ReadingError as exc:
            error, field = str(exc), exc.field
    raters = (get_user_model().objects.filter(is_active=True, profile__role=Role.ONCOLOGIST,
                                              profile__sites__in=sites).distinct().order_by("username"))
    return render(request, "reading/manage_new.html", {
        "sites": sites, "rubrics": RubricSet.objects.order_by("name", "-version"), "raters": raters,
        "sources": manage_pages.available_sources(request.user), "error": error, "error_field": field,
        "posted": request.POST if request.method == "POST" else None}, status=400 if error else 200)


@login_required
def manage_detail(request, pk: int):
    study = _managed_study_or_404(request, pk)
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "open":
                services.open_study(study)
            elif action == "close":
                services.close_study(study)
            else:
                return HttpResponseBadRequest("action: expected 'open' or 'close'")
        except services.ReadingError as exc:
            return render(request, "reading/manage_detail.html", _detail_context(study, str(exc)), status=exc.status)
        return redirect("reading-manage-detail", pk=study.pk)
    return render(request, "reading/manage_detail.html", _detail_context(study))


def _detail_context(study, error=None) -> dict:
    progress = [dict(rater=a.rater.username, **services.progress(a)) for a in study.assignments.select_related("rater")]
    return {"study": study, "progress": progress, "n_items": study.items.count(), "error": error}


@login_required
def manage_results(request, pk: int):
    from portal.reading import manage_pages

    study = _managed_study_or_404(request, pk)
    if study.state != ReadingStudy.State.CLOSED:
        raise PermissionDenied("results and unblinding are available only after the study is closed")
    return render(request, "reading/manage_results.html", {"study": study, **manage_pages.results_page_data(study)})


@login_required
def manage_unblinded(request, pk: int):
    """Per rater and item scores with the contour source: the study's coordinators only, only once closed."""
    study = _managed_study_or_404(request, pk)
    try:
        rows = services.unblinded_rows(study)
    except services.ReadingError as exc:
        raise PermissionDenied(str(exc)) from None
    criteria = list(study.rubric_set.criteria.values_list("key", flat=True))
    table = [{**r, "values": [r.get(k) for k in criteria]} for r in rows]
    return render(request, "reading/manage_unblinded.html", {"study": study, "criteria": criteria, "rows": table})


@login_required
def manage_rubrics(request):
    """Versioned rubric sets: list them and add a new set (or the next version of one) from a form."""
    from portal.reading import rubric_forms
    from portal.reading.models import RubricSet
    from portal.reading.rubrics import RubricError

    _manager_or_403(request)
    errors, posted = {}, None
    if request.method == "POST":
        spec, filled = rubric_forms.spec_from_form(request.POST)
        errors = rubric_forms.check_cancer_type(spec["cancer_type"])
        if not errors:
            try:
                rubric = services.create_rubric_set(spec, request.user)
                return redirect(f"{reverse('reading-manage-rubrics')}?created={rubric.pk}")
            except RubricError as exc:
                errors = exc.errors
        posted = {"name": spec["name"], "cancer_type": spec["cancer_type"], "description": spec["description"]}
    else:
        start = request.GET.get("from", "")  # ?from=<id>: the next version starts from that set's criteria
        base = RubricSet.objects.filter(pk=int(start)).first() if start.isdigit() else None
        filled = rubric_forms.rows_from_rubric(base) if base else []
        if base:
            posted = {"name": base.name, "cancer_type": base.cancer_type, "description": base.description}
    return render(request, "reading/manage_rubrics.html", {
        "rubrics": RubricSet.objects.prefetch_related("criteria").order_by("name", "-version"),
        "cancer_types": rubric_forms.CANCER_TYPES, "rows": rubric_forms.form_rows(filled), "posted": posted,
        "errors": sorted(errors.items()), "created": request.GET.get("created")}, status=400 if errors else 200)
