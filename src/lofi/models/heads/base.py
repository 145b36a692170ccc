"""The head contract: a feature sequence in, raw outputs out; the loss is computed from raw outputs and targets."""

from __future__ import annotations

import torch
from torch import nn

from lofi.core.targets import SegmentTargets


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
