"""Cases, versioned clinical contexts and cohorts."""
from django.conf import settings
from django.db import models

from portal.accounts.models import Site
from portal.imaging.models import ROI, Series


class Case(models.Model):
    class Cohort(models.TextChoices):
        TRAIN = "train", "Training"
        VALIDATION = "validation", "Validation"
        INTERNAL = "internal", "Internal test"
        EXTERNAL = "external", "External test"
        TEACHING = "teaching", "Teaching"
        CLINICAL = "clinical", "Clinical"

    label = models.CharField(max_length=64)  # pseudonymous, e.g. "BR-INT-0001"
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="cases")
    cancer_type = models.CharField(max_length=16)  # clinical.CANCER_TYPES
    ct_series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="cases")
    ground_truth = models.ForeignKey(ROI, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cohort = models.CharField(max_length=16, choices=Cohort.choices, default=Cohort.CLINICAL)
    tags = models.JSONField(default=list, blank=True)
    teaching = models.BooleanField(default=False)  # visible to trainees
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        unique_together = [("site", "label")]
        ordering = ["site__code", "label"]

    def __str__(self):
        return self.label

    @property
    def current_context(self):
        return self.context_versions.order_by("-version").first()


class ClinicalContextVersion(models.Model):
    """One saved version of a case's structured clinical context (append-only)."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="context_versions")
    version = models.PositiveIntegerField()
    data = models.JSONField()  # validated by clinical.validate_context
    prompt_text = models.TextField(blank=True)  # clinical.render_prompt at save time
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)
    source_note = models.TextField(blank=True)  # free-text note with names/dates/IDs masked

    class Meta:
        unique_together = [("case", "version")]
        ordering = ["case", "version"]
