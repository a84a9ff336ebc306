"""A live portal (uvicorn on a free loopback port, temp SQLite DB and store) and separate worker processes,
for the production-path tests and the benchmarks. Everything runs as subprocesses of the caller."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable

SEED = r"""
import json, sys
from pathlib import Path
from rest_framework.authtoken.models import Token
from portal.accounts.models import Role
from portal.accounts.services import create_account, get_or_create_site
from tests.jobs.conftest import create_case, example_context_version
site = get_or_create_site("int", "Internal")
coord = create_account("coord", "coord-password-1", Role.COORDINATOR, ["int"])
worker = create_account("gpu-box", "worker-password-1", Role.WORKER)
from portal.cases.models import Case
first = create_case(Path(sys.argv[1]), site, label="STS-019-0")
cases = [first.pk]
for k in range(1, int(sys.argv[2])):  # more cases on the same CT (benchmarks need N distinct jobs)
    case = Case.objects.create(label=f"STS-019-{k}", site=site, cancer_type=first.cancer_type,
                               ct_series=first.ct_series, ground_truth=first.ground_truth)
    example_context_version(case)
    cases.append(case.pk)
print(json.dumps({"cases": cases, "coord_token": Token.objects.create(user=coord).key,
                  "worker_token": Token.objects.create(user=worker).key}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(workdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL")}
    env.update({
        "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "portal.settings", "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1", "CONTEXTRT_VAR_DIR": str(workdir / "var"),
        "CONTEXTRT_SQLITE_PATH": str(workdir / "db.sqlite3"), "CONTEXTRT_STORAGE": str(workdir / "store"),
        "CONTEXTRT_UPLOAD_TMP": str(workdir / "upload-tmp"), "CONTEXTRT_CHECKPOINT_DIR": str(workdir / "checkpoints"),
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    })
    return env


def prepare_template(workdir: Path, realdata: Path, n_cases: int = 1) -> dict:
    """Migrate a fresh SQLite DB and seed users, a real CT case and tokens; returns the seed info."""
    env = base_env(workdir)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    out = subprocess.run([PY, "-c", "import django,sys; django.setup(); sys.argv=sys.argv[1:]; exec(sys.argv[0])",
                          SEED, str(realdata), str(n_cases)],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    (workdir / "seed.json").write_text(json.dumps(info))
    return info


class LivePortal:
    """uvicorn serving portal.asgi with the given services, on a copy of a prepared template directory."""

    def __init__(self, template: Path, *, redis_url: str = "", broker_url: str = "", extra_env: dict | None = None):
        self.workdir = Path(tempfile.mkdtemp(prefix="contextrt-live-"))
        for item in template.iterdir():
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, self.workdir / item.name)
        self.info = json.loads((self.workdir / "seed.json").read_text())
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = base_env(self.workdir)
        self.env.update({"REDIS_URL": redis_url, "BROKER_URL": broker_url, "CONTEXTRT_PORTAL_URL": self.url,
                         "CONTEXTRT_BROKER_NAMESPACE": f"contextrt-test-{uuid.uuid4().hex[:8]}",
                         "CONTEXTRT_BROKER_HEARTBEAT_MS": "3000", "CONTEXTRT_BROKER_MAINTENANCE_CHANCE": "100000",
                         "CONTEXTRT_JOB_MIN_BACKOFF_MS": "500", **(extra_env or {})})
        self.env = {k: v for k, v in self.env.items() if v != ""}
        self.process = None
        self.workers: list[subprocess.Popen] = []

    def start(self, timeout: float = 120.0, command: list[str] | None = None) -> "LivePortal":
        """Start uvicorn (default) or ``command`` (``{port}`` is filled in) and wait until it answers."""
        log = open(self.workdir / "portal.log", "wb")
        command = [part.format(port=self.port) for part in command] if command else [
            PY, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
            "--lifespan", "off", "--ws", "websockets", "--log-level", "warning"]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("portal exited: " + (self.workdir / "portal.log").read_text()[-3000:])
            try:
                if requests.get(self.url + "/api/auth/me/", timeout=2).status_code in (200, 401, 403):
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError("portal did not start: " + (self.workdir / "portal.log").read_text()[-3000:])

    def start_worker(self, *, processes: int = 1, queues=("gpu",), name: str | None = None) -> subprocess.Popen:
        """A separate worker: no database settings, its own empty checkpoint dir (downloads over REST)."""
        name = name or f"worker{len(self.workers)}"
        env = {k: v for k, v in self.env.items()
               if not k.startswith(("CONTEXTRT_SQLITE", "CONTEXTRT_STORAGE", "DJANGO_", "REDIS_URL"))}
        env.update({"CONTEXTRT_WORKER_TOKEN": self.info["worker_token"],
                    "CONTEXTRT_CHECKPOINT_DIR": str(self.workdir / name / "own-checkpoints"),
                    "CONTEXTRT_WORKER_CACHE": str(self.workdir / name / "cache")})
        log = open(self.workdir / f"{name}.log", "wb")
        process = subprocess.Popen([PY, "-m", "gpu_worker", "--queues", *queues, "--processes", str(processes),
                                    "--threads", "1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.workers.append(process)
        return process

    @staticmethod
    def kill(process: subprocess.Popen, sig=signal.SIGKILL) -> None:
        """Kill a worker and the processes it forked (its own session)."""
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)

    def api(self, method: str, path: str, token: str | None = None, **kwargs):
        token = token or self.info["coord_token"]
        response = requests.request(method, self.url + path, headers={"Authorization": f"Token {token}"},
                                    timeout=30, **kwargs)
        return response

    def wait_final(self, job_id: int, timeout: float = 600.0, poll: float = 0.25) -> dict:
        """Poll ``/api/jobs/<id>/`` until the job is succeeded, failed or cancelled (or ``timeout`` passes)."""
        deadline = time.perf_counter() + timeout
        while True:
            state = self.api("GET", f"/api/jobs/{job_id}/").json()
            if state["state"] in ("succeeded", "failed", "cancelled") or time.perf_counter() > deadline:
                return state
            time.sleep(poll)

    def stop(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                self.kill(process, signal.SIGTERM)
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.env.get("BROKER_URL", "").startswith("redis://"):
            import redis

            client = redis.Redis.from_url(self.env["BROKER_URL"])
            for key in client.scan_iter(f"{self.env['CONTEXTRT_BROKER_NAMESPACE']}:*"):
                client.delete(key)
            client.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.workdir.glob("*.log"))


class WsRecorder(threading.Thread):
    """Collects every JSON message of one websocket in a background thread."""

    def __init__(self, portal: LivePortal, path: str, token: str | None = None):
        super().__init__(daemon=True)
        from websockets.sync.client import connect

        uri = f"ws://127.0.0.1:{portal.port}{path}?token={token or portal.info['coord_token']}"
        self.conn = connect(uri, origin=f"http://127.0.0.1:{portal.port}", open_timeout=30)
        self.messages: list[dict] = []
        self.received_at: list[float] = []
        self.closed = False
        self.start()

    def run(self):
        try:
            for raw in self.conn:
                self.received_at.append(time.perf_counter())
                self.messages.append(json.loads(raw))
        except Exception:  # noqa: BLE001 - the connection closing ends the recording
            pass
        self.closed = True

    def wait_for(self, predicate, timeout: float = 180.0) -> dict:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for message in self.messages[seen:]:
                seen += 1
                try:
                    matched = predicate(message)
                except (KeyError, TypeError):  # e.g. a snapshot has no "job" key
                    matched = False
                if matched:
                    return message
            time.sleep(0.05)
        raise TimeoutError(f"no matching websocket message in {timeout} s; got {self.messages[-5:]}")

    def close(self):
        self.conn.close()
