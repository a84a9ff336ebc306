"""Structured clinical-context schema per cancer type, with validation.

A context is a flat ``dict`` of field name -> value. Every field is optional
(an omitted field is simply not told to the model: LLMSeg's component-omission
study), but present values must be valid. ``validate_context`` returns a
cleaned copy (types coerced, empty values dropped) or raises
``ContextValidationError`` whose ``errors`` maps each bad field to a message.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CANCER_TYPES = ("breast", "prostate", "head_neck")

T_BREAST = ("TX", "T0", "Tis", "T1", "T1mi", "T1a", "T1b", "T1c", "T2", "T3", "T4", "T4a", "T4b", "T4c", "T4d")
N_BREAST = ("NX", "N0", "N1", "N1mi", "N1a", "N1b", "N1c", "N2", "N2a", "N2b", "N3", "N3a", "N3b", "N3c")
M_STAGE = ("MX", "M0", "M1")
T_PROSTATE = ("T1", "T1a", "T1b", "T1c", "T2", "T2a", "T2b", "T2c", "T3", "T3a", "T3b", "T4")
T_HN = ("TX", "T0", "Tis", "T1", "T2", "T3", "T4", "T4a", "T4b")
N_HN = ("NX", "N0", "N1", "N2", "N2a", "N2b", "N2c", "N3", "N3a", "N3b")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    kind: str  # "choice" | "int" | "float" | "bool" | "text"
    choices: tuple = ()
    choice_labels: dict = field(default_factory=dict)
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = 200
    help: str = ""
    in_prompt: bool = True

    def as_json(self) -> dict:
        data = asdict(self)
        data["choices"] = list(self.choices)
        return data


BREAST_FIELDS = (
    FieldSpec("laterality", "Laterality", "choice", ("left", "right", "bilateral"),
              {"left": "Left", "right": "Right", "bilateral": "Bilateral"}, help="Treated side"),
    FieldSpec("surgery", "Surgery", "choice", ("bcs", "mastectomy"),
              {"bcs": "Breast-conserving surgery", "mastectomy": "Total mastectomy"}),
    FieldSpec("cT", "Clinical T", "choice", T_BREAST),
    FieldSpec("cN", "Clinical N", "choice", N_BREAST),
    FieldSpec("cM", "Clinical M", "choice", M_STAGE),
    FieldSpec("pT", "Pathological T", "choice", T_BREAST),
    FieldSpec("pN", "Pathological N", "choice", N_BREAST),
    FieldSpec("pM", "Pathological M", "choice", M_STAGE),
    FieldSpec("pathology", "Pathology", "choice", ("IDC", "ILC", "DCIS", "mixed", "other"),
              {"IDC": "Invasive ductal carcinoma", "ILC": "Invasive lobular carcinoma",
               "DCIS": "Ductal carcinoma in situ", "mixed": "Mixed", "other": "Other"}, in_prompt=False),
    FieldSpec("neoadjuvant_chemo", "Neoadjuvant chemotherapy", "bool", in_prompt=False),
    FieldSpec("age", "Age (years)", "int", minimum=18, maximum=120, in_prompt=False),
)

PROSTATE_FIELDS = (
    FieldSpec("t_stage", "T stage", "choice", T_PROSTATE),
    FieldSpec("psa", "PSA (ng/mL)", "float", minimum=0.0, maximum=10000.0),
    FieldSpec("gleason_primary", "Gleason primary pattern", "int", minimum=1, maximum=5),
    FieldSpec("gleason_secondary", "Gleason secondary pattern", "int", minimum=1, maximum=5),
    FieldSpec("isup_grade_group", "ISUP grade group", "int", minimum=1, maximum=5,
              help="Derived from the Gleason patterns when both are given"),
    FieldSpec("age", "Age (years)", "int", minimum=18, maximum=120),
    FieldSpec("sv_invasion", "Seminal vesicle invasion", "bool"),
    FieldSpec("prostatectomy", "Post-prostatectomy", "bool"),
    FieldSpec("rt_aim", "RT aim", "choice", ("definitive", "adjuvant", "salvage"),
              {"definitive": "Definitive", "adjuvant": "Adjuvant", "salvage": "Salvage"}),
)

HEAD_NECK_FIELDS = (
    FieldSpec("subsite", "Subsite", "choice",
              ("oropharynx", "nasopharynx", "hypopharynx", "larynx", "oral_cavity", "other"),
              {"oropharynx": "Oropharynx", "nasopharynx": "Nasopharynx", "hypopharynx": "Hypopharynx",
               "larynx": "Larynx", "oral_cavity": "Oral cavity", "other": "Other"}),
    FieldSpec("pathology", "Pathology", "choice", ("SCC", "adenocarcinoma", "other"),
              {"SCC": "Squamous cell carcinoma", "adenocarcinoma": "Adenocarcinoma", "other": "Other"}),
    FieldSpec("T", "T stage", "choice", T_HN),
    FieldSpec("N", "N stage", "choice", N_HN),
    FieldSpec("M", "M stage", "choice", M_STAGE),
    FieldSpec("stage", "Overall stage", "choice", ("I", "II", "III", "IVA", "IVB", "IVC")),
    FieldSpec("chemotherapy", "Concurrent chemotherapy", "bool"),
    FieldSpec("rt_aim", "RT aim", "choice", ("definitive", "postoperative", "palliative"),
              {"definitive": "Definitive", "postoperative": "Postoperative", "palliative": "Palliative"}),
)

_FIELDS = {"breast": BREAST_FIELDS, "prostate": PROSTATE_FIELDS, "head_neck": HEAD_NECK_FIELDS}


class ContextValidationError(ValueError):
    """Raised with ``errors``: {field name: message} (``"__all__"`` for the whole context)."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


