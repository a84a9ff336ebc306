"""Benchmark: the evaluation.metrics panel against MONAI, DeepMind surface-distance, medpy and seg-metrics.

Runs on CTV-like 512x512x100 mask pairs at 0.98x0.98x3 mm (evaluation.synthetic_masks), prints each
library's values and time per case and the ratio to ours (each peer runs in a child process after a
warm-up call on a small crop and is timed as the median of --peer-repeat runs when one run takes under
5 s, else once; ours is the median of --repeat runs). Ratios use the CPU time of the process, which a
busy shared machine distorts far less than wall time; both are printed. Checks our values against MONAI
(1e-3 mm / 1e-3 for fractions) and against the float64 scipy-EDT reference (1e-6 mm), and ends with
``speedup vs fastest peer: <x>x, max |diff| vs MONAI: <d> mm``. Exits 1 when a value differs from MONAI
by more than 1e-3. Peers that are not installed are skipped (see requirements-bench.txt).

``--offset-mm D`` moves every prediction D mm along the columns, as a contour drawn on the wrong side is (a
vision-only guess, a what-if with the laterality flipped): the case where nearest-surface searches cost most.

    .venv/bin/python bench/metrics_vs_peers.py [--cases 3] [--repeat 20] [--peer-repeat 3] [--tolerance-mm 2]
        [--offset-mm 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.metrics import compute_panel  # noqa: E402
from evaluation.reference_metrics import reference_surface_metrics  # noqa: E402
from evaluation.synthetic_masks import CT_SHAPE, CT_SPACING_ZYX, ctv_like_pair  # noqa: E402

MONAI_GATE = 1e-3
REFERENCE_GATE = 1e-6
COMPARED = ("dice", "hd_mm", "hd95_mm", "assd_mm", "surface_dice")


def case_pair(seed: int, offset_mm: float = 0.0):
    """The CTV-like ``(pred, ref)`` of case ``seed``, the prediction moved ``offset_mm`` along the columns."""
    pred, ref = ctv_like_pair(seed=seed)
    shift = int(round(offset_mm / CT_SPACING_ZYX[2]))
    columns = np.flatnonzero(pred.any(axis=(0, 1)))
    if columns[0] + shift < 0 or columns[-1] + shift >= pred.shape[2]:
        raise SystemExit(f"--offset-mm {offset_mm}: the prediction would leave the {pred.shape[2]} columns")
    if shift:
        pred = np.roll(pred, shift, axis=2)
    return pred, ref


def _timed(fn, repeat: int):
    """Median wall and CPU seconds of ``repeat`` calls after a warm-up call, and the last values."""
    fn()  # warm-up: imports, caches, allocator
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        values = fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus), values


def ours(pred, ref, spacing, tol):
    panel = compute_panel(pred, ref, spacing, tolerance_mm=tol)
    return {k: panel[k] for k in COMPARED}


def monai_panel(pred, ref, spacing, tol):
    import torch
    from monai.metrics import (compute_average_surface_distance, compute_dice, compute_hausdorff_distance,
                               compute_surface_dice)
    p, r = torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None]
    return {
        "dice": compute_dice(p, r, include_background=True).item(),
        "hd_mm": compute_hausdorff_distance(p, r, include_background=True, spacing=spacing).item(),
        "hd95_mm": compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=spacing).item(),
        "assd_mm": compute_average_surface_distance(p, r, include_background=True, symmetric=True,
                                                    spacing=spacing).item(),
        "surface_dice": compute_surface_dice(p, r, [tol], include_background=True, spacing=spacing).item(),
    }


def deepmind_panel(pred, ref, spacing, tol):
    import surface_distance as sd
    d = sd.compute_surface_distances(ref, pred, spacing)
    gt_to_pred, pred_to_gt = sd.compute_average_surface_distance(d)
    return {
        "dice": sd.compute_dice_coefficient(ref, pred),
        "hd_mm": sd.compute_robust_hausdorff(d, 100),
        "hd95_mm": sd.compute_robust_hausdorff(d, 95),
        # DeepMind weights each surfel by its area; the mean of both directed averages is its ASSD analogue.
        "assd_mm": (gt_to_pred + pred_to_gt) / 2.0,
        "surface_dice": sd.compute_surface_dice_at_tolerance(d, tol),
    }


def medpy_panel(pred, ref, spacing, tol):
    from medpy.metric import binary
    return {
        "dice": binary.dc(pred, ref),
        "hd_mm": binary.hd(pred, ref, voxelspacing=spacing),
        "hd95_mm": binary.hd95(pred, ref, voxelspacing=spacing),
        "assd_mm": binary.assd(pred, ref, voxelspacing=spacing),
    }


def segmetrics_panel(pred, ref, spacing, tol):
    import seg_metrics.seg_metrics as sg
    out = sg.write_metrics(labels=[1], gdth_img=ref.astype(np.uint8), pred_img=pred.astype(np.uint8),
                           spacing=list(spacing), metrics=["dice", "hd", "hd95", "msd"], verbose=False)
    row = out[0] if isinstance(out, list) else out
    first = lambda key: float(np.ravel(row[key])[0])  # noqa: E731
    return {"dice": first("dice"), "hd_mm": first("hd"), "hd95_mm": first("hd95"), "assd_mm": first("msd")}


PEERS = {"MONAI": monai_panel, "DeepMind surface-distance": deepmind_panel, "medpy": medpy_panel,
         "seg-metrics": segmetrics_panel}


def _peer_in_child(name: str, seed: int, tolerance_mm: float, timeout_s: float, repeat: int, offset_mm: float):
    """Time one peer on one case in a child process, so a slow or memory-hungry peer can be cut off."""
    command = [sys.executable, __file__, "--child-peer", name, "--child-seed", str(seed),
               "--tolerance-mm", str(tolerance_mm), "--peer-repeat", str(repeat), "--offset-mm", str(offset_mm)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return "timeout", None, None
    if done.returncode == 3:
        return "missing", None, None
    if done.returncode != 0:
        return "error: " + (done.stderr.strip().splitlines() or ["?"])[-1][:200], None, None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["seconds"], result["cpu_seconds"], result["values"]


# A peer whose single run takes longer than this is timed once (medpy, seg-metrics: tens of seconds).
REPEAT_BELOW_S = 5.0


def _child(name: str, seed: int, tolerance_mm: float, repeat: int, offset_mm: float) -> int:
    warnings.filterwarnings("ignore")
    pred, ref = case_pair(seed, offset_mm)
    small_pred, small_ref = pred[40:60, 200:320, 200:320].copy(), ref[40:60, 200:320, 200:320].copy()
    try:
        PEERS[name](small_pred, small_ref, CT_SPACING_ZYX, tolerance_mm)  # imports and first-call set-up
    except ImportError:
        return 3
    walls, cpus = [], []
    while True:
        start, cpu = time.perf_counter(), time.process_time()
        values = PEERS[name](pred, ref, CT_SPACING_ZYX, tolerance_mm)
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - start)
        if len(walls) >= repeat or walls[0] >= REPEAT_BELOW_S:
            break
    seconds, cpu_seconds = statistics.median(walls), statistics.median(cpus)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "runs": len(walls),
                      "values": {k: float(v) for k, v in values.items()}}))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20, help="timed runs of our panel per case")
    parser.add_argument("--peer-repeat", type=int, default=3,
                        help=f"timed runs of a peer per case (median) when one run takes under {REPEAT_BELOW_S:.0f} s")
    parser.add_argument("--peer-timeout-s", type=float, default=240.0, help="cut-off for one peer on one case")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of: " + ", ".join(PEERS))
    parser.add_argument("--tolerance-mm", type=float, default=2.0)
    parser.add_argument("--offset-mm", type=float, default=0.0,
                        help="move each prediction this far along the columns (a contour on the wrong side)")
    parser.add_argument("--child-peer", help=argparse.SUPPRESS)
    parser.add_argument("--child-seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_peer:
        return _child(args.child_peer, args.child_seed, args.tolerance_mm, max(args.peer_repeat, 1), args.offset_mm)
    peers = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = [name for name in peers if name not in PEERS]
    if unknown:
        parser.error(f"--peers: unknown {unknown}")
    warnings.filterwarnings("ignore")
    spacing = CT_SPACING_ZYX
    print(f"masks {CT_SHAPE} at {spacing} mm, {args.cases} CTV-like cases, tolerance {args.tolerance_mm} mm"
          + (f", predictions moved {args.offset_mm:g} mm along the columns" if args.offset_mm else ""))

    walls: dict[str, list[float]] = {"ours": []}
    cpus: dict[str, list[float]] = {"ours": []}
    max_diff_monai = 0.0
    max_diff_reference = 0.0
    for case in range(args.cases):
        pred, ref = case_pair(case, args.offset_mm)
        print(f"\ncase {case}: reference {ref.sum()} voxels, prediction {pred.sum()} voxels")
        wall_ours, cpu_ours, v_ours = _timed(lambda: ours(pred, ref, spacing, args.tolerance_mm), args.repeat)
        walls["ours"].append(wall_ours)
        cpus["ours"].append(cpu_ours)
        rows = [("ours", wall_ours, cpu_ours, v_ours)]
        reference = reference_surface_metrics(pred, ref, spacing, args.tolerance_mm)
        for key, value in reference.items():
            max_diff_reference = max(max_diff_reference, abs(value - v_ours[key]))
        for name in peers:
            wall_peer, cpu_peer, v_peer = _peer_in_child(name, case, args.tolerance_mm, args.peer_timeout_s,
                                                      args.peer_repeat, args.offset_mm)
            if v_peer is None:
                note = {"missing": "not installed; skipped", "timeout": f"over {args.peer_timeout_s:.0f} s; cut off"}
                print(f"  {name}: {note.get(wall_peer, wall_peer)}")
                continue
            walls.setdefault(name, []).append(wall_peer)
            cpus.setdefault(name, []).append(cpu_peer)
            rows.append((name, wall_peer, cpu_peer, v_peer))
            if name == "MONAI":
                for key in COMPARED:
                    max_diff_monai = max(max_diff_monai, abs(v_peer[key] - v_ours[key]))
        header = (f"  {'library':<27}{'wall (s)':>10}{'cpu (s)':>10}{'x ours':>8}"
                  + "".join(f"{k:>14}" for k in COMPARED))
        print(header)
        for name, wall, cpu, values in rows:
            cells = "".join(f"{values[k]:>14.6f}" if k in values else f"{'-':>14}" for k in COMPARED)
            print(f"  {name:<27}{wall:>10.4f}{cpu:>10.4f}{cpu / cpu_ours:>8.1f}{cells}")

    mean_ours = statistics.mean(cpus["ours"])
    print(f"\nmean per case: ours {mean_ours * 1e3:.1f} ms CPU, {statistics.mean(walls['ours']) * 1e3:.1f} ms wall")
    peer_means = {name: statistics.mean(ts) for name, ts in cpus.items() if name != "ours"}
    for name, t in sorted(peer_means.items(), key=lambda item: item[1]):
        print(f"  {name:<27}{t * 1e3:>10.1f} ms CPU ({t / mean_ours:.1f}x ours), "
              f"{statistics.mean(walls[name]) * 1e3:.1f} ms wall")
    print("(ratios use CPU time of the process: wall time on a shared machine mostly measures the other load)")
    print(f"max |diff| vs float64 scipy-EDT reference: {max_diff_reference:.2e} mm")
    fastest = min(peer_means.values()) if peer_means else float("nan")
    if peer_means:
        # The goal holds per case, not only on average: show the spread against the fastest peer.
        fastest_name = min(peer_means, key=peer_means.get)
        if len(cpus[fastest_name]) == len(cpus["ours"]):
            per_case = [peer / own for peer, own in zip(cpus[fastest_name], cpus["ours"])]
            print(f"per case vs {fastest_name}: " + ", ".join(f"{ratio:.1f}x" for ratio in per_case)
                  + f" (min {min(per_case):.1f}x)")
    print(f"speedup vs fastest peer: {fastest / mean_ours:.1f}x, max |diff| vs MONAI: {max_diff_monai:.2e} mm")
    if "MONAI" not in peer_means:
        print("MONAI is not installed: the equality gate could not run", file=sys.stderr)
        return 1
    if max_diff_monai > MONAI_GATE or max_diff_reference > REFERENCE_GATE:
        print("FAIL: values differ beyond the gate", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
