"""Stage 1's model: an encoder with a linear classifier on its snippet features averaged over the clip."""

from __future__ import annotations

import torch
from torch import nn

from lofi.models.encoders.base import VideoEncoder, normalize_frames


class ClipClassifier(nn.Module):
    """``frames [B, T, F, 3, H, W]`` (uint8 or normalised float) -> class logits ``[B, num_classes]``.

    The encoder's ``[B, D, T]`` features are averaged over the clip's T snippets, then dropout and a linear layer.
    """

    def __init__(self, *, encoder: VideoEncoder, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(encoder.feature_dim, num_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dtype == torch.uint8:
            frames = normalize_frames(frames)
        features = self.encoder(frames)  # [B, D, T]
        return self.fc(self.dropout(features.mean(dim=2)))  # [B, C]
