"""A per-snippet classification branch, so that G-TAD's and BMN's proposals each get their own classes.

The branch gives multi-label class logits at every snippet, ``[B, C, T]``, trained against the share of each
snippet covered by each class (:func:`snippet_class_targets`). The decoders pool its probabilities over the
snippets of each proposal (:func:`lofi.postprocess.decoders.gtad.proposal_class_scores`) and multiply the pooled
class score with the proposal's score, so a video holding several classes gets each instance labelled by what lies
inside it, not by the video's top classes (the ActivityNet recipe, :mod:`lofi.models.heads.video_classifier`, kept
as the heads' ``proposal_labels="video"`` option).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lofi.core.targets import SegmentTargets


class SnippetClassifier(nn.Module):
    """``[B, D, T]`` -> class logits ``[B, C, T]``: a kernel-3 convolution, ReLU, then a 1x1 convolution (a 1x1
    convolution alone when ``hidden_dim`` is 0). The final bias starts at ``log(prior / (1 - prior))``, so that the
    many background snippets do not dominate the first steps (the focal-loss prior)."""

    def __init__(self, *, in_dim: int, num_classes: int, hidden_dim: int = 256, prior_prob: float = 0.1) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0 < prior_prob < 1:
            raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")
        if hidden_dim > 0:
            self.net = nn.Sequential(nn.Conv1d(in_dim, hidden_dim, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                                     nn.Conv1d(hidden_dim, num_classes, kernel_size=1))
        else:
            self.net = nn.Sequential(nn.Conv1d(in_dim, num_classes, kernel_size=1))
        last = self.net[-1]
        assert isinstance(last, nn.Conv1d)
        nn.init.constant_(last.bias, float(torch.logit(torch.tensor(prior_prob))))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features [B, D, T]`` -> logits ``[B, num_classes, T]``."""
        return self.net(features)


def snippet_class_targets(targets: SegmentTargets, num_classes: int, num_snippets: int, *,
                          device: torch.device | str = "cpu") -> torch.Tensor:
    """``[B, C, T]`` float in [0, 1]: the share of snippet ``t`` (``[t/T, (t+1)/T]``) covered by segments of class
    ``c`` (overlapping segments of one class add up, clipped to 1); segments are clipped to the window."""
    edges = torch.arange(num_snippets + 1, dtype=torch.float32, device=device) / num_snippets  # [T+1]
    out = torch.zeros(len(targets), num_classes, num_snippets, device=device)  # [B, C, T]
    for b, (segments, labels) in enumerate(zip(targets.segments, targets.labels)):
        clipped = segments.to(device=device, dtype=torch.float32).clamp(0.0, 1.0)  # [N, 2]
        keep = clipped[:, 1] > clipped[:, 0]  # [N]
        clipped, labels = clipped[keep], labels.to(device)[keep]  # [N', 2], [N']
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"SegmentTargets[{b}]: labels must lie in [0, {num_classes}), got {labels.tolist()}")
        lo = torch.maximum(edges[None, :-1], clipped[:, :1])  # [N', T]
        hi = torch.minimum(edges[None, 1:], clipped[:, 1:])  # [N', T]
        cover = (hi - lo).clamp_min(0) * num_snippets  # [N', T] share of each snippet
        out[b].index_add_(0, labels, cover)
    return out.clamp_(max=1.0)


def snippet_classification_loss(logits: torch.Tensor, targets: SegmentTargets) -> torch.Tensor:
    """Mean multi-label BCE (with logits, float32) of ``logits [B, C, T]`` against :func:`snippet_class_targets`."""
    b, c, t = logits.shape
    if len(targets) != b:
        raise ValueError(f"snippet loss: {b} windows in the logits but {len(targets)} in the targets")
    labels = snippet_class_targets(targets, c, t, device=logits.device)  # [B, C, T]
    return F.binary_cross_entropy_with_logits(logits.float(), labels)


__all__ = ["SnippetClassifier", "snippet_class_targets", "snippet_classification_loss"]
