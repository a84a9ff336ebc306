"""The LLMSeg multimodal network: residual U-Net image path + context tokens aligned with the image
features at every skip level by a fusion module (two-way transformer by default).

``context_dim`` is the width of the context embedding (384 for MiniLM, 4096 for a 7B LM); one
``Linear(context_dim -> C_l)`` per level projects it to that level's channels (LLMSeg's design).
With ``context_dim=0`` the network is the vision-only baseline (a plain residual U-Net).
``encode`` / ``decode`` are separate so inference can cache image features per CT.

Mask head: as in SAM's mask decoder, each context token also goes through a small MLP
(hypernetwork) and its dot product with the final full-resolution decoder features plus a learned
position code is added to the U-Net's logits. This gives the text a direct, spatially explicit
say in the mask (e.g. "left side" -> a ramp across the column axis) on top of the aligned skips;
without it the first CPU-trained checkpoint learned to ignore the context entirely.

``context_norm``: a ``ContextStandardiser`` (whitening) on the incoming context tokens before any
projection. A small frozen LM puts nearly the same vector into every ``[SEG]`` state (MiniLM: cosine
0.9996 between the "left side" and "right side" prompts), so the clinical information was a ~3 %
ripple the projections never picked up and the first checkpoint ignored the context. Whitening over
the clinical contexts turns that ripple into unit-scale features.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from segmentation.networks.fusion import build_fusion
from segmentation.networks.unet import ResidualUNet


class ContextStandardiser(nn.Module):
    """ZCA whitening of the context tokens, per token slot, within the subspace that clinical contexts
    span: ``x -> W (x - mean)`` with ``W = V diag(1 / sigma) V^T`` from the SVD of a bank of context
    tokens (the training cohort's contexts and their counterfactuals, encoded with the *current*
    prompt parameters; the trainer refreshes it every step because the learnable prompts move every
    [SEG] state). Components weaker than ``rel_floor`` of the strongest are dropped (noise).

    Why whitening, not per-dimension scaling: in MiniLM's [SEG] states the surgery type carries ~80 %
    of the variance across contexts and laterality ~4 %; per-dimension scaling kept that imbalance
    (cosine 0.97 between left and right), whitening gives every direction of clinical variation unit
    variance (cosine 0.65, laterality as strong as surgery). Buffers are saved with the checkpoint
    and fixed at inference."""

    def __init__(self, tokens: int, dim: int, rel_floor: float = 1e-2):
        super().__init__()
        self.rel_floor = float(rel_floor)
        self.register_buffer("mean", torch.zeros(tokens, dim))
        self.register_buffer("whiten", torch.eye(dim).repeat(tokens, 1, 1))

    @torch.no_grad()
    def set_statistics(self, bank: torch.Tensor) -> None:
        """``bank``: [N, K, D] context tokens of N distinct contexts (N >= 2)."""
        if bank.shape[0] < 2:
            raise ValueError("context statistics: need at least two distinct contexts")
        bank = bank.float()
        mean = bank.mean(0)
        for k in range(bank.shape[1]):
            centred = bank[:, k] - mean[k]
            _, sing, vh = torch.linalg.svd(centred, full_matrices=False)
            keep = sing > self.rel_floor * sing[0].clamp_min(1e-12)
            basis = vh[keep].T  # [D, r]
            sigma = sing[keep] / bank.shape[0] ** 0.5
            self.whiten[k].copy_((basis / sigma) @ basis.T)
        self.mean.copy_(mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, K, D]
        return torch.einsum("kde,bke->bkd", self.whiten.to(x.dtype), x - self.mean.to(x.dtype))


class LLMSegNet(nn.Module):
    def __init__(self, widths: Sequence[int] = (16, 16, 32, 64, 128), context_dim: int = 384,
                 fusion: str = "two_way", fusion_depth: int = 2, fusion_heads: int = 8,
                 attention_downsample: int = 2, context_norm: bool = False, context_tokens: int = 1):
        super().__init__()
        self.unet = ResidualUNet(1, 1, widths)
        self.context_dim = int(context_dim)
        self.fusion_kind = fusion
        if self.context_dim > 0:
            self.projections = nn.ModuleList(nn.Linear(self.context_dim, w) for w in self.unet.widths)
            extra = dict(depth=fusion_depth, heads=fusion_heads, downsample=attention_downsample)
            self.fusions = nn.ModuleList(build_fusion(fusion, w, **extra) for w in self.unet.widths)
            c0 = self.unet.widths[0]
            self.hyper = nn.Sequential(nn.Linear(self.context_dim, 4 * c0), nn.GELU(), nn.Linear(4 * c0, c0))
            self.mask_pos = nn.Linear(3, c0)
            self.context_norm = ContextStandardiser(context_tokens, self.context_dim) if context_norm else None
        else:
            self.context_norm = None
            self.projections = None
            self.fusions = None

    @property
    def divisor(self) -> int:
        return self.unet.divisor

    @property
    def uses_context(self) -> bool:
        return self.context_dim > 0

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.unet.encode(image)

    def decode(self, feats: Sequence[torch.Tensor], context: torch.Tensor | None) -> torch.Tensor:
        """``context``: [B, K, context_dim] context tokens (K = number of prompt sets), or None."""
        if not self.uses_context:
            return self.unet.decode(feats)
        if context is None:
            raise ValueError("context: this multimodal network needs context tokens")
        if context.shape[0] != feats[0].shape[0]:
            context = context.expand(feats[0].shape[0], -1, -1)
        if self.context_norm is not None:
            context = self.context_norm(context.to(feats[0].dtype))

        def fuse(level: int, f: torch.Tensor) -> torch.Tensor:
            tokens = self.projections[level](context.to(f.dtype))
            return self.fusions[level](f, tokens)

        logits, x = self.unet.decode(feats, fuse, return_features=True)
        c = x.shape[1]
        voxel = x + self._mask_position_code(tuple(x.shape[2:]), x.dtype, x.device)[None]
        weights = self.hyper(context.to(x.dtype))  # [B, K, C]
        extra = torch.einsum("bkc,bczyx->bzyx", weights, voxel) / (c ** 0.5)
        return logits + extra[:, None]

    def _mask_position_code(self, shape, dtype, device) -> torch.Tensor:
        """``mask_pos`` over a window's voxels, [C, Z, Y, X]. It depends on neither the image nor the text, so
        inference keeps the last one (1.2 ms of every 32 x 64 x 64 window on a CPU); the key holds the
        weights' version counter, which every in-place update (optimiser step, load_state_dict) moves."""
        caching = not (self.training or torch.is_grad_enabled())
        key = (shape, dtype, device, self.mask_pos.weight._version, self.mask_pos.bias._version,
               self.mask_pos.weight.data_ptr())
        cached = getattr(self, "_mask_pos_cache", None)
        if caching and cached is not None and cached[0] == key:
            return cached[1]
        axes = [torch.linspace(-1, 1, n, device=device, dtype=dtype) for n in shape]
        code = self.mask_pos(torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)).permute(3, 0, 1, 2)
        if caching:
            self._mask_pos_cache = (key, code)
        return code

    def forward(self, image: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(image), context)
