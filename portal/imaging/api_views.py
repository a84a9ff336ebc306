"""REST endpoints of the imaging app: DICOM upload (files or one zip) and the site-scoped catalogue.

Views are thin: uploads are copied into a staging folder and handed to
``portal.imaging.ingest``; listings go through ``portal.accounts.scoping``.
"""
from __future__ import annotations

import shutil

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.accounts import scoping
from portal.accounts.models import Site
from portal.accounts.permissions import IsAdminRole, IsCoordinatorOrAdmin
from portal.imaging import ingest
from portal.imaging.models import ROI, Patient, ReidentificationEntry, Series, StructureSet, Study


class UploadSerializer(serializers.Serializer):
    site = serializers.SlugField(max_length=64, help_text="code of one of your sites")
    files = serializers.ListField(child=serializers.FileField(allow_empty_file=True), required=False, allow_empty=True,
                                  help_text="DICOM files (CT series and RTSTRUCT)")
    archive = serializers.FileField(required=False, help_text="one zip archive of DICOM files, instead of files")
    allow_partial = serializers.BooleanField(required=False, default=False,
                                             help_text="accept an RTSTRUCT whose contours lie on planes missing from the CT series")


IngestErrorSerializer = inline_serializer("IngestErrors", {"errors": serializers.ListField(child=serializers.DictField())})
IngestReportSerializer = inline_serializer("IngestReport", {
    "patients": serializers.ListField(child=serializers.CharField()), "studies": serializers.ListField(child=serializers.CharField()),
    "series": serializers.ListField(child=serializers.CharField()), "instances": serializers.IntegerField(),
    "skipped_identical": serializers.IntegerField(), "structure_sets": serializers.ListField(child=serializers.IntegerField()),
    "rois": serializers.ListField(child=serializers.IntegerField()), "warnings": serializers.ListField(child=serializers.DictField())})


