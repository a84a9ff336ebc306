"""A real portal for browser tests: temp var dir, migrated SQLite DB, the IBSI STS sample ingested as a
case with its ground truth, a coordinator account, collected static files, served by uvicorn on 127.0.0.1.

``python -m tests.browser.live_portal seed`` runs inside the child environment (own settings, own DB).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
USERNAME = "coordinator1"
PASSWORD = "browser-test-pass-8472"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(var_dir: Path, port: int) -> dict:
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "CONTEXTRT_VAR_DIR": str(var_dir),
        "CONTEXTRT_SQLITE_PATH": str(var_dir / "db.sqlite3"),
        "CONTEXTRT_STORAGE": str(var_dir / "storage"),
        "CONTEXTRT_UPLOAD_TMP": str(var_dir / "upload-tmp"),
        "DJANGO_SECRET_KEY": "browser-tests-only-secret-key-0123456789abcdef",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{port}",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    })
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.pop("BROKER_URL", None)
    return env


def seed(realdata: Path, ct_dir: Path | None = None) -> dict:
    """Runs in the child environment: migrate, account, ingest the real CT + RTSTRUCT (or the DICOM files
    under ``ct_dir``), one case."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)
    from portal.accounts.models import Site
    from portal.accounts.services import create_account
    from portal.cases.models import Case, ClinicalContextVersion
    from portal.imaging.ingest import ingest_files
    from portal.imaging.models import ROI, Series
    import clinical

    site, _ = Site.objects.get_or_create(code="internal", defaults={"name": "Internal"})
    create_account(USERNAME, PASSWORD, "coordinator", ["internal"])
    patient_dir = Path(ct_dir) if ct_dir else realdata / "ibsi-sts" / "dicom" / "STS_002" / "CT"
    files = sorted(p for p in patient_dir.rglob("*.dcm"))
    report = ingest_files(files, site=site, allow_partial=True, skip_unsupported=True)
    ct = Series.objects.get(series_uid__in=report.series, modality="CT")
    roi = ROI.objects.filter(pk__in=report.rois, empty=False).first()
    case = Case.objects.create(label="STS-002", site=site, cancer_type="breast", ct_series=ct, ground_truth=roi,
                               teaching=True)
    data = clinical.validate_context("breast", {"laterality": "left", "surgery": "bcs", "cT": "T2", "cN": "N0"})
    ClinicalContextVersion.objects.create(case=case, version=1, data=data,
                                          prompt_text=clinical.render_prompt("breast", data))
    return {"case": case.pk, "slices": ct.num_slices, "roi": roi.pk if roi else None,
            "study_uid": ct.study.study_uid, "series_uid": ct.series_uid}


class LivePortal:
    """Start with ``with LivePortal(tmp, realdata) as portal:``; ``portal.url``, ``portal.info``."""

    def __init__(self, var_dir: Path, realdata: Path, ct_dir: Path | None = None):
        self.ct_dir = ct_dir
        self.var_dir = Path(var_dir)
        self.realdata = Path(realdata)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.info = {}

    def __enter__(self):
        env = child_env(self.var_dir, self.port)
        extra = [str(self.ct_dir)] if self.ct_dir else []
        done = subprocess.run([str(PYTHON), "-m", "tests.browser.live_portal", "seed", str(self.realdata), *extra],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"seeding the live portal failed:\n{done.stderr[-4000:]}")
        self.info = json.loads(done.stdout.strip().splitlines()[-1])
        self.log = open(self.var_dir / "server.log", "w")
        self.process = subprocess.Popen(
            [str(PYTHON), "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning"], cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/accounts/login/", timeout=2)
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.3)
        self.__exit__(None, None, None)
        raise RuntimeError(f"live portal did not start; see {self.var_dir / 'server.log'}")

    def __exit__(self, *exc):
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if getattr(self, "log", None):
            self.log.close()


if __name__ == "__main__":
    if len(sys.argv) in (3, 4) and sys.argv[1] == "seed":
        print(json.dumps(seed(Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) == 4 else None)))
    else:
        sys.exit("usage: python -m tests.browser.live_portal seed REALDATA_DIR [CT_DIR]")
