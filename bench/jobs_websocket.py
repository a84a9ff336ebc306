"""Benchmark: latency from a worker's progress post to a websocket client (median, p95), and N concurrent
websocket clients all receiving every event. Loopback only; a live portal on a temp DB (tests.jobs.live).

    .venv/bin/python bench/jobs_websocket.py --layer redis --events 200 --clients 50
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.jobs.conftest import build_tiny_checkpoint  # noqa: E402
from tests.jobs.live import LivePortal, WsRecorder, prepare_template  # noqa: E402

REDIS = "redis://127.0.0.1:6379/0"


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def running_job(portal: LivePortal) -> int:
    job = portal.api("POST", "/api/jobs/", json={"case": portal.info["cases"][0]}).json()["job"]
    claim = portal.api("POST", f"/api/worker/jobs/{job}/claim/", portal.info["worker_token"], json={"worker": "bench"})
    assert claim.json()["action"] == "run", claim.text
    return job


def post_progress(portal, session, job, percent, message):
    response = session.post(f"{portal.url}/api/worker/jobs/{job}/progress/",
                            json={"worker": "bench", "percent": percent, "message": message}, timeout=30)
    response.raise_for_status()


def latency(portal: LivePortal, events: int) -> dict:
    import requests

    job = running_job(portal)
    client = WsRecorder(portal, f"/ws/jobs/{job}/")
    client.wait_for(lambda m: m["type"] == "snapshot", 30)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {portal.info['worker_token']}"
    samples = []
    for k in range(events):
        sent = time.perf_counter()
        post_progress(portal, session, job, k % 100, f"bench {k}")
        client.wait_for(lambda m, k=k: m["type"] == "progress" and m["job"]["message"] == f"bench {k}", 30)
        index = next(i for i, m in enumerate(client.messages) if m.get("job", {}).get("message") == f"bench {k}")
        samples.append((client.received_at[index] - sent) * 1000)
    client.close()
    return {"events": events, "median_ms": round(statistics.median(samples), 2),
            "p95_ms": round(percentile(samples, 95), 2), "max_ms": round(max(samples), 2)}


def fan_out(portal: LivePortal, clients: int, events: int) -> dict:
    import requests

    job = running_job(portal)
    recorders = [WsRecorder(portal, f"/ws/jobs/{job}/") for _ in range(clients)]
    for r in recorders:
        r.wait_for(lambda m: m["type"] == "snapshot", 60)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {portal.info['worker_token']}"
    started = time.perf_counter()
    for k in range(events):
        post_progress(portal, session, job, k % 100, f"fan {k}")
    last = f"fan {events - 1}"
    errors = 0
    for r in recorders:
        try:
            r.wait_for(lambda m: m.get("job", {}).get("message") == last, 60)
        except TimeoutError:
            errors += 1
    elapsed = time.perf_counter() - started
    complete = sum(1 for r in recorders
                   if sum(1 for m in r.messages if m["type"] == "progress") == events and not r.closed)
    for r in recorders:
        r.close()
    return {"clients": clients, "events_each": events, "clients_with_all_events": complete, "errors": errors,
            "seconds_to_deliver_all": round(elapsed, 2)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layer", choices=["memory", "redis"], default="redis")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--fan-events", type=int, default=20)
    parser.add_argument("--realdata", default=str(Path(__file__).resolve().parents[2] / "shared" / "realdata"))
    args = parser.parse_args()
    template = Path(tempfile.mkdtemp(prefix="bench-jobs-tpl-"))
    prepare_template(template, Path(args.realdata))
    build_tiny_checkpoint(template / "checkpoints", name="tiny-breast.pt")
    # A Redis broker (its own namespace) holds the never-consumed job messages: no worker runs here.
    portal = LivePortal(template, redis_url=REDIS if args.layer == "redis" else "", broker_url=REDIS).start()
    try:
        result = {"layer": args.layer, "latency": latency(portal, args.events),
                  "fan_out": fan_out(portal, args.clients, args.fan_events)}
    finally:
        from dramatiq.brokers.redis import RedisBroker

        RedisBroker(url=REDIS, namespace=portal.env["CONTEXTRT_BROKER_NAMESPACE"]).flush_all()
        portal.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
