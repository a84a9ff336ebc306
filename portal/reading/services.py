"""Reading-study workflow: create studies, randomise and blind per rater, autosave, submit, close, unblind.

Every change to a rater's scores goes through ``save_scores`` inside a
transaction that locks the row and appends one audit entry per changed field.
"""
from __future__ import annotations

import hashlib
import random
import secrets
import string
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from portal.reading.models import (
    RaterAssignment,
    RaterItem,
    ReadingItem,
    ReadingStudy,
    RubricCriterion,
    RubricSet,
    ScoreAuditEntry,
)
from portal.reading.rubrics import validate_rubric


class ReadingError(Exception):
    """A request the workflow refuses; ``status`` is the HTTP status a view should answer."""

    def __init__(self, message: str, status: int = 400, field: str | None = None):
        self.status = status
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class ContourSource:
    case: object  # portal.cases.models.Case
    source_label: str
    mask_path: str
    source_ref: str = ""
    is_control: bool = False


@transaction.atomic
def create_rubric_set(spec: dict, user=None) -> RubricSet:
    clean = validate_rubric(spec)
    latest = RubricSet.objects.filter(name=clean["name"]).order_by("-version").first()
    rubric = RubricSet.objects.create(
        name=clean["name"], version=(latest.version + 1) if latest else 1,
        cancer_type=clean["cancer_type"], description=clean["description"], created_by=user,
    )
    for order, crit in enumerate(clean["criteria"]):
        RubricCriterion.objects.create(rubric_set=rubric, order=order, **crit)
    return rubric


def _derived_seed(*parts) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:7], "big")


