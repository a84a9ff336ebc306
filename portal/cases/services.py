"""Case catalogue logic behind the REST views: scoped look-ups, case JSON, versioned clinical contexts, notes.

Plain functions over the models (the views in ``api_views`` only parse and
answer). Every look-up goes through ``portal.accounts.scoping`` so what a user
cannot see is simply not found (404), never merely hidden.
"""
from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.http import Http404

import clinical
from portal.accounts import scoping
from portal.cases.models import Case, ClinicalContextVersion

NOTE_MAX_CHARS = 20000


class CaseInputError(ValueError):
    """Bad request input; ``errors`` maps each field name to a message (answered as 400)."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


# -- look-ups ----------------------------------------------------------------------------------------------

def visible_cases(user):
    return scoping.scope_cases(user, Case.objects.select_related("site", "ct_series__study", "ground_truth"))


def filter_cases(queryset, *, site: str | None = None, cohort: str | None = None, cancer_type: str | None = None,
                 teaching: bool | None = None):
    """Narrow a case queryset by site code, cohort, cancer type (unknown values simply match nothing)."""
    if site:
        queryset = queryset.filter(site__code=site)
    if cohort:
        queryset = queryset.filter(cohort=cohort)
    if cancer_type:
        queryset = queryset.filter(cancer_type=cancer_type)
    if teaching is not None:
        queryset = queryset.filter(teaching=teaching)
    return queryset


def get_case(user, pk) -> Case:
    """The case if the user may see it, else Http404 (existence is not revealed)."""
    try:
        return visible_cases(user).get(pk=int(pk))
    except (Case.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("no such case") from None


def can_edit_context(user, case: Case) -> bool:
    """Coordinators of the case's site and admins edit contexts; trainees may only preview."""
    return scoping.can_manage_site(user, case.site)


def case_rois(case: Case):
    """ROIs drawn on the case's CT series (imported, ground truth, model), ground truth first."""
    from portal.imaging.models import ROI

    rois = list(ROI.objects.filter(structure_set__ct_series_id=case.ct_series_id)
                .select_related("structure_set").order_by("structure_set_id", "number"))
    rois.sort(key=lambda r: r.pk != case.ground_truth_id)
    return rois


def get_case_roi(case: Case, roi_id):
    """An ROI on the case's CT grid, else Http404."""
    from portal.imaging.models import ROI

    try:
        return ROI.objects.select_related("structure_set").get(pk=int(roi_id), structure_set__ct_series_id=case.ct_series_id)
    except (ROI.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("no such ROI on this case") from None


# -- JSON --------------------------------------------------------------------------------------------------

def risk_group(cancer_type: str, data: dict) -> str | None:
    return clinical.nccn_risk_group(data) if cancer_type == "prostate" else None


def version_json(version: ClinicalContextVersion, cancer_type: str | None = None) -> dict:
    cancer_type = cancer_type or version.case.cancer_type
    return {
        "id": version.pk,
        "version": version.version,
        "data": version.data,
        "prompt_text": version.prompt_text,
        "risk_group": risk_group(cancer_type, version.data or {}),
        "author": version.author.get_username() if version.author else None,
        "created": version.created.isoformat() if version.created else None,
        "source_note": version.source_note,
    }


def roi_json(roi, ground_truth_id=None) -> dict:
    return {
        "id": roi.pk,
        "name": roi.name,
        "number": roi.number,
        "color": roi.color,
        "interpreted_type": roi.interpreted_type,
        "volume_cc": roi.volume_cc,
        "voxel_count": roi.voxel_count,
        "empty": roi.empty,
        "source": roi.structure_set.source,
        "structure_set": roi.structure_set_id,
        "ground_truth": roi.pk == ground_truth_id,
    }


def case_summary(case: Case) -> dict:
    return {
        "id": case.pk,
        "label": case.label,
        "site": case.site.code,
        "cancer_type": case.cancer_type,
        "cohort": case.cohort,
        "tags": case.tags,
        "teaching": case.teaching,
        "has_ground_truth": case.ground_truth_id is not None,
        "created": case.created.isoformat(),
    }


def case_detail(case: Case) -> dict:
    series = case.ct_series
    current = case.current_context
    out = case_summary(case)
    out.update({
        "site_name": case.site.name,
        "ct": {
            "study_uid": series.study.study_uid,
            "series_uid": series.series_uid,
            "frame_of_reference_uid": series.frame_of_reference_uid,
            "num_slices": series.num_slices,
            "rows": series.rows,
            "columns": series.columns,
            "pixel_spacing": series.pixel_spacing,
            "slice_spacing": series.slice_spacing,
            "dicomweb_series": f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}",
        },
        "ground_truth": case.ground_truth_id,
        "rois": [roi_json(r, case.ground_truth_id) for r in case_rois(case)],
        "context": version_json(current, case.cancer_type) if current else None,
        "context_versions": case.context_versions.count(),
    })
    return out


