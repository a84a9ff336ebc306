"""Request and response shapes of the cases API (validation of the envelope; the context itself is
validated by ``clinical.validate_context`` in ``portal.cases.services``)."""
from rest_framework import serializers


class ContextSaveSerializer(serializers.Serializer):
    data = serializers.DictField(help_text="field -> value, per /api/context-schema/<cancer_type>/")
    note = serializers.CharField(required=False, allow_blank=True, max_length=20000, trim_whitespace=False,
                                 help_text="optional free-text note; stored only with names, dates and IDs masked")


class ContextPreviewSerializer(serializers.Serializer):
    data = serializers.DictField()


class NoteSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=20000, trim_whitespace=False)


class ContextVersionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    data = serializers.DictField()
    prompt_text = serializers.CharField()
    risk_group = serializers.CharField(allow_null=True)
    author = serializers.CharField(allow_null=True)
    created = serializers.DateTimeField()
    source_note = serializers.CharField(allow_blank=True)


class PromptPreviewSerializer(serializers.Serializer):
    data = serializers.DictField()
    prompt_text = serializers.CharField()
    risk_group = serializers.CharField(allow_null=True)


class NoteExtractionSerializer(PromptPreviewSerializer):
    proposed = serializers.DictField()
    masked_note = serializers.CharField()
    data = None


class CaseSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    label = serializers.CharField()
    site = serializers.CharField()
    cancer_type = serializers.CharField()
    cohort = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    teaching = serializers.BooleanField()
    has_ground_truth = serializers.BooleanField()
    created = serializers.DateTimeField()


class ContextDiffSerializer(serializers.Serializer):
    changes = serializers.ListField(child=serializers.DictField())
    prompt_before = serializers.CharField()
    prompt_after = serializers.CharField()
