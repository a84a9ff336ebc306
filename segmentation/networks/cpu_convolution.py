"""CPU inference speed: send each 3-D convolution of a narrow network to the kernel that is fast for it.

PyTorch's own CPU dispatch suits wide 2-D networks; for these 3-D networks (1-32 channels, 32 x 64 x 64
windows) it picks badly twice, measured on two threads of the project's 2-core VM:

- **3 x 3 x 3 convolutions, batch of one.** PyTorch picks oneDNN for a float32 ``conv3d`` only when the
  batch is larger than one or ``batch x channels x depth x height`` exceeds 20480 (its heuristic ignores the
  last axis, see ``use_mkldnn`` in ATen's Convolution.cpp). A single window falls under that limit and runs
  the im2col ``slow_conv3d``: an 8 -> 4 channel convolution over 32 x 64 x 64 took 123 ms there against
  11 ms in oneDNN, outputs equal to 1e-4. ``OneDNNConv3d`` calls ``aten.mkldnn_convolution`` directly.
- **Pointwise (1 x 1 x 1, stride 1) convolutions** are the opposite case: oneDNN took 3-8 ms for the 4 -> 1
  output head over 32 x 64 x 64 (26 ms for a batch of four windows), a matrix product over the channels
  0.1 ms. ``OneDNNConv3d`` runs them as ``weight @ x`` per window; the values are the same sums.

``OneDNNConv3d`` acts only when gradients are off (inference); training keeps PyTorch's own dispatch.
``prefer_onednn`` swaps the class of every plain ``nn.Conv3d`` in a module; parameters, state-dict keys and
checkpoints are unchanged. (The 2 x 2 x 2 transposed convolutions stay PyTorch's: as one matrix product and
an interleaving copy they were faster only for a batch of four windows, 1.8 against 3.1 ms, and equal or
slower for one, within this VM's noise.)
"""
from __future__ import annotations

import torch
from torch import nn


def onednn_available() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def _pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1 x 1 x 1, stride 1 convolution as a product over the channel axis: [O, C] @ [B, C, voxels]."""
    b, c = x.shape[:2]
    out = torch.matmul(weight.reshape(weight.shape[0], c), x.reshape(b, c, -1))
    if bias is not None:
        out.add_(bias[:, None])
    return out.reshape(b, weight.shape[0], *x.shape[2:])


class OneDNNConv3d(nn.Conv3d):
    """``nn.Conv3d`` that, for CPU float32 inference, runs oneDNN even for a batch of one, and a pointwise
    convolution as a matrix product."""

    def _cpu_inference(self, x: torch.Tensor) -> bool:
        return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
                and self.weight.dtype == torch.float32 and self.padding_mode == "zeros"
                and not isinstance(self.padding, str) and x.dim() == 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._cpu_inference(x):
            return super().forward(x)
        if (self.kernel_size == (1, 1, 1) and self.stride == (1, 1, 1) and tuple(self.padding) == (0, 0, 0)
                and self.groups == 1):
            return _pointwise(x, self.weight, self.bias)
        if not onednn_available():
            return super().forward(x)
        return torch.ops.aten.mkldnn_convolution(x.contiguous(), self.weight, self.bias, list(self.padding),
                                                 list(self.stride), list(self.dilation), self.groups)


def prefer_onednn(module: nn.Module) -> nn.Module:
    """Make every plain ``nn.Conv3d`` inside ``module`` an ``OneDNNConv3d`` (in place); returns ``module``."""
    for child in module.modules():
        if type(child) is nn.Conv3d:
            child.__class__ = OneDNNConv3d
    return module
