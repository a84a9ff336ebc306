"""Admin for the DICOM catalogue; the re-identification map is visible to superusers only."""
from django.contrib import admin

from portal.imaging.models import ROI, Instance, Patient, ReidentificationEntry, Series, StructureSet, Study


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ["pseudo_id", "site", "created"]
    list_filter = ["site"]


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["study_uid", "patient", "study_date"]


@admin.register(Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = ["series_uid", "modality", "num_slices", "study"]
    list_filter = ["modality"]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["sop_uid", "series", "slice_index"]
    exclude = ["metadata"]


class ROIInline(admin.TabularInline):
    model = ROI
    fields = ["number", "name", "interpreted_type", "voxel_count", "volume_cc", "empty"]
    readonly_fields = fields
    extra = 0


@admin.register(StructureSet)
class StructureSetAdmin(admin.ModelAdmin):
    list_display = ["id", "label", "source", "ct_series"]
    inlines = [ROIInline]


@admin.register(ReidentificationEntry)
class ReidentificationEntryAdmin(admin.ModelAdmin):
    """Only superusers (the admin role) may see or change the map; staff without it get nothing."""

    list_display = ["kind", "original", "pseudonym", "patient", "created"]
    list_filter = ["kind"]
    search_fields = ["original", "pseudonym"]

    def _allowed(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_module_permission(self, request):
        return self._allowed(request)

    def has_view_permission(self, request, obj=None):
        return self._allowed(request)

    def has_change_permission(self, request, obj=None):
        return False  # the map is written by ingest only

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # deleting entries would break the consistent remapping of later uploads
