"""REST API of validation studies (coordinators only, site-scoped); logic lives in services/results."""

from django.http import HttpResponse
from rest_framework.response import Response
from rest_framework.views import APIView

from evaluation import reports
from evaluation.studies import results, services
from evaluation.studies.models import Study


def _error(exc: services.StudyError) -> Response:
    return Response({"detail": str(exc), "field": exc.field}, status=exc.status)


def study_json(study: Study) -> dict:
    return {
        "id": study.pk, "key": study.key, "name": study.name, "cancer_type": study.cancer_type, "kind": study.kind,
        "sites": list(study.sites.values_list("code", flat=True)), "cohorts": study.cohorts,
        "metrics": study.metrics, "tolerance_mm": study.tolerance_mm, "reference_arm": study.reference_arm,
        "arms": [{"label": a.label, "checkpoint": a.checkpoint, "train_fraction": a.train_fraction,
                  "omit_fields": a.omit_fields} for a in study.arms.all()],
        "rows": study.results.count(),
    }


class StudyListView(APIView):
    def get(self, request):
        if not services.scoping.is_coordinator(request.user):
            return _error(services.StudyError("validation studies are for study coordinators", "user", 403))
        return Response([study_json(s) for s in services.visible_studies(request.user)])

    def post(self, request):
        try:
            study = services.create_study(request.user, request.data)
        except services.StudyError as exc:
            return _error(exc)
        return Response(study_json(study), status=201)


class _StudyView(APIView):
    def study(self, request, pk):
        return services.get_visible_study(request.user, pk)


class StudyDetailView(_StudyView):
    def get(self, request, pk):
        try:
            return Response(study_json(self.study(request, pk)))
        except services.StudyError as exc:
            return _error(exc)


class StudyRunView(_StudyView):
    def post(self, request, pk):
        try:
            return Response(services.run_study(request.user, self.study(request, pk)), status=202)
        except services.StudyError as exc:
            return _error(exc)


class StudyCollectView(_StudyView):
    def post(self, request, pk):
        try:
            recompute = str(request.data.get("recompute", "")).lower() in ("1", "true", "yes")
            return Response(services.collect_results(request.user, self.study(request, pk), recompute=recompute))
        except services.StudyError as exc:
            return _error(exc)


class StudyResultsView(_StudyView):
    def get(self, request, pk):
        try:
            return Response(results.results_json(request.user, self.study(request, pk)))
        except services.StudyError as exc:
            return _error(exc)


class StudyExportView(_StudyView):
    """``?table=summary|cases`` as CSV, or both tables as one XLSX workbook."""

    def get(self, request, pk, fmt):
        try:
            study = self.study(request, pk)
        except services.StudyError as exc:
            return _error(exc)
        built = results.tables(request.user, study)
        summary = built["summary"] if built["summary"] is not None else []
        if fmt == "xlsx":
            body = reports.to_xlsx_bytes({"summary": summary, "cases": built["cases"]})
            content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            name = f"study-{study.pk}.xlsx"
        else:
            table = request.query_params.get("table", "summary")
            if table not in ("summary", "cases"):
                return _error(services.StudyError("table: 'summary' or 'cases'", "table"))
            body = reports.to_csv_bytes(summary if table == "summary" else built["cases"])
            content_type = "text/csv"
            name = f"study-{study.pk}-{table}.csv"
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
