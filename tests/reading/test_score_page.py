"""The scoring page: only the item's own rater opens it; its embedded config and the item API it reads
carry the rubric and progress, and nothing about the contour's source."""
import json
import re

import pytest
from django.test import Client

from portal.reading import services
from portal.reading.models import RaterItem
from tests.reading.conftest import login_client

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _config(body: str) -> dict:
    match = re.search(r'<script id="page-config" type="application/json">(.*?)</script>', body, re.S)
    assert match, "page config missing"
    return json.loads(match.group(1))


def test_rater_opens_own_item_and_others_get_404(reading_study, people):
    ri = RaterItem.objects.filter(assignment__rater=people["rater1"], assignment__study=reading_study).first()
    url = f"/reading/items/{ri.token}/"
    page = login_client(people["rater1"]).get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-page="score"' in body and 'id="scoring"' in body
    config = _config(body)
    assert config["item_url"] == f"/api/reading/items/{ri.token}/"
    assert config["item_page"] == "/reading/items/__token__/" and config["worklist_url"] == "/reading/"
    for who in ("rater2", "trainee", "coord", "other_coord"):
        if who in people:
            assert login_client(people[who]).get(url).status_code == 404, who
    assert Client().get(url).status_code == 302  # anonymous: to the login page


def test_item_api_reports_progress_and_resume_goes_to_first_unsubmitted(reading_study, people):
    rater = people["rater1"]
    client = login_client(rater)
    items = list(RaterItem.objects.filter(assignment__rater=rater, assignment__study=reading_study).order_by("position"))
    full = {"laterality": "1", "surgery_type": "1", "volume_definition": "1.5", "coverage": "1", "integrity": "0.5"}
    services.save_scores(items[0].pk, rater, scores=full)
    services.submit(items[0].pk, rater)
    data = client.get(f"/api/reading/items/{items[1].token}/").json()
    assert data["progress"] == {"total": len(items), "submitted": 1}
    worklist = client.get("/reading/").content.decode()
    assert f"/reading/items/{items[1].token}/" in worklist and "Resume where you left off" in worklist
    assert "1 / 6 submitted" in worklist


def test_closed_study_items_are_read_only_and_drafts_refused(reading_study, people):
    rater = people["rater1"]
    ri = RaterItem.objects.filter(assignment__rater=rater, assignment__study=reading_study).first()
    services.close_study(reading_study)
    client = login_client(rater)
    assert client.get(f"/reading/items/{ri.token}/").status_code == 200  # can look back at a closed study
    refused = client.put(f"/api/reading/items/{ri.token}/draft/", {"scores": {"coverage": "1"}},
                         content_type="application/json")
    assert refused.status_code == 409 and "not open" in refused.json()["detail"]
