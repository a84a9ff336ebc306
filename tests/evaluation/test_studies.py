"""Validation studies end to end on a real ingested CT: create, run through portal.jobs, worker results,
per-case rows from the stored masks, results API, exports, page, scoping and bad input."""

import io

import numpy as np
import pytest
from openpyxl import load_workbook
from rest_framework.test import APIClient

from evaluation.studies.models import CaseResult, Study
from evaluation.studies.services import metrics_row
from tests.jobs.conftest import build_tiny_checkpoint, create_case, example_context_version, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def world(settings, realdata_dir, tmp_path_factory):
    from portal.accounts.models import Role
    from portal.accounts.services import get_or_create_site
    from portal.cases.models import Case

    directory = tmp_path_factory.mktemp("study-checkpoints")
    build_tiny_checkpoint(directory, name="vision.pt")
    build_tiny_checkpoint(directory, name="multimodal.pt")
    settings.CONTEXTRT_CHECKPOINT_DIR = directory
    settings.CONTEXTRT_DEFAULT_CHECKPOINT = "vision.pt"
    home, other = get_or_create_site("int", "Internal"), get_or_create_site("ext1", "External 1")
    users = {"coordinator": make_user("coord", Role.COORDINATOR, [home]),
             "other": make_user("coord2", Role.COORDINATOR, [other]),
             "trainee": make_user("trainee", Role.TRAINEE, [home])}
    first = create_case(realdata_dir, home)
    second = Case.objects.create(label="STS-019-B", site=home, cancer_type="breast", ct_series=first.ct_series,
                                 ground_truth=first.ground_truth)
    example_context_version(second)
    return {"home": home, "other": other, "users": users, "cases": [first, second]}


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


STUDY = {"name": "Breast CTV validation", "cancer_type": "breast", "kind": "comparison", "site_codes": ["int"],
         "metrics": ["dice", "hd95_mm", "surface_dice", "apl_mm"], "reference_arm": "vision-only",
         "arms": [{"label": "vision-only", "checkpoint": "vision.pt"},
                  {"label": "multimodal", "checkpoint": "multimodal.pt"}]}


def finish_jobs_like_a_worker(job_ids, truth, spoil):
    """Post results through the jobs services exactly as gpu_worker does: claim, then store the mask."""
    from portal.jobs.models import Job
    from portal.jobs.services import claim_job, store_result

    for job in Job.objects.filter(pk__in=job_ids):
        claim_job(job.pk, "worker-1")
        mask = np.roll(truth, 2, axis=2) if spoil(job) else truth
        store_result(job.pk, "worker-1", mask)


