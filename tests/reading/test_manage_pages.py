"""Coordinators' reading-study pages: scoping, create → open → score → close → results, exports,
and nothing of it reachable by raters, trainees or another site's coordinator."""
import re

import pytest
from django.test import Client

from portal.reading import services
from portal.reading.models import RaterItem, ReadingStudy, RubricSet
from tests.reading.conftest import login_client

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _ground_truth_case(site, label):
    import numpy as np

    from portal.imaging import storage
    from portal.imaging.models import ROI, StructureSet
    from tests.reading.conftest import make_case

    case, masks = make_case(site, label)
    truth = storage.load_mask(masks["multimodal"])
    path = storage.mask_relpath(case.ct_series.series_uid, f"{label}-truth")
    storage.save_mask(path, np.asarray(truth))
    ss = StructureSet.objects.create(ct_series=case.ct_series, label="GT", source=StructureSet.Source.GROUND_TRUTH)
    case.ground_truth = ROI.objects.create(structure_set=ss, number=1, name="CTV", mask_path=path)
    case.save(update_fields=["ground_truth"])
    return case


def test_pages_are_for_coordinators_of_the_site(reading_study, people):
    urls = ["/reading/studies/", "/reading/studies/new/", f"/reading/studies/{reading_study.pk}/"]
    coord = login_client(people["coord"])
    for url in urls:
        assert coord.get(url).status_code == 200, url
    assert reading_study.name in coord.get("/reading/studies/").content.decode()
    for who in ("rater1", "trainee"):
        client = login_client(people[who])
        for url in urls + [f"/reading/studies/{reading_study.pk}/results/"]:
            assert client.get(url).status_code == 403, (who, url)
    other = login_client(people["other_coord"])
    assert reading_study.name not in other.get("/reading/studies/").content.decode()
    assert other.get(f"/reading/studies/{reading_study.pk}/").status_code == 404
    assert other.post(f"/reading/studies/{reading_study.pk}/", {"action": "close"}).status_code == 404
    # Results (unblinding) before closing: refused even to the study's own coordinator.
    assert coord.get(f"/reading/studies/{reading_study.pk}/results/").status_code == 403
    assert Client().get("/reading/studies/").status_code == 302


def test_create_open_score_close_results_and_exports(site, people):
    services.ensure_default_rubric_sets()
    cases = [_ground_truth_case(site, f"BR-PAGE-{i:04d}") for i in range(3)]
    coord = login_client(people["coord"])
    form = coord.get("/reading/studies/new/").content.decode()
    values = re.findall(r'name="sources" value="([^"]+)"', form)
    assert {f"{c.pk}:ground_truth" for c in cases} <= set(values)
    rubric = RubricSet.objects.get(name="LLMSeg breast", version=1)
    # A bad form names the field and stores nothing.
    bad = coord.post("/reading/studies/new/", {"name": "Pages", "site": site.code, "rubric_set": rubric.pk,
                                               "raters": ["rater1"], "sources": ["999999:ground_truth"]})
    assert bad.status_code == 400 and "items[0]" in bad.content.decode()
    assert not ReadingStudy.objects.filter(name="Pages").exists()
    created = coord.post("/reading/studies/new/", {
        "name": "Pages", "site": site.code, "rubric_set": rubric.pk, "raters": ["rater1", "rater2"],
        "sources": [f"{c.pk}:ground_truth" for c in cases], "show_reference": "on"})
    assert created.status_code == 302
    study = ReadingStudy.objects.get(name="Pages")
    assert created["Location"] == f"/reading/studies/{study.pk}/" and study.state == "draft" and study.show_reference
    assert coord.post(f"/reading/studies/{study.pk}/", {"action": "open"}).status_code == 302
    study.refresh_from_db()
    assert study.state == "open"
    # Two raters score every item; rater1 gives full marks, rater2 one point less on coverage.
    full = {"laterality": "1", "surgery_type": "1", "volume_definition": "1.5", "coverage": "1", "integrity": "0.5"}
    for name, scores in (("rater1", full), ("rater2", dict(full, coverage="0"))):
        for ri in RaterItem.objects.filter(assignment__study=study, assignment__rater=people[name]):
            services.save_scores(ri.pk, people[name], scores=scores)
            services.submit(ri.pk, people[name])
    detail = coord.get(f"/reading/studies/{study.pk}/").content.decode()
    assert detail.count("3 / 3 submitted") == 2
    assert coord.post(f"/reading/studies/{study.pk}/", {"action": "close"}).status_code == 302
    page = coord.get(f"/reading/studies/{study.pk}/results/")
    assert page.status_code == 200
    body = page.content.decode()
    # Hand-computed: totals 5.0 (rater1) and 4.0 (rater2) on each of 3 contours -> mean 4.50 over all sites.
    means = re.findall(r"<tr><td>total</td><td>ground truth</td><td>all</td><td>6</td><td>([0-9.]+)</td>", body)
    assert means == ["4.50"], means
    assert re.search(r"<tr><td>coverage</td><td>ground truth</td><td>all</td><td>6</td><td>0.50</td>", body)
    assert "plotly" in body.lower() and 'id="kappa"' in body
    csv_body = coord.get(f"/api/reading/studies/{study.pk}/unblinded/?format_type=csv").content.decode()
    assert csv_body.count("\n") == 1 + 6 and "ground truth" in csv_body
    xlsx = coord.get(f"/api/reading/studies/{study.pk}/unblinded/?format_type=xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
