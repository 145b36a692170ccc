"""Small layers shared by the heads."""

from __future__ import annotations

from torch import nn


def confidence_map_head(in_channels: int, hidden_channels: int) -> nn.Sequential:
    """The 2-D head of G-TAD and BMN: ``[B, in, *map]`` -> ``[B, 2, *map]`` logits (classification, regression)
    through a 1x1 and two 3x3 convolutions."""
    return nn.Sequential(
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, hidden_channels, kernel_size=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, hidden_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, hidden_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, 2, kernel_size=1),
    )
