"""A bounded LRU of loaded models: each checkpoint is loaded once per worker process and kept warm."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path


class ModelCache:
    def __init__(self, capacity: int | None = None, loader=None, device: str | None = None):
        self.capacity = max(1, int(capacity or os.environ.get("CONTEXTRT_MODEL_CACHE_SIZE", 2)))
        self.device = device or os.environ.get("CONTEXTRT_DEVICE") or _default_device()
        self._loader = loader
        self._models: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, path: Path):
        """The model of checkpoint ``path`` (reloaded if the file changed), evicting the least recently used."""
        path = Path(path)
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model = self._load(path)
            self.loads += 1
            self._models[key] = model
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return model

    def _load(self, path: Path):
        if self._loader is not None:
            return self._loader(path, self.device)
        from segmentation.inference import Segmenter

        # The Segmenter keeps image features of recent CTs for what-if re-contouring.
        feature_cache = int(os.environ.get("CONTEXTRT_FEATURE_CACHE_SIZE", 4))
        # Sliding windows per forward pass: lower it on a GPU whose memory does not hold four windows.
        window_batch = int(os.environ.get("CONTEXTRT_WINDOW_BATCH", 4))
        return Segmenter.from_checkpoint(str(path), device=self.device, feature_cache_size=feature_cache,
                                         window_batch=window_batch)

    def __len__(self):
        return len(self._models)


def _default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


_shared: ModelCache | None = None


def shared_cache() -> ModelCache:
    global _shared
    if _shared is None:
        _shared = ModelCache()
    return _shared
