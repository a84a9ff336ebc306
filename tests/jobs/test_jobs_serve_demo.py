"""`manage.py serve_demo`: the real server process (uvicorn + in-process worker thread + in-memory layer)
runs a job end to end and streams it to a websocket client; it prints the demo logins."""
from __future__ import annotations

import pytest

from tests.jobs.conftest import build_tiny_checkpoint
from tests.jobs.live import PY, LivePortal, WsRecorder, prepare_template

pytestmark = pytest.mark.slow


def test_serve_demo_runs_jobs_in_process(tmp_path, realdata_dir):
    template = tmp_path / "template"
    template.mkdir()
    prepare_template(template, realdata_dir)
    build_tiny_checkpoint(template / "checkpoints", name="tiny-breast.pt")
    portal = LivePortal(template)  # no REDIS_URL, no BROKER_URL: the embedded default
    portal.start(command=[PY, "manage.py", "serve_demo", "--host", "127.0.0.1", "--port", "{port}"])
    try:
        live = WsRecorder(portal, f"/ws/cases/{portal.info['cases'][0]}/")
        live.wait_for(lambda m: m["type"] == "snapshot", 30)
        job = portal.api("POST", "/api/jobs/", json={"case": portal.info["cases"][0]}).json()
        final = live.wait_for(lambda m: m["job"]["job"] == job["job"] and m["job"]["state"] in
                              ("succeeded", "failed"), timeout=240)
        assert final["type"] == "result" and final["job"]["contour"]["format"] == "contextrt-contour", final
        assert any(m["type"] == "progress" for m in live.messages)
        live.close()
        log = (portal.workdir / "portal.log").read_text()
        assert "Demo logins" in log and "in-process worker started" in log
        assert "warming up in the background: tiny-breast.pt" in log
    except BaseException:
        print(portal.logs())
        raise
    finally:
        portal.stop()
