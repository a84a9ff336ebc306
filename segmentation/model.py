"""The full segmentation model (text encoder + LLMSeg network), its config, and checkpoints.

A checkpoint is a ``torch.save``d dict: ``format``, ``config`` (everything needed to rebuild the
model), ``text_encoder`` (its identity: package/version or directory, tuning, prompt sizes),
``state_dict`` WITHOUT the frozen language-model weights (they are reloaded from the encoder's
package/directory; LLMSeg stored the 7B LM in every checkpoint), ``cohort`` / ``split`` used for
training, ``metrics`` and ``history``. ``checkpoint_id`` is a content hash of the saved weights.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from segmentation.networks import LLMSegNet
from segmentation.text import build_text_encoder

CHECKPOINT_FORMAT = "contextrt-seg/1"


@dataclass
class ModelConfig:
    cancer_type: str = "breast"
    text_encoder: dict = field(default_factory=lambda: {"kind": "minilm", "tuning": "multi", "n_prompts": 2,
                                                         "prompt_length": 8})
    widths: tuple = (16, 16, 32, 64, 128)
    fusion: str = "two_way"
    fusion_depth: int = 2
    fusion_heads: int = 8
    attention_downsample: int = 2
    target_spacing_zyx: tuple = (3.0, 1.0, 1.0)
    roi_size: tuple = (32, 64, 64)  # sliding-window ROI on the working grid, voxels
    overlap: float = 0.5
    context_norm: bool = False  # standardise context tokens with running statistics (networks/llmseg.py)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"config: unknown keys {sorted(unknown)}")
        data = dict(data)
        for key in ("widths", "target_spacing_zyx", "roi_size"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def as_dict(self) -> dict:
        d = asdict(self)
        for key in ("widths", "target_spacing_zyx", "roi_size"):
            d[key] = list(d[key])
        return d


class SegmentationModel(nn.Module):
    def __init__(self, config: ModelConfig, device="cpu"):
        super().__init__()
        self.config = config
        self.text = build_text_encoder(config.text_encoder, config.cancer_type, device=device)
        self.net = LLMSegNet(config.widths, self.text.output_dim, config.fusion, config.fusion_depth,
                             config.fusion_heads, config.attention_downsample,
                             context_norm=config.context_norm, context_tokens=max(1, self.text.num_tokens))
        self.to(device)

    @property
    def uses_text(self) -> bool:
        return self.text.output_dim > 0

    def context_tokens(self, contexts, omit=()):
        return self.text.encode(self.config.cancer_type, contexts, omit)

    def set_reference_contexts(self, contexts) -> None:
        """Contexts whose tokens define the context standardisation (the training contexts and their
        counterfactuals); duplicates by prompt text are dropped."""
        unique = {}
        for ctx in contexts:
            unique.setdefault(self.text.render(self.config.cancer_type, ctx), ctx)
        self._reference_contexts = list(unique.values())

    def refresh_context_statistics(self) -> None:
        """Re-encode the reference contexts with the current prompt parameters and store their mean and
        spread in the network's standardiser (a no-op for models without one)."""
        norm = getattr(self.net, "context_norm", None)
        if norm is None:
            return
        contexts = getattr(self, "_reference_contexts", None)
        if not contexts:
            raise ValueError("context statistics: call set_reference_contexts(training contexts) first")
        with torch.no_grad():
            bank, _ = self.context_tokens(contexts)
        norm.set_statistics(bank)

    def forward(self, image, contexts, omit=()):
        tokens, _ = self.context_tokens(contexts, omit)
        return self.net(image, tokens)

    def saved_state_dict(self) -> dict:
        """state_dict minus the frozen LM weights (LoRA adapters, being trainable, are kept)."""
        state = self.state_dict()
        frozen = tuple(f"text.{p}" for p in self.text.frozen_state_prefixes())
        keep_lm = {f"text.{k}" for k in getattr(self.text, "trainable_lm_keys", lambda: set())()}
        return {k: v for k, v in state.items() if not k.startswith(frozen) or k in keep_lm}


def _hash_state(state: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(model: SegmentationModel, path, *, cohort: dict | None = None, metrics: dict | None = None,
                    history: list | None = None, extra: dict | None = None) -> str:
    state = {k: v.detach().cpu() for k, v in model.saved_state_dict().items()}
    ckpt_id = f"{model.config.cancer_type}-{'mm' if model.uses_text else 'vision'}-{_hash_state(state)}"
    payload = {"format": CHECKPOINT_FORMAT, "checkpoint_id": ckpt_id, "config": model.config.as_dict(),
               "text_encoder": model.text.identity(), "state_dict": state, "cohort": cohort or {},
               "metrics": metrics or {}, "history": history or [], "extra": extra or {}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)  # atomic: a reader never sees half a checkpoint
    return ckpt_id


def read_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint: {path} is not a ContextRT segmentation checkpoint ({CHECKPOINT_FORMAT})")
    return payload


def load_model(path_or_payload, device="cpu") -> tuple[SegmentationModel, dict]:
    payload = path_or_payload if isinstance(path_or_payload, dict) else read_checkpoint(path_or_payload)
    model = SegmentationModel(ModelConfig.from_dict(payload["config"]), device=device)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    frozen = tuple(f"text.{p}" for p in model.text.frozen_state_prefixes())
    bad_missing = [k for k in missing if not k.startswith(frozen)]
    if bad_missing or unexpected:
        raise ValueError(f"checkpoint: weights do not match the config (missing {bad_missing[:5]}, "
                         f"unexpected {list(unexpected)[:5]})")
    model.eval()
    return model, payload


def init_image_path_from(model: SegmentationModel, path) -> dict:
    """Copy the U-Net (image path) weights of checkpoint ``path`` into ``model`` (warm start).

    The widths must match; text path, projections, fusion and mask head keep their fresh
    initialisation. Returns {"checkpoint_id", "tensors"} for the new checkpoint's provenance."""
    payload = read_checkpoint(path)
    source = {k: v for k, v in payload["state_dict"].items() if k.startswith("net.unet.")}
    if not source:
        raise ValueError(f"--init-from: {path} holds no U-Net weights (net.unet.*)")
    widths = f" (widths {payload['config'].get('widths')} vs {list(model.config.widths)})"
    return _copy_weights(model, payload, source, f"--init-from: {path}", widths)


def _copy_weights(model: SegmentationModel, payload: dict, source: dict, origin: str, hint: str = "") -> dict:
    """Load ``source`` (a subset of ``payload``'s weights) into ``model`` after checking every tensor fits."""
    target = model.state_dict()
    for key, value in source.items():
        if key not in target or target[key].shape != value.shape:
            raise ValueError(f"{origin} does not fit this model at {key}{hint}")
    model.load_state_dict(source, strict=False)
    return {"checkpoint_id": payload.get("checkpoint_id"), "tensors": len(source)}


def init_all_from(model: SegmentationModel, path) -> dict:
    """Copy every saved weight of checkpoint ``path`` into ``model`` (fine-tuning a finished model).

    Unlike ``init_image_path_from`` the text path, projections, fusion and mask head come along, so
    the checkpoint's config must build the same network: a mismatch names the first differing
    setting or tensor. Returns {"checkpoint_id", "tensors"} for the new checkpoint's provenance."""
    payload = read_checkpoint(path)
    ours, theirs = model.config.as_dict(), payload["config"]
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) != theirs.get(key):
            raise ValueError(f"--finetune-from: {path} was trained with {key}={theirs.get(key)!r}, "
                             f"this run asks for {ours.get(key)!r}")
    return _copy_weights(model, payload, payload["state_dict"], f"--finetune-from: {path}")
