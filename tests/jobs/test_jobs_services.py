"""Production path against the machine's real services: channels-redis + Dramatiq on Redis, and Dramatiq on
RabbitMQ; a live portal (uvicorn) and SEPARATE worker processes that share only the network with it.

Each test runs a job end to end (CT over DICOMweb, checkpoint downloaded over REST, result posted back,
contour on the websocket), then the fault scenario: SIGKILL the worker mid-job, start a new one, and the
job completes exactly once with the websocket client receiving the final result.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from tests.jobs.conftest import build_tiny_checkpoint
from tests.jobs.live import LivePortal, WsRecorder, prepare_template

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _realdata_dir():
    import os
    from pathlib import Path

    for candidate in (os.environ.get("CONTEXTRT_REALDATA", ""), Path(__file__).resolve().parents[3] / "shared" / "realdata"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    message = "shared/realdata not found beside the checkout"
    pytest.fail(message) if os.environ.get("CI", "").lower() == "true" else pytest.skip(message)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    realdata_dir = _realdata_dir()
    directory = tmp_path_factory.mktemp("live-template")
    prepare_template(directory, realdata_dir)
    build_tiny_checkpoint(directory / "checkpoints", name="tiny-breast.pt")
    # Finer working grid: a job of several seconds, so the worker can be killed in the middle of it.
    build_tiny_checkpoint(directory / "checkpoints", name="tiny-slow.pt", spacing=(3.0, 1.5, 1.5))
    return directory


def flush_rabbitmq(url: str) -> None:
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=url)
    for queue in ("gpu", "cpu"):
        broker.declare_queue(queue)
    broker.flush_all()
    broker.close()


def run_scenario(portal: LivePortal) -> None:
    from dicom_rt.payload import decode_mask

    case = portal.info["cases"][0]
    worker = portal.start_worker(name="first")
    live = WsRecorder(portal, f"/ws/cases/{case}/")
    live.wait_for(lambda m: m["type"] == "snapshot", timeout=30)

    # 1. A job end to end through the broker and a separate worker process.
    job = portal.api("POST", "/api/jobs/", json={"case": case, "checkpoint": "tiny-breast.pt"}).json()
    result = live.wait_for(lambda m: m["type"] == "result" and m["job"]["job"] == job["job"]
                           or m["job"].get("state") == "failed")
    assert result["type"] == "result", (result, portal.logs())
    mask, grid = decode_mask(result["job"]["contour"])
    assert mask.shape == (47, 134, 136)
    detail = portal.api("GET", f"/api/jobs/{job['job']}/").json()
    assert detail["state"] == "succeeded" and detail["attempts"] == 1 and detail["worker"].startswith("gpu-box/")
    assert "dice" in detail["results"]["metrics"]
    progress = [m["job"]["progress"] for m in live.messages if m["type"] == "progress" and m["job"]["job"] == job["job"]]
    assert progress and max(progress) < 100

    # 2. Fault: SIGKILL the worker in the middle of a job; a new worker completes it exactly once.
    slow = portal.api("POST", "/api/jobs/", json={"case": case, "checkpoint": "tiny-slow.pt"}).json()
    live.wait_for(lambda m: m["type"] == "progress" and m["job"]["job"] == slow["job"] and m["job"]["progress"] >= 12)
    LivePortal.kill(worker)
    assert portal.api("GET", f"/api/jobs/{slow['job']}/").json()["state"] == "running"
    portal.start_worker(name="second")
    final = live.wait_for(lambda m: m["job"]["job"] == slow["job"] and m["type"] in ("result", "state")
                          and m["job"]["state"] in ("succeeded", "failed", "cancelled"), timeout=300)
    assert final["type"] == "result" and final["job"]["state"] == "succeeded", (final, portal.logs())
    time.sleep(2)  # let any duplicate delivery show itself
    detail = portal.api("GET", f"/api/jobs/{slow['job']}/").json()
    assert detail["state"] == "succeeded" and detail["attempts"] == 2, detail
    results = [m for m in live.messages if m["type"] == "result" and m["job"]["job"] == slow["job"]]
    assert len(results) == 1
    assert np.array_equal(decode_mask(results[0]["job"]["contour"])[0],
                          decode_mask(portal.api("GET", f"/api/jobs/{slow['job']}/contour/").json())[0])
    # A reconnecting client gets the finished result first.
    late = WsRecorder(portal, f"/ws/jobs/{slow['job']}/")
    snap = late.wait_for(lambda m: m["type"] == "snapshot", timeout=30)
    assert snap["jobs"][0]["state"] == "succeeded" and snap["jobs"][0]["contour"]["format"] == "contextrt-contour"
    late.close()
    live.close()


def test_redis_layer_and_redis_broker_with_worker_kill(template, redis_service):
    portal = LivePortal(template, redis_url=redis_service, broker_url=redis_service).start()
    try:
        run_scenario(portal)
    except BaseException:
        print(portal.logs())
        raise
    finally:
        portal.stop()


def test_rabbitmq_broker_with_worker_kill(template, rabbitmq_service, redis_service):
    flush_rabbitmq(rabbitmq_service)
    portal = LivePortal(template, redis_url=redis_service, broker_url=rabbitmq_service).start()
    try:
        run_scenario(portal)
    except BaseException:
        print(portal.logs())
        raise
    finally:
        portal.stop()
