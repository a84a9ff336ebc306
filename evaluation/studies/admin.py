"""Admin registrations of the validation-study app (read-mostly views for administrators)."""
from django.contrib import admin

from evaluation.studies.models import CaseResult, Study, StudyArm


class StudyArmInline(admin.TabularInline):
    model = StudyArm
    extra = 0


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "cancer_type", "created")
    inlines = [StudyArmInline]


@admin.register(CaseResult)
class CaseResultAdmin(admin.ModelAdmin):
    list_display = ("study", "arm", "case", "computed")
    list_filter = ("study",)
