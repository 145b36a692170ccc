"""Small layers shared by the heads."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lofi.core.proposal_grid import scaled_max_duration
from lofi.models.heads.snippet_classifier import SnippetClassifier
from lofi.models.heads.video_classifier import VideoClassifier

#: How G-TAD and BMN label their proposals: ``"snippet"``, each proposal by the per-snippet class scores pooled over
#: it (the default); ``"video"``, every proposal by the window's top classes (the ActivityNet recipe).
ProposalLabels = Literal["snippet", "video"]
PROPOSAL_LABELS: tuple[str, ...] = ("snippet", "video")


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


class MapGridMixin:
    """Proposal-map grids at any window length, for G-TAD and BMN.

    The head sets ``num_snippets``, ``max_duration_snippets``, the buffers ``valid_mask`` and ``candidate_segments``
    (the grid at ``num_snippets``) and ``_grids``, a :class:`~lofi.models.heads.proposal_maps.LengthCache` that builds
    the grid at other lengths; moving or casting the head empties the cache.
    """

    num_snippets: int
    max_duration_snippets: int | None

    def max_duration_at(self, num_snippets: int) -> int | None:
        """The longest candidate, in snippets, at a window of ``num_snippets`` (None: no limit)."""
        return scaled_max_duration(self.max_duration_snippets, self.num_snippets, num_snippets)

    def map_grid(self, num_snippets: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(valid_mask, candidate_segments)`` of the confidence map at ``T = num_snippets``: the buffers at the
        head's own length, built lazily and cached at other lengths."""
        if num_snippets == self.num_snippets:
            return self.valid_mask, self.candidate_segments  # type: ignore[attr-defined]
        return self._grids.get(num_snippets, device=self.candidate_segments.device,  # type: ignore[attr-defined]
                               dtype=self.candidate_segments.dtype)  # type: ignore[attr-defined]

    def _apply(self, fn, *args, **kwargs):
        self._grids.clear()  # type: ignore[attr-defined]  # rebuilt on the new device / dtype on next use
        return super()._apply(fn, *args, **kwargs)  # type: ignore[misc]


class ClassBranchMixin:
    """The class branch of G-TAD and BMN, chosen by ``proposal_labels`` (:data:`ProposalLabels`).

    ``"snippet"`` builds ``snippet_classifier`` (:class:`SnippetClassifier`, output ``"snippet_logits"`` ``[B, C,
    T]``, pooled over each proposal by the decoder: labelled candidates); ``"video"`` builds ``video_classifier``
    (:class:`VideoClassifier`, output ``"video_logits"`` ``[B, C]``: class-agnostic candidates, classified with the
    window's top classes after decoding).
    """

    proposal_labels: str

    def build_class_branch(self, *, proposal_labels: str, in_dim: int, num_classes: int, class_hidden_dim: int,
                           video_hidden_dim: int) -> None:
        if proposal_labels not in PROPOSAL_LABELS:
            raise ValueError(f"{type(self).__name__}: proposal_labels must be one of {', '.join(PROPOSAL_LABELS)}, "
                             f"got {proposal_labels!r}")
        self.proposal_labels = proposal_labels
        if proposal_labels == "snippet":
            self.snippet_classifier = SnippetClassifier(in_dim=in_dim, num_classes=num_classes,
                                                        hidden_dim=class_hidden_dim)
        else:
            self.video_classifier = VideoClassifier(in_dim=in_dim, num_classes=num_classes,
                                                    hidden_dim=video_hidden_dim)

    def class_outputs(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """``features [B, Dh, T]`` -> ``{"snippet_logits": [B, C, T]}`` or ``{"video_logits": [B, C]}``."""
        if self.proposal_labels == "snippet":
            return {"snippet_logits": self.snippet_classifier(features)}  # [B, C, T]
        return {"video_logits": self.video_classifier(features)}  # [B, C]
