"""Django admin for cases and their (append-only) clinical-context versions."""
from django.contrib import admin

from portal.cases.models import Case, ClinicalContextVersion


class ContextVersionInline(admin.TabularInline):
    model = ClinicalContextVersion
    extra = 0
    can_delete = False
    fields = ("version", "data", "prompt_text", "author", "created")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False  # versions are created through the API so each save is validated and numbered


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ("label", "site", "cancer_type", "cohort", "teaching", "created")
    list_filter = ("site", "cancer_type", "cohort", "teaching")
    search_fields = ("label",)
    raw_id_fields = ("ct_series", "ground_truth")
    inlines = [ContextVersionInline]


@admin.register(ClinicalContextVersion)
class ClinicalContextVersionAdmin(admin.ModelAdmin):
    list_display = ("case", "version", "author", "created")
    readonly_fields = ("case", "version", "data", "prompt_text", "author", "created", "source_note")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
