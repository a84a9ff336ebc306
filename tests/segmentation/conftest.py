"""Shared helpers for the segmentation tests: tiny fixture cases and tiny checkpoints."""
from __future__ import annotations

import pytest
import torch

from segmentation.model import ModelConfig, SegmentationModel, save_checkpoint

TINY_SHAPE = (16, 32, 32)  # fixtures shape (slices, rows, cols): ~16 mm pixels, keeps tests quick
TINY_CONFIG = dict(widths=(4, 8, 8), target_spacing_zyx=(9.375, 15.625, 15.625), roi_size=(16, 32, 32), overlap=0.25)


@pytest.fixture(scope="session")
def tiny_cases():
    from segmentation.cohort import generate_cases

    return generate_cases("breast", "internal", "train", 3, shape=TINY_SHAPE)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """A multimodal (MiniLM) and a vision-only untrained checkpoint with the tiny config."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    paths = {}
    for name, text in (("mm", {"kind": "minilm", "tuning": "multi"}), ("vision", {"kind": "none"})):
        model = SegmentationModel(ModelConfig(text_encoder=text, **TINY_CONFIG))
        paths[name] = root / f"{name}.pt"
        save_checkpoint(model, paths[name], cohort={"test": True})
    return paths
