"""A rater scores three blinded items end to end in a real browser: the worklist, the scoring page (CT +
anonymised contour + rubric form), mouse and keyboard scoring, autosave surviving a reload, submit → next
item, and the final progress and stored totals read back through the API."""
from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from tests.browser.conftest import ARTIFACTS, log_in, save_screenshot
from tests.browser.live_portal import PYTHON, REPO, LivePortal, child_env

pytestmark = pytest.mark.browser

# (criterion key, chosen step) per item; item 1 is scored partly by keyboard.
PLANS = [
    {"laterality": "1", "surgery_type": "0.5", "volume_definition": "1.5", "coverage": "1", "integrity": "0.5"},
    {"laterality": "0", "surgery_type": "1", "volume_definition": "1", "coverage": "0.5", "integrity": "0.5"},
    {"laterality": "1", "surgery_type": "1", "volume_definition": "0.5", "coverage": "0", "integrity": "0"},
]


@pytest.fixture(scope="module")
def reading_portal(tmp_path_factory, chromium):
    from tests.conftest import REALDATA

    from tests.browser.conftest import _need

    _need(REALDATA is not None, "shared/realdata not found beside the checkout")
    with LivePortal(tmp_path_factory.mktemp("reading-portal"), Path(REALDATA)) as portal:
        done = subprocess.run([str(PYTHON), "-m", "tests.browser.reading_seed"], cwd=REPO,
                              env=child_env(portal.var_dir, portal.port), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        portal.reading = json.loads(done.stdout.strip().splitlines()[-1])
        yield portal


def _ready(page):
    page.wait_for_function("document.body.dataset.ready === 'true' || document.body.dataset.ready === 'error'",
                           timeout=90000)
    assert page.evaluate("document.body.dataset.ready") == "true", page.inner_text("#page-error")


def _saved(page):
    page.wait_for_function("document.querySelector('.save-state').textContent === 'Draft saved'", timeout=30000)


def _click_step(page, key, step):
    page.click(f"fieldset[data-key='{key}'] input[value='{step}']")
    _saved(page)


def test_rater_scores_three_items_with_autosave_keyboard_and_progress(chromium, reading_portal):
    portal, info = reading_portal, reading_portal.reading
    ARTIFACTS.mkdir(exist_ok=True)
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = log_in(context, portal.url, info["rater"], info["password"])

    page.goto(f"{portal.url}/reading/")
    assert "0 / 3 submitted" in page.inner_text("body")
    page.click("a.resume")
    page.wait_for_url(f"{portal.url}/reading/items/**")
    for number, plan in enumerate(PLANS, start=1):
        _ready(page)
        assert page.inner_text(".score-progress .progress-label") == f"{number - 1} / 3 submitted"
        title = page.inner_text(".score-title")
        assert title.startswith("Contour ") and len(title) == len("Contour A")
        keys = list(plan)
        if number == 1:
            # Keyboard: the first criterion is highlighted; "2" picks its second allowed step (1 point).
            page.click("fieldset[data-key='laterality'] legend")
            page.keyboard.press("2")
            _saved(page)
            assert page.is_checked("fieldset[data-key='laterality'] input[value='1']")
            _click_step(page, "surgery_type", plan["surgery_type"])
            # Reload mid-item: the autosaved draft comes back.
            page.reload()
            _ready(page)
            assert page.is_checked("fieldset[data-key='laterality'] input[value='1']")
            assert page.is_checked("fieldset[data-key='surgery_type'] input[value='0.5']")
            assert "(incomplete)" in page.inner_text(".total-value")
            # j moves to the next criterion; digits choose by position in the allowed steps.
            page.click("fieldset[data-key='volume_definition'] legend")
            page.keyboard.press("4")  # steps 0 / 0.5 / 1 / 1.5
            _saved(page)
            for key in keys[3:]:
                _click_step(page, key, plan[key])
            page.fill("textarea[name=comment]", "good coverage, checked on reload")
            _saved(page)
            save_screenshot(page, "scoring_page")
        else:
            # Submitting early is refused with the missing criteria named.
            _click_step(page, keys[0], plan[keys[0]])
            page.click("button.submit-item")
            assert "missing" in page.inner_text(".form-error")
            for key in keys[1:]:
                _click_step(page, key, plan[key])
        expected_total = sum(Decimal(v) for v in plan.values())
        assert float(page.inner_text(".total-value")) == float(expected_total)
        with page.expect_navigation():
            if number == 1:
                page.keyboard.press("Control+Enter")
            else:
                page.click("button.submit-item")
    page.wait_for_url(f"{portal.url}/reading/?finished=1")
    body = page.inner_text("body")
    assert "All items of that study are submitted" in body
    assert "3 / 3 submitted" in page.inner_text(f"li[data-study='{info['study']}'] .progress-label")

    # The database rows themselves: three submitted items with the planned scores, in the rater's order.
    done = subprocess.run([str(PYTHON), "-m", "tests.browser.reading_seed", "stored", str(info["study"])], cwd=REPO,
                          env=child_env(portal.var_dir, portal.port), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(r["rater"], r["status"], r["submitted"]) for r in rows] == [(info["rater"], "submitted", True)] * 3
    assert [sum(Decimal(v) for v in r["scores"].values()) for r in rows] == \
        [sum(Decimal(v) for v in plan.values()) for plan in PLANS]
    assert [r["scores"] for r in rows] == PLANS

    # Read back through the rater API: three submitted items with the planned totals.
    items = page.request.get(f"{portal.url}/api/reading/my/studies/{info['study']}/items/").json()
    assert len(items) == 3 and all(i["status"] == "submitted" for i in items)
    totals = []
    for entry in sorted(items, key=lambda i: i["position"]):
        detail = page.request.get(f"{portal.url}/api/reading/items/{entry['token']}/").json()
        totals.append(sum(Decimal(v) for v in detail["scores"].values()))
        assert detail["progress"] == {"total": 3, "submitted": 3}
    assert totals == [sum(Decimal(v) for v in plan.values()) for plan in PLANS]
    first = page.request.get(f"{portal.url}/api/reading/items/{sorted(items, key=lambda i: i['position'])[0]['token']}/").json()
    assert first["comment"] == "good coverage, checked on reload"
    # A submitted item is locked: its page shows the scores read-only.
    page.goto(f"{portal.url}/reading/items/{items[0]['token']}/")
    _ready(page)
    assert page.is_disabled("button.submit-item") and "locked" in page.inner_text(".save-state")
    context.close()


def test_coordinator_creates_opens_closes_and_reads_results_in_the_browser(chromium, reading_portal):
    """The coordinator's side in a real browser: the new-study form (select-all contours, a rater), open, the
    rater scores the one item, close, then results with rendered plotly charts and the unblinded table."""
    from tests.browser.live_portal import PASSWORD, USERNAME

    portal, info = reading_portal, reading_portal.reading
    coordinator_context = chromium.new_context(viewport={"width": 1400, "height": 900})
    coord = log_in(coordinator_context, portal.url, USERNAME, PASSWORD)
    coord.goto(f"{portal.url}/reading/studies/")
    assert "Browser blinded read" in coord.inner_text("#reading-studies")
    coord.click("text=New reading study")
    coord.wait_for_url(f"{portal.url}/reading/studies/new/")
    sources = coord.locator("input[name=sources]")
    n_sources = sources.count()
    assert n_sources >= 1
    # Submitting without contours is refused with the field named, and nothing is created.
    coord.fill("input[name=name]", "Browser coordinator study")
    coord.check(f"input[name=raters][value='{info['rater']}']")
    coord.click("#new-reading-study button[type=submit]")
    assert coord.locator(".form-error").count() == 1
    assert "Browser coordinator study" not in coord.request.get(f"{portal.url}/reading/studies/").text()
    coord.check(f"input[name=raters][value='{info['rater']}']")
    coord.check("#select-all-sources")
    assert coord.locator("input[name=sources]:checked").count() == n_sources
    coord.uncheck("#select-all-sources")
    assert coord.locator("input[name=sources]:checked").count() == 0
    coord.check("#select-all-sources")
    coord.check("input[name=show_reference]")
    with coord.expect_navigation():
        coord.click("#new-reading-study button[type=submit]")
    assert coord.inner_text("#study-state") == "Draft"
    study_url = coord.url
    with coord.expect_navigation():
        coord.click("button[value=open]")
    assert coord.inner_text("#study-state") == "Open for scoring"
    assert f"0 / {n_sources} submitted" in coord.inner_text("body")

    # The rater scores every item of the new study (first plan) in their own browser session.
    rater_context = chromium.new_context(viewport={"width": 1400, "height": 900})
    rater = log_in(rater_context, portal.url, info["rater"], info["password"])
    rater.goto(f"{portal.url}/reading/")
    study_id = int(study_url.rstrip("/").rsplit("/", 1)[1])
    rater.click(f"li[data-study='{study_id}'] a.resume")
    plan = PLANS[0]
    for _ in range(n_sources):
        rater.wait_for_url(f"{portal.url}/reading/items/**")
        _ready(rater)
        for key, step in plan.items():
            _click_step(rater, key, step)
        with rater.expect_navigation():
            rater.click("button.submit-item")
    rater_context.close()

    coord.reload()
    assert f"{n_sources} / {n_sources} submitted" in coord.inner_text("body")
    with coord.expect_navigation():
        coord.click("button[value=close]")
    assert coord.inner_text("#study-state") == "Closed"
    coord.click("text=Results")
    coord.wait_for_url(f"{study_url}results/")
    coord.wait_for_selector(".chart .js-plotly-plot .main-svg", timeout=30000)
    expected_total = float(sum(Decimal(v) for v in plan.values()))
    total_rows = coord.locator("#means tr", has_text="total")
    assert total_rows.count() >= 1
    cells = total_rows.first.locator("td").all_inner_texts()
    assert cells[1] == "ground truth" and float(cells[4]) == expected_total, cells
    save_screenshot(coord, "reading_results_page")
    coord.goto(f"{study_url}unblinded/")
    table = coord.inner_text("#unblinded")
    assert "ground truth" in table and info["rater"] in table and "submitted" in table
    coordinator_context.close()
