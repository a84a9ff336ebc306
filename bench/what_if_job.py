"""Benchmark: how long a what-if job takes next to the full inference job of the same CT, end to end
(portal + Redis broker + a separate worker process that reads the CT over the portal's DICOMweb), with the
worker's CT cache (``gpu_worker.ct_cache``) against the named peer: the same worker with the cache off
(``CONTEXTRT_CT_CACHE_SIZE=0``, how every job ran before), which downloads and decodes the series again for
every what-if. Both keep the model's image-feature cache. Loopback only.

The CT is a synthetic clinical-size breast CT (default 100 x 512 x 512, written as DICOM and ingested), the
model the shipped ``breast_multimodal.pt``. Per configuration: one full run, then ``--what-ifs`` what-ifs
(laterality, N, surgery changes), after a warm-up job on a second CT of the same size. Times are the job's own
``started`` -> ``finished`` (claimed by the worker to result stored, as the portal records them) and the
client's submit -> "succeeded" seen (polling 50 ms).

    .venv/bin/python bench/what_if_job.py [--shape 100x512x512] [--what-ifs 4] [--json var/what_if_job.json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.jobs.live import PY, LivePortal, base_env  # noqa: E402

REDIS = "redis://127.0.0.1:6379/0"
SEED = r"""
import json, sys
from rest_framework.authtoken.models import Token
from portal.accounts.models import Role
from portal.accounts.services import create_account
from portal.cases.loading import load_cohort
from portal.cases.models import Case
load_cohort(sys.argv[1])
cases = list(Case.objects.order_by("pk"))
coord = create_account("coord", "coord-password-1", Role.COORDINATOR, sorted({c.site.code for c in cases}))
worker = create_account("gpu-box", "worker-password-1", Role.WORKER)
print(json.dumps({"cases": [c.pk for c in cases], "context": cases[0].current_context.data,
                  "coord_token": Token.objects.create(user=coord).key,
                  "worker_token": Token.objects.create(user=worker).key}))
"""


def prepare(template: Path, shape: str) -> dict:
    env = base_env(template)
    cohort = template / "cohort"
    subprocess.run([PY, "-m", "fixtures", "--out", str(cohort), "--sites", "internal", "--cases-per-site", "2",
                    "--cancer", "breast", "--shape", shape, "--quiet"], cwd=ROOT, env=env, check=True)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    out = subprocess.run([PY, "-c", "import django,sys; django.setup(); sys.argv=sys.argv[1:]; exec(sys.argv[0])",
                          SEED, str(cohort)], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    shutil.rmtree(cohort)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    (template / "seed.json").write_text(json.dumps(info))
    (template / "checkpoints").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "segmentation" / "checkpoints" / "breast_multimodal.pt", template / "checkpoints")
    return info


def what_if_contexts(context: dict, count: int) -> list[dict]:
    other = "right" if context["laterality"] == "left" else "left"
    surgery = "mastectomy" if context["surgery"] == "bcs" else "bcs"
    nodal = context.get("cN") not in (None, "N0")
    changes = [{"laterality": other}, {"cN": "N0" if nodal else "N1", "pN": "N0" if nodal else "N1a"},
               {"surgery": surgery}, {"laterality": other, "surgery": surgery}]
    return [dict(context, **changes[k % len(changes)], age=int(context.get("age", 60)) + k // len(changes))
            for k in range(count)]


def run_job(portal: LivePortal, payload: dict, case: int, timeout: float = 600) -> dict:
    submitted = time.perf_counter()
    job = portal.api("POST", "/api/jobs/", json={"case": case, "checkpoint": "breast_multimodal.pt", **payload})
    job.raise_for_status()
    job_id = job.json()["job"]
    state = portal.wait_final(job_id, timeout, poll=0.05)
    seen = time.perf_counter() - submitted
    if state["state"] != "succeeded":
        raise RuntimeError(f"job {job_id} {state['state']}: {state.get('error')}\n{portal.logs()}")
    worker_s = (dt.datetime.fromisoformat(state["finished"]) - dt.datetime.fromisoformat(state["started"])).total_seconds()
    info = (state.get("results") or {}).get("info") or {}
    return {"job": job_id, "kind": payload["kind"], "worker_s": round(worker_s, 3), "client_s": round(seen, 3),
            "ct_reused": info.get("ct_reused"), "model_s": round(float((info.get("timings") or {}).get("total", 0)), 3),
            "model_timings": info.get("timings")}


def run(template: Path, ct_cache: bool, what_ifs: int) -> dict:
    env = {} if ct_cache else {"CONTEXTRT_CT_CACHE_SIZE": "0"}
    portal = LivePortal(template, redis_url=REDIS, broker_url=REDIS, extra_env=env).start()
    try:
        portal.start_worker(name="cache-on" if ct_cache else "cache-off")
        time.sleep(3)  # the worker process boots before the clock starts
        # Warm-up on the other CT: the checkpoint download, imports and model load are not what is compared.
        measured, other = portal.info["cases"][:2]
        run_job(portal, {"kind": "inference"}, other)
        full = run_job(portal, {"kind": "inference"}, measured)
        jobs = [run_job(portal, {"kind": "what_if", "params": {"context": c}}, measured)
                for c in what_if_contexts(portal.info["context"], what_ifs)]
        mean = {k: sum(j[k] for j in jobs) / len(jobs) for k in ("worker_s", "client_s", "model_s")}
        return {"ct_cache": ct_cache, "full": full, "what_ifs": jobs, "what_if_mean": mean,
                "what_if_over_full_worker": round(mean["worker_s"] / full["worker_s"], 3),
                "what_if_over_full_client": round(mean["client_s"] / full["client_s"], 3)}
    finally:
        portal.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="100x512x512", help="synthetic CT size, SxRxC (python -m fixtures --shape)")
    parser.add_argument("--what-ifs", type=int, default=6)
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args()
    template = Path(tempfile.mkdtemp(prefix="bench-what-if-tpl-"))
    try:
        prepare(template, args.shape)
        peer = run(template, False, args.what_ifs)
        ours = run(template, True, args.what_ifs)
    finally:
        shutil.rmtree(template, ignore_errors=True)
    result = {"shape": args.shape, "peer_ct_cache_off": peer, "ct_cache_on": ours,
              "what_if_speedup_worker": round(peer["what_if_mean"]["worker_s"] / ours["what_if_mean"]["worker_s"], 2),
              "what_if_speedup_client": round(peer["what_if_mean"]["client_s"] / ours["what_if_mean"]["client_s"], 2)}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"CT {args.shape}, breast_multimodal.pt, 1 worker process, Redis broker, {args.what_ifs} what-ifs each")
    print(f"{'':28}{'full job':>10}{'what-if job':>13}{'what-if/full':>14}   (worker started->finished, s)")
    for name, r in (("peer: CT cache off", peer), ("ContextRT: CT cache on", ours)):
        print(f"{name:28}{r['full']['worker_s']:>10.2f}{r['what_if_mean']['worker_s']:>13.2f}"
              f"{r['what_if_over_full_worker']:>14.3f}   client-seen {r['full']['client_s']:.2f} / "
              f"{r['what_if_mean']['client_s']:.2f} s, model {r['what_if_mean']['model_s']:.2f} s")
    print(f"what-if job, peer / ContextRT: {result['what_if_speedup_worker']:.2f}x (worker), "
          f"{result['what_if_speedup_client']:.2f}x (client-seen)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
