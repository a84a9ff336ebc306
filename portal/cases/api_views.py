"""REST views of the case catalogue: thin wrappers over ``portal.cases.services`` and ``exporting``."""
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.cases import exporting, services
from portal.cases.models import Case
from portal.cases.serializers import (CaseSummarySerializer, ContextDiffSerializer, ContextPreviewSerializer,
                                      ContextSaveSerializer, ContextVersionSerializer, NoteExtractionSerializer,
                                      NoteSerializer, PromptPreviewSerializer)

ERRORS = {400: OpenApiTypes.OBJECT, 403: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT}


def field_errors(exc: services.CaseInputError) -> Response:
    return Response({"errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)


class CaseListView(APIView):
    @extend_schema(parameters=[
        OpenApiParameter("site", str, description="site code"),
        OpenApiParameter("cohort", str, enum=list(Case.Cohort.values)),
        OpenApiParameter("cancer_type", str, enum=["breast", "prostate", "head_neck"]),
        OpenApiParameter("limit", int), OpenApiParameter("offset", int),
    ], responses={200: CaseSummarySerializer(many=True)})
    def get(self, request):
        params = request.query_params
        cases = services.filter_cases(services.visible_cases(request.user), site=params.get("site"),
                                      cohort=params.get("cohort"), cancer_type=params.get("cancer_type"))
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(cases, request, view=self)
        return paginator.get_paginated_response([services.case_summary(c) for c in page])


class CaseDetailView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT})
    def get(self, request, pk):
        return Response(services.case_detail(services.get_case(request.user, pk)))


class ContextSchemaView(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT})
    def get(self, request, cancer_type):
        try:
            return Response(services.context_schema(cancer_type))
        except services.CaseInputError as exc:
            return field_errors(exc)


class ContextVersionsView(APIView):
    @extend_schema(responses={200: ContextVersionSerializer(many=True), 404: OpenApiTypes.OBJECT})
    def get(self, request, pk):
        case = services.get_case(request.user, pk)
        versions = case.context_versions.select_related("author").order_by("version")
        return Response([services.version_json(v, case.cancer_type) for v in versions])

    @extend_schema(request=ContextSaveSerializer, responses={201: ContextVersionSerializer, **ERRORS})
    def post(self, request, pk):
        case = services.get_case(request.user, pk)
        if not services.can_edit_context(request.user, case):
            raise PermissionDenied("only coordinators of this case's site and admins save contexts")
        body = ContextSaveSerializer(data=request.data)
        if not body.is_valid():
            return Response({"errors": body.errors}, status=status.HTTP_400_BAD_REQUEST)
        try:
            version = services.save_context_version(case, body.validated_data["data"], author=request.user,
                                                    note=body.validated_data.get("note"))
        except services.CaseInputError as exc:
            return field_errors(exc)
        return Response(services.version_json(version, case.cancer_type), status=status.HTTP_201_CREATED)


class ContextVersionDetailView(APIView):
    @extend_schema(responses={200: ContextVersionSerializer, 404: OpenApiTypes.OBJECT})
    def get(self, request, pk, version):
        case = services.get_case(request.user, pk)
        return Response(services.version_json(services.get_version(case, version), case.cancer_type))


class ContextDiffView(APIView):
    @extend_schema(parameters=[OpenApiParameter("from", int, required=True), OpenApiParameter("to", int, required=True)],
                   responses={200: ContextDiffSerializer, 400: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT})
    def get(self, request, pk):
        case = services.get_case(request.user, pk)
        a, b = request.query_params.get("from"), request.query_params.get("to")
        missing = {k: "required version number" for k, v in (("from", a), ("to", b)) if not v}
        if missing:
            return Response({"errors": missing}, status=status.HTTP_400_BAD_REQUEST)
        return Response(services.diff_versions(case, a, b))


class PromptPreviewView(APIView):
    @extend_schema(request=ContextPreviewSerializer, responses={200: PromptPreviewSerializer, **ERRORS})
    def post(self, request, pk):
        case = services.get_case(request.user, pk)
        body = ContextPreviewSerializer(data=request.data)
        if not body.is_valid():
            return Response({"errors": body.errors}, status=status.HTTP_400_BAD_REQUEST)
        try:
            return Response(services.preview_prompt(case.cancer_type, body.validated_data["data"]))
        except services.CaseInputError as exc:
            return field_errors(exc)


class NoteExtractionView(APIView):
    @extend_schema(request=NoteSerializer, responses={200: NoteExtractionSerializer, **ERRORS})
    def post(self, request, pk):
        case = services.get_case(request.user, pk)
        body = NoteSerializer(data=request.data)
        if not body.is_valid():
            return Response({"errors": body.errors}, status=status.HTTP_400_BAD_REQUEST)
        try:
            return Response(services.extract_from_note(case.cancer_type, body.validated_data["note"]))
        except services.CaseInputError as exc:
            return field_errors(exc)


class RoiPayloadView(APIView):
    @extend_schema(parameters=[
        OpenApiParameter("encoding", str, enum=["varint-deflate-base64", "json"]),
        OpenApiParameter("contours", bool, description="add per-slice polygons in patient mm"),
    ], responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT})
    def get(self, request, pk, roi_id):
        case = services.get_case(request.user, pk)
        params = {**request.query_params.dict(), "roi": str(roi_id), "job": None}
        try:
            return Response(exporting.mask_payload(case, params))
        except services.CaseInputError as exc:
            return field_errors(exc)


class ExportView(APIView):
    @extend_schema(parameters=[OpenApiParameter("roi", int), OpenApiParameter("job", int)],
                   responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 400: OpenApiTypes.OBJECT,
                              404: OpenApiTypes.OBJECT})
    def get(self, request, pk, fmt):
        case = services.get_case(request.user, pk)
        try:
            content, content_type, filename = exporting.export_mask(case, fmt, request.query_params)
        except services.CaseInputError as exc:
            return field_errors(exc)
        response = HttpResponse(content, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
