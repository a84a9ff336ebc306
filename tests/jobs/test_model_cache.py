"""The worker's warm model cache: one load per checkpoint file, and the Segmenter settings from the environment."""
from __future__ import annotations

from gpu_worker.model_cache import ModelCache

from .conftest import build_tiny_checkpoint


def test_settings_come_from_the_environment_and_a_model_loads_once(tmp_path, monkeypatch):
    path = build_tiny_checkpoint(tmp_path)
    monkeypatch.setenv("CONTEXTRT_WINDOW_BATCH", "2")
    monkeypatch.setenv("CONTEXTRT_FEATURE_CACHE_SIZE", "3")
    cache = ModelCache(capacity=1, device="cpu")
    segmenter = cache.get(path)
    assert segmenter.window_batch == 2 and segmenter._feature_cache_size == 3
    assert cache.get(path) is segmenter and cache.loads == 1
    other = build_tiny_checkpoint(tmp_path, name="tiny-prostate.pt", cancer_type="prostate")
    assert cache.get(other).cancer_type == "prostate" and len(cache) == 1  # capacity 1: the breast model left
    assert cache.get(path) is not segmenter and cache.loads == 3
