"""REST endpoints of the reading module (thin: the workflow lives in ``services``).

Rater endpoints address items only by their per-rater random token; every
response is built from a whitelist that carries no source, job, checkpoint or
item id. Coordinator endpoints are role- and site-scoped; unblinding answers
403 until the study is closed, and always to raters.
"""
from __future__ import annotations

from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.reading import access, services
from portal.reading.blinded import contour_payload, reference_payload
from portal.reading.models import RaterAssignment, RaterItem, ReadingStudy, RubricSet
from portal.reading.rubrics import RubricError
from portal.reading.serializers import (
    RaterItemListSerializer,
    ReadingStudyCreateSerializer,
    ReadingStudySerializer,
    RubricSetCreateSerializer,
    RubricSetSerializer,
    ScoreDraftSerializer,
)


def _reading_error(exc: services.ReadingError) -> Response:
    body = {"detail": str(exc)}
    if exc.field:
        body["field"] = exc.field
    return Response(body, status=exc.status)


def _require_manager(user):
    if not access.is_coordinator_or_admin(user):
        raise PermissionDenied("reading studies are managed by study coordinators")


def _rater_item(request, token: str) -> RaterItem:
    try:
        return (RaterItem.objects.select_related("assignment__study__rubric_set", "item__case", "item__ct_series__study")
                .get(token=token, assignment__rater=request.user,
                     assignment__study__state__in=[ReadingStudy.State.OPEN, ReadingStudy.State.CLOSED]))
    except RaterItem.DoesNotExist:
        raise NotFound("no such reading item") from None


# --- Rater side ------------------------------------------------------------------------------


class MyAssignmentsView(APIView):
    @extend_schema(responses={200: OpenApiResponse(description="the rater's reading studies with progress")})
    def get(self, request):
        rows = []
        for assignment in (RaterAssignment.objects.filter(rater=request.user, study__state=ReadingStudy.State.OPEN)
                           .select_related("study").order_by("study__created")):
            rows.append({"study": assignment.study.pk, "name": assignment.study.name, **services.progress(assignment)})
        return Response(rows)


class MyWorklistView(APIView):
    @extend_schema(responses=RaterItemListSerializer(many=True))
    def get(self, request, study_id: int):
        assignment = get_object_or_404(RaterAssignment, study_id=study_id, rater=request.user,
                                       study__state=ReadingStudy.State.OPEN)
        return Response(RaterItemListSerializer(assignment.items.all(), many=True).data)


def rater_item_view_data(ri: RaterItem) -> dict:
    study = ri.assignment.study
    siblings = list(ri.assignment.items.values_list("token", flat=True))
    case = ri.item.case
    data = {
        "token": ri.token,
        "position": ri.position + 1,
        "total_items": len(siblings),
        "contour": f"Contour {ri.letter}",
        "status": ri.status,
        "scores": ri.scores,
        "comment": ri.comment,
        "revision": ri.revision,
        "rubric": RubricSetSerializer(study.rubric_set).data,
        "case": {
            "token": ri.case_token,
            "cancer_type": case.cancer_type,
            "study_uid": ri.item.ct_series.study.study_uid,
            "series_uid": ri.item.ct_series.series_uid,
        },
        "contour_url": f"/api/reading/items/{ri.token}/contour/",
        "previous_token": siblings[ri.position - 1] if ri.position > 0 else None,
        "next_token": siblings[ri.position + 1] if ri.position + 1 < len(siblings) else None,
        "show_reference": study.show_reference,
        "progress": {k: v for k, v in services.progress(ri.assignment).items() if k != "next_token"},
    }
    if study.show_reference:
        ctx = case.current_context
        data["case"]["context"] = ctx.data if ctx else {}
        data["case"]["prompt_text"] = ctx.prompt_text if ctx else ""
        data["reference_url"] = f"/api/reading/items/{ri.token}/reference/" if case.ground_truth_id else None
    return data


class RaterItemView(APIView):
    @extend_schema(responses={200: OpenApiResponse(description="one blinded item with its rubric")})
    def get(self, request, token: str):
        return Response(rater_item_view_data(_rater_item(request, token)))


class RaterItemDraftView(APIView):
    @extend_schema(request=ScoreDraftSerializer, responses={200: OpenApiResponse(description="saved draft")})
    def put(self, request, token: str):
        ri = _rater_item(request, token)
        ser = ScoreDraftSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        try:
            ri = services.save_scores(ri.pk, request.user, scores=ser.validated_data.get("scores"),
                                      comment=ser.validated_data.get("comment"))
        except services.ReadingError as exc:
            return _reading_error(exc)
        return Response({"status": ri.status, "scores": ri.scores, "comment": ri.comment, "revision": ri.revision})

    patch = put


