"""Plain worker entry point for a GPU box (no Django, no database):

    BROKER_URL=redis://broker:6379/0 CONTEXTRT_PORTAL_URL=https://portal CONTEXTRT_WORKER_TOKEN=... \
        python -m gpu_worker --queues gpu --processes 1 --threads 1
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_worker", description="Run ContextRT job workers.")
    parser.add_argument("--queues", nargs="+", default=["gpu"], choices=["gpu", "cpu"])
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not os.environ.get("BROKER_URL"):
        parser.error("BROKER_URL is not set (redis://... or amqp://...); the in-process broker lives in the portal")
    return run_dramatiq(args.queues, args.processes, args.threads)


def run_dramatiq(queues, processes: int, threads: int) -> int:
    """Dramatiq's own supervisor: it restarts crashed worker processes and handles signals."""
    from dramatiq.cli import main as dramatiq_main, make_argument_parser

    argv = ["gpu_worker.actors", "--processes", str(processes), "--threads", str(threads), "--queues", *queues]
    return dramatiq_main(make_argument_parser().parse_args(argv)) or 0


if __name__ == "__main__":
    sys.exit(main())
