"""One Dramatiq actor per job kind; each message carries only the job id and the portal URL.

Importing this module binds the actors to the broker of ``BROKER_URL``
(``gpu_worker.broker.setup_broker``). Actors default to the ``gpu`` queue; the
portal sends CPU-class work to ``cpu`` by copying the message to that queue.
"""
from __future__ import annotations

import os

import dramatiq

from gpu_worker.broker import setup_broker
from gpu_worker.errors import is_transient
from gpu_worker.runner import run_job

setup_broker()

_OPTIONS = dict(
    queue_name="gpu",
    time_limit=int(os.environ.get("CONTEXTRT_JOB_TIME_LIMIT_S", 3600)) * 1000,
    max_retries=int(os.environ.get("CONTEXTRT_JOB_MAX_RETRIES", 5)),
    min_backoff=int(os.environ.get("CONTEXTRT_JOB_MIN_BACKOFF_MS", 1000)),
    max_backoff=int(os.environ.get("CONTEXTRT_JOB_MAX_BACKOFF_MS", 60000)),
    retry_when=is_transient,
)


@dramatiq.actor(actor_name="contextrt.inference", **_OPTIONS)
def inference(job_id: int, portal_url: str):
    run_job(job_id, portal_url)


@dramatiq.actor(actor_name="contextrt.what_if", **_OPTIONS)
def what_if(job_id: int, portal_url: str):
    run_job(job_id, portal_url)


@dramatiq.actor(actor_name="contextrt.training", **_OPTIONS)
def training(job_id: int, portal_url: str):
    run_job(job_id, portal_url)


ACTORS = {"inference": inference, "what_if": what_if, "training": training}
