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


ASSET_REF = re.compile(r"""["'](?:\./|/static/assets/)([\w.-]+\.(?:js|css))["']""")


def _asset_text(client, url: str) -> str:
    """A static file as the browser gets it; where the test server does not serve static files, the file
    the static finders would serve (the same bytes)."""
    from django.contrib.staticfiles import finders

    response = client.get(url)
    if response.status_code == 200:
        return b"".join(response.streaming_content if response.streaming else [response.content]).decode("utf-8", "replace")
    found = finders.find(url.removeprefix("/static/"))
    assert found, f"asset {url} referenced by the scoring page is neither served nor built"
    with open(found, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _page_assets(client, html: str) -> dict[str, str]:
    """The scripts and stylesheets a page loads, followed through their imports (shared chunks, workers)."""
    todo = re.findall(r'<script[^>]*\ssrc="([^"]+)"', html) + re.findall(r'<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"', html)
    assert todo, "the page loads no script or stylesheet"
    assets: dict[str, str] = {}
    while todo:
        url = todo.pop()
        if url in assets:
            continue
        assets[url] = text = _asset_text(client, url)
        todo.extend(f"/static/assets/{name}" for name in ASSET_REF.findall(text))
    return assets


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
        page = get(f"/reading/items/{token}/")  # the scoring page and the config it embeds
        assert page.status_code == 200, (token, page.status_code)
        series = ri.item.case.ct_series
        for url in (f"/dicomweb/studies?StudyInstanceUID={series.study.study_uid}",
                    f"/dicomweb/studies/{series.study.study_uid}/series",
                    f"/dicomweb/studies/{series.study.study_uid}/metadata",
                    f"/dicomweb/studies/{series.study.study_uid}/series/{series.series_uid}/metadata"):
            get(url)
    for url in ("/reading/", f"/reading/studies/{study.pk}/"):  # pages, where mounted
        get(url)
    return bodies, payloads, order


def test_scoring_page_assets_carry_no_source_hint(reading_study, people):
    """The scripts and stylesheets of the scoring page (its own Vite entry, the shared viewer chunk, the
    decoder workers) name no source: neither this study's labels nor the model names the comparison page
    uses. Code, not data, but a rater must not be able to tell which models are in play from it either."""
    from portal.web.assets import manifest_path

    if not manifest_path().is_file():
        pytest.skip("frontend not built (cd frontend && npm run build)")
    client = _login(people["rater1"])
    token = RaterItem.objects.filter(assignment__rater=people["rater1"], assignment__study=reading_study).first().token
    assets = _page_assets(client, client.get(f"/reading/items/{token}/").content.decode())
    assert any("scoring" in url for url in assets) and any(url.endswith(".css") for url in assets), sorted(assets)
    hints = _hints(reading_study) | {"multimodal", "vision-only", "vision only", "llmseg", "ground_truth"}
    for url, text in assets.items():
        low = text.lower()
        for hint in hints:
            assert hint not in low, f"{hint!r} in {url}"


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
    assert reading_study.name in body and "0 / 6 submitted" in body and "Start scoring" in body
    assert Client().get("/reading/").status_code == 302  # anonymous goes to login
