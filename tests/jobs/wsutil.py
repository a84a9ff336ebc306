"""Helpers for websocket tests: a token-authenticated communicator and event collection."""
from __future__ import annotations

import asyncio

from channels.testing import WebsocketCommunicator

ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1")]


def communicator(path: str, token: str | None = None) -> WebsocketCommunicator:
    from portal.asgi import application

    query = f"?token={token}" if token else ""
    return WebsocketCommunicator(application, path + query, headers=ORIGIN)


async def collect_until(comm, predicate, timeout: float = 120.0) -> list[dict]:
    """Receive JSON messages until ``predicate(message)`` is true; returns them all."""
    received = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await comm.receive_json_from(timeout=max(0.1, deadline - loop.time()))
        received.append(message)
        if predicate(message):
            return received