def fields_for(cancer_type: str) -> tuple[FieldSpec, ...]:
    try:
        return _FIELDS[cancer_type]
    except KeyError:
        raise ContextValidationError(
            {"cancer_type": f"unknown cancer type {cancer_type!r}; expected one of {', '.join(CANCER_TYPES)}"}
        ) from None


def schema_as_json(cancer_type: str) -> dict:
    return {"cancer_type": cancer_type, "fields": [f.as_json() for f in fields_for(cancer_type)]}


_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN from spreadsheets
        return True
    return isinstance(value, str) and value.strip().lower() in {"", "nan", "none", "null", "unknown"}


def _clean_value(spec: FieldSpec, value: Any) -> Any:
    if spec.kind == "choice":
        text = str(value).strip()
        for choice in spec.choices:
            if text.lower() == str(choice).lower():
                return choice
        raise ValueError(f"{text!r} is not one of {', '.join(map(str, spec.choices))}")
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{value!r} is not yes/no")
    if spec.kind in ("int", "float"):
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a finite number")
        if spec.kind == "int":
            if number != int(number):
                raise ValueError(f"{value!r} is not a whole number")
            number = int(number)
        if spec.minimum is not None and number < spec.minimum:
            raise ValueError(f"{number} is below the minimum {spec.minimum:g}")
        if spec.maximum is not None and number > spec.maximum:
            raise ValueError(f"{number} is above the maximum {spec.maximum:g}")
        return number
    text = str(value).strip()
    if len(text) > spec.max_length:
        raise ValueError(f"longer than {spec.max_length} characters")
    return text


def validate_context(cancer_type: str, data: dict) -> dict:
    """Return a cleaned context for ``cancer_type`` or raise ContextValidationError."""
    specs = {f.name: f for f in fields_for(cancer_type)}
    if not isinstance(data, dict):
        raise ContextValidationError({"__all__": "the clinical context must be an object of field: value"})
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name, value in data.items():
        spec = specs.get(name)
        if spec is None:
            errors[name] = f"unknown field for {cancer_type}"
            continue
        if _is_empty(value):
            continue
        try:
            clean[name] = _clean_value(spec, value)
        except ValueError as exc:
            errors[name] = str(exc)
    if cancer_type == "prostate" and not errors:
        _check_prostate_grade(clean, errors)
    if errors:
        raise ContextValidationError(errors)
    return clean


def isup_from_gleason(primary: int, secondary: int) -> int:
    total = primary + secondary
    if total <= 6:
        return 1
    if total == 7:
        return 2 if primary == 3 else 3
    if total == 8:
        return 4
    return 5


def _check_prostate_grade(clean: dict, errors: dict) -> None:
    primary, secondary = clean.get("gleason_primary"), clean.get("gleason_secondary")
    if (primary is None) != (secondary is None):
        missing = "gleason_secondary" if secondary is None else "gleason_primary"
        errors[missing] = "give both Gleason patterns or neither"
        return
    if primary is not None:
        derived = isup_from_gleason(primary, secondary)
        given = clean.get("isup_grade_group")
        if given is not None and given != derived:
            errors["isup_grade_group"] = f"grade group {given} contradicts Gleason {primary}+{secondary} (grade group {derived})"
        else:
            clean["isup_grade_group"] = derived
