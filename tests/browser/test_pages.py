"""Real-browser tests of the viewer, the context editor and the comparison pages on a live portal."""
from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest

from dicom_rt.payload import decode_probability
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


def _magenta_pixels(png: bytes) -> int:
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((r > 180) & (b > 180) & (g < 90)).sum())


def _set_range(page, selector: str, value: float) -> None:
    """Move a range slider as a user drag would end (Playwright cannot fill range inputs)."""
    page.eval_on_selector(selector, """(el, v) => {
        el.value = String(v);
        el.dispatchEvent(new Event("input", {bubbles: true}));
    }""", value)


def _coloured_pixels(png: bytes) -> int:
    """Saturated pixels (the CT itself is grey): what an overlay or colour wash adds."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((pixels.max(-1) - pixels.min(-1)) > 80).sum())


def _pixels_once(page, done, timeout_s: float = 10.0) -> int:
    """Coloured pixels of the viewport, re-read every 200 ms until ``done(count)`` or the timeout (then the last count)."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.wait_for_timeout(200)
        count = _coloured_pixels(page.locator("#viewer .viewport-wrap").screenshot())
        if done(count) or time.monotonic() > deadline:
            return count


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
    # Reformats of the same streamed series, with the overlay drawn in each: move the reformatted plane
    # through the middle of the ground truth, check its green pixels, hide it, check they are gone.
    from dicom_rt.payload import decode_mask

    mask, grid = decode_mask(gt["payload"])
    centre = grid.voxel_to_patient([np.argwhere(mask).mean(0).round()])[0].tolist()
    page.check(f"#viewer .legend-row[data-layer='roi-{gt['id']}'] .layer-visible")
    page.wait_for_selector("#viewer[data-all-loaded='true']", timeout=60000)
    for orientation in ("sagittal", "coronal"):
        page.click(f"#viewer [data-orientation={orientation}]")
        page.wait_for_selector(f"#viewer [data-orientation={orientation}].active")
        page.evaluate("""(target) => {
            const vp = window.contextrt.viewer.viewport;
            const cam = vp.getCamera();
            const n = cam.viewPlaneNormal;
            const along = [0, 1, 2].reduce((s, k) => s + n[k] * (target[k] - cam.focalPoint[k]), 0);
            vp.setCamera({focalPoint: cam.focalPoint.map((v, k) => v + along * n[k]),
                          position: cam.position.map((v, k) => v + along * n[k])});
            vp.render();
        }""", centre)
        page.wait_for_timeout(400)
        shown = _green_pixels(page.locator("#viewer .viewport-wrap").screenshot())
        save_screenshot(page, f"viewer-{orientation}")
        # The legend's colour and opacity act on the reformat too: magenta replaces the green, opacity 0
        # removes it, and restoring both brings the green back.
        row = f"#viewer .legend-row[data-layer='roi-{gt['id']}']"
        page.fill(f"{row} .layer-color", "#ff00ff")
        page.wait_for_timeout(200)
        recoloured = page.locator("#viewer .viewport-wrap").screenshot()
        assert _magenta_pixels(recoloured) > 30 and _green_pixels(recoloured) < shown / 10, orientation
        page.fill(f"{row} .layer-color", "#00ff00")
        _set_range(page, f"{row} .layer-opacity", 0)
        page.wait_for_timeout(200)
        assert _green_pixels(page.locator("#viewer .viewport-wrap").screenshot()) < shown / 10, orientation
        _set_range(page, f"{row} .layer-opacity", 0.4)
        page.wait_for_timeout(200)
        assert _green_pixels(page.locator("#viewer .viewport-wrap").screenshot()) > shown / 2, orientation
        page.uncheck(f"#viewer .legend-row[data-layer='roi-{gt['id']}'] .layer-visible")
        page.wait_for_timeout(200)
        hidden = _green_pixels(page.locator("#viewer .viewport-wrap").screenshot())
        assert shown > 30 and hidden < shown / 10, (orientation, shown, hidden)
        page.check(f"#viewer .legend-row[data-layer='roi-{gt['id']}'] .layer-visible")
    page.click("#viewer [data-orientation=axial]")
    page.wait_for_selector("#viewer [data-orientation=axial].active")
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
    # Reopened, the page lists the stored result with its probability (confidence) map as a colour wash:
    # with every other layer hidden, the wash's coloured pixels appear when it is on and vanish when off.
    page.reload()
    _viewer_ready(page)
    config = json.loads(page.inner_text("#page-config"))
    result = next(r for r in config["results"] if r.get("probability"))
    # The slice where the map is strongest: a breast model on this sarcoma CT may be faint on most slices,
    # and a faint wash (p < 0.05) is deliberately not drawn.
    levels, _ = decode_probability(result["probability"])
    k = int(np.argmax((levels >= max(1, int(levels.max()) // 2)).sum(axis=(1, 2))))
    page.evaluate(f"window.contextrt.viewer.setSlice({k})")
    page.wait_for_function(f"document.querySelector('#viewer').dataset.slice === '{k}'")
    for box in page.locator("#viewer .legend-row .layer-visible").all():
        box.uncheck()
    wash = f"#viewer .legend-row[data-layer='prob-{result['job']}'] .layer-visible"
    page.check(wash)
    # Poll rather than sleep: on a loaded machine (CI beside a training run) the redraw can take longer.
    shown = _pixels_once(page, lambda n: n > 50)
    save_screenshot(page, "probability-wash")
    page.uncheck(wash)
    hidden = _pixels_once(page, lambda n: n < shown / 20)
    assert shown > 50 and hidden < shown / 20, (shown, hidden)


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
    # Omit the laterality (LLMSeg's component omission): the model is asked without any side.
    page.select_option(".what-if select[name=field]", "laterality")
    page.select_option(".what-if select[name=value]", "__omit__")
    page.click(".what-if button[type=submit]")
    omitted = page.locator(".viewer-whatif .legend-row", has_text="laterality omitted")
    omitted.wait_for(timeout=240000)
    prompts = {}
    for row in page.locator(".viewer-whatif .legend-row[data-layer^='whatif-']").all():
        job = row.get_attribute("data-layer").removeprefix("whatif-")
        detail = page.request.get(f"{live_portal.url}/api/jobs/{job}/").json()
        prompts[row.inner_text().strip()] = detail["results"]["info"]["prompt_text"]
    changed = next(v for k, v in prompts.items() if f"laterality = {other}" in k)
    dropped = next(v for k, v in prompts.items() if "laterality omitted" in k)
    assert f"{other} side" in changed and "side" not in dropped and "breast conserving surgery" in dropped, prompts
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
