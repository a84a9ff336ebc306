import json

import pytest
from rest_framework.test import APIClient

from portal.reading.models import RaterItem, ReadingStudy

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

SOURCE_VALUES = ("multimodal", "vision-only", "ckpt-")  # the sources' labels and refs in the fixture
FORBIDDEN_KEYS = {"source", "source_label", "source_ref", "job", "job_id", "checkpoint", "model", "item", "item_id",
                  "is_control", "case_id"}


def all_keys(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from all_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from all_keys(v)


def client_for(user):
    c = APIClient()
    c.force_authenticate(user)
    return c


def test_rater_item_detail_has_no_source_hints(reading_study, people):
    c = client_for(people["rater1"])
    studies = c.get("/api/reading/my/studies/").json()
    assert [s["study"] for s in studies] == [reading_study.pk]
    worklist = c.get(f"/api/reading/my/studies/{reading_study.pk}/items/").json()
    assert len(worklist) == 6
    for entry in worklist:
        detail = c.get(f"/api/reading/items/{entry['token']}/")
        assert detail.status_code == 200
        text = json.dumps(detail.json()).lower()
        for hint in SOURCE_VALUES:
            assert hint not in text, (hint, text)
        assert not FORBIDDEN_KEYS & set(all_keys(detail.json()))
        assert str(RaterItem.objects.get(token=entry["token"]).item_id) not in detail.json().values()


def test_rater_cannot_reach_another_raters_item(reading_study, people):
    other_token = reading_study.assignments.get(rater=people["rater2"]).items.first().token
    c = client_for(people["rater1"])
    assert c.get(f"/api/reading/items/{other_token}/").status_code == 404
    assert c.put(f"/api/reading/items/{other_token}/draft/", {"scores": {"laterality": "1"}}, format="json").status_code == 404


@pytest.mark.parametrize("who", ["rater1", "trainee"])
def test_non_coordinators_get_403_on_management_and_unblinding(reading_study, people, who):
    c = client_for(people[who])
    for url in ["/api/reading/studies/", f"/api/reading/studies/{reading_study.pk}/",
                f"/api/reading/studies/{reading_study.pk}/unblinded/", f"/api/reading/studies/{reading_study.pk}/results/",
                "/api/reading/rubrics/"]:
        assert c.get(url).status_code == 403, url
    assert c.post(f"/api/reading/studies/{reading_study.pk}/close/").status_code == 403


def test_other_site_coordinator_cannot_see_the_study(reading_study, people):
    c = client_for(people["other_coord"])
    assert c.get("/api/reading/studies/").json() == []
    assert c.get(f"/api/reading/studies/{reading_study.pk}/").status_code == 404


def test_unblinding_is_403_until_closed_then_available_to_coordinator(reading_study, people):
    c = client_for(people["coord"])
    assert c.get(f"/api/reading/studies/{reading_study.pk}/unblinded/").status_code == 403
    assert c.post(f"/api/reading/studies/{reading_study.pk}/close/").status_code == 200
    rows = c.get(f"/api/reading/studies/{reading_study.pk}/unblinded/").json()
    assert {r["source"] for r in rows} == {"multimodal", "vision-only"}
    # Raters still get 403 once closed.
    assert client_for(people["rater1"]).get(f"/api/reading/studies/{reading_study.pk}/unblinded/").status_code == 403


def test_anonymous_is_refused_everywhere(reading_study, people):
    c = APIClient()
    token = reading_study.assignments.get(rater=people["rater1"]).items.first().token
    for url in ["/api/reading/my/studies/", f"/api/reading/items/{token}/", "/api/reading/studies/"]:
        assert c.get(url).status_code in (401, 403)


def test_autosave_and_submit_through_the_api(reading_study, people):
    c = client_for(people["rater1"])
    token = c.get(f"/api/reading/my/studies/{reading_study.pk}/items/").json()[0]["token"]
    bad = c.put(f"/api/reading/items/{token}/draft/", {"scores": {"coverage": "0.7"}}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "coverage"
    full = {"laterality": "1", "surgery_type": "0.5", "volume_definition": "1.5", "coverage": "1", "integrity": "0.5"}
    ok = c.put(f"/api/reading/items/{token}/draft/", {"scores": full, "comment": "fine"}, format="json")
    assert ok.status_code == 200 and ok.json()["status"] == "draft"
    sub = c.post(f"/api/reading/items/{token}/submit/")
    assert sub.status_code == 200 and sub.json()["submitted"] == 1
    assert c.put(f"/api/reading/items/{token}/draft/", {"scores": {"coverage": "0"}}, format="json").status_code == 409


def test_coordinator_creates_a_study_from_ground_truth_and_rois(site, people):
    from portal.imaging.models import ROI, StructureSet
    from tests.reading.conftest import make_case

    case, masks = make_case(site, "BR-INT-0100")
    sset = StructureSet.objects.create(ct_series=case.ct_series, label="models", source="model")
    roi_a = ROI.objects.create(structure_set=sset, number=1, name="CTV multimodal", mask_path=masks["multimodal"])
    roi_b = ROI.objects.create(structure_set=sset, number=2, name="CTV vision", mask_path=masks["vision-only"])
    case.ground_truth = roi_a
    case.save()
    from portal.reading.models import RubricSet

    rubric = RubricSet.objects.get(name="LLMSeg breast")
    c = client_for(people["coord"])
    body = {"name": "Pilot", "site": "internal", "rubric_set": rubric.pk, "raters": ["rater1", "rater2"],
            "items": [{"case": case.pk, "source": "roi", "roi": roi_a.pk, "label": "multimodal"},
                      {"case": case.pk, "source": "roi", "roi": roi_b.pk, "label": "vision-only"},
                      {"case": case.pk, "source": "ground_truth"}]}
    resp = c.post("/api/reading/studies/", body, format="json")
    assert resp.status_code == 201, resp.json()
    study = ReadingStudy.objects.get(pk=resp.json()["id"])
    assert study.items.count() == 3 and study.items.filter(is_control=True).count() == 1
    bad = c.post("/api/reading/studies/", dict(body, raters=["trainee"]), format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "raters"
    other = client_for(people["other_coord"]).post("/api/reading/studies/", body, format="json")
    assert other.status_code == 400 and other.json()["field"] == "site"
