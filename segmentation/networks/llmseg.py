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
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from segmentation.networks.fusion import build_fusion
from segmentation.networks.unet import ResidualUNet


class LLMSegNet(nn.Module):
    def __init__(self, widths: Sequence[int] = (16, 16, 32, 64, 128), context_dim: int = 384,
                 fusion: str = "two_way", fusion_depth: int = 2, fusion_heads: int = 8,
                 attention_downsample: int = 2):
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
        else:
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

        def fuse(level: int, f: torch.Tensor) -> torch.Tensor:
            tokens = self.projections[level](context.to(f.dtype))
            return self.fusions[level](f, tokens)

        logits, x = self.unet.decode(feats, fuse, return_features=True)
        b, c, z, y, w = x.shape
        axes = [torch.linspace(-1, 1, n, device=x.device, dtype=x.dtype) for n in (z, y, w)]
        pos = self.mask_pos(torch.stack(torch.meshgrid(*axes, indexing="ij"), -1))  # [Z, Y, X, C]
        voxel = x + pos.permute(3, 0, 1, 2)[None]
        weights = self.hyper(context.to(x.dtype))  # [B, K, C]
        extra = torch.einsum("bkc,bczyx->bzyx", weights, voxel) / (c ** 0.5)
        return logits + extra[:, None]

    def forward(self, image: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(image), context)
