from decimal import Decimal

import pytest

from portal.reading.models import RaterItem, RubricSet, ScoreAuditEntry
from portal.reading.rubrics import RubricError
from portal.reading.services import (
    ReadingError,
    close_study,
    create_rubric_set,
    progress,
    save_scores,
    submit,
    unblinded_rows,
)

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

FULL_BREAST = {"laterality": "1", "surgery_type": "1", "volume_definition": "1.5", "coverage": "1", "integrity": "0.5"}


def test_default_rubrics_are_loaded_with_the_papers_totals():
    breast = RubricSet.objects.get(name="LLMSeg breast", version=1)
    prostate = RubricSet.objects.get(name="LLMSeg prostate", version=1)
    assert breast.max_total == Decimal("5")
    assert prostate.max_total == Decimal("4")
    assert [c.key for c in breast.criteria.all()] == ["laterality", "surgery_type", "volume_definition", "coverage", "integrity"]


def test_new_rubric_set_is_versioned_and_validated(people):
    spec = {"name": "Head and neck", "cancer_type": "head_neck", "criteria": [
        {"key": "nodes", "label": "Nodal levels", "description": "Right levels", "max_score": 2, "steps": [0, 1, 2]}]}
    v1 = create_rubric_set(spec, people["coord"])
    v2 = create_rubric_set(spec, people["coord"])
    assert (v1.version, v2.version) == (1, 2)
    bad = dict(spec, criteria=[dict(spec["criteria"][0], steps=[0, 3])])
    with pytest.raises(RubricError) as err:
        create_rubric_set(bad)
    assert "criteria[0].steps" in err.value.errors


def test_each_rater_gets_every_item_in_a_different_seeded_order(reading_study, people):
    a1 = reading_study.assignments.get(rater=people["rater1"])
    a2 = reading_study.assignments.get(rater=people["rater2"])
    order1 = [ri.item_id for ri in a1.items.all()]
    order2 = [ri.item_id for ri in a2.items.all()]
    assert sorted(order1) == sorted(order2) == sorted(reading_study.items.values_list("pk", flat=True))
    assert order1 != order2
    tokens = set(RaterItem.objects.values_list("token", flat=True))
    assert len(tokens) == RaterItem.objects.count()
    # Letters: within one rater and case each contour gets its own letter.
    for assignment in (a1, a2):
        by_case = {}
        for ri in assignment.items.all():
            by_case.setdefault(ri.case_token, []).append(ri.letter)
        assert all(sorted(v) == ["A", "B"] for v in by_case.values())


def test_autosave_validates_steps_and_audits_every_change(reading_study, people):
    ri = reading_study.assignments.get(rater=people["rater1"]).items.first()
    with pytest.raises(ReadingError) as err:
        save_scores(ri.pk, people["rater1"], scores={"laterality": "0.5"})
    assert err.value.field == "laterality"
    save_scores(ri.pk, people["rater1"], scores={"laterality": "1"})
    save_scores(ri.pk, people["rater1"], scores={"laterality": "0"}, comment="wrong side")
    audit = list(ScoreAuditEntry.objects.filter(rater_item=ri).values_list("field", "old", "new"))
    assert audit == [("laterality", None, "1"), ("laterality", "1", "0"), ("comment", "", "wrong side")]
    ri.refresh_from_db()
    assert ri.status == RaterItem.Status.DRAFT and ri.scores == {"laterality": "0"}


def test_two_tabs_keep_the_latest_and_audit_both(reading_study, people):
    ri = reading_study.assignments.get(rater=people["rater1"]).items.first()
    save_scores(ri.pk, people["rater1"], scores={"coverage": "0.5"})  # tab 1
    save_scores(ri.pk, people["rater1"], scores={"coverage": "1"})  # tab 2, later
    ri.refresh_from_db()
    assert ri.scores["coverage"] == "1"
    assert ScoreAuditEntry.objects.filter(rater_item=ri, field="coverage").count() == 2


def test_submit_requires_every_criterion_and_then_locks(reading_study, people):
    ri = reading_study.assignments.get(rater=people["rater1"]).items.first()
    save_scores(ri.pk, people["rater1"], scores={"laterality": "1"})
    with pytest.raises(ReadingError):
        submit(ri.pk, people["rater1"])
    save_scores(ri.pk, people["rater1"], scores=FULL_BREAST)
    submit(ri.pk, people["rater1"])
    with pytest.raises(ReadingError) as err:
        save_scores(ri.pk, people["rater1"], scores={"coverage": "0"})
    assert err.value.status == 409
    assert progress(ri.assignment)["submitted"] == 1


def test_another_rater_cannot_write_my_item(reading_study, people):
    ri = reading_study.assignments.get(rater=people["rater1"]).items.first()
    with pytest.raises(ReadingError) as err:
        save_scores(ri.pk, people["rater2"], scores={"laterality": "1"})
    assert err.value.status == 404


def test_audit_is_append_only(reading_study, people):
    ri = reading_study.assignments.get(rater=people["rater1"]).items.first()
    save_scores(ri.pk, people["rater1"], scores={"laterality": "1"})
    entry = ScoreAuditEntry.objects.get(rater_item=ri)
    entry.new = "0"
    with pytest.raises(RuntimeError):
        entry.save()
    with pytest.raises(RuntimeError):
        entry.delete()


def test_unblinding_only_after_close(reading_study, people):
    with pytest.raises(ReadingError) as err:
        unblinded_rows(reading_study)
    assert err.value.status == 403
    close_study(reading_study)
    rows = unblinded_rows(reading_study)
    assert {r["source"] for r in rows} == {"multimodal", "vision-only"}
    assert len(rows) == 2 * 6
