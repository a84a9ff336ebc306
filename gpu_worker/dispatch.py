"""Portal side of dispatch: put a job's message on its queue, and run the in-process worker when embedded."""
from __future__ import annotations

import os
import threading

from gpu_worker import broker as broker_setup
from gpu_worker.client import IN_PROCESS

_worker = None
_worker_lock = threading.Lock()


def portal_url() -> str:
    """The URL workers use to reach this portal (``CONTEXTRT_PORTAL_URL``); embedded: in-process."""
    url = os.environ.get("CONTEXTRT_PORTAL_URL", "").strip()
    if broker_setup.is_in_process():
        return IN_PROCESS
    if not url:
        raise RuntimeError("CONTEXTRT_PORTAL_URL must be set when BROKER_URL points to a shared broker")
    return url


def send_job(job_id: int, kind: str, queue: str = "gpu") -> None:
    from gpu_worker import actors

    actor = actors.ACTORS.get(kind)
    if actor is None:
        raise ValueError(f"no worker actor for job kind {kind!r}")
    message = actor.message(int(job_id), portal_url())
    if queue != message.queue_name:
        message = message.copy(queue_name=queue)
    actor.broker.enqueue(message)
    if broker_setup.is_in_process():
        start_in_process_worker()


def start_in_process_worker(threads: int | None = None):
    """Start (once) a Dramatiq worker thread pool inside this process, consuming both queues."""
    global _worker
    import dramatiq

    from gpu_worker import actors  # noqa: F401 - binds the actors to the stub broker

    with _worker_lock:
        if _worker is None:
            threads = threads or int(os.environ.get("CONTEXTRT_INPROCESS_THREADS", 1))
            _worker = dramatiq.Worker(dramatiq.get_broker(), queues=set(broker_setup.QUEUES), worker_threads=threads,
                                      worker_timeout=100)
            _worker.start()
    return _worker


def wait_in_process(timeout_s: float = 60.0) -> None:
    """Block until the in-process queues are drained and the worker is idle (tests, management commands)."""
    import dramatiq

    broker = dramatiq.get_broker()
    for queue in broker_setup.QUEUES:
        broker.join(queue, timeout=int(timeout_s * 1000))
    if _worker is not None:
        _worker.join()


def stop_in_process_worker() -> None:
    global _worker
    with _worker_lock:
        if _worker is not None:
            _worker.stop()
            _worker = None