def test_study_run_collect_results_and_exports(world):
    from portal.imaging.volume import roi_mask

    coordinator = world["users"]["coordinator"]
    api = client_for(coordinator)
    created = api.post("/api/studies/", STUDY, format="json")
    assert created.status_code == 201, created.content
    study_id = created.json()["id"]

    run = api.post(f"/api/studies/{study_id}/run/", {}, format="json")
    assert run.status_code == 202, run.content
    body = run.json()
    assert body["cases"] == 2 and len(body["batches"]) == 2 and len(body["jobs"]) == 4

    truth = roi_mask(world["cases"][0].ground_truth)
    finish_jobs_like_a_worker(body["jobs"], truth, spoil=lambda job: job.checkpoint == "vision.pt")
    collected = api.post(f"/api/studies/{study_id}/collect/", {}, format="json").json()
    assert collected == {"computed": 4, "waiting": 0, "failed": 0, "errors": [], "stored": 4}

    # Re-running is incremental: every case x arm has its row, so nothing is dispatched or recomputed.
    assert api.post(f"/api/studies/{study_id}/run/", {}, format="json").json()["jobs"] == []
    assert api.post(f"/api/studies/{study_id}/collect/", {}, format="json").json()["computed"] == 0

    rows = CaseResult.objects.filter(study_id=study_id)
    multimodal = rows.get(arm__label="multimodal", case=world["cases"][0])
    vision = rows.get(arm__label="vision-only", case=world["cases"][0])
    assert multimodal.metrics["dice"] == 1.0 and multimodal.metrics["hd95_mm"] == 0.0
    assert vision.metrics["dice"] < 1.0 and vision.metrics["hd95_mm"] > 0.0
    spacing = __import__("portal.imaging.volume", fromlist=["series_grid"]).series_grid(
        world["cases"][0].ct_series).spacing_zyx
    expected, _ = metrics_row(np.roll(truth, 2, axis=2), truth, spacing, 2.0)
    assert vision.metrics["hd95_mm"] == pytest.approx(expected["hd95_mm"])

    results = api.get(f"/api/studies/{study_id}/results/").json()
    overall = [r for r in results["summary"] if r["site"] == "overall"]
    by_model = {r["model"]: r for r in overall}
    assert by_model["multimodal"]["dice_mean"] > by_model["vision-only"]["dice_mean"]
    assert "dice_p_wilcoxon" in by_model["multimodal"] and len(results["cases"]) == 4

    csv = api.get(f"/api/studies/{study_id}/export.csv?table=cases")
    assert csv.status_code == 200 and csv["Content-Type"] == "text/csv"
    assert csv.content.decode().splitlines()[0].startswith("case,site,model")
    xlsx = api.get(f"/api/studies/{study_id}/export.xlsx")
    assert load_workbook(io.BytesIO(xlsx.content)).sheetnames == ["summary", "cases"]

    from django.test import Client
    page_client = Client()
    page_client.force_login(coordinator)
    page = page_client.get(f"/studies/{study_id}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "STS-019-B" in html and "plotly" in html.lower() and "multimodal" in html


def test_scoping_and_roles(world):
    users = world["users"]
    study_id = client_for(users["coordinator"]).post("/api/studies/", STUDY, format="json").json()["id"]
    assert client_for(users["other"]).get(f"/api/studies/{study_id}/").status_code == 404
    assert client_for(users["other"]).post(f"/api/studies/{study_id}/run/").status_code == 404
    assert client_for(users["other"]).get("/api/studies/").json() == []
    assert client_for(users["trainee"]).get("/api/studies/").status_code == 403
    assert client_for(users["trainee"]).post("/api/studies/", STUDY, format="json").status_code == 403
    assert APIClient().get("/api/studies/").status_code in (401, 403)
    other_site = dict(STUDY, site_codes=["ext1"])
    refused = client_for(users["coordinator"]).post("/api/studies/", other_site, format="json")
    assert refused.status_code == 403 and refused.json()["field"] == "site_codes"
    from django.test import Client
    page_client = Client()
    page_client.force_login(users["other"])
    assert page_client.get(f"/studies/{study_id}/").status_code == 404
    assert page_client.post(f"/studies/{study_id}/run/").status_code == 404


def test_page_run_button_dispatches_with_csrf(world):
    from django.test import Client

    from portal.jobs.models import Job

    coordinator = world["users"]["coordinator"]
    study_id = client_for(coordinator).post("/api/studies/", STUDY, format="json").json()["id"]
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(coordinator)
    assert strict.post(f"/studies/{study_id}/run/").status_code == 403  # no CSRF token
    page = strict.get(f"/studies/{study_id}/")
    token = page.cookies["csrftoken"].value
    done = strict.post(f"/studies/{study_id}/run/", {"csrfmiddlewaretoken": token})
    assert done.status_code == 302 and done["Location"] == f"/studies/{study_id}/"
    assert Job.objects.filter(study_key=f"study-{study_id}", kind="inference").count() == 4
    assert strict.get(f"/studies/{study_id}/run/").status_code == 405


@pytest.mark.parametrize("change, field", [
    ({"arms": []}, "arms"),
    ({"cancer_type": "lung"}, "cancer_type"),
    ({"kind": "weird"}, "kind"),
    ({"metrics": ["dice", "nope"]}, "metrics"),
    ({"arms": [{"label": "a", "checkpoint": "../../etc/passwd"}]}, "arms[0].checkpoint"),
    ({"arms": [{"label": "a", "checkpoint": "vision.pt"}, {"label": "a", "checkpoint": "vision.pt"}]},
     "arms[1].label"),
    ({"kind": "data_efficiency"}, "arms"),
    ({"reference_arm": "missing"}, "reference_arm"),
    ({"tolerance_mm": "x"}, "tolerance_mm"),
])
def test_bad_study_input_names_the_field_and_stores_nothing(world, change, field):
    response = client_for(world["users"]["coordinator"]).post("/api/studies/", dict(STUDY, **change), format="json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert Study.objects.count() == 0


def test_metrics_row_stores_nan_as_null_with_flags():
    truth = np.zeros((4, 10, 10), dtype=bool)
    truth[1:3, 2:6, 2:6] = True
    values, flags = metrics_row(np.zeros_like(truth), truth, (3.0, 1.0, 1.0), 2.0)
    assert flags == ["empty_pred"] and values["hd95_mm"] is None and values["dice"] == 0.0
