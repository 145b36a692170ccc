"""The head contract: a feature sequence in, raw outputs out; the loss is computed from raw outputs and targets."""

from __future__ import annotations

import torch
from torch import nn

from lofi.core.raw_outputs import RawOutputs
from lofi.core.targets import SegmentTargets


class TALHead(nn.Module):
    """Base class of every registered head.

    Constructed with keyword-only ``in_dim`` (feature channels D), ``num_classes`` and ``num_snippets`` (the
    window length T the head is built for), plus head-specific options. ``forward(features [B, D, T])`` returns its
    raw outputs, a :class:`~lofi.core.raw_outputs.RawOutputs` that names its decoder (no decoding, no NMS:
    :func:`lofi.postprocess.decode.decode_raw` turns them into candidates);
    ``loss(outputs, targets)`` returns a dict of scalar tensors whose ``"loss"`` entry is the total to
    back-propagate and whose other entries are its parts, for logging.
    """

    num_classes: int
    num_snippets: int

    def forward(self, features: torch.Tensor) -> RawOutputs:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, outputs: RawOutputs,
             targets: SegmentTargets) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError
