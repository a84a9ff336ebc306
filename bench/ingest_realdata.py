"""Time the validated ingest (parse, validate, rasterise, de-identify, stage, commit) on the real samples.

Run: .venv/bin/python bench/ingest_realdata.py [path/to/shared/realdata]
Uses a throw-away SQLite database and store under a temporary folder.
"""
import os
import sys
import tempfile
import time
from pathlib import Path

tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
os.environ.setdefault("CONTEXTRT_VAR_DIR", str(tmp))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0, skip_checks=True)
from portal.accounts.models import Site  # noqa: E402
from portal.imaging.ingest import ingest_files  # noqa: E402

realdata = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "realdata")
site = Site.objects.create(code="bench", name="bench")
for patient in ("STS_019", "STS_002"):
    base = realdata / "ibsi-sts" / "dicom" / patient / "CT"
    files = sorted((base / "image").glob("*.dcm")) + [base / "mask" / "RS.dcm"]
    start = time.perf_counter()
    report = ingest_files(files, site=site)
    elapsed = time.perf_counter() - start
    print(f"{patient}: {report.instances} instances + {len(report.rois)} ROI in {elapsed:.2f} s "
          f"({1000 * elapsed / report.instances:.1f} ms/instance)")
    start = time.perf_counter()
    ingest_files(files, site=site)
    print(f"{patient}: identical re-upload (idempotent skip) in {time.perf_counter() - start:.2f} s")
phantom = realdata / "rtutils-mim-phantom"
start = time.perf_counter()
ingest_files([phantom / "ct_1.dcm", phantom / "ct_2.dcm", phantom / "invalid_reference_rt.dcm"], site=site, allow_partial=True)
print(f"phantom 512x512 x2 + RTSTRUCT (4 ROIs): {time.perf_counter() - start:.2f} s")
