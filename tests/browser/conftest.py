"""Browser-test fixtures: Debian's Chromium through Playwright, one live portal per module, a signed-in page."""
from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.browser.live_portal import PASSWORD, REPO, USERNAME, LivePortal

CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() == "true"
ARTIFACTS = REPO / "test-artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium():
    _need(os.path.exists(CHROMIUM), f"{CHROMIUM} missing (run scripts/ensure_chromium.sh)")
    _need((REPO / "frontend" / "dist" / ".vite" / "manifest.json").exists(),
          "frontend/dist not built (run `make frontend`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def live_portal(tmp_path_factory):
    from tests.conftest import REALDATA

    _need(REALDATA is not None, "shared/realdata not found beside the checkout")
    with LivePortal(tmp_path_factory.mktemp("live-portal"), Path(REALDATA)) as portal:
        yield portal


def route_exists(portal, path: str, method: str = "GET") -> bool:
    """True when the portal answers ``path`` with anything but 404 (used to wait for sibling features)."""
    request = urllib.request.Request(portal.url + path, method=method)
    try:
        urllib.request.urlopen(request, timeout=10)
        return True
    except urllib.error.HTTPError as error:
        return error.code != 404
    except OSError:
        return False


@pytest.fixture
def page(chromium, live_portal):
    ARTIFACTS.mkdir(exist_ok=True)
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = log_in(context, live_portal.url, USERNAME, PASSWORD)
    yield page
    context.close()


def log_in(context, base_url: str, username: str, password: str):
    """A new page of ``context`` signed in through the login form (console errors are printed)."""
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and print("console:", m.text))
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")
    return page


def save_screenshot(page, name: str, *, readme: bool = False, **kwargs) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)
    if readme:
        target = REPO / "docs" / "img" / "viewer.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return path
