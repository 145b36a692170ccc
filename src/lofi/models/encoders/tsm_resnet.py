"""TSM-ResNet (Lin et al., ICCV 2019): a 2-D ResNet over every frame with a residual temporal shift.

The shift moves ``1 / shift_div`` of the channels one frame forward and as many one frame back, across the ``F``
frames of each snippet, in front of every block's ``conv1`` (residual branch only). Parameter names are exactly
torchvision's ResNet without ``fc``; :mod:`lofi.models.encoders.checkpoints` loads torchvision ImageNet weights
and checkpoints of the official TSM release.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from lofi.models.encoders.levers import AutocastMode, LeveredEncoder
from lofi.models.encoders.resnet_blocks import BasicBlock, Bottleneck, init_resnet_weights

_ARCHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class TSMResNet(LeveredEncoder):
    """TSM-ResNet-{18, 34, 50}: ``[B, T, F, 3, H, W]`` normalised frames -> ``[B, D, T]``, ``D`` = 512 (18/34)
    or 2048 (50). Each frame is pooled globally, then the ``F`` frames of a snippet are averaged.

    ``shift_div``: the shifted fraction each way (8 = 1/8 forward + 1/8 backward; 0 = no shift, a plain per-frame
    ResNet). ``F = 1`` means no shift. ``width``: channel multiplier of every stage (1.0 = torchvision's ResNet,
    whose checkpoints load; 0.25 = 16-32-64-128 channels, about 1/14 of the compute, for CPUs). ``stem_pool=False``
    drops the stem's max-pool (output stride 16 instead of 32: twice the resolution for small frames, at about 4x
    the compute of the stages; no parameter changes). Memory levers: see
    :class:`~lofi.models.encoders.levers.LeveredEncoder`.
    """

    def __init__(self, *, depth: int = 18, shift_div: int = 8, width: float = 1.0, stem_pool: bool = True,
                 checkpoint_stages: bool = False,
                 channels_last: bool = False, autocast: AutocastMode | None = None, frozen_bn: bool = False,
                 frozen_stages: int = 0) -> None:
        super().__init__(checkpoint_stages=checkpoint_stages, channels_last=channels_last, autocast=autocast,
                         frozen_bn=frozen_bn, frozen_stages=frozen_stages)
        if depth not in _ARCHS:
            raise ValueError(f"TSMResNet depth must be one of {sorted(_ARCHS)}, got {depth!r}")
        if shift_div != 0 and shift_div < 2:
            raise ValueError(f"shift_div must be 0 (no shift) or >= 2 (1/shift_div of the channels each way), "
                             f"got {shift_div!r}")
        if not 0 < width <= 4 or int(round(16 * width)) != 16 * width:
            raise ValueError(f"TSMResNet width must be a multiple of 1/16 in (0, 4], got {width!r}")
        block, counts = _ARCHS[depth]
        self.depth = depth
        self.shift_div = shift_div
        self.width = width
        stem_channels = int(64 * width)
        self.conv1 = nn.Conv2d(3, stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem_pool else nn.Identity()
        in_channels = stem_channels
        layers = []
        for stage, (planes, count) in enumerate(zip((int(64 * width), int(128 * width), int(256 * width),
                                                     int(512 * width)), counts)):
            blocks = []
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(block(in_channels=in_channels, planes=planes, stride=stride, shift_div=shift_div))
                in_channels = planes * block.expansion
            layers.append(nn.ModuleList(blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.feature_dim = in_channels
        init_resnet_weights(self)
        self._setup_levers()

    def _stages(self) -> list[list[nn.Module]]:
        return [[self.conv1, self.bn1], [self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [N, 3, H, W] -> [N, 64 * width, H/4, W/4]

    @staticmethod
    def _layer(blocks: nn.ModuleList, num_frames: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(x: torch.Tensor) -> torch.Tensor:
            for block in blocks:
                x = block(x, num_frames=num_frames)
            return x
        return run

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames`` ``[B, T, F, 3, H, W]`` normalised float -> ``[B, D, T]`` float32."""
        self._check_frames(frames)
        b, t, f, c, h, w = frames.shape
        x = self._to_memory_format(frames.reshape(b * t * f, c, h, w))  # [B*T*F, 3, H, W]
        with self._autocast(frames.device.type):
            x = self._run_stage(0, self._stem, x)  # [B*T*F, 64, H/4, W/4]
            for index, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=1):
                x = self._run_stage(index, self._layer(layer, f), x)  # [B*T*F, D, H/32, W/32] at the end
            x = x.mean(dim=(2, 3))  # [B*T*F, D]
        x = x.float().view(b, t, f, self.feature_dim).mean(dim=2)  # [B, T, D]
        return x.transpose(1, 2)  # [B, D, T]


def tsm_resnet18(**options: Any) -> TSMResNet:
    """TSM-ResNet18 (D = 512, 11.18M parameters); ``options`` are :class:`TSMResNet`'s keywords."""
    return TSMResNet(depth=18, **options)


def tsm_resnet18_slim(**options: Any) -> TSMResNet:
    """TSM-ResNet18 at a quarter of the width (16-32-64-128 channels, D = 128, 0.70M parameters): the CPU encoder
    of the synthetic demo; ``options`` are :class:`TSMResNet`'s keywords."""
    return TSMResNet(depth=18, **{"width": 0.25, **options})


def tsm_resnet34(**options: Any) -> TSMResNet:
    """TSM-ResNet34 (D = 512, 21.28M parameters); ``options`` are :class:`TSMResNet`'s keywords."""
    return TSMResNet(depth=34, **options)


def tsm_resnet50(**options: Any) -> TSMResNet:
    """TSM-ResNet50 (D = 2048, 23.51M parameters); ``options`` are :class:`TSMResNet`'s keywords."""
    return TSMResNet(depth=50, **options)
