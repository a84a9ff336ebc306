"""A bounded LRU of decoded CT volumes per worker process, keyed by the series' content fingerprint.

A worker shares nothing with the portal but the network, so every job used to download its CT over
DICOMweb and decode every slice, even when the job before it (a full run, a what-if with a new
clinical context, the other model of a vision-only vs multimodal comparison) had just read the same
series. The portal puts a fingerprint of the series' content in the job spec (a SHA-256 over every
instance's SOP Instance UID and the SHA-256 of its stored file, ``portal.imaging.volume.series_fingerprint``),
so a re-ingested or changed series gets a new key and is never served stale. Volumes are kept
read-only: jobs share them, and nothing may write into another job's input.

``CONTEXTRT_CT_CACHE_SIZE`` (default 2 volumes; 0 turns the cache off) bounds the memory: a
512 x 512 x 150 CT is 150 MB as float32.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Callable

import numpy as np


class CTCache:
    def __init__(self, capacity: int | None = None):
        if capacity is None:
            capacity = int(os.environ.get("CONTEXTRT_CT_CACHE_SIZE", 2))
        if capacity < 0:
            raise ValueError(f"CONTEXTRT_CT_CACHE_SIZE: must be >= 0, got {capacity}")
        self.capacity = capacity
        self._volumes: OrderedDict[str, tuple] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0
        self.hits = 0

    def get(self, fingerprint: str | None, load: Callable[[], tuple]) -> tuple[np.ndarray, object, bool]:
        """``(hu, grid, reused)``: the volume of ``fingerprint`` from memory, else ``load()`` (and kept).
        Without a fingerprint (an older portal) or with the cache off, always ``load()``."""
        if fingerprint and self.capacity:
            with self._lock:
                held = self._volumes.get(fingerprint)
                if held is not None:
                    self._volumes.move_to_end(fingerprint)
                    self.hits += 1
                    return held[0], held[1], True
        # Loaded outside the lock: two threads may both read a new series once; neither waits on the other.
        hu, grid = load()
        self.loads += 1
        hu = np.asarray(hu)
        if fingerprint and self.capacity:
            hu.setflags(write=False)
            with self._lock:
                self._volumes[fingerprint] = (hu, grid)
                self._volumes.move_to_end(fingerprint)
                while len(self._volumes) > self.capacity:
                    self._volumes.popitem(last=False)
        return hu, grid, False

    def __contains__(self, fingerprint) -> bool:
        with self._lock:
            return fingerprint in self._volumes

    def __len__(self) -> int:
        return len(self._volumes)

    def clear(self) -> None:
        with self._lock:
            self._volumes.clear()


_shared: CTCache | None = None


def shared_ct_cache() -> CTCache:
    global _shared
    if _shared is None:
        _shared = CTCache()
    return _shared
