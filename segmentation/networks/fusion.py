"""How the context tokens meet the image features at one skip level; every strategy has the same
interface ``module(features [B,C,Z,Y,X], tokens [B,K,C]) -> features [B,C,Z,Y,X]`` where
``tokens`` are the context embedding(s) already projected to that level's channels.

- ``two_way`` (LLMSeg, default): a SAM-style two-way transformer. Per layer: token self-attention,
  token→image cross-attention, token MLP, image→token cross-attention; there is NO voxel
  self-attention, so both cross-attentions cost O(voxels × tokens), linear in the number of
  voxels. As in SAM, the cross-attentions work in a downsampled internal width (C / 2). On a CPU
  even linear cost at the finest levels dominates, so a level with more than ``max_voxels``
  voxels is average-pooled (same factor on every axis) before alignment and the alignment's
  *change* to the features is upsampled back (trilinear) and added to the full-resolution
  features: coarse context-dependent corrections, full-resolution image detail kept.
- ``gated``: gated residual injection (ContextUNETR variant): f + tanh(g) · proj(mean token).
- ``concat``: concatenate the broadcast token map and mix with a 1x1x1 convolution.
- ``static``: static weighted fusion: f + w · proj(mean token), one learned scalar per level.
- ``dynamic``: attention-based dynamic fusion: a per-voxel gate computed from image and text
  decides how much of the text map is added.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from segmentation.networks.interpolation import resize_trilinear


def _heads_for(width: int, wanted: int) -> int:
    heads = min(wanted, width)
    while width % heads:
        heads -= 1
    return max(1, heads)


class _Attention(nn.Module):
    """Multi-head attention with a (possibly) downsampled internal width, as in SAM."""

    def __init__(self, dim: int, heads: int, downsample: int = 1):
        super().__init__()
        inner = max(1, dim // downsample)
        self.heads = _heads_for(inner, heads)
        self.q, self.k, self.v = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.out = nn.Linear(inner, dim)

    def forward(self, q, k, v):
        b = q.shape[0]

        def split(x):
            return x.reshape(b, x.shape[1], self.heads, -1).transpose(1, 2)

        out = nn.functional.scaled_dot_product_attention(split(self.q(q)), split(self.k(k)), split(self.v(v)))
        return self.out(out.transpose(1, 2).reshape(b, q.shape[1], -1))


class _TwoWayLayer(nn.Module):
    def __init__(self, dim: int, heads: int, downsample: int, mlp_ratio: int = 2):
        super().__init__()
        self.self_attn = _Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.token_to_image = _Attention(dim, heads, downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))
        self.norm3 = nn.LayerNorm(dim)
        self.image_to_token = _Attention(dim, heads, downsample)
        self.norm4 = nn.LayerNorm(dim)

    def forward(self, tokens, image, image_pos):
        tokens = self.norm1(tokens + self.self_attn(tokens, tokens, tokens))
        tokens = self.norm2(tokens + self.token_to_image(tokens, image + image_pos, image))
        tokens = self.norm3(tokens + self.mlp(tokens))
        image = self.norm4(image + self.image_to_token(image + image_pos, tokens, tokens))
        return tokens, image


class TwoWayFusion(nn.Module):
    def __init__(self, channels: int, depth: int = 2, heads: int = 8, downsample: int = 2, max_voxels: int = 4096):
        super().__init__()
        self.max_voxels = int(max_voxels)
        self.layers = nn.ModuleList(_TwoWayLayer(channels, heads, downsample) for _ in range(depth))
        # Learned per-axis position code (cheap, resolution independent) so tokens can address regions.
        self.pos = nn.Linear(3, channels)

    def forward(self, feats, tokens):
        voxels = feats.shape[2] * feats.shape[3] * feats.shape[4]
        if self.max_voxels and voxels > self.max_voxels:
            factor = int(math.ceil((voxels / self.max_voxels) ** (1 / 3)))
            pooled = nn.functional.avg_pool3d(feats, factor, ceil_mode=True)
            change = self._align(pooled, tokens) - pooled
            return feats + resize_trilinear(change, feats.shape[2:])
        return self._align(feats, tokens)

    def _align(self, feats, tokens):
        b, c, z, y, x = feats.shape
        image = feats.flatten(2).transpose(1, 2)  # [B, V, C]
        grid = torch.stack(torch.meshgrid(
            torch.linspace(-1, 1, z, device=feats.device), torch.linspace(-1, 1, y, device=feats.device),
            torch.linspace(-1, 1, x, device=feats.device), indexing="ij"), dim=-1).reshape(1, -1, 3)
        pos = self.pos(grid.to(feats.dtype))
        out = image
        for layer in self.layers:
            tokens, out = layer(tokens, out, pos)
        return out.transpose(1, 2).reshape(b, c, z, y, x)


class GatedFusion(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.proj = nn.Linear(channels, channels)
        self.gate = nn.Parameter(torch.zeros(channels))

    def forward(self, feats, tokens):
        text = self.proj(tokens.mean(1))[:, :, None, None, None]
        return feats + torch.tanh(self.gate)[None, :, None, None, None] * text


class ConcatFusion(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.mix = nn.Conv3d(2 * channels, channels, kernel_size=1)

    def forward(self, feats, tokens):
        text = tokens.mean(1)[:, :, None, None, None].expand_as(feats)
        return self.mix(torch.cat([feats, text], dim=1))


class StaticWeightedFusion(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.proj = nn.Linear(channels, channels)
        self.weight = nn.Parameter(torch.tensor(0.5))

    def forward(self, feats, tokens):
        return feats + self.weight * self.proj(tokens.mean(1))[:, :, None, None, None]


class DynamicAttentionFusion(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.proj = nn.Linear(channels, channels)
        self.gate = nn.Conv3d(2 * channels, channels, kernel_size=1)

    def forward(self, feats, tokens):
        text = self.proj(tokens.mean(1))[:, :, None, None, None].expand_as(feats)
        weight = torch.sigmoid(self.gate(torch.cat([feats, text], dim=1)))
        return feats + weight * text


FUSIONS = {
    "two_way": TwoWayFusion,
    "gated": GatedFusion,
    "concat": ConcatFusion,
    "static": StaticWeightedFusion,
    "dynamic": DynamicAttentionFusion,
}


def build_fusion(kind: str, channels: int, **kwargs) -> nn.Module:
    try:
        cls = FUSIONS[kind]
    except KeyError:
        raise ValueError(f"fusion: unknown strategy {kind!r}; expected one of {', '.join(FUSIONS)}") from None
    return cls(channels, **kwargs) if kind == "two_way" else cls(channels)
