"""Serializers. The rater-facing ones whitelist fields: nothing about the contour's source."""
from rest_framework import serializers

from portal.reading.models import RaterItem, ReadingStudy, RubricCriterion, RubricSet


class CriterionSerializer(serializers.ModelSerializer):
    max_score = serializers.CharField()

    class Meta:
        model = RubricCriterion
        fields = ["key", "label", "description", "examples", "max_score", "steps"]


class RubricSetSerializer(serializers.ModelSerializer):
    criteria = CriterionSerializer(many=True, read_only=True)
    max_total = serializers.SerializerMethodField()

    class Meta:
        model = RubricSet
        fields = ["id", "name", "version", "cancer_type", "description", "criteria", "max_total", "created"]

    def get_max_total(self, obj) -> str:
        return str(obj.max_total)


class RubricSetCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    cancer_type = serializers.ChoiceField(choices=["breast", "prostate", "head_neck"])
    description = serializers.CharField(required=False, allow_blank=True, default="")
    criteria = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=50)


class RaterItemListSerializer(serializers.ModelSerializer):
    """One line of a rater's worklist: blinded handle, letter, status."""

    contour = serializers.SerializerMethodField()

    class Meta:
        model = RaterItem
        fields = ["token", "position", "contour", "status"]

    def get_contour(self, obj) -> str:
        return f"Contour {obj.letter}"


class ScoreDraftSerializer(serializers.Serializer):
    scores = serializers.DictField(child=serializers.CharField(allow_blank=True, allow_null=True, max_length=16),
                                   required=False)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class ItemSourceSerializer(serializers.Serializer):
    case = serializers.IntegerField(help_text="case id")
    source = serializers.ChoiceField(choices=["ground_truth", "roi", "job"])
    roi = serializers.IntegerField(required=False, help_text="ROI id when source is 'roi'")
    job = serializers.IntegerField(required=False, help_text="finished job id when source is 'job'")
    label = serializers.CharField(required=False, max_length=100, help_text="source name shown after unblinding")


class ReadingStudyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    site = serializers.CharField(help_text="site code owning the study")
    rubric_set = serializers.IntegerField()
    show_reference = serializers.BooleanField(default=False)
    raters = serializers.ListField(child=serializers.CharField(max_length=150), min_length=1, max_length=100)
    items = ItemSourceSerializer(many=True)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**48)


class ReadingStudySerializer(serializers.ModelSerializer):
    rubric = serializers.CharField(source="rubric_set.__str__", read_only=True)
    site = serializers.CharField(source="site.code", read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = ReadingStudy
        fields = ["id", "name", "site", "rubric", "show_reference", "state", "seed", "created", "opened_at",
                  "closed_at", "progress"]

    def get_progress(self, obj) -> list:
        from portal.reading.services import progress

        return [{"rater": a.rater.username, **{k: v for k, v in progress(a).items() if k != "next_token"}}
                for a in obj.assignments.select_related("rater")]
