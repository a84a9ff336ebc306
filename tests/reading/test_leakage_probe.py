"""Leakage probe: a rater, logged in through a real session, crawls everything reachable and finds no source hint."""
import json
import re

import pytest
from django.test import Client

from portal.reading.models import RaterItem, ReadingItem

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

PASSWORD = "correct-horse-battery"  # set by tests/reading/conftest.make_user


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD), "session login failed"
    return client


def _hints(study) -> set[str]:
    """Every string that would tell a rater where a contour came from."""
    hints = set()
    for item in ReadingItem.objects.filter(study=study):
        hints |= {item.source_label.lower(), (item.source_ref or "").lower()}
    hints |= {"checkpoint", "job_id", "model_name", "source_label", "source_ref", "is_control"}
    return {h for h in hints if h}


def _crawl(client, study) -> tuple[dict[str, str], list[dict], list[str]]:
    """GET every page/API/DICOMweb URL open to the rater; returns bodies by URL, contour payloads, order."""
    bodies, payloads = {}, []

    def get(url):
        response = client.get(url)
        assert response.status_code < 500, (url, response.status_code)
        bodies[url] = response.content.decode("utf-8", "replace")
        return response

    get("/api/reading/my/studies/")
    worklist = get(f"/api/reading/my/studies/{study.pk}/items/").json()
    order = []
    for entry in worklist:
        token = entry["token"]
        ri = RaterItem.objects.select_related("item__case__ct_series__study").get(token=token)
        order.append(ri.item.case.label + "/" + ri.item.source_label)
        get(f"/api/reading/items/{token}/")
        contour = get(f"/api/reading/items/{token}/contour/")
        if contour.status_code == 200:
            payloads.append(contour.json())
        get(f"/api/reading/items/{token}/reference/")
        series = ri.item.case.ct_series
        for url in (f"/dicomweb/studies?StudyInstanceUID={series.study.study_uid}",
                    f"/dicomweb/studies/{series.study.study_uid}/series",
                    f"/dicomweb/studies/{series.study.study_uid}/metadata",
                    f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}/metadata"):
            get(url)
    for url in ("/reading/", f"/reading/studies/{study.pk}/"):  # pages, where mounted
        get(url)
    return bodies, payloads, order


def _shape(value):
    """The form of a JSON value: keys and types, not contents."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return ["list"]
    return type(value).__name__


def test_rater_sees_no_source_hint_anywhere(reading_study, people):
    client = _login(people["rater1"])
    bodies, payloads, _ = _crawl(client, reading_study)
    hints = _hints(reading_study)
    item_ids = {str(pk) for pk in ReadingItem.objects.filter(study=reading_study).values_list("pk", flat=True)}
    for url, body in bodies.items():
        low = body.lower()
        for hint in hints:
            assert hint not in low, f"{hint!r} leaked at {url}"
        # internal ids must not appear as JSON values or id fields
        for key in ("item_id", '"item"', "reading_item", "job"):
            assert key not in low, f"{key!r} leaked at {url}"
        if body.startswith(("{", "[")):
            data = json.loads(body)
            if isinstance(data, dict):
                data.pop("rubric", None)  # rubric set/criterion ids are the same for every item: no hint
            for match in re.finditer(r'"id"\s*:\s*(\d+)', json.dumps(data)):
                assert match.group(1) not in item_ids, f"reading item id leaked at {url}"


def test_contour_payloads_have_the_same_form_and_colour_across_sources(reading_study, people):
    client = _login(people["rater1"])
    _, payloads, _ = _crawl(client, reading_study)
    assert len(payloads) == 6
    shapes = {json.dumps(_shape(p), sort_keys=True) for p in payloads}
    assert len(shapes) == 1, shapes
    colours = {json.dumps(p.get("color") or p.get("colour") or p.get("style")) for p in payloads}
    assert len(colours) == 1, colours


def test_two_raters_see_different_orders(reading_study, people):
    _, _, first = _crawl(_login(people["rater1"]), reading_study)
    _, _, second = _crawl(_login(people["rater2"]), reading_study)
    assert sorted(first) == sorted(second) and len(first) == 6
    assert first != second


def test_worklist_page_shows_progress_and_resume_link(reading_study, people):
    client = _login(people["rater1"])
    page = client.get("/reading/")
    assert page.status_code == 200
    body = page.content.decode()
    assert reading_study.name in body and "0 / 6 submitted" in body and "Resume where you left off" in body
    assert Client().get("/reading/").status_code == 302  # anonymous goes to login
