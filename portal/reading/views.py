"""Server-rendered reading pages (thin): the rater's worklist with progress and resume links."""
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from portal.reading import services
from portal.reading.models import RaterAssignment, ReadingStudy


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
    return render(request, "reading/worklist.html", {"rows": rows})
