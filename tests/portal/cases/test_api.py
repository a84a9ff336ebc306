"""Cases REST API on the real catalogue (load_cohort of a small synthetic cohort): scoping, detail,
versioned contexts with per-field errors and diff, prompt preview, note extraction, ROI payload."""
import json

import numpy as np
import pytest

from dicom_rt import payload as P
from portal.cases.models import Case, ClinicalContextVersion
from portal.imaging.volume import roi_mask

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

INT, EXT = "BR-INT-0000", "BR-EX1-0000"


def test_list_is_scoped_by_role_and_site(cases, users, client_for):
    def labels(user, query=""):
        response = client_for(user).get("/api/cases/" + query)
        assert response.status_code == 200
        return sorted(item["label"] for item in response.json()["results"])

    assert labels(users["admin"]) == [EXT, INT]
    assert labels(users["coord"]) == [INT]
    assert labels(users["coord_ext"]) == [EXT]
    assert labels(users["trainee"]) == [INT]  # only the teaching (train split) case
    assert labels(users["rater"]) == []
    assert labels(users["admin"], "?site=external1") == [EXT]
    assert labels(users["admin"], "?cohort=external") == [EXT]
    assert labels(users["admin"], "?cohort=train&cancer_type=breast") == [INT]
    assert labels(users["admin"], "?cancer_type=prostate") == []
    assert client_for(None).get("/api/cases/").status_code in (401, 403)


def test_detail_other_site_is_not_found(cases, users, client_for):
    ext = cases[EXT]
    assert client_for(users["coord"]).get(f"/api/cases/{ext.pk}/").status_code == 404
    assert client_for(users["trainee"]).get(f"/api/cases/{ext.pk}/").status_code == 404
    assert client_for(users["coord_ext"]).get(f"/api/cases/{ext.pk}/").status_code == 200
    assert client_for(users["coord"]).get("/api/cases/999999/").status_code == 404


def test_detail_has_ct_uids_rois_context_and_ground_truth(cases, users, client_for):
    case = cases[INT]
    body = client_for(users["coord"]).get(f"/api/cases/{case.pk}/").json()
    assert body["ct"]["series_uid"] == case.ct_series.series_uid
    assert body["ct"]["study_uid"] == case.ct_series.study.study_uid
    assert body["ct"]["num_slices"] == 50
    names = [r["name"] for r in body["rois"]]
    assert names[0] == "CTV" and body["rois"][0]["ground_truth"] and body["ground_truth"] == body["rois"][0]["id"]
    assert {"Body", "Heart", "SpinalCanal"} <= set(names)
    gt = body["rois"][0]
    assert gt["volume_cc"] > 0 and len(gt["color"]) == 3
    ctx = body["context"]
    assert ctx["version"] == 1 and ctx["data"]["laterality"] in ("left", "right")
    assert ctx["prompt_text"] and ctx["author"] is None  # loaded, not typed by a user
    assert "[ID]" in ctx["source_note"]


def test_note_stored_masked_on_load(cases, small_cohort):
    manifest = json.loads((small_cohort / "cohort.json").read_text())
    entry = next(c for c in manifest["cases"] if c["id"] == INT)
    stored = cases[INT].current_context.source_note
    mrn = entry["note"].split("MRN:")[1].split()[0]
    assert mrn not in stored and "[ID]" in stored
    assert entry["note"].split("Patient:")[1].split("MRN")[0].strip() not in stored


def test_context_schema(users, cases, client_for):
    client = client_for(users["trainee"])
    breast = client.get("/api/context-schema/breast/").json()
    assert "laterality" in [f["name"] for f in breast["fields"]]
    prostate = client.get("/api/context-schema/prostate/").json()
    assert prostate["derived"][0]["name"] == "risk_group"
    bad = client.get("/api/context-schema/lung/")
    assert bad.status_code == 400 and "cancer_type" in bad.json()["errors"]


