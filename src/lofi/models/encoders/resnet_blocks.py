"""2-D ResNet parts with a residual temporal shift (TSM), in torchvision's parameter layout, and the shared init.

Block attribute names (``conv1``, ``bn1``, ..., ``downsample.0`` / ``downsample.1``) are torchvision's, so a
ResNet state dict maps one to one. The shift has no parameters: it sits on the residual branch, in front of each
block's ``conv1`` (the TSM paper's "residual shift"), and runs across the ``num_frames`` frames of each snippet.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd


def temporal_shift(x: torch.Tensor, *, num_frames: int, shift_div: int = 8) -> torch.Tensor:
    """Shift part of the channels by one frame along time, within each snippet.

    ``x`` is ``[N * num_frames, C, H, W]`` (frames of a snippet consecutive). With ``fold = C // shift_div``,
    channels ``[0, fold)`` of frame ``f`` take the values of frame ``f + 1``, channels ``[fold, 2 * fold)`` those
    of frame ``f - 1``, with zeros past the snippet's ends; the other channels are unchanged. This is the
    direction convention of the official TSM release, so its weights mean the same here. ``num_frames == 1`` or
    ``shift_div == 0``: no shift (``x`` returned as is). The memory format of ``x`` is kept.
    """
    nt, channels, height, width = x.shape
    if num_frames < 1 or nt % num_frames:
        raise ValueError(f"temporal_shift: {nt} frames is not a whole number of snippets of {num_frames}")
    fold = channels // shift_div if shift_div else 0
    if num_frames == 1 or fold == 0:
        return x
    x5 = x.view(nt // num_frames, num_frames, channels, height, width)  # [N, F, C, H, W]
    out = torch.empty_like(x5)  # same strides as x5, so channels-last stays channels-last
    out[:, :, 2 * fold:] = x5[:, :, 2 * fold:]  # untouched channels
    out[:, :-1, :fold] = x5[:, 1:, :fold]  # first fold: look one frame ahead ...
    out[:, -1, :fold] = 0  # ... nothing after the last frame
    out[:, 1:, fold:2 * fold] = x5[:, :-1, fold:2 * fold]  # second fold: look one frame back ...
    out[:, 0, fold:2 * fold] = 0  # ... nothing before the first frame
    return out.view(nt, channels, height, width)  # [N * F, C, H, W]


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """ResNet-18/34 block (two 3x3 convs) with the temporal shift in front of ``conv1`` on the residual branch."""

    expansion = 1

    def __init__(self, *, in_channels: int, planes: int, stride: int = 1, shift_div: int = 8) -> None:
        super().__init__()
        self.shift_div = shift_div
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(in_channels, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor, *, num_frames: int) -> torch.Tensor:
        """``[N * num_frames, C_in, H, W]`` -> ``[N * num_frames, planes, H / stride, W / stride]``."""
        out = self.relu(self.bn1(self.conv1(temporal_shift(x, num_frames=num_frames, shift_div=self.shift_div))))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet-50 block (1x1, 3x3 with the stride, 1x1 x4) with the temporal shift in front of ``conv1``."""

    expansion = 4

    def __init__(self, *, in_channels: int, planes: int, stride: int = 1, shift_div: int = 8) -> None:
        super().__init__()
        self.shift_div = shift_div
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor, *, num_frames: int) -> torch.Tensor:
        """``[N * num_frames, C_in, H, W]`` -> ``[N * num_frames, 4 * planes, H / stride, W / stride]``."""
        out = self.relu(self.bn1(self.conv1(temporal_shift(x, num_frames=num_frames, shift_div=self.shift_div))))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def init_resnet_weights(module: nn.Module) -> None:
    """torchvision's ResNet init: Kaiming-normal (fan-out, ReLU) convs, BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, _ConvNd):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _BatchNorm) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
