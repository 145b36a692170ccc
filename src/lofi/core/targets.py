"""Ground truth of a batch of windows as every layer sees it: the data builds it, the heads learn from it."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SegmentTargets:
    """Ground truth of a batch of feature windows, one entry per window.

    ``segments[b]`` is ``[N_b, 2]`` float: start and end as fractions of the window (0 = first snippet's start,
    1 = last snippet's end), possibly extending past [0, 1] before clipping by the head; ``labels[b]`` is
    ``[N_b]`` long class indices in ``[0, num_classes)``. ``N_b`` may be 0 (a window with no action).
    """

    segments: list[torch.Tensor]
    labels: list[torch.Tensor]

    def __post_init__(self) -> None:
        if len(self.segments) != len(self.labels):
            raise ValueError(f"SegmentTargets: {len(self.segments)} segment tensors but {len(self.labels)} label "
                             f"tensors")
        for b, (seg, lab) in enumerate(zip(self.segments, self.labels)):
            if seg.dim() != 2 or seg.shape[1] != 2 or lab.dim() != 1 or lab.shape[0] != seg.shape[0]:
                raise ValueError(f"SegmentTargets[{b}]: expected segments [N, 2] and labels [N], got "
                                 f"{tuple(seg.shape)} and {tuple(lab.shape)}")

    def __len__(self) -> int:
        return len(self.segments)

    def to(self, device: torch.device | str) -> "SegmentTargets":
        return SegmentTargets(segments=[s.to(device) for s in self.segments],
                              labels=[x.to(device) for x in self.labels])