def test_save_versions_with_author_errors_per_field_and_diff(cases, users, client_for):
    case = cases[INT]
    client = client_for(users["coord"])
    url = f"/api/cases/{case.pk}/contexts/"
    bad = client.post(url, {"data": {"laterality": "middle", "age": 7, "colour": "x", "surgery": "bcs"}}, format="json")
    assert bad.status_code == 400
    assert set(bad.json()["errors"]) == {"laterality", "age", "colour"}
    assert case.context_versions.count() == 1  # nothing stored
    missing = client.post(url, {"context": {}}, format="json")
    assert missing.status_code == 400 and "data" in missing.json()["errors"]

    v1 = case.current_context.data
    new = {**v1, "laterality": "left" if v1["laterality"] == "right" else "right", "cN": "N1", "age": None}
    new.pop("pathology", None)
    new["pN"] = "N1a"
    note = "Patient: John Example  MRN: 12345678  Date: 01/02/2024\nleft breast, pN1a"
    saved = client.post(url, {"data": new, "note": note}, format="json")
    assert saved.status_code == 201, saved.content
    body = saved.json()
    assert body["version"] == 2 and body["author"] == "coord"
    assert "age" not in body["data"] and body["data"]["cN"] == "N1"
    assert "12345678" not in body["source_note"] and "John Example" not in body["source_note"]
    stored = ClinicalContextVersion.objects.get(case=case, version=2)
    assert stored.author == users["coord"] and "12345678" not in stored.source_note
    assert ClinicalContextVersion.objects.get(case=case, version=1).data == v1  # old version unchanged

    listing = client.get(url).json()
    assert [v["version"] for v in listing] == [1, 2]
    assert client.get(f"/api/cases/{case.pk}/").json()["context"]["version"] == 2
    diff = client.get(f"/api/cases/{case.pk}/contexts/diff/?from=1&to=2").json()
    changes = {c["field"]: c for c in diff["changes"]}
    assert changes["laterality"]["change"] == "changed" and changes["cN"]["after"] == "N1"
    assert changes["age"]["change"] == "removed" and changes["pN"]["change"] in ("added", "changed")
    if "pathology" in v1:
        assert changes["pathology"]["change"] == "removed"
    assert diff["prompt_before"] != diff["prompt_after"]
    assert client.get(f"/api/cases/{case.pk}/contexts/diff/?from=1&to=9").status_code == 404
    assert client.get(f"/api/cases/{case.pk}/contexts/diff/?from=1").status_code == 400
    assert client.get(f"/api/cases/{case.pk}/contexts/2/").json()["data"] == body["data"]


def test_only_site_coordinators_and_admins_save(cases, users, client_for):
    case = cases[INT]
    data = {"data": {"laterality": "left"}}
    assert client_for(users["trainee"]).post(f"/api/cases/{case.pk}/contexts/", data, format="json").status_code == 403
    assert client_for(users["coord_ext"]).post(f"/api/cases/{case.pk}/contexts/", data, format="json").status_code == 404
    assert client_for(users["admin"]).post(f"/api/cases/{case.pk}/contexts/", data, format="json").status_code == 201
    assert case.context_versions.count() == 2


def test_prompt_preview_stores_nothing_and_shows_nccn_risk(cases, users, client_for):
    case = cases[INT]
    client = client_for(users["trainee"])
    ok = client.post(f"/api/cases/{case.pk}/prompt-preview/", {"data": {"laterality": "left", "surgery": "bcs"}},
                     format="json")
    assert ok.status_code == 200 and "left" in ok.json()["prompt_text"].lower()
    bad = client.post(f"/api/cases/{case.pk}/prompt-preview/", {"data": {"surgery": "lumpectomy-ish"}}, format="json")
    assert bad.status_code == 400 and "surgery" in bad.json()["errors"]
    assert case.context_versions.count() == 1
    # A prostate case on the same CT (the catalogue allows any cancer type per case): risk group derived.
    prostate = Case.objects.create(label="PR-X", site=case.site, cancer_type="prostate", ct_series=case.ct_series,
                                   teaching=True)
    body = client.post(f"/api/cases/{prostate.pk}/prompt-preview/",
                       {"data": {"t_stage": "T3b", "psa": 30, "gleason_primary": 4, "gleason_secondary": 5}},
                       format="json").json()
    assert body["risk_group"] == "very_high" and body["data"]["isup_grade_group"] == 5


def test_note_extraction_proposes_and_masks(cases, users, client_for, small_cohort):
    case = cases[INT]
    manifest = json.loads((small_cohort / "cohort.json").read_text())
    entry = next(c for c in manifest["cases"] if c["id"] == INT)
    response = client_for(users["coord"]).post(f"/api/cases/{case.pk}/extract-note/", {"note": entry["note"]},
                                               format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["proposed"]["laterality"] == entry["context"]["laterality"]
    assert body["proposed"]["surgery"] == entry["context"]["surgery"]
    mrn = entry["note"].split("MRN:")[1].split()[0]
    assert mrn not in body["masked_note"]
    assert case.context_versions.count() == 1
    empty = client_for(users["coord"]).post(f"/api/cases/{case.pk}/extract-note/", {"note": "  "}, format="json")
    assert empty.status_code == 400 and "note" in empty.json()["errors"]


def test_roi_payload_decodes_to_the_stored_mask(cases, users, client_for):
    case = cases[INT]
    client = client_for(users["coord"])
    gt = case.ground_truth
    for query in ("", "?encoding=json", "?contours=1"):
        response = client.get(f"/api/cases/{case.pk}/rois/{gt.pk}/payload/{query}")
        assert response.status_code == 200
        mask, grid = P.decode_mask(response.json())
        assert np.array_equal(mask, roi_mask(gt))
        assert grid.shape == (case.ct_series.num_slices, case.ct_series.rows, case.ct_series.columns)
    assert client.get(f"/api/cases/{case.pk}/rois/{gt.pk}/payload/?encoding=png").status_code == 400
    other = cases[EXT].ground_truth
    assert client.get(f"/api/cases/{case.pk}/rois/{other.pk}/payload/").status_code == 404  # ROI of another CT
    assert client_for(users["coord_ext"]).get(f"/api/cases/{case.pk}/rois/{gt.pk}/payload/").status_code == 404