class RaterItemSubmitView(APIView):
    @extend_schema(request=None, responses={200: OpenApiResponse(description="submitted and locked")})
    def post(self, request, token: str):
        ri = _rater_item(request, token)
        try:
            ri = services.submit(ri.pk, request.user)
        except services.ReadingError as exc:
            return _reading_error(exc)
        nxt = services.progress(ri.assignment)
        return Response({"status": ri.status, "revision": ri.revision, **nxt})


class RaterItemContourView(APIView):
    @extend_schema(responses={200: OpenApiResponse(description="compact contour payload, blinded")})
    def get(self, request, token: str):
        ri = _rater_item(request, token)
        return Response(contour_payload(ri))


class RaterItemReferenceView(APIView):
    @extend_schema(responses={200: OpenApiResponse(description="ground-truth payload when the study shows it")})
    def get(self, request, token: str):
        ri = _rater_item(request, token)
        if not ri.assignment.study.show_reference or not ri.item.case.ground_truth_id:
            raise NotFound("this study shows no reference")
        return Response(reference_payload(ri))


# --- Coordinator side ------------------------------------------------------------------------


class RubricSetListView(APIView):
    @extend_schema(responses=RubricSetSerializer(many=True))
    def get(self, request):
        _require_manager(request.user)
        return Response(RubricSetSerializer(RubricSet.objects.prefetch_related("criteria"), many=True).data)

    @extend_schema(request=RubricSetCreateSerializer, responses={201: RubricSetSerializer})
    def post(self, request):
        _require_manager(request.user)
        ser = RubricSetCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        try:
            rubric = services.create_rubric_set(ser.validated_data, request.user)
        except RubricError as exc:
            raise ValidationError(exc.errors) from None
        return Response(RubricSetSerializer(rubric).data, status=status.HTTP_201_CREATED)


class ReadingStudyListView(APIView):
    @extend_schema(responses=ReadingStudySerializer(many=True))
    def get(self, request):
        _require_manager(request.user)
        studies = access.managed_studies(request.user, ReadingStudy.objects.select_related("rubric_set", "site"))
        return Response(ReadingStudySerializer(studies.order_by("-created"), many=True).data)

    @extend_schema(request=ReadingStudyCreateSerializer, responses={201: ReadingStudySerializer})
    def post(self, request):
        _require_manager(request.user)
        ser = ReadingStudyCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = ser.validated_data
        try:
            with transaction.atomic():
                study = services.create_study_from_request(request.user, data)
        except services.ReadingError as exc:
            return _reading_error(exc)
        return Response(ReadingStudySerializer(study).data, status=status.HTTP_201_CREATED)


def _managed_study(request, study_id: int) -> ReadingStudy:
    _require_manager(request.user)
    studies = access.managed_studies(request.user, ReadingStudy.objects.all())
    return get_object_or_404(studies, pk=study_id)


class ReadingStudyDetailView(APIView):
    @extend_schema(responses=ReadingStudySerializer)
    def get(self, request, study_id: int):
        return Response(ReadingStudySerializer(_managed_study(request, study_id)).data)


class ReadingStudyTransitionView(APIView):
    action = ""

    @extend_schema(request=None, responses=ReadingStudySerializer)
    def post(self, request, study_id: int):
        study = _managed_study(request, study_id)
        try:
            study = services.open_study(study) if self.action == "open" else services.close_study(study)
        except services.ReadingError as exc:
            return _reading_error(exc)
        return Response(ReadingStudySerializer(study).data)


class UnblindedView(APIView):
    @extend_schema(responses={200: OpenApiResponse(description="per rater and item rows with the contour source")})
    def get(self, request, study_id: int):
        study = _managed_study(request, study_id)
        try:
            rows = services.unblinded_rows(study)
        except services.ReadingError as exc:
            return _reading_error(exc)
        fmt = request.query_params.get("format_type", "json")
        if fmt in ("csv", "xlsx"):
            from portal.reading.results import rows_to_file

            content, ctype = rows_to_file(rows, fmt)
            resp = HttpResponse(content, content_type=ctype)
            resp["Content-Disposition"] = f'attachment; filename="reading-study-{study.pk}-scores.{fmt}"'
            return resp
        return Response(rows)


class ResultsView(APIView):
    @extend_schema(responses={200: OpenApiResponse(description="per criterion and total: means, CIs, tests, agreement")})
    def get(self, request, study_id: int):
        study = _managed_study(request, study_id)
        try:
            rows = services.unblinded_rows(study)
        except services.ReadingError as exc:
            return _reading_error(exc)
        from portal.reading.contour_metrics import study_contour_metrics
        from portal.reading.results import summarise

        return Response(summarise(study, rows, study_contour_metrics(study)))
