"""Whole-volume inference for the GPU workers: ``Segmenter`` loads a checkpoint once, segments a CT
on its own grid (MONAI sliding window, Gaussian blending) and re-contours for a changed clinical
context reusing the cached image-encoder features (``what_if``).

Input convention: ``hu`` is [slice, row, column] in the ContextRT orientation (segmentation.transforms).
Outputs are on the ORIGINAL CT grid (LLMSeg left them on its cropped/padded grid).
"""
from __future__ import annotations

import math
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np
import torch
import xxhash
from monai.inferers import sliding_window_inference

from segmentation.model import load_model
from segmentation.networks.cpu_convolution import prefer_onednn
from segmentation.transforms import NEGLIGIBLE_PROBABILITY, paste_box, prepare, to_original_grid_boxed


class Cancelled(Exception):
    """Raised when ``should_cancel()`` returned True between sliding-window steps."""


@dataclass
class SegmentationResult:
    """A contour on the original CT grid, held as the box where anything is non-zero.

    ``probability`` and ``mask`` are the full-grid arrays, built on first use: the portal stores only the
    box (``gpu_worker.client``), and on a 512 x 512 CT the full float map is 52 MB of new memory."""

    shape: tuple  # the CT grid [slice, row, column]
    # Slices of the CT grid outside which the probability is 0 and the mask False (None: nowhere above 0).
    probability_box: tuple | None
    box_probability: np.ndarray  # float32 in [0, 1], the probabilities inside probability_box
    box_mask: np.ndarray  # bool, the mask inside probability_box
    timings: dict = field(default_factory=dict)  # seconds per stage + "total"
    prompt_text: str = ""
    checkpoint_id: str = ""
    reused_image_features: bool = False

    @cached_property
    def probability(self) -> np.ndarray:
        """float32 [0, 1] on the CT grid; 0 where the probability is at most the negligible level."""
        return paste_box(self.shape, self.probability_box, self.box_probability)

    @cached_property
    def mask(self) -> np.ndarray:
        """bool on the CT grid."""
        return paste_box(self.shape, self.probability_box, self.box_mask, fill=False)


# Seeded per process: the key only has to tell apart the few CTs this process holds features for, and an
# unknown seed keeps anyone from crafting a CT whose key collides with another patient's.
_VOLUME_KEY_SEED = secrets.randbits(64)


def _volume_key(hu: np.ndarray, spacing_zyx) -> str:
    """Content identity of a CT for the feature cache. xxh3-128 hashes at memory speed (1 ms for a
    50 x 512 x 512 CT, where SHA-1 took 20 ms of every run, full or what-if)."""
    h = xxhash.xxh3_128(seed=_VOLUME_KEY_SEED)
    h.update(str((hu.shape, str(hu.dtype), tuple(float(s) for s in spacing_zyx))).encode())
    h.update(memoryview(np.ascontiguousarray(hu)).cast("B"))
    return h.hexdigest()


def _window_key(coords) -> tuple:
    """A sliding window's identity: its (start, stop) along each spatial axis (MONAI passes slices)."""
    return tuple((int(c.start), int(c.stop)) for c in coords[-3:])


