"""The page views without a browser: login, site scoping, the injected page data and the built assets."""
from __future__ import annotations

import json

import numpy as np
import pytest

from portal.accounts.models import Site
from portal.accounts.services import create_account
from portal.cases.models import Case, ClinicalContextVersion
from portal.imaging.models import Patient, Series, Study
from portal.web import page_data

pytestmark = pytest.mark.django_db


def _case(site_code: str, label: str) -> Case:
    site, _ = Site.objects.get_or_create(code=site_code, defaults={"name": site_code})
    patient = Patient.objects.create(pseudo_id=f"P-{label}", site=site)
    study = Study.objects.create(study_uid=f"1.2.826.0.1.{abs(hash(label)) % 10**8}", patient=patient)
    series = Series.objects.create(series_uid=f"{study.study_uid}.1", study=study, modality="CT", rows=4, columns=5,
                                   pixel_spacing=[1.0, 1.0], image_orientation=[1, 0, 0, 0, 1, 0],
                                   origin=[0.0, 0.0, 0.0], slice_spacing=2.0, num_slices=3)
    case = Case.objects.create(label=label, site=site, cancer_type="prostate", ct_series=series, teaching=True)
    ClinicalContextVersion.objects.create(case=case, version=1, data={"t_stage": "T2a", "psa": 8.0,
                                                                      "isup_grade_group": 2})
    return case


@pytest.fixture
def cases():
    return _case("site-a", "PR-A-1"), _case("site-b", "PR-B-1")


def test_pages_need_login(client, cases):
    for url in ("/", f"/case/{cases[0].pk}/", f"/case/{cases[0].pk}/compare/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_case_of_another_site_is_not_found(client, cases):
    create_account("coord-a", "pass-word-123456", "coordinator", ["site-a"])
    client.login(username="coord-a", password="pass-word-123456")
    listing = client.get("/").content.decode()
    assert "PR-A-1" in listing and "PR-B-1" not in listing
    assert client.get(f"/case/{cases[1].pk}/").status_code == 404
    assert client.get(f"/case/{cases[1].pk}/compare/").status_code == 404


def test_case_page_injects_schema_versions_and_routes(client, cases):
    create_account("coord-a", "pass-word-123456", "coordinator", ["site-a"])
    client.login(username="coord-a", password="pass-word-123456")
    html = client.get(f"/case/{cases[0].pk}/").content.decode()
    start = html.index('<script id="page-config" type="application/json">') + len(
        '<script id="page-config" type="application/json">')
    config = json.loads(html[start:html.index("</script>", start)])
    assert [f["name"] for f in config["schema"]["fields"]][:2] == ["t_stage", "psa"]
    assert config["versions"][0]["version"] == 1 and config["versions"][0]["risk_group"] == "intermediate"
    assert config["case"]["series_uid"] == cases[0].ct_series.series_uid
    assert config["api"]["context_versions"] == f"/api/cases/{cases[0].pk}/contexts/"
    assert config["api"]["job"] == "/api/jobs/{id}/"
    assert config["structures"] == [] and config["results"] == []


def test_model_family_from_checkpoint_name():
    assert page_data.model_family("breast_vision.pt") == "vision"
    assert page_data.model_family("breast_multimodal.pt") == "multimodal"


def test_ground_truth_payload_is_on_the_case_grid(cases, settings):
    from dicom_rt.payload import decode_mask
    from portal.imaging import storage
    from portal.imaging.models import ROI, StructureSet

    case = cases[0]
    mask = np.zeros((3, 4, 5), dtype=bool)
    mask[1, 1:3, 2:4] = True
    rel = storage.mask_relpath(case.ct_series.series_uid, "gt")
    storage.save_mask(rel, mask)
    ss = StructureSet.objects.create(ct_series=case.ct_series, source="ground_truth")
    roi = ROI.objects.create(structure_set=ss, number=1, name="CTV", mask_path=rel, voxel_count=4)
    case.ground_truth = roi
    case.save()
    structures = page_data.structures_json(case)
    assert structures[0]["ground_truth"] is True
    decoded, _ = decode_mask(structures[0]["payload"])
    assert np.array_equal(decoded, mask)


def test_trainee_sees_teaching_cases_of_own_site_only(client, cases):
    home, other = cases
    hidden = _case("site-a", "PR-A-2")
    hidden.teaching = False  # a clinical (non-teaching) case of the trainee's own site
    hidden.save(update_fields=["teaching"])
    create_account("trainee-a", "trainee-a-password-1", "trainee", ["site-a"])
    assert client.login(username="trainee-a", password="trainee-a-password-1")
    listing = client.get("/").content.decode()
    assert "PR-A-1" in listing and "PR-B-1" not in listing and "PR-A-2" not in listing
    assert client.get(f"/case/{home.pk}/").status_code == 200
    assert client.get(f"/case/{home.pk}/compare/").status_code == 200
    for case in (other, hidden):  # not found, not forbidden: the page does not confirm the case exists
        assert client.get(f"/case/{case.pk}/").status_code == 404
        assert client.get(f"/case/{case.pk}/compare/").status_code == 404
        series = case.ct_series
        assert client.get(f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}/metadata").status_code == 404
    # QIDO-RS searches list the trainee's teaching study and neither of the hidden ones.
    search = client.get("/dicomweb/studies", HTTP_ACCEPT="application/dicom+json")
    found = {item["0020000D"]["Value"][0] for item in search.json()} if search.status_code == 200 else set()
    assert found == {home.ct_series.study.study_uid}, (search.status_code, found)
    # Trainees manage nothing: no reading-study or validation-study pages.
    assert client.get("/reading/studies/").status_code == 403
    assert client.get("/studies/").status_code == 403


def test_login_page_names_the_problem(client, cases):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and "Context-aware radiotherapy target contouring" in page.content.decode()
    bad = client.post("/accounts/login/", {"username": "nobody", "password": "wrong"})
    assert bad.status_code == 200 and "correct username and password" in bad.content.decode()
