"""3-D residual U-Net built from MONAI blocks, split into encode / decode so that the
image-encoder features can be cached and reused (what-if re-contouring).

Encoder: ``len(widths)`` stages of MONAI ``UnetResBlock`` (two 3x3x3 convolutions with a residual
connection, instance norm), the first at stride 1 and each further one at stride 2 — the
UnetrBasicBlock-style residual encoder of LLMSeg with configurable widths (LLMSeg: 48, 48, 96,
192, 384). Decoder: MONAI ``UnetUpBlock`` per level (transposed conv, concatenation with the skip,
residual block). A fusion module may rewrite every skip feature before decoding.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from monai.networks.blocks.dynunet_block import UnetOutBlock, UnetResBlock, UnetUpBlock
from torch import nn


class ResidualUNet(nn.Module):
    def __init__(self, in_channels: int = 1, out_channels: int = 1, widths: Sequence[int] = (16, 16, 32, 64, 128),
                 norm: str = "instance"):
        super().__init__()
        if len(widths) < 2:
            raise ValueError("widths: need at least two levels")
        self.widths = tuple(int(w) for w in widths)
        self.encoders = nn.ModuleList()
        prev = in_channels
        for level, width in enumerate(self.widths):
            stride = 1 if level == 0 else 2
            self.encoders.append(UnetResBlock(3, prev, width, kernel_size=3, stride=stride, norm_name=norm))
            prev = width
        self.decoders = nn.ModuleList()
        for level in range(len(self.widths) - 1, 0, -1):
            self.decoders.append(UnetUpBlock(3, self.widths[level], self.widths[level - 1], kernel_size=3,
                                             stride=1, upsample_kernel_size=2, norm_name=norm))
        self.head = UnetOutBlock(3, self.widths[0], out_channels)

    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this (one halving per level after the first)."""
        return 2 ** (len(self.widths) - 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image -> feature maps of every level, finest first."""
        feats = []
        for block in self.encoders:
            x = block(x)
            feats.append(x)
        return feats

    def decode(self, feats: Sequence[torch.Tensor],
               fuse: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
               return_features: bool = False):
        """Feature maps -> logits; ``fuse(level, features)`` rewrites each level's features first.
        With ``return_features`` also the full-resolution decoder features before the head."""
        feats = [fuse(level, f) if fuse is not None else f for level, f in enumerate(feats)]
        x = feats[-1]
        for i, block in enumerate(self.decoders):
            x = block(x, feats[len(feats) - 2 - i])
        return (self.head(x), x) if return_features else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
