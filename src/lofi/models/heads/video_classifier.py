"""A small window-level classification branch: which classes occur in the window (multi-label).

With ``proposal_labels="video"``, G-TAD and BMN produce class-agnostic proposals and this branch's scores classify
them afterwards (:func:`lofi.postprocess.nms.expand_to_video_classes`), the ActivityNet practice of fusing proposals
with video-level classification. By default they label each proposal from per-snippet class scores instead
(:mod:`lofi.models.heads.snippet_classifier`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lofi.core.targets import SegmentTargets


class VideoClassifier(nn.Module):
    """Temporal average + max pooling, then an MLP (or a linear layer when ``hidden_dim`` is 0) -> class logits."""

    def __init__(self, *, in_dim: int, num_classes: int, hidden_dim: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if hidden_dim > 0:
            self.mlp = nn.Sequential(nn.Linear(2 * in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                     nn.Linear(hidden_dim, num_classes))
        else:
            self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * in_dim, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features [B, D, T]`` -> logits ``[B, num_classes]``."""
        pooled = torch.cat([features.mean(dim=2), features.amax(dim=2)], dim=1)  # [B, 2D]
        return self.mlp(pooled)  # [B, C]


def video_labels(targets: SegmentTargets, num_classes: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """Multi-hot ``[B, C]`` float: class ``c`` is 1 when a segment of that class overlaps the window."""
    out = torch.zeros(len(targets), num_classes, device=device)
    for b, (segments, labels) in enumerate(zip(targets.segments, targets.labels)):
        clipped = segments.to(torch.float32).clamp(0.0, 1.0)  # [N, 2]
        present = labels[clipped[:, 1] > clipped[:, 0]].to(device)  # [N']
        if present.numel() and (int(present.min()) < 0 or int(present.max()) >= num_classes):
            raise ValueError(f"SegmentTargets[{b}]: labels must lie in [0, {num_classes}), got "
                             f"{present.tolist()}")
        out[b, present] = 1.0
    return out


def video_classification_loss(logits: torch.Tensor, targets: SegmentTargets) -> torch.Tensor:
    """Mean multi-label BCE (with logits, float32) of ``logits [B, C]`` against :func:`video_labels`."""
    labels = video_labels(targets, logits.shape[1], device=logits.device)  # [B, C]
    return F.binary_cross_entropy_with_logits(logits.float(), labels)


__all__ = ["VideoClassifier", "video_classification_loss", "video_labels"]
