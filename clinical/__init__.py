"""Clinical context: the one schema per cancer type that the portal's editor validates,
the fixtures generate and the segmentation prompt renderer reads; NCCN risk grouping;
rendering of a context to the model's prompt text. Plain Python (no Django, no torch).
"""
from clinical.schema import (  # noqa: F401
    CANCER_TYPES,
    ContextValidationError,
    FieldSpec,
    fields_for,
    schema_as_json,
    validate_context,
)
from clinical.prompt import render_prompt  # noqa: F401
from clinical.risk import nccn_risk_group  # noqa: F401
