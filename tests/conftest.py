"""Shared test fixtures: isolated storage per test session, users per role, service probes."""
from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

IN_CI = os.environ.get("CI", "").lower() == "true"


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (outside CI) or fail (under CI=true) when a service is unreachable."""
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: service tests must run, not skip)")
    pytest.skip(message)


@pytest.fixture
def redis_service():
    require_service("Redis", "127.0.0.1", 6379)
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def rabbitmq_service():
    require_service("RabbitMQ", "127.0.0.1", 5672)
    return "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path_factory):
    """Every test writes DICOM files and masks into its own temporary store."""
    root = tmp_path_factory.mktemp("storage")
    settings.CONTEXTRT_STORAGE = root / "store"
    settings.CONTEXTRT_UPLOAD_TMP = root / "upload-tmp"
    settings.CONTEXTRT_UPLOAD_TMP.mkdir(parents=True, exist_ok=True)
    settings.CONTEXTRT_STORAGE.mkdir(parents=True, exist_ok=True)
    yield


REALDATA = None
for candidate in (
    os.environ.get("CONTEXTRT_REALDATA", ""),
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "realdata"),
):
    if candidate and os.path.isdir(candidate):
        REALDATA = os.path.abspath(candidate)
        break


@pytest.fixture
def realdata_dir():
    if REALDATA is None:
        if IN_CI:
            pytest.fail("shared/realdata not found beside the checkout")
        pytest.skip("shared/realdata not found beside the checkout")
    from pathlib import Path

    return Path(REALDATA)


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """DICOMweb keeps short-lived per-process caches keyed by row ids; tests reuse ids, so start clean."""
    from django.core.cache import cache

    from portal.imaging import dicomweb_access, dicomweb_query, fastpath

    def clear():
        dicomweb_access.clear_caches()
        dicomweb_query.clear_cache()
        fastpath.clear_cache()
        cache.clear()

    clear()
    yield
    clear()
