"""The default expert rubrics as data (LLMSeg's breast and prostate scoring) and rubric validation.

Coordinators add rubric sets (e.g. head and neck) through the API with
``create_rubric_set``; the defaults below are loaded by a data migration.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

BREAST_RUBRIC = {
    "name": "LLMSeg breast",
    "cancer_type": "breast",
    "description": "Breast CTV expert rubric (5 points), after Oh et al. 2024.",
    "criteria": [
        {"key": "laterality", "label": "Laterality", "max_score": "1", "steps": ["0", "1"],
         "description": "Right, left or bilateral side correct.",
         "examples": "Full: contour on the indicated side only. None: contour on the wrong side or both sides when one is indicated."},
        {"key": "surgery_type", "label": "Surgery type", "max_score": "1", "steps": ["0", "0.5", "1"],
         "description": "Contour fits breast-conserving surgery versus mastectomy.",
         "examples": "BCS: whole breast with skin sparing. Mastectomy: chest wall, skin not spared."},
        {"key": "volume_definition", "label": "Volume definition", "max_score": "1.5", "steps": ["0", "0.5", "1", "1.5"],
         "description": "Breast or chest wall, with regional nodes included or not as indicated.",
         "examples": "Full: nodal regions (axillary, supraclavicular, internal mammary) present exactly when N+ or T3-4."},
        {"key": "coverage", "label": "Coverage", "max_score": "1", "steps": ["0", "0.5", "1"],
         "description": "Target adequately covered without unnecessary areas.",
         "examples": "Half: minor under- or over-coverage needing edits on a few slices."},
        {"key": "integrity", "label": "Integrity", "max_score": "0.5", "steps": ["0", "0.5"],
         "description": "No incomplete or distorted output.",
         "examples": "None: missing slices, fragments, holes or implausible shapes."},
    ],
}

PROSTATE_RUBRIC = {
    "name": "LLMSeg prostate",
    "cancer_type": "prostate",
    "description": "Prostate CTV expert rubric (4 points), after Oh et al. 2024.",
    "criteria": [
        {"key": "primary_site", "label": "Primary site", "max_score": "1", "steps": ["0", "0.5", "1"],
         "description": "Prostate (or prostate bed), seminal vesicles as indicated.",
         "examples": "Full: seminal vesicles included exactly when invaded."},
        {"key": "volume_definition", "label": "Volume definition", "max_score": "1.5", "steps": ["0", "0.5", "1", "1.5"],
         "description": "Prostate and regional (pelvic) nodes as indicated.",
         "examples": "Full: pelvic nodes present exactly for NCCN high / very high risk under 80 years."},
        {"key": "coverage", "label": "Coverage", "max_score": "1", "steps": ["0", "0.5", "1"],
         "description": "Target adequately covered without unnecessary areas.", "examples": ""},
        {"key": "integrity", "label": "Integrity", "max_score": "0.5", "steps": ["0", "0.5"],
         "description": "No incomplete or distorted output.", "examples": ""},
    ],
}

DEFAULT_RUBRICS = (BREAST_RUBRIC, PROSTATE_RUBRIC)


class RubricError(ValueError):
    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def _decimal(value, where: str, errors: dict) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        errors[where] = f"{value!r} is not a number"
        return None
    if not number.is_finite() or number < 0:
        errors[where] = f"{value!r} must be a finite number ≥ 0"
        return None
    return number


def validate_rubric(spec: dict) -> dict:
    """Check a rubric specification; return it normalised or raise RubricError naming the field."""
    errors: dict[str, str] = {}
    if not str(spec.get("name", "")).strip():
        errors["name"] = "required"
    criteria = spec.get("criteria")
    if not isinstance(criteria, list) or not criteria:
        errors["criteria"] = "at least one criterion is required"
        raise RubricError(errors)
    keys = set()
    clean = []
    for i, crit in enumerate(criteria):
        where = f"criteria[{i}]"
        if not isinstance(crit, dict):
            errors[where] = "must be an object"
            continue
        key = str(crit.get("key", "")).strip()
        if not key or not key.replace("_", "").isalnum():
            errors[f"{where}.key"] = "required, letters/digits/underscores"
        elif key in keys:
            errors[f"{where}.key"] = f"duplicate key {key!r}"
        keys.add(key)
        if not str(crit.get("label", "")).strip():
            errors[f"{where}.label"] = "required"
        if not str(crit.get("description", "")).strip():
            errors[f"{where}.description"] = "required"
        maximum = _decimal(crit.get("max_score"), f"{where}.max_score", errors)
        steps_raw = crit.get("steps")
        if not isinstance(steps_raw, list) or len(steps_raw) < 2:
            errors[f"{where}.steps"] = "give at least two allowed scores, e.g. [0, 0.5, 1]"
            continue
        steps = [_decimal(s, f"{where}.steps", errors) for s in steps_raw]
        if None in steps or maximum is None:
            continue
        steps = sorted(set(steps))
        if steps[0] != 0 or steps[-1] != maximum:
            errors[f"{where}.steps"] = f"allowed scores must run from 0 to the maximum {maximum}"
            continue
        clean.append({
            "key": key, "label": str(crit["label"]).strip(), "description": str(crit["description"]).strip(),
            "examples": str(crit.get("examples", "")), "max_score": maximum,
            "steps": [format(s.normalize(), "f") for s in steps],
        })
    if errors:
        raise RubricError(errors)
    return {"name": str(spec["name"]).strip(), "cancer_type": str(spec.get("cancer_type", "")),
            "description": str(spec.get("description", "")), "criteria": clean}