class UploadView(APIView):
    """Upload CT series and RTSTRUCTs (validated, de-identified, all or nothing) into one of your sites."""

    permission_classes = [IsAuthenticated, IsCoordinatorOrAdmin]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": UploadSerializer},
                   responses={201: IngestReportSerializer, 400: IngestErrorSerializer, 413: IngestErrorSerializer})
    def post(self, request):
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > settings.CONTEXTRT_MAX_UPLOAD_BYTES:
            return Response({"errors": [{"file": "", "problem": f"request of {declared} bytes exceeds the upload limit of "
                                                                 f"{settings.CONTEXTRT_MAX_UPLOAD_BYTES} bytes"}]},
                            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        payload = {"site": request.data.get("site"), "files": request.FILES.getlist("files"),
                   "allow_partial": request.data.get("allow_partial", False)}
        if request.FILES.get("archive") is not None:
            payload["archive"] = request.FILES["archive"]
        form = UploadSerializer(data=payload)
        if not form.is_valid():
            return Response({"errors": [{"file": "", "field": k, "problem": "; ".join(str(m) for m in v)}
                                        for k, v in form.errors.items()]}, status=status.HTTP_400_BAD_REQUEST)
        data = form.validated_data
        site = Site.objects.filter(code=data["site"]).first()
        if not scoping.can_manage_site(request.user, site):
            return Response({"errors": [{"file": "", "field": "site", "problem": f"you cannot upload into site {data['site']!r}"}]},
                            status=status.HTTP_400_BAD_REQUEST)
        files, archive = data.get("files") or [], data.get("archive")
        if bool(files) == bool(archive):
            return Response({"errors": [{"file": "", "field": "files", "problem": "send either files or one zip archive"}]},
                            status=status.HTTP_400_BAD_REQUEST)
        staging = ingest.new_staging_dir()
        try:
            if archive is not None:
                target = staging / "upload.zip"
                _copy_upload(archive, target)
                report = ingest.ingest_zip(target, site=site, user=request.user, zip_name=_display_name(archive.name),
                                           allow_partial=data["allow_partial"])
            else:
                ingest.check_limits(len(files), sum(f.size for f in files))
                paths = []
                for k, upload in enumerate(files):
                    target = staging / f"f{k:06d}.dcm"  # generated names: the client's names never reach the disk
                    _copy_upload(upload, target)
                    paths.append(target)
                report = ingest.ingest_files(paths, site=site, user=request.user,
                                             names=[_display_name(f.name) for f in files], allow_partial=data["allow_partial"])
        except ingest.IngestError as exc:
            too_big = any("exceed" in e["problem"] for e in exc.errors)
            return Response({"errors": exc.errors},
                            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE if too_big else status.HTTP_400_BAD_REQUEST)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return Response(report.as_dict(), status=status.HTTP_201_CREATED)


def _display_name(name: str | None) -> str:
    return (name or "upload")[-200:]


def _copy_upload(upload, target) -> None:
    with open(target, "wb") as dst:
        for chunk in upload.chunks():
            dst.write(chunk)


# ---------------------------------------------------------------- catalogue


class PatientSerializer(serializers.ModelSerializer):
    site = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Patient
        fields = ["id", "pseudo_id", "site", "created"]


class StudySerializer(serializers.ModelSerializer):
    patient = serializers.SlugRelatedField(slug_field="pseudo_id", read_only=True)

    class Meta:
        model = Study
        fields = ["id", "study_uid", "patient", "study_date", "study_time", "description", "created"]


class ROISerializer(serializers.ModelSerializer):
    class Meta:
        model = ROI
        fields = ["id", "number", "name", "interpreted_type", "color", "voxel_count", "volume_cc", "empty"]


class StructureSetSerializer(serializers.ModelSerializer):
    rois = ROISerializer(many=True, read_only=True)
    sop_uid = serializers.CharField(source="instance.sop_uid", read_only=True, allow_null=True, default=None)

    class Meta:
        model = StructureSet
        fields = ["id", "label", "source", "sop_uid", "warnings", "rois", "created"]


class SeriesSerializer(serializers.ModelSerializer):
    study_uid = serializers.CharField(source="study.study_uid", read_only=True)
    patient = serializers.CharField(source="study.patient.pseudo_id", read_only=True)
    site = serializers.CharField(source="study.patient.site.code", read_only=True)

    class Meta:
        model = Series
        fields = ["id", "series_uid", "study_uid", "patient", "site", "modality", "series_number", "description",
                  "frame_of_reference_uid", "rows", "columns", "pixel_spacing", "image_orientation", "origin",
                  "slice_spacing", "num_slices", "institution_name", "manufacturer", "manufacturer_model", "kvp",
                  "convolution_kernel", "slice_thickness", "created"]


class SeriesDetailSerializer(SeriesSerializer):
    structure_sets = StructureSetSerializer(many=True, read_only=True)

    class Meta(SeriesSerializer.Meta):
        fields = SeriesSerializer.Meta.fields + ["structure_sets"]


_site_param = OpenApiParameter("site", OpenApiTypes.STR, description="site code")


@extend_schema(parameters=[_site_param])
class PatientViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PatientSerializer

    def get_queryset(self):
        qs = scoping.scope_patients(self.request.user, Patient.objects.select_related("site").order_by("pk"))
        if self.request.query_params.get("site"):
            qs = qs.filter(site__code=self.request.query_params["site"])
        return qs


@extend_schema(parameters=[OpenApiParameter("patient", OpenApiTypes.STR, description="pseudonymous patient id")])
class StudyViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = StudySerializer

    def get_queryset(self):
        qs = scoping.scope_studies(self.request.user, Study.objects.select_related("patient").order_by("pk"))
        if self.request.query_params.get("patient"):
            qs = qs.filter(patient__pseudo_id=self.request.query_params["patient"])
        return qs


@extend_schema(parameters=[_site_param, OpenApiParameter("modality", OpenApiTypes.STR),
                           OpenApiParameter("study_uid", OpenApiTypes.STR)])
class SeriesViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_field = "series_uid"
    lookup_value_regex = r"[0-9.]{1,64}"

    def get_serializer_class(self):
        return SeriesDetailSerializer if self.action == "retrieve" else SeriesSerializer

    def get_queryset(self):
        qs = Series.objects.select_related("study__patient__site").order_by("pk")
        if self.action == "retrieve":
            qs = qs.prefetch_related("structure_sets__rois", "structure_sets__instance")
        qs = scoping.scope_series(self.request.user, qs)
        params = self.request.query_params
        if params.get("site"):
            qs = qs.filter(study__patient__site__code=params["site"])
        if params.get("modality"):
            qs = qs.filter(modality=params["modality"].upper())
        if params.get("study_uid"):
            qs = qs.filter(study__study_uid=params["study_uid"])
        return qs


class ReidentificationSerializer(serializers.ModelSerializer):
    patient = serializers.SlugRelatedField(slug_field="pseudo_id", read_only=True)

    class Meta:
        model = ReidentificationEntry
        fields = ["id", "kind", "original", "pseudonym", "patient", "created"]


@extend_schema(parameters=[OpenApiParameter("pseudonym", OpenApiTypes.STR), OpenApiParameter("kind", OpenApiTypes.STR)])
class ReidentificationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The original <-> pseudonym map (administrators only)."""

    serializer_class = ReidentificationSerializer
    permission_classes = [IsAuthenticated, IsAdminRole]

    def get_queryset(self):
        qs = ReidentificationEntry.objects.select_related("patient").order_by("pk")
        params = self.request.query_params
        if params.get("pseudonym"):
            qs = qs.filter(pseudonym=params["pseudonym"])
        if params.get("kind"):
            qs = qs.filter(kind=params["kind"])
        return qs