class Segmenter:
    """One loaded model; thread-compatible but not thread-safe (one worker thread per Segmenter)."""

    def __init__(self, model, payload: dict, device="cpu", *, roi_size=None, overlap=None, threshold: float = 0.5,
                 feature_cache_size: int = 4, window_batch: int = 4, onednn: bool = True,
                 negligible_probability: float = NEGLIGIBLE_PROBABILITY):
        self.model = model.eval()
        self.payload = payload
        self.device = torch.device(device)
        if onednn and self.device.type == "cpu":
            # A window batch of one otherwise falls on PyTorch's slow conv3d path (10x slower).
            prefer_onednn(self.model)
        cfg = model.config
        self.roi_size = tuple(roi_size or cfg.roi_size)
        self.overlap = float(cfg.overlap if overlap is None else overlap)
        divisor = model.net.divisor
        if any(r % divisor for r in self.roi_size):
            raise ValueError(f"roi_size: {self.roi_size} must be multiples of {divisor}")
        if int(window_batch) < 1:
            raise ValueError(f"window_batch: must be >= 1, got {window_batch}")
        # Sliding windows run window_batch at a time. Besides the throughput, a batch of one sends
        # PyTorch's CPU conv3d down its slow im2col path whenever channels x depth x height is small
        # (its oneDNN heuristic ignores the last axis): 4 x 32 x 64 x 64 took 43 ms there.
        self.window_batch = int(window_batch)
        if not 0.0 <= negligible_probability < threshold:
            raise ValueError(f"negligible_probability: must lie in [0, threshold={threshold}), "
                             f"got {negligible_probability}")
        self.threshold = threshold
        # Probabilities at or below this are returned as 0 and never computed on the CT grid (see
        # segmentation.transforms.to_original_grid_boxed); the default is what the portal stores as 0.
        self.negligible_probability = float(negligible_probability)
        self._features: OrderedDict = OrderedDict()
        self._feature_cache_size = feature_cache_size

    @classmethod
    def from_checkpoint(cls, path, device="cpu", **kwargs) -> "Segmenter":
        model, payload = load_model(path, device=device)
        return cls(model, payload, device, **kwargs)

    # identity
    @property
    def checkpoint_id(self) -> str:
        return self.payload["checkpoint_id"]

    @property
    def cancer_type(self) -> str:
        return self.model.config.cancer_type

    @property
    def uses_text(self) -> bool:
        return self.model.uses_text

    # inference
    def predict(self, hu, spacing_zyx, cancer_type, context, *, progress: Callable | None = None,
                should_cancel: Callable | None = None, omit=()) -> SegmentationResult:
        return self._run(hu, spacing_zyx, cancer_type, context, progress, should_cancel, omit, reuse_only=False)

    def what_if(self, hu, spacing_zyx, cancer_type, new_context, *, progress: Callable | None = None,
                should_cancel: Callable | None = None, omit=()) -> SegmentationResult:
        """Same CT, new context: image-encoder features come from the cache when this CT was seen."""
        return self._run(hu, spacing_zyx, cancer_type, new_context, progress, should_cancel, omit, reuse_only=True)

    def _run(self, hu, spacing_zyx, cancer_type, context, progress, should_cancel, omit, reuse_only):
        t0 = time.perf_counter()
        timings = {}
        if cancer_type != self.cancer_type:
            raise ValueError(f"cancer_type: this checkpoint segments {self.cancer_type!r}, got {cancer_type!r}")
        hu = np.asarray(hu)
        if self.uses_text and context is None:
            raise ValueError("context: this multimodal checkpoint needs the clinical context (got None)")
        report = progress or (lambda percent, message: None)
        cancel = should_cancel or (lambda: False)

        key = _volume_key(hu, spacing_zyx)
        cached = self._features.get(key)
        if cached is not None:
            self._features.move_to_end(key)
            prepared, window_features = cached
        else:
            t = time.perf_counter()
            prepared = prepare(hu, spacing_zyx, self.model.config.target_spacing_zyx, self.model.net.divisor)
            timings["preprocess"] = time.perf_counter() - t
            window_features = {}
        reused = cached is not None
        report(2.0, "preprocessed" if not reused else "reusing cached image features")

        t = time.perf_counter()
        with torch.no_grad():
            if self.uses_text:
                tokens, texts = self.model.context_tokens([context], omit)
                tokens = tokens.to(self.device)
                prompt_text = texts[0]
            else:
                tokens, prompt_text = None, ""
        timings["text"] = time.perf_counter() - t

        image = prepared.image[None].to(self.device)
        n_windows = self._count_windows(tuple(image.shape[2:]))
        done = [0]
        enc_time, dec_time = [0.0], [0.0]

        def predictor(patches, coords):
            if cancel():
                raise Cancelled("inference cancelled")
            keys = [_window_key(c) for c in coords]
            ts = time.perf_counter()
            missing = [i for i, k in enumerate(keys) if k not in window_features]
            if missing:
                encoded = self.model.net.encode(patches[missing])
                for j, i in enumerate(missing):
                    window_features[keys[i]] = [level[j:j + 1] for level in encoded]
            per_window = [window_features[k] for k in keys]
            feats = [torch.cat(levels) if len(levels) > 1 else levels[0] for levels in zip(*per_window)]
            enc_time[0] += time.perf_counter() - ts
            ts = time.perf_counter()
            out = torch.sigmoid(self.model.net.decode(feats, tokens))
            dec_time[0] += time.perf_counter() - ts
            done[0] += len(keys)
            report(2.0 + 93.0 * done[0] / n_windows, f"window {done[0]}/{n_windows}")
            return out

        with torch.no_grad():
            prob = sliding_window_inference(image, self.roi_size, self.window_batch, predictor, overlap=self.overlap,
                                            mode="gaussian", with_coord=True)
        timings["image_encoder"] = enc_time[0]
        timings["decode"] = dec_time[0]
        if not reused:
            self._features[key] = (prepared, window_features)
            while len(self._features) > self._feature_cache_size:
                self._features.popitem(last=False)

        t = time.perf_counter()
        box, box_probability = to_original_grid_boxed(prob[0], prepared, self.negligible_probability)
        # The threshold lies above the negligible level, so no voxel outside the box can reach it.
        box_mask = box_probability >= self.threshold
        timings["postprocess"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        report(100.0, "done")
        return SegmentationResult(shape=tuple(hu.shape), probability_box=box, box_probability=box_probability,
                                  box_mask=box_mask, timings=timings, prompt_text=prompt_text,
                                  checkpoint_id=self.checkpoint_id, reused_image_features=reused)

    def _count_windows(self, shape) -> int:
        count = 1
        for size, roi in zip(shape, self.roi_size):
            roi = min(roi, size) if size < roi else roi
            interval = max(1, int(roi * (1 - self.overlap)))
            count *= 1 if size <= roi else math.ceil((size - roi) / interval) + 1
        return max(1, count)

    def clear_cache(self, *, text: bool = False) -> None:
        """Forget cached image features; with ``text=True`` also the text encoder's embeddings, so the next
        run pays for encoding its prompt as a run with a context never seen before does."""
        self._features.clear()
        if text and hasattr(self.model.text, "clear_cache"):
            self.model.text.clear_cache()
