"""Real-browser tests of the viewer, the context editor and the comparison pages on a live portal."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tests.browser.conftest import route_exists, save_screenshot, _need

pytestmark = pytest.mark.browser


def _open_case(page, live_portal):
    case = live_portal.info["case"]
    page.click(f"tr[data-case='{case}'] a")
    page.wait_for_url(f"{live_portal.url}/case/{case}/")
    page.wait_for_selector("#editor .context-form")


def _need_dicomweb(live_portal):
    _need(route_exists(live_portal, "/dicomweb/studies"), "the portal has no /dicomweb/ routes yet (DICOMweb server)")


def _viewer_ready(page):
    page.wait_for_function("document.body.dataset.ready === 'true' || document.body.dataset.ready === 'error'",
                           timeout=60000)
    assert page.evaluate("document.body.dataset.ready") == "true", page.inner_text("#page-error")


def _green_pixels(png: bytes) -> int:
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((g > 180) & (r < 90) & (b < 90)).sum())


def test_case_list_and_schema_driven_editor(page, live_portal):
    assert "STS-002" in page.inner_text("table.cases")
    _open_case(page, live_portal)
    config = json.loads(page.inner_text("#page-config"))
    names = [f["name"] for f in config["schema"]["fields"]]
    # One control per schema field, with the saved version's values filled in.
    rendered = page.eval_on_selector_all("#editor .field", "els => els.map(e => e.dataset.field)")
    assert rendered == names
    assert page.input_value("select[name=laterality]") == "left"
    assert "version 1" in page.inner_text(".version-label")
    save_screenshot(page, "case-page")


def test_other_users_cannot_open_case_without_login(chromium, live_portal):
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{live_portal.url}/case/{live_portal.info['case']}/")
    assert "/accounts/login/" in page.url
    context.close()


def test_viewer_scroll_window_level_and_overlay(page, live_portal):
    _need_dicomweb(live_portal)
    _open_case(page, live_portal)
    _viewer_ready(page)
    viewer = page.locator("#viewer")
    page.wait_for_function("document.querySelector('#viewer').dataset.slice !== undefined")
    first = viewer.get_attribute("data-slice")
    # Scroll: the wheel over the viewport, then the keyboard.
    box = page.locator("#viewer .viewport").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 300)
    page.wait_for_function(f"document.querySelector('#viewer').dataset.slice !== '{first}'")
    assert viewer.get_attribute("data-slice") != first
    # Window/level preset changes the displayed VOI.
    page.select_option("#viewer .preset", "lung")
    page.wait_for_function("document.querySelector('#viewer').dataset.window === '1500/-600'")
    page.select_option("#viewer .preset", "soft_tissue")
    page.wait_for_function("document.querySelector('#viewer').dataset.window === '400/40'")
    # Window/level drag (left button) changes the VOI; right drag zooms; Reset restores the camera.
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 60, cy + 40, steps=5)
    page.mouse.up()
    page.wait_for_function("document.querySelector('#viewer').dataset.window !== '400/40'")
    assert "mm" in page.inner_text("#viewer .cursor-label")
    scale = "window.contextrt.viewer.viewport.getCamera().parallelScale"
    before = page.evaluate(scale)
    page.mouse.move(cx, cy)
    page.mouse.down(button="right")
    page.mouse.move(cx, cy - 80, steps=5)
    page.mouse.up(button="right")
    assert abs(page.evaluate(scale) - before) > 1e-3
    page.click("#viewer .reset")
    page.wait_for_function("document.querySelector('#viewer').dataset.window === '400/40'")
    assert abs(page.evaluate(scale) - before) < 1e-3 * before
    # Go to a slice of the ground truth, check its green pixels, then hide the layer.
    config = json.loads(page.inner_text("#page-config"))
    gt = next(s for s in config["structures"] if s["ground_truth"])
    k = sorted(int(i) for i in gt["payload"]["slices"])[len(gt["payload"]["slices"]) // 2]
    page.evaluate(f"window.contextrt.viewer.setSlice({k})")
    page.wait_for_function(f"document.querySelector('#viewer').dataset.slice === '{k}'")
    page.wait_for_timeout(300)
    shown = _green_pixels(page.locator("#viewer .viewport-wrap").screenshot())
    save_screenshot(page, "viewer", readme=True)
    page.uncheck(f"#viewer .legend-row[data-layer='roi-{gt['id']}'] .layer-visible")
    page.wait_for_timeout(200)
    hidden = _green_pixels(page.locator("#viewer .viewport-wrap").screenshot())
    assert shown > 50 and hidden < shown / 10, (shown, hidden)
    # Reformats of the same streamed series.
    page.wait_for_selector("#viewer[data-all-loaded='true']", timeout=60000)
    for orientation in ("sagittal", "coronal", "axial"):
        page.click(f"#viewer [data-orientation={orientation}]")
        page.wait_for_selector(f"#viewer [data-orientation={orientation}].active")
    page.wait_for_function("document.querySelector('#viewer .slice-label').textContent.startsWith('slice')")


def test_editor_refuses_invalid_value_then_saves(page, live_portal):
    _open_case(page, live_portal)
    url = json.loads(page.inner_text("#page-config"))["api"]["context_versions"]
    _need(route_exists(live_portal, url), f"the cases API has no {url} yet (context versions)")
    page.fill("input[name=age]", "7")
    page.click("#editor .save")
    error = page.locator(".field[data-field=age] .field-error")
    error.wait_for(state="visible")
    page.wait_for_function("document.querySelector('.field[data-field=age] .field-error').textContent.length > 0")
    assert page.get_attribute("#editor .context-form", "data-saved") is None
    page.fill("input[name=age]", "54")
    page.select_option("select[name=laterality]", "right")
    page.click("#editor .save")
    page.wait_for_selector("#editor .context-form[data-saved='2']")
    assert page.inner_text(".field[data-field=age] .field-error") == ""
    history = page.inner_text("#editor .versions li[data-version='2']")
    assert "laterality" in history and "right" in history


def _need_checkpoints(page, *families):
    checkpoints = json.loads(page.inner_text("#page-config"))["checkpoints"]
    for family in families:
        _need(bool(checkpoints.get(family)), f"no {family} checkpoint (*.pt) in CONTEXTRT_CHECKPOINT_DIR")


def test_contour_with_this_context_arrives_without_reload(page, live_portal):
    _need_dicomweb(live_portal)
    _open_case(page, live_portal)
    _viewer_ready(page)
    _need_checkpoints(page, "multimodal")
    page.evaluate("window.__sameDocument = true")
    page.click("#editor .contour")
    page.wait_for_selector("#editor .job-progress[data-contour='shown']", timeout=240000)
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    assert page.get_attribute("#editor .job-progress", "data-state") == "succeeded"
    assert page.locator("#viewer .legend-row[data-layer^='job-']").count() == 1
    assert page.evaluate("document.querySelector('#editor progress').value") == 100
    save_screenshot(page, "contour-arrived")


def test_comparison_and_what_if(page, live_portal):
    _need_dicomweb(live_portal)
    page.goto(f"{live_portal.url}/case/{live_portal.info['case']}/compare/")
    _viewer_ready(page)
    _need_checkpoints(page, "vision", "multimodal")
    run = page.locator(".run-models button")
    if run.count():
        run.click()
        page.wait_for_selector(".run-models[data-done='true']", timeout=240000)
    rows = page.inner_text(".metrics-box")
    assert "Vision-only" in rows and "Multimodal" in rows and "mm" in rows  # Dice/HD95 vs the ground truth
    assert page.locator(".viewer-right .legend-row[data-layer='difference']").count() == 1
    # Both viewports follow each other's slice.
    page.evaluate("window.contextrt.viewers[0].setSlice(10)")
    page.wait_for_function("document.querySelector('.viewer-right').dataset.slice === '10'")
    # What-if: laterality changed to the side it is not (the current value is offered disabled).
    page.select_option(".what-if select[name=field]", "laterality")
    other = page.eval_on_selector(".what-if select[name=value]",
                                  "s => [...s.options].find(o => !o.disabled && o.value !== '__omit__').value")
    page.select_option(".what-if select[name=value]", other)
    page.click(".what-if button[type=submit]")
    page.wait_for_selector(".what-if[data-contour='shown']", timeout=240000)
    legend = page.inner_text(".viewer-whatif .legend")
    assert f"laterality = {other}" in legend and "(original)" in legend
    save_screenshot(page, "comparison", full_page=True)


def test_note_extraction_masks_and_proposes_then_preview(page, live_portal):
    _open_case(page, live_portal)
    url = json.loads(page.inner_text("#page-config"))["api"]["extract_note"]
    _need(route_exists(live_portal, url), f"the cases API has no {url} yet (note extraction)")
    page.click("#editor details summary")
    page.fill("#editor .note", "Mrs Jane Doe, DOB 03/04/1961, MRN 1234567. Right breast IDC, cT2 N1 M0, "
                               "s/p lumpectomy. Age 63.")
    page.click("#editor .extract")
    page.wait_for_selector("#editor .proposal .accept")
    masked = page.inner_text("#editor .proposal .masked")
    assert "Jane" not in masked and "1234567" not in masked and "03/04/1961" not in masked
    page.click("#editor .proposal .accept")
    assert page.input_value("select[name=laterality]") == "right"
    assert page.input_value("select[name=cN]") == "N1"
    page.click("#editor .preview")
    page.wait_for_function("document.querySelector('#editor .prompt-preview').textContent.includes('right')")
