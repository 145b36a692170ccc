"""Segment IoU on torch tensors, shared by post-processing (NMS) and the proposal-map targets of the heads."""

from __future__ import annotations

import torch


def broadcast_segment_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise IoU of broadcastable segment tensors ``[..., 2]`` -> ``[...]``; 0 where the union is empty
    (no input checks: the building block of :func:`lofi.postprocess.nms.segment_iou`, NMS and the proposal-map
    targets)."""
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp_min(0)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    return torch.where(union > 0, inter / union.where(union > 0, torch.ones_like(union)), torch.zeros_like(union))
