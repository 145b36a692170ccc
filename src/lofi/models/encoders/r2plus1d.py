"""R(2+1)D-18 (Tran et al., CVPR 2018): a 3-D ResNet-18 whose 3x3x3 convs are factorised into a 1x3x3 spatial
conv, BatchNorm, ReLU and a 3x1x1 temporal conv, with the middle width chosen to keep the 3-D conv's parameter
count.

Parameter names are exactly those of ``torchvision.models.video.r2plus1d_18`` without ``fc`` (``stem.0`` ..
``stem.4``, ``layerN.M.conv1.0.0`` / ``.0.1`` / ``.0.3`` / ``conv1.1``, ``downsample.0`` / ``.1``), so its Kinetics
weights load with :func:`lofi.models.encoders.checkpoints.load_torchvision_r2plus1d`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lofi.models.encoders.levers import AutocastMode, LeveredEncoder
from lofi.models.encoders.resnet_blocks import init_resnet_weights


class _Conv2Plus1d(nn.Sequential):
    """1x3x3 spatial conv -> BN -> ReLU -> 3x1x1 temporal conv; the stride applies in space and in time."""

    def __init__(self, *, in_channels: int, out_channels: int, mid_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(in_channels, mid_channels, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                      bias=False),
            nn.BatchNorm3d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_channels, out_channels, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )


class _Block(nn.Module):
    """Basic residual block of two (2+1)-D convs; both use the middle width of the block's first conv."""

    def __init__(self, *, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        # Middle width that gives the (2+1)-D conv the parameter count of a 3x3x3 conv from in_channels to planes.
        mid = (in_channels * planes * 27) // (in_channels * 9 + 3 * planes)
        self.conv1 = nn.Sequential(
            _Conv2Plus1d(in_channels=in_channels, out_channels=planes, mid_channels=mid, stride=stride),
            nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(
            _Conv2Plus1d(in_channels=planes, out_channels=planes, mid_channels=mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != planes:
            self.downsample = nn.Sequential(nn.Conv3d(in_channels, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm3d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C_in, F, H, W]`` -> ``[N, planes, F / stride, H / stride, W / stride]`` (rounded up)."""
        out = self.conv2(self.conv1(x))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class R2Plus1D(LeveredEncoder):
    """R(2+1)D-18: each snippet ``[3, F, H, W]`` -> one 512-d vector (global average over time and space);
    ``[B, T, F, 3, H, W]`` normalised frames -> ``[B, 512, T]``. Any ``F >= 1`` works (layers 2-4 halve time,
    rounding up). Memory levers: see :class:`~lofi.models.encoders.levers.LeveredEncoder`.
    """

    _memory_format = torch.channels_last_3d

    def __init__(self, *, checkpoint_stages: bool = False, channels_last: bool = False,
                 autocast: AutocastMode | None = None, frozen_bn: bool = False, frozen_stages: int = 0) -> None:
        super().__init__(checkpoint_stages=checkpoint_stages, channels_last=channels_last, autocast=autocast,
                         frozen_bn=frozen_bn, frozen_stages=frozen_stages)
        self.stem = nn.Sequential(
            nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(45), nn.ReLU(inplace=True),
            nn.Conv3d(45, 64, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(64), nn.ReLU(inplace=True))
        in_channels = 64
        layers = []
        for stage, planes in enumerate((64, 128, 256, 512)):
            stride = 1 if stage == 0 else 2
            layers.append(nn.Sequential(_Block(in_channels=in_channels, planes=planes, stride=stride),
                                        _Block(in_channels=planes, planes=planes)))
            in_channels = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.feature_dim = in_channels
        init_resnet_weights(self)
        self._setup_levers()

    def _stages(self) -> list[list[nn.Module]]:
        return [[self.stem], [self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` ``[B, T, F, 3, H, W]`` normalised float -> ``[B, 512, T]`` float32."""
        self._check_frames(frames)
        b, t, f, c, h, w = frames.shape
        x = frames.permute(0, 1, 3, 2, 4, 5).reshape(b * t, c, f, h, w)  # [B*T, 3, F, H, W]
        x = self._to_memory_format(x)
        with self._autocast(frames.device.type):
            for index, stage in enumerate((self.stem, self.layer1, self.layer2, self.layer3, self.layer4)):
                x = self._run_stage(index, stage, x)  # [B*T, 512, F', H/16, W/16] at the end
            x = x.mean(dim=(2, 3, 4))  # [B*T, 512]
        return x.float().view(b, t, self.feature_dim).transpose(1, 2)  # [B, 512, T]


def r2plus1d_18(**options: Any) -> R2Plus1D:
    """R(2+1)D-18 (D = 512, 31.30M parameters); ``options`` are :class:`R2Plus1D`'s keywords."""
    return R2Plus1D(**options)
