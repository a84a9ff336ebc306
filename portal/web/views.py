"""Browser pages: case list, case viewer with the context editor, and the trainee comparison.

Thin: scoping comes from ``portal.accounts.scoping``, page data from ``portal.web.page_data``.
"""
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, render

from portal.accounts import scoping
from portal.cases.models import Case
from portal.web import page_data
from portal.web.assets import entry_assets


def _visible_case(user, pk: int) -> Case:
    case = get_object_or_404(Case.objects.select_related("ct_series__study", "site", "ground_truth"), pk=pk)
    if not scoping.can_view_case(user, case):
        raise Http404("No such case.")  # not 403: do not confirm that another site's case exists
    return case


@login_required
def case_list(request):
    cases = scoping.scope_cases(request.user, Case.objects.select_related("site", "ct_series")).order_by(
        "site__code", "label")
    return render(request, "web/case_list.html", {"cases": cases})


@login_required
def case_page(request, pk: int):
    case = _visible_case(request.user, pk)
    return render(request, "web/case.html", {
        "case": case, "assets": entry_assets(), "config": page_data.case_page_config(case), "page": "case"})


@login_required
def compare_page(request, pk: int):
    case = _visible_case(request.user, pk)
    return render(request, "web/compare.html", {
        "case": case, "assets": entry_assets(), "config": page_data.case_page_config(case), "page": "compare"})