# -- clinical context --------------------------------------------------------------------------------------

def context_schema(cancer_type: str) -> dict:
    """The editor's schema; prostate adds the NCCN risk groups derived from the fields."""
    try:
        schema = clinical.schema_as_json(cancer_type)
    except clinical.ContextValidationError as exc:
        raise CaseInputError(exc.errors) from None
    if cancer_type == "prostate":
        schema["derived"] = [{"name": "risk_group", "label": "NCCN risk group",
                              "from": ["t_stage", "psa", "gleason_primary", "gleason_secondary", "isup_grade_group"],
                              "choices": ["low", "intermediate", "high", "very_high"]}]
    return schema


def _context_input(data) -> dict:
    if not isinstance(data, dict):
        raise CaseInputError({"data": "the context must be a JSON object of field -> value"})
    return data


def _clean(cancer_type: str, data) -> dict:
    try:
        return clinical.validate_context(cancer_type, _context_input(data))
    except clinical.ContextValidationError as exc:
        raise CaseInputError(exc.errors) from None


def preview_prompt(cancer_type: str, data) -> dict:
    """The exact prompt text a context gives the model, without storing anything."""
    clean = _clean(cancer_type, data)
    return {"data": clean, "prompt_text": clinical.render_prompt(cancer_type, clean),
            "risk_group": risk_group(cancer_type, clean)}


def _masked_note(note) -> str:
    if note in (None, ""):
        return ""
    if not isinstance(note, str):
        raise CaseInputError({"note": "must be text"})
    if len(note) > NOTE_MAX_CHARS:
        raise CaseInputError({"note": f"longer than {NOTE_MAX_CHARS} characters"})
    from clinical.notes import mask_phi

    return mask_phi(note)


def save_context_version(case: Case, data, author=None, note=None) -> ClinicalContextVersion:
    """Validate and append a new version (never edits an old one); the note is stored masked only."""
    clean = _clean(case.cancer_type, data)
    masked = _masked_note(note)
    with transaction.atomic():
        # Lock the case row so two concurrent saves cannot take the same version number.
        Case.objects.select_for_update().filter(pk=case.pk).first()
        last = case.context_versions.aggregate(last=Max("version"))["last"] or 0
        return ClinicalContextVersion.objects.create(
            case=case, version=last + 1, data=clean, prompt_text=clinical.render_prompt(case.cancer_type, clean),
            author=author if getattr(author, "is_authenticated", False) else None, source_note=masked)


def get_version(case: Case, number) -> ClinicalContextVersion:
    try:
        return case.context_versions.select_related("author").get(version=int(number))
    except (ClinicalContextVersion.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404(f"case {case.label} has no context version {number}") from None


def diff_contexts(before: dict, after: dict) -> list[dict]:
    """Field-by-field changes from ``before`` to ``after``: added, removed or changed."""
    changes = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if name not in before:
            changes.append({"field": name, "change": "added", "before": None, "after": new})
        elif name not in after:
            changes.append({"field": name, "change": "removed", "before": old, "after": None})
        elif old != new:
            changes.append({"field": name, "change": "changed", "before": old, "after": new})
    return changes


def diff_versions(case: Case, a, b) -> dict:
    va, vb = get_version(case, a), get_version(case, b)
    return {"from": va.version, "to": vb.version, "changes": diff_contexts(va.data or {}, vb.data or {}),
            "prompt_before": va.prompt_text, "prompt_after": vb.prompt_text}


def extract_from_note(cancer_type: str, note) -> dict:
    """Proposed context values from a free-text note, plus the note with names, dates and IDs masked.

    Stores nothing: the user confirms the proposal and saves a version (which keeps only the masked note).
    """
    if not isinstance(note, str) or not note.strip():
        raise CaseInputError({"note": "paste the clinical note as non-empty text"})
    masked = _masked_note(note)
    from clinical.notes import extract_context

    try:
        proposed = extract_context(cancer_type, note)
    except clinical.ContextValidationError as exc:
        raise CaseInputError(exc.errors) from None
    return {"proposed": proposed, "masked_note": masked,
            "prompt_text": clinical.render_prompt(cancer_type, proposed),
            "risk_group": risk_group(cancer_type, proposed)}
