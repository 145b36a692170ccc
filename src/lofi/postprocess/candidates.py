"""Decoded head outputs for one feature window, before suppression: the bridge from raw outputs to detections."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Candidates:
    """Scored candidate segments of one window.

    ``segments`` ``[N, 2]`` float, start and end as fractions of the window (as in
    :class:`lofi.core.targets.SegmentTargets`); ``scores`` ``[N]``; ``labels`` ``[N]`` long class indices, or
    None for class-agnostic proposals (G-TAD and BMN with ``proposal_labels="video"``, classified afterwards with
    video-level scores).
    """

    segments: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.scores.shape[0] if self.scores.dim() == 1 else -1
        if self.segments.dim() != 2 or self.segments.shape != (n, 2) or (
                self.labels is not None and self.labels.shape != (n,)):
            raise ValueError(f"Candidates: expected segments [N, 2], scores [N], labels [N] or None; got "
                             f"{tuple(self.segments.shape)}, {tuple(self.scores.shape)}, "
                             f"{None if self.labels is None else tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_seconds(self, *, window_start_sec: float, window_end_sec: float) -> torch.Tensor:
        """``[N, 2]`` segments in seconds of the video, for a window spanning the given times."""
        span = window_end_sec - window_start_sec
        return window_start_sec + self.segments * span