def _letters(n: int) -> list[str]:
    alphabet = string.ascii_uppercase
    return [alphabet[i] if i < 26 else alphabet[i // 26 - 1] + alphabet[i % 26] for i in range(n)]


@transaction.atomic
def create_reading_study(*, name: str, site, rubric_set: RubricSet, sources: list[ContourSource], raters: list,
                         show_reference: bool = False, seed: int | None = None, created_by=None) -> ReadingStudy:
    if not sources:
        raise ReadingError("a reading study needs at least one contour to score", field="items")
    if not raters:
        raise ReadingError("a reading study needs at least one rater", field="raters")
    study = ReadingStudy.objects.create(
        name=name, site=site, rubric_set=rubric_set, show_reference=show_reference,
        seed=seed if seed is not None else secrets.randbits(48), created_by=created_by,
    )
    for src in sources:
        if src.case.cancer_type != rubric_set.cancer_type and rubric_set.cancer_type:
            raise ReadingError(f"case {src.case.label} is {src.case.cancer_type}, the rubric is for {rubric_set.cancer_type}",
                               field="items")
        ReadingItem.objects.create(
            study=study, case=src.case, ct_series=src.case.ct_series, source_label=src.source_label,
            source_ref=src.source_ref, is_control=src.is_control, mask_path=src.mask_path,
        )
    for rater in raters:
        assign_rater(study, rater)
    return study


def assign_rater(study: ReadingStudy, rater) -> RaterAssignment:
    """Give ``rater`` every item in an order and lettering randomised from a recorded seed.

    Order and letters are reproducible from ``order_seed``; tokens are secret
    random handles (not derived from the seed), so they reveal nothing.
    """
    order_seed = _derived_seed(study.seed, "rater", rater.pk)
    assignment = RaterAssignment.objects.create(study=study, rater=rater, order_seed=order_seed)
    rng = random.Random(order_seed)
    items = list(study.items.order_by("pk"))
    rng.shuffle(items)
    by_case: dict[int, list[ReadingItem]] = {}
    for item in sorted(items, key=lambda it: it.pk):
        by_case.setdefault(item.case_id, []).append(item)
    letter_of: dict[int, str] = {}
    case_token: dict[int, str] = {}
    for case_id, case_items in sorted(by_case.items()):
        shuffled = case_items[:]
        rng.shuffle(shuffled)
        for item, letter in zip(shuffled, _letters(len(shuffled))):
            letter_of[item.pk] = letter
        case_token[case_id] = secrets.token_urlsafe(12)
    for position, item in enumerate(items):
        RaterItem.objects.create(
            assignment=assignment, item=item, position=position, token=secrets.token_urlsafe(16),
            case_token=case_token[item.case_id], letter=letter_of[item.pk],
        )
    return assignment


def _check_score(criterion: RubricCriterion, value) -> str | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except Exception:
        raise ReadingError(f"{value!r} is not a number", field=criterion.key) from None
    allowed = [Decimal(s) for s in criterion.steps]
    if number not in allowed:
        raise ReadingError(f"{value} is not an allowed score for {criterion.label} "
                           f"(allowed: {', '.join(criterion.steps)})", field=criterion.key)
    return format(number.normalize(), "f")


def save_scores(rater_item_id: int, user, *, scores: dict | None = None, comment: str | None = None) -> RaterItem:
    """Autosave a draft: validate, lock the row, write changed fields and one audit entry each.

    Concurrent saves (two tabs) serialise on the row lock: the later save wins
    and both are in the audit trail.
    """
    with transaction.atomic():
        item = RaterItem.objects.select_for_update().select_related("assignment__study__rubric_set").get(pk=rater_item_id)
        _check_writable(item, user)
        criteria = {c.key: c for c in item.assignment.study.rubric_set.criteria.all()}
        changes: list[tuple[str, str | None, str | None]] = []
        new_scores = dict(item.scores)
        for key, value in (scores or {}).items():
            if key not in criteria:
                raise ReadingError(f"unknown criterion {key!r}", field=key)
            clean = _check_score(criteria[key], value)
            old = new_scores.get(key)
            if clean != old:
                changes.append((key, old, clean))
                if clean is None:
                    new_scores.pop(key, None)
                else:
                    new_scores[key] = clean
        if comment is not None:
            if len(comment) > 5000:
                raise ReadingError("comment is longer than 5000 characters", field="comment")
            if comment != item.comment:
                changes.append(("comment", item.comment, comment))
                item.comment = comment
        if not changes:
            return item
        item.scores = new_scores
        item.revision += 1
        if item.status == RaterItem.Status.PENDING:
            item.status = RaterItem.Status.DRAFT
        item.save()
        for field, old, new in changes:
            ScoreAuditEntry.objects.create(rater_item=item, user=user, field=field, old=old, new=new, revision=item.revision)
        return item


def submit(rater_item_id: int, user) -> RaterItem:
    with transaction.atomic():
        item = RaterItem.objects.select_for_update().select_related("assignment__study__rubric_set").get(pk=rater_item_id)
        _check_writable(item, user)
        keys = [c.key for c in item.assignment.study.rubric_set.criteria.all()]
        missing = [k for k in keys if k not in item.scores]
        if missing:
            raise ReadingError(f"score every criterion before submitting; missing: {', '.join(missing)}", field=missing[0])
        item.status = RaterItem.Status.SUBMITTED
        item.submitted_at = timezone.now()
        item.revision += 1
        item.save()
        ScoreAuditEntry.objects.create(rater_item=item, user=user, field="status", old="draft", new="submitted",
                                       revision=item.revision)
        return item


def _check_writable(item: RaterItem, user) -> None:
    if item.assignment.rater_id != user.pk:
        raise ReadingError("not found", status=404)
    if item.assignment.study.state != ReadingStudy.State.OPEN:
        raise ReadingError("the reading study is not open for scoring", status=409)
    if item.status == RaterItem.Status.SUBMITTED:
        raise ReadingError("this item was submitted and is locked", status=409)


def total_score(item: RaterItem) -> Decimal:
    return sum((Decimal(v) for v in item.scores.values()), Decimal(0))


def open_study(study: ReadingStudy) -> ReadingStudy:
    if study.state != ReadingStudy.State.DRAFT:
        raise ReadingError(f"only a draft study can be opened (it is {study.state})", status=409)
    study.state = ReadingStudy.State.OPEN
    study.opened_at = timezone.now()
    study.save(update_fields=["state", "opened_at"])
    return study


def close_study(study: ReadingStudy) -> ReadingStudy:
    if study.state != ReadingStudy.State.OPEN:
        raise ReadingError(f"only an open study can be closed (it is {study.state})", status=409)
    study.state = ReadingStudy.State.CLOSED
    study.closed_at = timezone.now()
    study.save(update_fields=["state", "closed_at"])
    return study


def progress(assignment: RaterAssignment) -> dict:
    items = list(assignment.items.all())
    done = sum(1 for i in items if i.status == RaterItem.Status.SUBMITTED)
    nxt = next((i for i in items if i.status != RaterItem.Status.SUBMITTED), None)
    return {"total": len(items), "submitted": done, "next_token": nxt.token if nxt else None}


def unblinded_rows(study: ReadingStudy) -> list[dict]:
    """Per (rater, item) rows with the contour source: only for a closed study (callers check the role)."""
    if study.state != ReadingStudy.State.CLOSED:
        raise ReadingError("unblinding is available only after the study is closed", status=403)
    criteria = [c.key for c in study.rubric_set.criteria.all()]
    rows = []
    qs = (RaterItem.objects.filter(assignment__study=study)
          .select_related("assignment__rater", "item__case__site").order_by("assignment__rater__username", "position"))
    for ri in qs:
        row = {
            "rater": ri.assignment.rater.username, "case": ri.item.case.label, "site": ri.item.case.site.code,
            "source": ri.item.source_label, "source_ref": ri.item.source_ref, "is_control": ri.item.is_control,
            "letter": ri.letter, "position": ri.position, "status": ri.status, "comment": ri.comment,
        }
        for key in criteria:
            row[key] = float(ri.scores[key]) if key in ri.scores else None
        row["total"] = float(total_score(ri)) if ri.status == RaterItem.Status.SUBMITTED else None
        rows.append(row)
    return rows


def _resolve_sources(study_site, items: list[dict]) -> list[ContourSource]:
    from portal.cases.models import Case
    from portal.imaging.models import ROI

    sources = []
    for i, spec in enumerate(items):
        where = f"items[{i}]"
        case = Case.objects.filter(pk=spec["case"], site=study_site).select_related("ct_series").first()
        if case is None:
            raise ReadingError(f"{where}: no case {spec['case']} at site {study_site.code}", field=where)
        kind = spec["source"]
        if kind == "ground_truth":
            if case.ground_truth is None or not case.ground_truth.mask_path:
                raise ReadingError(f"{where}: case {case.label} has no ground truth", field=where)
            sources.append(ContourSource(case=case, source_label=spec.get("label") or "ground truth",
                                         mask_path=case.ground_truth.mask_path, source_ref=f"roi:{case.ground_truth.pk}",
                                         is_control=True))
        elif kind == "roi":
            roi = ROI.objects.filter(pk=spec.get("roi"), structure_set__ct_series=case.ct_series).first()
            if roi is None or not roi.mask_path:
                raise ReadingError(f"{where}: ROI {spec.get('roi')} is not a stored mask on case {case.label}", field=where)
            sources.append(ContourSource(case=case, source_label=spec.get("label") or roi.name, mask_path=roi.mask_path,
                                         source_ref=f"roi:{roi.pk}"))
        else:
            from portal.reading.job_sources import job_contour_source

            sources.append(job_contour_source(case, spec, where))
    labels = [(s.case.pk, s.source_label) for s in sources]
    if len(set(labels)) != len(labels):
        raise ReadingError("two items have the same case and source label", field="items")
    return sources


def create_study_from_request(user, data: dict) -> ReadingStudy:
    """Create (not open) a reading study from validated API input, within the user's sites."""
    from django.contrib.auth import get_user_model

    from portal.accounts.models import Role, Site
    from portal.reading.access import coordinator_site_ids

    site = Site.objects.filter(code=data["site"]).first()
    managed = coordinator_site_ids(user)
    if site is None or (managed is not None and site.pk not in managed):
        raise ReadingError(f"you do not manage a site {data['site']!r}", field="site")
    rubric = RubricSet.objects.filter(pk=data["rubric_set"]).first()
    if rubric is None:
        raise ReadingError(f"no rubric set {data['rubric_set']}", field="rubric_set")
    User = get_user_model()
    raters = []
    for name in data["raters"]:
        rater = User.objects.filter(username=name, is_active=True, profile__role=Role.ONCOLOGIST).first()
        if rater is None:
            raise ReadingError(f"{name!r} is not an active oncologist (rater) account", field="raters")
        raters.append(rater)
    if len({r.pk for r in raters}) != len(raters):
        raise ReadingError("a rater is listed twice", field="raters")
    sources = _resolve_sources(site, data["items"])
    return create_reading_study(name=data["name"], site=site, rubric_set=rubric, sources=sources, raters=raters,
                                show_reference=data.get("show_reference", False), seed=data.get("seed"),
                                created_by=user)


@transaction.atomic
def ensure_default_rubric_sets() -> None:
    """Create the default rubric sets (version 1) if missing, e.g. after a database flush."""
    from portal.reading.rubrics import DEFAULT_RUBRICS

    for spec in DEFAULT_RUBRICS:
        clean = validate_rubric(spec)
        rubric, created = RubricSet.objects.get_or_create(
            name=clean["name"], version=1,
            defaults={"cancer_type": clean["cancer_type"], "description": clean["description"]},
        )
        if created:
            for order, crit in enumerate(clean["criteria"]):
                RubricCriterion.objects.create(rubric_set=rubric, order=order, **crit)
