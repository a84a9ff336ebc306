"""Benchmark: ContextRT's DICOMweb server against Orthanc (1.10 + DICOMweb plugin) on the same synthetic CT series.

    .venv/bin/python bench/dicomweb_vs_orthanc.py [--slices 120] [--size 512] [--seconds 5] [--json out.json]

Needs Debian's ``orthanc orthanc-dicomweb wrk gcc iproute2 curl``. Starts Orthanc
with ``<repo>/../shared/peers/orthanc/start_orthanc.sh`` and ContextRT under
uvicorn (``portal.asgi:application``), both on 127.0.0.1 only, each with scratch
storage in a temporary folder; loads the same generated series into both;
runs the same requests against both (series retrieve with the Python client and
with curl, series metadata, QIDO,
frames/s at concurrency 1 and 8 with wrk and with a Python client), prints
per-endpoint ratios, and stops both servers. ContextRT requests carry a worker
token, so the figures include authentication and scoping.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ORTHANC_PORT = 8042
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"'
DICOM_ACCEPT = 'multipart/related; type="application/dicom"'


def write_series(folder: Path, slices: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(7)
    paths = []
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
        ds.PatientName, ds.PatientID, ds.StudyDate, ds.StudyTime = "Bench^Patient", "BENCH-1", "20240101", "120000"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [-250.0, -250.0, k * 2.5]
        ds.PixelSpacing, ds.SliceThickness = [0.98, 0.98], 2.5
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = rng.integers(0, 2000, (size, size), dtype=np.int16).tobytes()
        path = folder / f"ct{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def wait_http(url: str, headers=None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- servers


class Orthanc:
    def __init__(self, scratch: Path):
        self.dir = scratch / "orthanc"
        self.base = f"http://127.0.0.1:{ORTHANC_PORT}/dicom-web"
        self.headers = {}

    def start(self):
        script = SHARED / "peers" / "orthanc" / "start_orthanc.sh"
        subprocess.run(["bash", str(script), str(self.dir)], check=True, stdout=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{ORTHANC_PORT}/system")

    def load(self, paths):
        with requests.Session() as s:
            for p in paths:
                s.post(f"http://127.0.0.1:{ORTHANC_PORT}/instances", data=p.read_bytes()).raise_for_status()

    def stop(self):
        pid_file = self.dir / "orthanc.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            # Wait for it to exit: a run started right after would otherwise find port 8042 still taken.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.2)


class ContextRT:
    def __init__(self, scratch: Path):
        self.dir = scratch / "contextrt"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/dicomweb"
        self.env = dict(os.environ, CONTEXTRT_VAR_DIR=str(self.dir), CONTEXTRT_STORAGE=str(self.dir / "storage"),
                        CONTEXTRT_SQLITE_PATH=str(self.dir / "db.sqlite3"), DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
                        PYTHONPATH=str(REPO))
        for key in ("DATABASE_URL", "REDIS_URL", "BROKER_URL"):
            self.env.pop(key, None)
        self.proc = None
        self.headers = {}

    def load(self, paths):
        self.dir.mkdir(parents=True, exist_ok=True)
        python = sys.executable
        subprocess.run([python, str(REPO / "manage.py"), "migrate", "-v", "0"], check=True, env=self.env, cwd=REPO)
        listing = self.dir / "files.txt"
        listing.write_text("\n".join(str(p) for p in paths))
        code = (
            "import django, os; django.setup()\n"
            "from rest_framework.authtoken.models import Token\n"
            "from portal.accounts.models import Role\n"
            "from portal.accounts.services import create_account, get_or_create_site\n"
            "from portal.imaging.ingest import ingest_files\n"
            "site = get_or_create_site('bench', 'Benchmark site')\n"
            "user = create_account('bench-worker', os.urandom(16).hex(), Role.WORKER)\n"
            "ingest_files(open(os.environ['BENCH_FILES']).read().split('\\n'), site=site)\n"
            "print(Token.objects.create(user=user).key)\n"
        )
        out = subprocess.run([python, "-c", code], check=True, env=dict(self.env, BENCH_FILES=str(listing),
                             DJANGO_SETTINGS_MODULE="portal.settings"), cwd=REPO, capture_output=True, text=True)
        self.headers = {"Authorization": f"Token {out.stdout.strip().splitlines()[-1]}"}

    def start(self):
        cmd = [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
               "--log-level", "warning", "--no-access-log"]
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=REPO)
        wait_http(f"{self.base}/studies", headers=self.headers)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ---------------------------------------------------------------- measurements


def locate(server) -> dict:
    """Study/series/instance UIDs as this server names them (ContextRT de-identifies on ingest)."""
    h = dict(server.headers, Accept="application/dicom+json")
    study = requests.get(f"{server.base}/studies", headers=h).json()[0]["0020000D"]["Value"][0]
    series = requests.get(f"{server.base}/studies/{study}/series", headers=h).json()[0]["0020000E"]["Value"][0]
    instances = requests.get(f"{server.base}/studies/{study}/series/{series}/instances", headers=h).json()
    sops = [i["00080018"]["Value"][0] for i in sorted(instances, key=lambda i: i["00200013"]["Value"][0])]
    pid = requests.get(f"{server.base}/studies", headers=h).json()[0]["00100020"]["Value"][0]
    return {"study": study, "series": series, "sops": sops, "patient_id": pid}


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def frame_paths(server, ids) -> list[str]:
    prefix = server.base.split("://", 1)[1].split("/", 1)[1]
    return [f"/{prefix}/studies/{ids['study']}/series/{ids['series']}/instances/{sop}/frames/1" for sop in ids["sops"]]


def wrk_rate(server, paths, connections: int, seconds: int, scratch: Path) -> float:
    script = scratch / "frames.lua"
    script.write_text("paths = {" + ",".join(json.dumps(p) for p in paths) + "}\n"
                      "i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n")
    host = server.base.split("/")[2]
    cmd = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds}s", "-s", str(script),
           "-H", f"Accept: {FRAME_ACCEPT}"]
    for k, v in server.headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [f"http://{host}/"], capture_output=True, text=True, check=True).stdout
    non2xx = [line for line in out.splitlines() if "Non-2xx" in line]
    if non2xx:
        raise RuntimeError(f"wrk saw errors: {non2xx[0]}")
    return float(next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[1])


def python_rate(server, paths, connections: int, seconds: float) -> float:
    host = server.base.split("/")[2]
    counts = [0] * connections
    stop = time.monotonic() + seconds

    def run(k):
        with requests.Session() as s:
            s.headers.update(server.headers)
            s.headers["Accept"] = FRAME_ACCEPT
            i = k
            while time.monotonic() < stop:
                r = s.get(f"http://{host}{paths[i % len(paths)]}")
                if r.status_code != 200 or len(r.content) < 1000:
                    raise RuntimeError(f"frame request failed: {r.status_code}")
                counts[k] += 1
                i += connections
    threads = [threading.Thread(target=run, args=(k,)) for k in range(connections)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def curl_time(url: str, headers: dict, repeats: int = 5) -> float:
    """Median ``time_total`` of curl fetching ``url`` (a C client: the server's speed, not the Python client's)."""
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{http_code}", "--fail"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    subprocess.run(cmd + [url], capture_output=True, check=True)  # warm-up
    times = []
    for _ in range(repeats):
        out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout.split()
        if out[1] != "200":
            raise RuntimeError(f"curl got {out[1]} for {url}")
        times.append(float(out[0]))
    return statistics.median(times)


def measurements(seconds: int, scratch: Path):
    """(name, function(server, ids) -> figure) for every endpoint measured."""
    def series_url(server, ids):
        return f"{server.base}/studies/{ids['study']}/series/{ids['series']}"

    def jh(server):
        return dict(server.headers, Accept="application/dicom+json")

    counter = iter(range(1000, 10**9))  # unique limits: searches no answer cache can serve
    return [
        ("series retrieve (s)", lambda s, i: timed(
            lambda: requests.get(series_url(s, i), headers=dict(s.headers, Accept=DICOM_ACCEPT)).content, 5)),
        ("series retrieve, curl (s)", lambda s, i: curl_time(series_url(s, i), dict(s.headers, Accept=DICOM_ACCEPT))),
        ("series metadata (s)", lambda s, i: timed(lambda: requests.get(f"{series_url(s, i)}/metadata", headers=jh(s)).json(), 5)),
        ("QIDO studies by PatientID (s)", lambda s, i: timed(
            lambda: requests.get(f"{s.base}/studies", params={"PatientID": i["patient_id"]}, headers=jh(s)).json(), 10)),
        ("QIDO series in study (s)", lambda s, i: timed(
            lambda: requests.get(f"{s.base}/studies/{i['study']}/series", headers=jh(s)).json(), 10)),
        ("QIDO instances in series (s)", lambda s, i: timed(
            lambda: requests.get(f"{series_url(s, i)}/instances", headers=jh(s)).json(), 10)),
        ("QIDO studies by PatientID, cold (s)", lambda s, i: timed(
            lambda: requests.get(f"{s.base}/studies", params={"PatientID": i["patient_id"], "limit": next(counter)},
                                 headers=jh(s)).json(), 10)),
        ("QIDO series in study, cold (s)", lambda s, i: timed(
            lambda: requests.get(f"{s.base}/studies/{i['study']}/series", params={"limit": next(counter)}, headers=jh(s)).json(), 10)),
        ("QIDO instances in series, cold (s)", lambda s, i: timed(
            lambda: requests.get(f"{series_url(s, i)}/instances", params={"limit": next(counter)}, headers=jh(s)).json(), 5)),
        ("frames/s wrk c=1", lambda s, i: wrk_rate(s, frame_paths(s, i), 1, seconds, scratch)),
        ("frames/s wrk c=8", lambda s, i: wrk_rate(s, frame_paths(s, i), 8, seconds, scratch)),
        ("frames/s python c=1", lambda s, i: python_rate(s, frame_paths(s, i), 1, seconds)),
        ("frames/s python c=8", lambda s, i: python_rate(s, frame_paths(s, i), 8, seconds)),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=120)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seconds", type=int, default=5, help="duration of each frame-rate run")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    for tool in ("wrk", "curl", "cc", "ss"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y orthanc orthanc-dicomweb wrk gcc iproute2 curl", file=sys.stderr)
            return 2
    scratch = Path(tempfile.mkdtemp(prefix="dicomweb-bench-"))
    orthanc, ours = Orthanc(scratch), ContextRT(scratch)
    try:
        print(f"generating {args.slices} x {args.size}^2 CT slices ...", flush=True)
        paths = write_series(scratch / "input", args.slices, args.size)
        print("starting Orthanc and loading ...", flush=True)
        orthanc.start()
        orthanc.load(paths)
        print("ingesting into ContextRT and starting uvicorn ...", flush=True)
        ours.load(paths)
        ours.start()
        figures = {"orthanc": {}, "contextrt": {}}
        servers = (("orthanc", orthanc), ("contextrt", ours))
        ids = {name: locate(server) for name, server in servers}
        # Endpoint by endpoint, alternating servers, so a change in machine load hits both alike.
        for label, run in measurements(args.seconds, scratch):
            print(f"measuring {label} ...", flush=True)
            for name, server in servers:
                figures[name][label] = run(server, ids[name])
    finally:
        ours.stop()
        orthanc.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{'endpoint':34s} {'Orthanc':>10s} {'ContextRT':>10s} {'ratio':>8s}   (ratio > 1: ContextRT better)")
    for key in figures["orthanc"]:
        a, b = figures["orthanc"][key], figures["contextrt"][key]
        ratio = b / a if key.startswith("frames") else a / b
        print(f"{key:34s} {a:10.4f} {b:10.4f} {ratio:8.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"slices": args.slices, "size": args.size, **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
