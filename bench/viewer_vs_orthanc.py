"""Viewer speed against two DICOMweb servers: ContextRT's own and Orthanc's, same viewer code, same proxy.

    .venv/bin/python bench/viewer_vs_orthanc.py [--ct-dir DIR] [--runs 3] [--json out.json]

What it measures, in headless Debian Chromium (Playwright), for a 100+-slice CT series:
  * time to first image: page script start -> first slice on screen (``CtViewer.stats.firstImageMs``);
  * time to the full series: page script start -> every slice loaded and decoded (``allLoadedMs``);
  * scroll rate: slices rendered per second when stepping through the whole cached stack.

How only the server differs: a bench-only proxy (this file) serves one page with the built viewer
(frontend/dist, through the portal's /static/) and forwards ``/dw/contextrt/...`` to the portal's
``/dicomweb/...`` (signed in with a session cookie) and ``/dw/orthanc/...`` to Orthanc's ``/dicom-web/...``.
Both series are the same files: the synthetic 120 x 512 x 512 breast CT of ``fixtures`` (or ``--ct-dir``),
ingested by ContextRT (de-identified, new UIDs) and uploaded to Orthanc unchanged.
Needs Debian's orthanc + orthanc-dicomweb and /usr/bin/chromium; run ``make frontend`` first.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from dicomweb_vs_orthanc import ORTHANC_PORT, Orthanc, free_port  # noqa: E402  (the DICOMweb bench's Orthanc runner)
from tests.browser.live_portal import PASSWORD, USERNAME, LivePortal  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}


def synthetic_series(scratch: Path) -> Path:
    out = scratch / "cohort"
    subprocess.run([sys.executable, "-m", "fixtures", "--out", str(out), "--sites", "internal", "--cases-per-site",
                    "1", "--cancer", "breast", "--shape", "120x512x512", "--quiet"], cwd=REPO, check=True)
    return next(out.glob("internal/breast/*/ct"))


def orthanc_uids(paths) -> tuple[str, str]:
    import pydicom

    ds = pydicom.dcmread(str(paths[0]), stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID


class BenchProxy:
    """ASGI app: the bench page, /static/ from the portal, /dw/<server>/ to either DICOMweb server."""

    def __init__(self, portal_url: str, cookies: dict, assets: dict, series: dict):
        self.portal_url = portal_url
        self.cookies = cookies
        self.assets = assets
        self.series = series  # server -> {"study_uid", "series_uid"}
        self.upstream = {"contextrt": f"{portal_url}/dicomweb", "orthanc": f"http://127.0.0.1:{ORTHANC_PORT}/dicom-web"}
        self.client = None

    def page(self, server: str) -> bytes:
        config = {"case": {"id": 0, "label": f"bench-{server}", **self.series[server]},
                  "dicomweb_root": f"/dw/{server}", "structures": [], "results": []}
        css = "".join(f'<link rel="stylesheet" href="{href}">' for href in self.assets["styles"])
        return (f'<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">{css}</head>'
                f'<body data-page="viewer"><div id="page-error"></div>'
                f'<main class="page"><section id="viewer"></section></main>'
                f'<script id="page-config" type="application/json">{json.dumps(config)}</script>'
                f'<script type="module" src="{self.assets["script"]}"></script></body></html>').encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=32))
        path = scope["path"]
        query = scope.get("query_string", b"").decode()
        if path.startswith("/bench/"):
            await self.respond(send, 200, {"content-type": "text/html"}, self.page(path.split("/")[2]))
            return
        if path.startswith("/static/"):
            url, cookies = f"{self.portal_url}{path}", {}
        elif path.startswith("/dw/"):
            server, rest = path[4:].split("/", 1)
            url, cookies = f"{self.upstream[server]}/{rest}", (self.cookies if server == "contextrt" else {})
        else:
            await self.respond(send, 404, {"content-type": "text/plain"}, b"not found")
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.decode() in ("accept", "range")}
        upstream = await self.client.get(url + (f"?{query}" if query else ""), headers=headers, cookies=cookies)
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
        await self.respond(send, upstream.status_code, out, upstream.content)

    @staticmethod
    async def respond(send, status, headers, body):
        raw = [(k.encode(), v.encode()) for k, v in headers.items()] + [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def serve(app, port: int):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.1)
    return server


# Each step waits for Cornerstone's IMAGE_RENDERED of the new slice, so the rate counts frames drawn.
SCROLL_JS = """async () => {
  const v = window.contextrt.viewer;
  const n = v.imageIds.length;
  let wake = null;
  v.onRender(() => { if (wake) { const w = wake; wake = null; w(); } });
  const step = async (i) => {
    const rendered = new Promise((resolve) => { wake = resolve; });
    await v.setSlice(i);
    await rendered;
  };
  await step(0);
  const t0 = performance.now();
  for (let i = 1; i < n; i++) await step(i);
  for (let i = n - 2; i >= 0; i--) await step(i);
  return { slices: 2 * (n - 1), ms: performance.now() - t0 };
}"""


def measure(browser, url: str) -> dict:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("document.body.dataset.ready === 'true' || document.body.dataset.ready === 'error'",
                           timeout=120000)
    if page.evaluate("document.body.dataset.ready") != "true":
        raise RuntimeError(page.inner_text("#page-error"))
    page.wait_for_selector("#viewer[data-all-loaded='true']", timeout=300000)
    stats = page.evaluate("window.contextrt.viewer.stats")
    scroll = page.evaluate(SCROLL_JS)
    context.close()
    return {"slices": stats["total"], "first_image_ms": stats["firstImageMs"], "all_loaded_ms": stats["allLoadedMs"],
            "scroll_slices_per_s": scroll["slices"] / (scroll["ms"] / 1000.0)}


def built_assets() -> dict:
    manifest = json.loads((REPO / "frontend" / "dist" / ".vite" / "manifest.json").read_text())
    entry = manifest["src/main.js"]
    # The viewer is a chunk shared with the scoring entry; its stylesheet is listed under that chunk.
    styles = [css for key in [*entry.get("imports", []), "src/main.js"] for css in manifest[key].get("css", [])]
    return {"script": f"/static/{entry['file']}", "styles": [f"/static/{css}" for css in styles]}


def portal_session(url: str) -> dict:
    """Sign in through the login form; the proxy sends the session cookie with every DICOMweb request."""
    import re

    with httpx.Client(base_url=url, follow_redirects=False) as client:
        form = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        done = client.post("/accounts/login/", data={"csrfmiddlewaretoken": token, "username": USERNAME,
                                                     "password": PASSWORD}, headers={"Referer": f"{url}/accounts/login/"})
        if done.status_code != 302:
            raise RuntimeError(f"portal login failed: HTTP {done.status_code}")
        return dict(client.cookies)


def summarise(runs: list[dict]) -> dict:
    keys = ("first_image_ms", "all_loaded_ms", "scroll_slices_per_s")
    return {k: statistics.median(r[k] for r in runs) for k in keys} | {"slices": runs[0]["slices"], "runs": len(runs)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct-dir", type=Path, help="folder of a CT series (default: a synthetic 120-slice one)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    scratch = Path(tempfile.mkdtemp(prefix="viewer-bench-"))
    ct_dir = args.ct_dir or synthetic_series(scratch)
    paths = sorted(p for p in ct_dir.rglob("*.dcm"))
    ct_paths = [p for p in paths if "rtstruct" not in p.name.lower()]
    orthanc = Orthanc(scratch)
    (scratch / "portal").mkdir()
    results = {"contextrt": [], "orthanc": []}
    with LivePortal(scratch / "portal", REPO.parent / "shared" / "realdata", ct_dir=ct_dir) as portal:
        orthanc.start()
        try:
            orthanc.load(ct_paths)
            study, series = orthanc_uids(ct_paths)
            proxy = BenchProxy(portal.url, portal_session(portal.url), built_assets(), {
                "contextrt": {"study_uid": portal.info["study_uid"], "series_uid": portal.info["series_uid"]},
                "orthanc": {"study_uid": study, "series_uid": series},
            })
            port = free_port()
            server = serve(proxy, port)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
                for run in range(args.runs):
                    for name in ("contextrt", "orthanc") if run % 2 == 0 else ("orthanc", "contextrt"):
                        figures = measure(browser, f"http://127.0.0.1:{port}/bench/{name}")
                        results[name].append(figures)
                        print(f"run {run + 1} {name:9s} first image {figures['first_image_ms']:7.0f} ms   "
                              f"all {figures['slices']} slices {figures['all_loaded_ms']:7.0f} ms   "
                              f"scroll {figures['scroll_slices_per_s']:6.1f} slices/s", flush=True)
                browser.close()
            server.should_exit = True
        finally:
            orthanc.stop()
    summary = {name: summarise(runs) for name, runs in results.items()}
    print("\nmedian of", args.runs, "runs")
    print(f"{'server':10s} {'first image':>12s} {'full series':>12s} {'scroll':>14s}")
    for name, s in summary.items():
        print(f"{name:10s} {s['first_image_ms']:9.0f} ms {s['all_loaded_ms']:9.0f} ms {s['scroll_slices_per_s']:8.1f} sl/s")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
