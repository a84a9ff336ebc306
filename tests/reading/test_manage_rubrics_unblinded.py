"""Coordinators' rubric-set page (new sets and versions from a form, named field errors) and the unblinded
scores page (the study's coordinators only, only after closing; never raters, trainees or another site)."""
import pytest
from django.test import Client

from portal.reading import services
from portal.reading.models import RubricSet

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

PASSWORD = "correct-horse-battery"


def _login(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _post(client, url, data):
    """POST with the CSRF token the page handed out, as a browser form does."""
    page = client.get(url)
    assert page.status_code == 200, url
    return client.post(url, {**data, "csrfmiddlewaretoken": page.context["csrf_token"]})


HEAD_NECK = {
    "name": "Head and neck CTV", "cancer_type": "head_neck", "description": "Oropharynx CTV rubric",
    "criterion-0-key": "primary", "criterion-0-label": "Primary CTV", "criterion-0-description": "GTV + margin",
    "criterion-0-max_score": "2", "criterion-0-steps": "0, 1, 2",
    "criterion-1-key": "nodes", "criterion-1-label": "Nodal levels", "criterion-1-description": "Levels II-IV",
    "criterion-1-examples": "Full: levels as indicated by N stage", "criterion-1-max_score": "1",
    "criterion-1-steps": "0; 0.5; 1",
    "criterion-2-key": "", "criterion-2-label": "", "criterion-2-description": "",  # blank row is ignored
}


def test_coordinator_creates_a_rubric_set_and_its_next_version(people):
    coord = _login(people["coord"])
    created = _post(coord, "/reading/rubrics/", HEAD_NECK)
    assert created.status_code == 302
    v1 = RubricSet.objects.get(name="Head and neck CTV", version=1)
    assert v1.cancer_type == "head_neck" and v1.created_by == people["coord"]
    assert [(c.key, c.steps, str(c.max_score)) for c in v1.criteria.all()] == [
        ("primary", ["0", "1", "2"], "2.00"), ("nodes", ["0", "0.5", "1"], "1.00")]
    # "New version from this" pre-fills the form; saving under the same name adds version 2, v1 stays.
    prefilled = coord.get(f"/reading/rubrics/?from={v1.pk}").content.decode()
    assert 'value="Head and neck CTV"' in prefilled and 'value="0, 0.5, 1"' in prefilled
    again = _post(coord, "/reading/rubrics/", {**HEAD_NECK, "criterion-1-steps": "0, 1", "criterion-2-key": "integrity",
                                                "criterion-2-label": "Integrity", "criterion-2-description": "no holes",
                                                "criterion-2-max_score": "0.5", "criterion-2-steps": "0, 0.5"})
    assert again.status_code == 302
    v2 = RubricSet.objects.get(name="Head and neck CTV", version=2)
    assert [c.key for c in v2.criteria.all()] == ["primary", "nodes", "integrity"]
    assert v1.criteria.get(key="nodes").steps == ["0", "0.5", "1"]
    page = coord.get("/reading/rubrics/").content.decode()
    assert page.count("Head and neck CTV") >= 2 and "Primary CTV (0 / 1 / 2)" in page


def test_rubric_form_errors_name_the_field_and_store_nothing(people):
    coord = _login(people["coord"])
    bad = _post(coord, "/reading/rubrics/", {**HEAD_NECK, "criterion-1-steps": "0, 0.5"})  # does not reach max 1
    assert bad.status_code == 400
    body = bad.content.decode()
    assert "criteria[1].steps" in body and "from 0 to the maximum 1" in body
    assert 'value="Head and neck CTV"' in body  # the coordinator's input is kept
    bad_type = _post(coord, "/reading/rubrics/", {**HEAD_NECK, "cancer_type": "lung"})
    assert bad_type.status_code == 400 and "cancer_type" in bad_type.content.decode()
    assert not RubricSet.objects.filter(name="Head and neck CTV").exists()


def test_rubric_page_is_for_coordinators_only(people):
    for who in ("rater1", "trainee"):
        client = _login(people[who])
        assert client.get("/reading/rubrics/").status_code == 403
        assert client.post("/reading/rubrics/", HEAD_NECK).status_code == 403
    assert Client().get("/reading/rubrics/").status_code == 302
    assert not RubricSet.objects.filter(name="Head and neck CTV").exists()
    # Without the CSRF token even the coordinator's post is refused.
    assert _login(people["coord"]).post("/reading/rubrics/", HEAD_NECK).status_code == 403


def test_unblinded_page_only_for_the_sites_coordinator_after_close(reading_study, people):
    url = f"/reading/studies/{reading_study.pk}/unblinded/"
    coord = _login(people["coord"])
    assert coord.get(url).status_code == 403  # open study: no unblinding, even for its coordinator
    ri = reading_study.assignments.get(rater=people["rater1"]).items.select_related("item").first()
    services.save_scores(ri.pk, people["rater1"], scores={"laterality": "1", "surgery_type": "1", "volume_definition": "1.5",
                                                           "coverage": "0.5", "integrity": "0.5"}, comment="edge ok")
    services.submit(ri.pk, people["rater1"])
    services.close_study(reading_study)
    page = coord.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    row = (f"<td>rater1</td><td>{ri.position + 1}</td><td>{ri.item.case.label}</td><td>internal</td>"
           f"<td>{ri.letter}</td>\n    <td>{ri.item.source_label}</td><td>{ri.item.source_ref}</td>")
    assert row in body and "edge ok" in body and "<td>4.5</td>" in body  # 1 + 1 + 1.5 + 0.5 + 0.5
    assert body.count("<td>rater1</td>") == 6 and body.count("<td>rater2</td>") == 6
    assert f'href="/reading/studies/{reading_study.pk}/unblinded/"' in coord.get(
        f"/reading/studies/{reading_study.pk}/").content.decode()
    for who in ("rater1", "rater2", "trainee"):
        assert _login(people[who]).get(url).status_code == 403
    assert _login(people["other_coord"]).get(url).status_code == 404


def test_new_study_form_offers_validation_study_arms_as_sources(site, people):
    """Two arms of a validation study on one checkpoint (component omission) become two items labelled by arm."""
    from evaluation.studies.models import CaseResult, Study, StudyArm
    from portal.jobs.models import Job
    from portal.reading.models import ReadingStudy
    from tests.reading.conftest import make_case

    services.ensure_default_rubric_sets()
    case, masks = make_case(site, "BR-VAL-0001")
    validation = Study.objects.create(name="Omission check", cancer_type="breast", metrics=["dice"])
    validation.sites.set([site])
    jobs = {}
    for order, (label, path) in enumerate([("full context", masks["multimodal"]), ("no laterality", masks["vision-only"])]):
        arm = StudyArm.objects.create(study=validation, label=label, checkpoint="breast_multimodal.pt", order=order)
        job = Job.objects.create(kind="batch", case=case, study_key=validation.key, checkpoint="breast_multimodal.pt",
                                 state="succeeded", mask_path=path)
        CaseResult.objects.create(study=validation, arm=arm, case=case, job=job, metrics={"dice": 0.9})
        jobs[label] = job
    coord = _login(people["coord"])
    form = coord.get("/reading/studies/new/").content.decode()
    assert f"validation study Omission check · arm no laterality · breast_multimodal.pt · job {jobs['no laterality'].pk}" in form
    created = _post(coord, "/reading/studies/new/", {
        "name": "Omission read", "site": site.code, "rubric_set": RubricSet.objects.get(name="LLMSeg breast", version=1).pk,
        "raters": ["rater1"], "sources": [f"{case.pk}:job:{j.pk}" for j in jobs.values()]})
    assert created.status_code == 302
    study = ReadingStudy.objects.get(name="Omission read")
    assert sorted(study.items.values_list("source_label", "source_ref")) == sorted(
        (label, f"job:{j.pk}") for label, j in jobs.items())
