"""Worker warm-up: the named checkpoints are loaded once when a worker boots, failures are only logged."""
from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker

from gpu_worker import model_cache, warmup
from gpu_worker.broker import build_broker
from gpu_worker.errors import BadInput
from gpu_worker.model_cache import ModelCache

from .conftest import build_tiny_checkpoint


class FolderClient:
    """The one client call a warm-up makes: a checkpoint's local file by name."""

    def __init__(self, folder):
        self.folder = folder
        self.asked = []

    def checkpoint(self, name):
        self.asked.append(name)
        path = self.folder / name
        if not path.is_file():
            raise BadInput(f"checkpoint {name!r} not found")
        return path


def test_names_come_from_the_environment_in_order_without_repeats(monkeypatch):
    monkeypatch.setenv(warmup.WARM_CHECKPOINTS_ENV, " b.pt, a.pt,,b.pt ")
    assert warmup.warm_checkpoint_names() == ["b.pt", "a.pt"]
    assert warmup.warm_checkpoint_names("") == []


def test_warm_up_loads_each_checkpoint_once_and_logs_the_ones_it_cannot(tmp_path, caplog):
    path = build_tiny_checkpoint(tmp_path, name="tiny-breast.pt")
    cache = ModelCache(capacity=2, device="cpu")
    loaded = warmup.warm_up(["missing.pt", "tiny-breast.pt"], FolderClient(tmp_path), cache)
    assert list(loaded) == ["tiny-breast.pt"] and cache.loads == 1
    assert "missing.pt" in caplog.text and "not found" in caplog.text
    model = cache.get(path)  # the first job finds it loaded
    assert cache.loads == 1 and model.cancer_type == "breast"


def test_a_booting_worker_starts_the_warm_up(tmp_path, monkeypatch):
    build_tiny_checkpoint(tmp_path, name="tiny-breast.pt")
    cache = ModelCache(capacity=2, device="cpu")
    client = FolderClient(tmp_path)
    monkeypatch.setattr(model_cache, "_shared", cache)
    monkeypatch.setattr(warmup, "worker_client", lambda: client)
    monkeypatch.setenv(warmup.WARM_CHECKPOINTS_ENV, "tiny-breast.pt")
    broker = StubBroker()
    middleware = warmup.WarmUpMiddleware()
    broker.add_middleware(middleware)
    worker = dramatiq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        assert middleware.thread is not None
        middleware.thread.join(120)
        assert not middleware.thread.is_alive()
    finally:
        worker.stop()
    assert client.asked == ["tiny-breast.pt"] and cache.loads == 1 and len(cache) == 1


def test_without_names_nothing_starts_and_every_broker_carries_the_middleware(monkeypatch):
    monkeypatch.delenv(warmup.WARM_CHECKPOINTS_ENV, raising=False)
    middleware = warmup.WarmUpMiddleware()
    middleware.after_worker_boot(None, None)
    assert middleware.thread is None
    assert any(isinstance(m, warmup.WarmUpMiddleware) for m in build_broker("").middleware)


def test_a_worker_never_joins_a_checkpoint_name_that_is_a_path_to_its_folders(tmp_path, monkeypatch):
    """Names come from job specs and CONTEXTRT_WARM_CHECKPOINTS; the HTTP client refuses anything but a plain
    ``*.pt`` file name before it touches a folder or the network, and a warm-up only logs the refusal."""
    import pytest

    from gpu_worker.client import HttpClient

    monkeypatch.setenv("CONTEXTRT_CHECKPOINT_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("CONTEXTRT_WORKER_CACHE", str(tmp_path / "cache"))
    client = HttpClient("http://127.0.0.1:9", "token")  # nothing listens there: no call may be made
    for name in ("../escape.pt", "/etc/passwd.pt", "sub/model.pt", "model.bin", ".hidden.pt", ""):
        with pytest.raises(BadInput, match="expected a file name"):
            client.checkpoint(name)
    cache = ModelCache(capacity=1, device="cpu")
    assert warmup.warm_up(["../escape.pt"], client, cache) == {} and cache.loads == 0
    assert not (tmp_path / "cache").exists()
