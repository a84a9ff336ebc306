"""Time synthetic-case generation (in memory, per size and cancer type) and the demo cohort write.

Run: .venv/bin/python bench/fixtures_generation.py   (reports CPU seconds and wall seconds)
"""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures import generate_case  # noqa: E402
from fixtures.cohort import write_demo_cohort  # noqa: E402


def timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.process_time() - cpu, time.perf_counter() - wall


for cancer in ("breast", "prostate"):
    for shape in (64, 128, 256):
        runs = [timed(lambda i=i: generate_case(cancer, "internal", i, seed=0, shape=shape)) for i in range(3)]
        case = runs[0][0]
        print(f"generate_case {cancer:8s} {case.hu.shape}: cpu {min(r[1] for r in runs):.2f} s, "
              f"wall {min(r[2] for r in runs):.2f} s (best of 3)")

with tempfile.TemporaryDirectory() as tmp:
    manifest, cpu, wall = timed(lambda: write_demo_cohort(Path(tmp) / "demo"))
    size = sum(p.stat().st_size for p in (Path(tmp) / "demo").rglob("*") if p.is_file())
    print(f"demo cohort ({len(manifest['cases'])} cases, {size / 1e6:.0f} MB): cpu {cpu:.1f} s, wall {wall:.1f} s")
