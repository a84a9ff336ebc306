"""Warming a worker up before its first job: the checkpoints it will most likely run are loaded when the worker
boots, so the first user does not wait for the imports and the model load (on a 2-core CPU, the first what-if
of `make demo` on a 100 x 512 x 512 CT took 4.0-4.3 s cold and takes 0.6-0.8 s warm).

The checkpoints are named in ``CONTEXTRT_WARM_CHECKPOINTS`` (comma-separated, as jobs name them) and fetched
with the worker's own client, so a worker on another machine downloads them once, as its first job would. They
go into the shared model cache; a job that arrives meanwhile waits on the cache's lock for that same load
instead of loading the checkpoint twice. A failure is logged and never raised: a cold worker still works.
"""
from __future__ import annotations

import logging
import os
import threading
import time

import dramatiq

log = logging.getLogger(__name__)

WARM_CHECKPOINTS_ENV = "CONTEXTRT_WARM_CHECKPOINTS"


def warm_checkpoint_names(value: str | None = None) -> list[str]:
    """The checkpoint names in ``value`` (default: ``CONTEXTRT_WARM_CHECKPOINTS``), in order, without repeats."""
    raw = os.environ.get(WARM_CHECKPOINTS_ENV, "") if value is None else value
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return list(dict.fromkeys(names))


def warm_up(names, client, cache=None) -> dict[str, float]:
    """Load each named checkpoint into ``cache`` (default: the worker's shared cache) through ``client``;
    returns the seconds each load took. Checkpoints that fail are logged and left out."""
    from gpu_worker.model_cache import shared_cache

    cache = cache if cache is not None else shared_cache()
    seconds = {}
    for name in names:
        start = time.perf_counter()
        try:
            cache.get(client.checkpoint(name))
        except Exception as exc:  # noqa: BLE001 - a warm-up must never stop the worker
            log.warning("warm-up: checkpoint %s not loaded: %s", name, exc)
            continue
        seconds[name] = time.perf_counter() - start
        log.info("warm-up: checkpoint %s loaded in %.1f s", name, seconds[name])
    return seconds


def start_warm_up(names, client_factory, cache=None) -> threading.Thread | None:
    """Run ``warm_up`` in a daemon thread (the worker takes jobs meanwhile); None when there is nothing to load."""
    names = list(names)
    if not names:
        return None

    def run():
        try:
            client = client_factory()
        except Exception as exc:  # noqa: BLE001 - e.g. no worker token: the first job reports that properly
            log.warning("warm-up skipped: %s", exc)
            return
        warm_up(names, client, cache)

    thread = threading.Thread(target=run, name="contextrt-warm-up", daemon=True)
    thread.start()
    return thread


def worker_client():
    """The client a worker process uses outside any job: in-process when embedded, else HTTP to
    ``CONTEXTRT_PORTAL_URL``."""
    from gpu_worker.broker import is_in_process
    from gpu_worker.client import IN_PROCESS, make_client

    return make_client(IN_PROCESS if is_in_process() else os.environ.get("CONTEXTRT_PORTAL_URL", ""))


class WarmUpMiddleware(dramatiq.Middleware):
    """Starts the warm-up of ``CONTEXTRT_WARM_CHECKPOINTS`` when a Dramatiq worker (process or in-process
    thread pool) has booted."""

    def __init__(self):
        self.thread: threading.Thread | None = None

    def after_worker_boot(self, broker, worker):
        self.thread = start_warm_up(warm_checkpoint_names(), worker_client)
