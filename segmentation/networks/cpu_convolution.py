"""CPU inference speed: route 3-D convolutions through oneDNN whatever the batch size.

PyTorch picks oneDNN for a CPU float32 ``conv3d`` only when the batch is larger than one or
``batch x channels x depth x height`` exceeds 20480 (its heuristic ignores the last axis, see
``use_mkldnn`` in ATen's Convolution.cpp). A single sliding window of these narrow networks
(4-16 channels, 32 x 64 x 64) falls under that limit and runs PyTorch's im2col ``slow_conv3d``:
a 8 -> 4 channel 3x3x3 convolution over 32 x 64 x 64 took 123 ms there against 11 ms in oneDNN
on two threads, with outputs equal to 1e-4. ``prefer_onednn`` swaps the class of every plain
``nn.Conv3d`` in a module for ``OneDNNConv3d``, which calls ``aten.mkldnn_convolution`` directly
when gradients are off (inference only: training keeps PyTorch's own dispatch). Parameters,
state-dict keys and checkpoints are unchanged.
"""
from __future__ import annotations

import torch
from torch import nn


def onednn_available() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


class OneDNNConv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs oneDNN for CPU float32 inference even for a batch of one."""

    def _onednn_applies(self, x: torch.Tensor) -> bool:
        return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
                and self.weight.dtype == torch.float32 and self.padding_mode == "zeros"
                and not isinstance(self.padding, str) and onednn_available())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._onednn_applies(x):
            return super().forward(x)
        return torch.ops.aten.mkldnn_convolution(x.contiguous(), self.weight, self.bias, list(self.padding),
                                                 list(self.stride), list(self.dilation), self.groups)


def prefer_onednn(module: nn.Module) -> nn.Module:
    """Make every plain ``nn.Conv3d`` inside ``module`` an ``OneDNNConv3d`` (in place); returns ``module``."""
    for child in module.modules():
        if type(child) is nn.Conv3d:
            child.__class__ = OneDNNConv3d
    return module
