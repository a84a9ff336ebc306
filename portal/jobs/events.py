"""Job events on the channel layer: group names, event bodies and the relay from portal to websockets."""
from __future__ import annotations

import asyncio
import logging
import re
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)

_STUDY_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# The event loop serving websocket consumers. Channels' in-memory layer keeps
# asyncio queues of that loop, so a thread with its own loop (the embedded
# Dramatiq worker) must hand its sends to this loop instead of running them itself.
_consumer_loop: asyncio.AbstractEventLoop | None = None


def register_consumer_loop(loop: asyncio.AbstractEventLoop) -> None:
    global _consumer_loop
    _consumer_loop = loop


def _send(layer, group: str, body: dict) -> None:
    loop = _consumer_loop
    in_memory = type(layer).__name__ == "InMemoryChannelLayer"
    if in_memory and loop is not None and loop.is_running() and not _runs_in(loop):
        asyncio.run_coroutine_threadsafe(layer.group_send(group, body), loop).result(timeout=10)
    else:
        async_to_sync(layer.group_send)(group, body)


def _runs_in(loop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return getattr(loop, "_thread_id", None) == threading.get_ident()


def job_group(job_id: int) -> str:
    return f"job.{int(job_id)}"


def case_group(case_id: int) -> str:
    return f"case.{int(case_id)}"


def study_group(study_key: str) -> str:
    if not _STUDY_KEY_RE.match(study_key or ""):
        raise ValueError(f"study key {study_key!r}: letters, digits, '_', '-', '.' only (at most 64)")
    return f"study.{study_key}"


def job_state(job) -> dict:
    """The small state body every event and snapshot carries (no result payload)."""
    return {
        "job": job.pk,
        "kind": job.kind,
        "case": job.case_id,
        "study": job.study_key or None,
        "parent": job.parent_id,
        "checkpoint": job.checkpoint,
        "context_version": job.context_version_id,
        "state": job.state,
        "progress": job.progress,
        "message": job.message,
        "error": job.error,
        "seq": job.seq,
        "created": job.created.isoformat() if job.created else None,
        "started": job.started.isoformat() if job.started else None,
        "finished": job.finished.isoformat() if job.finished else None,
    }


def groups_of(job) -> list[str]:
    groups = [job_group(job.pk)]
    if job.case_id:
        groups.append(case_group(job.case_id))
    if job.study_key:
        groups.append(study_group(job.study_key))
    return groups


def publish(job, event_type: str, extra: dict | None = None) -> None:
    """Send one event about ``job`` to every group watching it.

    Called after the database change is committed; a channel-layer outage is
    logged, never allowed to fail the state change (clients resync from the
    snapshot they receive when they reconnect).
    """
    layer = get_channel_layer()
    if layer is None:
        return
    body = {"type": "job.event", "event": event_type, "data": {**job_state(job), **(extra or {})}}
    for group in groups_of(job):
        try:
            _send(layer, group, body)
        except Exception:  # noqa: BLE001 - see docstring
            log.exception("could not publish %s for job %s to %s", event_type, job.pk, group)
