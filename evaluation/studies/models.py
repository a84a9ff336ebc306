"""Models of the validation-study app: a Study, the arms (models/checkpoints) it compares, per-case metric rows."""

from django.conf import settings
from django.db import models


class StudyKind(models.TextChoices):
    COMPARISON = "comparison", "Model comparison"
    DATA_EFFICIENCY = "data_efficiency", "Data efficiency"
    COMPONENT_OMISSION = "component_omission", "Component omission"
    TEXT_ABLATION = "text_ablation", "Text-module ablation"


class Study(models.Model):
    name = models.CharField(max_length=200)
    cancer_type = models.CharField(max_length=16)  # clinical.CANCER_TYPES
    kind = models.CharField(max_length=24, choices=StudyKind.choices, default=StudyKind.COMPARISON)
    sites = models.ManyToManyField("accounts.Site", related_name="validation_studies")
    cohorts = models.JSONField(default=list, blank=True)  # Case.Cohort values; empty = every cohort
    metrics = models.JSONField(default=list)  # keys of evaluation.metrics.PANEL_KEYS shown in the summary
    tolerance_mm = models.FloatField(default=2.0)  # surface Dice and APL tolerance
    reference_arm = models.CharField(max_length=64, blank=True)  # label of the arm p-values compare against
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]
        verbose_name_plural = "studies"

    def __str__(self):
        return f"study {self.pk} {self.name}"

    @property
    def key(self) -> str:
        """The ``study_key`` under which its jobs are filed in portal.jobs (and its websocket group)."""
        return f"study-{self.pk}"


class StudyArm(models.Model):
    """One model under test: a checkpoint, optionally with context fields withheld (component omission)."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="arms")
    label = models.CharField(max_length=64)  # e.g. "vision-only", "multimodal", "no laterality"
    checkpoint = models.CharField(max_length=128)  # file name in CONTEXTRT_CHECKPOINT_DIR
    train_fraction = models.FloatField(null=True, blank=True)  # data efficiency: 0.2 .. 1.0
    omit_fields = models.JSONField(default=list, blank=True)  # component omission: context keys removed
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["study", "order", "pk"]
        constraints = [models.UniqueConstraint(fields=["study", "label"], name="study_arm_unique_label")]

    def __str__(self):
        return f"{self.label} ({self.checkpoint})"


class CaseResult(models.Model):
    """The metric panel of one arm on one case, computed from the stored prediction and ground truth."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="results")
    arm = models.ForeignKey(StudyArm, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    metrics = models.JSONField(default=dict)  # evaluation.metrics panel; NaN stored as null
    flags = models.JSONField(default=list, blank=True)  # "empty_pred", "empty_ref", "both_empty"
    computed = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["study", "arm", "case"]
        constraints = [models.UniqueConstraint(fields=["arm", "case"], name="study_result_unique_arm_case")]
