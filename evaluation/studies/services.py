"""Validation-study workflow: create and scope studies, dispatch their runs through portal.jobs, compute and
store per-case metric rows from stored prediction masks and ground truth, and build the report rows."""

from __future__ import annotations

import math

import numpy as np
from django.db import transaction

from clinical.schema import CANCER_TYPES
from evaluation.metrics import PANEL_KEYS, compute_panel
from evaluation.studies.models import CaseResult, Study, StudyArm, StudyKind
from portal.accounts import scoping

DEFAULT_METRICS = ["dice", "iou", "hd95_mm", "assd_mm", "surface_dice", "apl_mm"]


class StudyError(ValueError):
    """A study request that cannot be honoured; ``field`` names the offending input, ``status`` the HTTP code."""

    def __init__(self, message: str, field: str = "", status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


# ----------------------------------------------------------------- access

def visible_studies(user):
    """Studies a coordinator may open: admins all; coordinators those with at least one of their sites."""
    if not scoping.is_coordinator(user):
        return Study.objects.none()
    if scoping.is_admin(user):
        return Study.objects.all()
    return Study.objects.filter(sites__in=scoping.managed_sites(user)).distinct()


def get_visible_study(user, pk) -> Study:
    try:
        pk = int(pk)
    except (TypeError, ValueError):
        raise StudyError("study not found", field="study", status=404) from None
    study = visible_studies(user).filter(pk=pk).first()
    if study is None:
        raise StudyError("study not found", field="study", status=404)
    return study


def _require_coordinator(user) -> None:
    if not scoping.is_coordinator(user):
        raise StudyError("validation studies are for study coordinators and administrators", field="user",
                         status=403)


# ----------------------------------------------------------------- creation

def create_study(user, data: dict) -> Study:
    """Validate and store a study with its arms; nothing is stored when any field is wrong.

    ``data``: name, cancer_type, kind, site_codes (list), cohorts (list, optional), metrics (optional),
    tolerance_mm (optional), reference_arm (optional: label), arms: list of {label, checkpoint,
    train_fraction?, omit_fields?}.
    """
    from portal.accounts.models import Site
    from portal.cases.models import Case
    from portal.jobs.services import JobError, checkpoint_path

    _require_coordinator(user)
    if not isinstance(data, dict):
        raise StudyError("expected a JSON object", field="body")
    name = str(data.get("name") or "").strip()
    if not name or len(name) > 200:
        raise StudyError("name: required, at most 200 characters", field="name")
    cancer_type = data.get("cancer_type")
    if cancer_type not in CANCER_TYPES:
        raise StudyError(f"cancer_type: expected one of {', '.join(CANCER_TYPES)}", field="cancer_type")
    kind = data.get("kind") or StudyKind.COMPARISON
    if kind not in StudyKind.values:
        raise StudyError(f"kind: expected one of {', '.join(StudyKind.values)}", field="kind")
    codes = data.get("site_codes")
    if not isinstance(codes, list) or not codes:
        raise StudyError("site_codes: a non-empty list of site codes", field="site_codes")
    sites = list(scoping.managed_sites(user).filter(code__in=[str(c) for c in codes]))
    if len(sites) != len(set(codes)):
        known = {s.code for s in sites}
        missing = [c for c in codes if c not in known]
        raise StudyError(f"site_codes: unknown or not yours: {missing}", field="site_codes",
                         status=403 if Site.objects.filter(code__in=missing).exists() else 400)
    cohorts = data.get("cohorts") or []
    if not isinstance(cohorts, list) or any(c not in Case.Cohort.values for c in cohorts):
        raise StudyError(f"cohorts: a list of {', '.join(Case.Cohort.values)}", field="cohorts")
    metrics = data.get("metrics") or list(DEFAULT_METRICS)
    if not isinstance(metrics, list) or any(m not in PANEL_KEYS for m in metrics):
        raise StudyError(f"metrics: a list of {', '.join(PANEL_KEYS)}", field="metrics")
    try:
        tolerance = float(data.get("tolerance_mm", 2.0))
    except (TypeError, ValueError):
        raise StudyError("tolerance_mm: a number of mm", field="tolerance_mm") from None
    if not math.isfinite(tolerance) or tolerance < 0:
        raise StudyError("tolerance_mm: a finite value >= 0", field="tolerance_mm")
    arms = data.get("arms")
    if not isinstance(arms, list) or not arms:
        raise StudyError("arms: a non-empty list of {label, checkpoint}", field="arms")
    clean_arms, labels = [], set()
    for index, arm in enumerate(arms):
        where = f"arms[{index}]"
        if not isinstance(arm, dict):
            raise StudyError(f"{where}: expected an object", field=where)
        label = str(arm.get("label") or "").strip()
        if not label or len(label) > 64 or label in labels:
            raise StudyError(f"{where}.label: required, unique, at most 64 characters", field=f"{where}.label")
        labels.add(label)
        checkpoint = str(arm.get("checkpoint") or "")
        try:
            checkpoint_path(checkpoint)
        except JobError as exc:
            raise StudyError(f"{where}.checkpoint: {exc}", field=f"{where}.checkpoint") from None
        fraction = arm.get("train_fraction")
        if fraction is not None:
            try:
                fraction = float(fraction)
            except (TypeError, ValueError):
                fraction = -1.0
            if not 0 < fraction <= 1:
                raise StudyError(f"{where}.train_fraction: a fraction in (0, 1]", field=f"{where}.train_fraction")
        omit = arm.get("omit_fields") or []
        if not isinstance(omit, list) or not all(isinstance(f, str) and f for f in omit):
            raise StudyError(f"{where}.omit_fields: a list of context field names", field=f"{where}.omit_fields")
        clean_arms.append(StudyArm(label=label, checkpoint=checkpoint, train_fraction=fraction,
                                   omit_fields=omit, order=index))
    if kind == StudyKind.DATA_EFFICIENCY and any(a.train_fraction is None for a in clean_arms):
        raise StudyError("arms: a data-efficiency study needs train_fraction on every arm", field="arms")
    reference = str(data.get("reference_arm") or clean_arms[0].label)
    if reference not in labels:
        raise StudyError(f"reference_arm: {reference!r} is not an arm label", field="reference_arm")
    with transaction.atomic():
        study = Study.objects.create(name=name, cancer_type=cancer_type, kind=kind, cohorts=cohorts,
                                     metrics=metrics, tolerance_mm=tolerance, reference_arm=reference,
                                     created_by=user)
        study.sites.set(sites)
        for arm in clean_arms:
            arm.study = study
        StudyArm.objects.bulk_create(clean_arms)
    return study


def study_cases(user, study: Study):
    """The study's cases (its sites, cohorts and cancer type) that the user may see, with ground truth."""
    from portal.cases.models import Case

    cases = Case.objects.filter(site__in=study.sites.all(), cancer_type=study.cancer_type,
                                ground_truth__isnull=False).select_related("site", "ct_series", "ground_truth")
    if study.cohorts:
        cases = cases.filter(cohort__in=study.cohorts)
    return scoping.scope_cases(user, cases).order_by("site__code", "label")


# ----------------------------------------------------------------- running

def _omitted_context(case, fields) -> dict:
    current = case.current_context
    data = dict(current.data) if current is not None else {}
    for field in fields:
        data.pop(field, None)
    return data


def run_study(user, study: Study) -> dict:
    """Dispatch inference for every case x arm that has no stored row yet (re-running is incremental).

    Plain arms go through ``portal.jobs.services.submit_batch`` (one batch job per arm); arms that withhold
    context fields submit what-if jobs with the reduced context. Returns ``{"batches", "jobs", "cases"}``.
    """
    from portal.jobs.models import Kind
    from portal.jobs.services import JobError, submit_batch, submit_job

    _require_coordinator(user)
    cases = list(study_cases(user, study))
    if not cases:
        raise StudyError("the study has no visible case with ground truth at its sites", field="sites")
    batches, jobs = [], []
    try:
        for arm in study.arms.all():
            done = set(CaseResult.objects.filter(arm=arm).values_list("case_id", flat=True))
            pending = [c for c in cases if c.pk not in done]
            if not pending:
                continue
            if arm.omit_fields:
                for case in pending:
                    job, _ = submit_job(user, Kind.WHAT_IF, case, arm.checkpoint, study_key=study.key,
                                        params={"context": _omitted_context(case, arm.omit_fields)})
                    jobs.append(job.pk)
            else:
                batch = submit_batch(user, pending, arm.checkpoint, study_key=study.key)
                batches.append(batch.pk)
                jobs.extend(batch.params.get("jobs", []))
    except JobError as exc:
        raise StudyError(str(exc), field=getattr(exc, "field", ""), status=getattr(exc, "status", 400)) from None
    return {"batches": batches, "jobs": jobs, "cases": len(cases)}


# ----------------------------------------------------------------- per-case rows

def metrics_row(prediction, ground_truth, spacing_zyx, tolerance_mm: float) -> tuple[dict, list]:
    """The stored form of one panel: JSON-safe metric values (NaN -> None) and the empty-mask flags."""
    panel = compute_panel(prediction, ground_truth, spacing_zyx, tolerance_mm=tolerance_mm)
    values = {}
    for key in PANEL_KEYS + ("hd95_cm", "hd_cm", "n_surface_pred", "n_surface_ref"):
        value = panel[key]
        values[key] = None if isinstance(value, float) and not math.isfinite(value) else value
    return values, list(panel["flags"])


def _finished_job(study: Study, arm: StudyArm, case):
    from portal.jobs.models import Job, Kind, State

    kinds = [Kind.WHAT_IF] if arm.omit_fields else [Kind.INFERENCE]
    jobs = Job.objects.filter(case=case, checkpoint=arm.checkpoint, kind__in=kinds, state=State.SUCCEEDED)
    jobs = jobs.exclude(mask_path="")
    if arm.omit_fields:
        wanted = _omitted_context(case, arm.omit_fields)
        jobs = [j for j in jobs.filter(study_key=study.key) if (j.params or {}).get("context") == wanted]
        return jobs[-1] if jobs else None
    # An inference result is the same whichever study asked for it (jobs are deduplicated by case,
    # context version and checkpoint): prefer this study's, else any finished one for the current context.
    return (jobs.filter(study_key=study.key).order_by("-finished").first()
            or jobs.filter(context_version=case.current_context).order_by("-finished").first())


def collect_results(user, study: Study, recompute: bool = False) -> dict:
    """Compute and store the rows of every case x arm whose prediction has finished; skip stored rows.

    Returns ``{"computed", "waiting", "failed", "stored"}`` counts and ``errors`` (case, arm, job error)
    for case x arm pairs whose latest job failed.
    """
    from portal.jobs.models import Job, State
    from portal.imaging import storage
    from portal.imaging.volume import roi_mask, series_grid

    _require_coordinator(user)
    computed = waiting = 0
    errors = []
    cases = list(study_cases(user, study))
    for arm in study.arms.all():
        done = set() if recompute else set(CaseResult.objects.filter(arm=arm).values_list("case_id", flat=True))
        for case in cases:
            if case.pk in done:
                continue
            job = _finished_job(study, arm, case)
            if job is None:
                latest = (Job.objects.filter(case=case, checkpoint=arm.checkpoint, study_key=study.key)
                          .order_by("-created").first())
                if latest is not None and latest.state == State.FAILED:
                    errors.append({"case": case.label, "arm": arm.label, "job": latest.pk, "error": latest.error})
                else:
                    waiting += 1
                continue
            prediction = storage.load_mask(job.mask_path)
            truth = roi_mask(case.ground_truth)
            grid = series_grid(case.ct_series)
            if prediction.shape != truth.shape:
                raise StudyError(f"case {case.label}: prediction {prediction.shape} and ground truth "
                                 f"{truth.shape} are on different grids", field="case")
            values, flags = metrics_row(prediction, truth, grid.spacing_zyx, study.tolerance_mm)
            CaseResult.objects.update_or_create(study=study, arm=arm, case=case,
                                                defaults={"job": job, "metrics": values, "flags": flags})
            computed += 1
    return {"computed": computed, "waiting": waiting, "failed": len(errors), "errors": errors,
            "stored": CaseResult.objects.filter(study=study).count()}


def report_rows(user, study: Study) -> list[dict]:
    """Per-case rows for evaluation.reports: case, case_id, site, model (arm label), arm fields, metrics."""
    visible = set(study_cases(user, study).values_list("pk", flat=True))
    rows = []
    results = CaseResult.objects.filter(study=study, case_id__in=visible).select_related("arm", "case__site")
    for result in results.order_by("arm__order", "case__site__code", "case__label"):
        row = {"case": result.case.label, "case_id": result.case_id, "site": result.case.site.code,
               "model": result.arm.label, "checkpoint": result.arm.checkpoint,
               "train_fraction": result.arm.train_fraction,
               "condition": ", ".join(result.arm.omit_fields) or "full context",
               "flags": list(result.flags), "job_id": result.job_id}
        row.update({k: (np.nan if v is None else v) for k, v in result.metrics.items()})
        rows.append(row)
    return rows
