"""The head contract: a feature sequence in, raw outputs out; the loss is computed from raw outputs and targets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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


class TALHead(nn.Module):
    """Base class of every registered head.

    Constructed with keyword-only ``in_dim`` (feature channels D), ``num_classes`` and ``num_snippets`` (the
    window length T the head is built for), plus head-specific options. ``forward(features [B, D, T])`` returns a
    dict of raw output tensors (no decoding, no NMS: :mod:`lofi.postprocess.decode` turns them into candidates);
    ``loss(outputs, targets)`` returns a dict of scalar tensors whose ``"loss"`` entry is the total to
    back-propagate and whose other entries are its parts, for logging.
    """

    num_classes: int
    num_snippets: int

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, outputs: dict[str, torch.Tensor],
             targets: SegmentTargets) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError
