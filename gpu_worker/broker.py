"""The Dramatiq broker chosen by ``BROKER_URL``: in-process (empty), Redis (``redis://``) or RabbitMQ (``amqp://``)."""
from __future__ import annotations

import os
import threading

import dramatiq

QUEUES = ("gpu", "cpu")
_lock = threading.Lock()
_configured_url: str | None = None


def broker_url() -> str:
    return os.environ.get("BROKER_URL", "").strip()


def is_in_process(url: str | None = None) -> bool:
    return not (broker_url() if url is None else url)


def build_broker(url: str):
    if not url:
        from dramatiq.brokers.stub import StubBroker

        broker = StubBroker()
    elif url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        # A dead worker's unacknowledged messages go back to the queue once its
        # heartbeat is older than this; tests shorten it to see redelivery quickly.
        broker = RedisBroker(
            url=url,
            heartbeat_timeout=int(os.environ.get("CONTEXTRT_BROKER_HEARTBEAT_MS", 60000)),
            maintenance_chance=int(os.environ.get("CONTEXTRT_BROKER_MAINTENANCE_CHANCE", 1000)),
            namespace=os.environ.get("CONTEXTRT_BROKER_NAMESPACE", "contextrt"),
        )
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url, confirm_delivery=True)
    else:
        raise ValueError(f"BROKER_URL {url!r}: expected empty (in-process), redis://... or amqp://...")
    for queue in QUEUES:
        broker.declare_queue(queue)
    from gpu_worker.warmup import WarmUpMiddleware

    broker.add_middleware(WarmUpMiddleware())  # loads CONTEXTRT_WARM_CHECKPOINTS when a worker boots
    return broker


def setup_broker(url: str | None = None):
    """Install the broker once per process (actors bind to it when ``gpu_worker.actors`` is imported)."""
    global _configured_url
    url = broker_url() if url is None else url
    with _lock:
        if _configured_url is None:
            dramatiq.set_broker(build_broker(url))
            _configured_url = url
        elif _configured_url != url:
            raise RuntimeError(f"the Dramatiq broker is already set up for {_configured_url!r}, not {url!r}")
    return dramatiq.get_broker()
