"""Rubric sets, reading studies, per-rater blinded items and the append-only score audit trail.

Blinding: a rater only ever sees ``RaterItem.token`` (random, per rater and item)
and ``RaterItem.letter`` ("Contour A", "B", ... assigned at random per rater and
case). The source of a contour (model name, checkpoint, job) lives on
``ReadingItem`` and is never serialised to raters.
"""
from django.conf import settings
from django.db import models

from portal.accounts.models import Site
from portal.cases.models import Case
from portal.imaging.models import Series


class RubricSet(models.Model):
    """A versioned set of scoring criteria; a new version is a new row, old ones stay intact."""

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    cancer_type = models.CharField(max_length=16)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        unique_together = [("name", "version")]
        ordering = ["name", "-version"]

    def __str__(self):
        return f"{self.name} v{self.version}"

    @property
    def max_total(self):
        return sum(c.max_score for c in self.criteria.all())


class RubricCriterion(models.Model):
    rubric_set = models.ForeignKey(RubricSet, on_delete=models.CASCADE, related_name="criteria")
    key = models.SlugField(max_length=64)
    label = models.CharField(max_length=100)
    description = models.TextField()
    examples = models.TextField(blank=True)
    max_score = models.DecimalField(max_digits=5, decimal_places=2)
    steps = models.JSONField()  # allowed scores as strings, e.g. ["0", "0.5", "1"]
    order = models.PositiveIntegerField(default=0)

    class Meta:
        unique_together = [("rubric_set", "key")]
        ordering = ["rubric_set", "order"]


class ReadingStudy(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open for scoring"
        CLOSED = "closed", "Closed"

    name = models.CharField(max_length=200)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="reading_studies")  # owning site
    rubric_set = models.ForeignKey(RubricSet, on_delete=models.PROTECT, related_name="studies")
    show_reference = models.BooleanField(default=False)  # ground truth and clinical context beside the images
    state = models.CharField(max_length=10, choices=State.choices, default=State.DRAFT)
    seed = models.BigIntegerField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "reading studies"


class ReadingItem(models.Model):
    """One (case, contour source) pair to score. Never shown to raters as such."""

    study = models.ForeignKey(ReadingStudy, on_delete=models.CASCADE, related_name="items")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="+")
    ct_series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="+")
    source_label = models.CharField(max_length=100)  # e.g. "multimodal", "vision-only", "ground truth"
    source_ref = models.CharField(max_length=200, blank=True)  # checkpoint id / job id, for unblinding
    is_control = models.BooleanField(default=False)  # ground truth scored as a hidden control
    mask_path = models.CharField(max_length=255)  # storage path of the mask on the CT grid

    class Meta:
        unique_together = [("study", "case", "source_label")]


class RaterAssignment(models.Model):
    study = models.ForeignKey(ReadingStudy, on_delete=models.CASCADE, related_name="assignments")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reading_assignments")
    order_seed = models.BigIntegerField()  # recorded so the randomised order can be reproduced

    class Meta:
        unique_together = [("study", "rater")]


class RaterItem(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Not started"
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Submitted"

    assignment = models.ForeignKey(RaterAssignment, on_delete=models.CASCADE, related_name="items")
    item = models.ForeignKey(ReadingItem, on_delete=models.PROTECT, related_name="rater_items")
    position = models.PositiveIntegerField()  # 0-based place in this rater's order
    token = models.CharField(max_length=32, unique=True)  # the only handle a rater sees
    case_token = models.CharField(max_length=32)  # per rater and case, so a rater never sees case ids
    letter = models.CharField(max_length=2)  # "A", "B", ... random per rater and case
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    scores = models.JSONField(default=dict)  # criterion key -> score as string
    comment = models.TextField(blank=True)
    revision = models.PositiveIntegerField(default=0)  # bumped on every saved change
    updated = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        unique_together = [("assignment", "position"), ("assignment", "item")]
        ordering = ["assignment", "position"]


class ScoreAuditEntry(models.Model):
    """Append-only record of every change to a rater's item (who, when, old -> new)."""

    rater_item = models.ForeignKey(RaterItem, on_delete=models.PROTECT, related_name="audit")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(auto_now_add=True)
    field = models.CharField(max_length=64)  # criterion key, "comment" or "status"
    old = models.TextField(blank=True, null=True)
    new = models.TextField(blank=True, null=True)
    revision = models.PositiveIntegerField()

    class Meta:
        ordering = ["at", "id"]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise RuntimeError("score audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("score audit entries are never deleted")
