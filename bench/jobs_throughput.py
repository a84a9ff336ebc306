"""Benchmark: wall time of a batch of N inference jobs (tiny real model, real CT) with 1 and with 2 worker
processes on the Redis broker; the ratio shows how dispatch scales. Loopback only.

    .venv/bin/python bench/jobs_throughput.py --jobs 6
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.jobs.conftest import build_tiny_checkpoint  # noqa: E402
from tests.jobs.live import LivePortal, prepare_template  # noqa: E402

REDIS = "redis://127.0.0.1:6379/0"


def run(template: Path, processes: int, timeout: float = 1800) -> dict:
    # No image-feature reuse: the N cases share one CT, and each job should do the full work.
    portal = LivePortal(template, redis_url=REDIS, broker_url=REDIS,
                        extra_env={"CONTEXTRT_FEATURE_CACHE_SIZE": "0"}).start()
    try:
        portal.start_worker(processes=processes, name=f"w{processes}")
        time.sleep(3)  # let the worker processes boot before the clock starts
        started = time.perf_counter()
        batch = portal.api("POST", "/api/jobs/batch/", json={"cases": portal.info["cases"], "study": "bench"}).json()
        state = portal.wait_final(batch["job"], timeout)
        elapsed = time.perf_counter() - started
        jobs = portal.api("GET", "/api/jobs/", params={"study": "bench", "kind": "inference"}).json()["results"]
        workers = {portal.api("GET", f"/api/jobs/{j['job']}/").json()["worker"].split(":")[1] for j in jobs}
        return {"processes": processes, "jobs": len(jobs), "batch_state": state["state"],
                "seconds": round(elapsed, 2), "jobs_per_minute": round(60 * len(jobs) / elapsed, 2),
                "distinct_worker_pids": len(workers)}
    finally:
        from dramatiq.brokers.redis import RedisBroker

        RedisBroker(url=REDIS, namespace=portal.env["CONTEXTRT_BROKER_NAMESPACE"]).flush_all()
        portal.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--realdata", default=str(Path(__file__).resolve().parents[2] / "shared" / "realdata"))
    args = parser.parse_args()
    template = Path(tempfile.mkdtemp(prefix="bench-jobs-tpl-"))
    prepare_template(template, Path(args.realdata), n_cases=args.jobs)
    build_tiny_checkpoint(template / "checkpoints", name="tiny-breast.pt")
    one = run(template, 1)
    two = run(template, 2)
    print(json.dumps({"one": one, "two": two, "speedup": round(one["seconds"] / two["seconds"], 2)}))


if __name__ == "__main__":
    main()
