"""Generic detection losses in pure torch: sigmoid focal loss and the 1-D distance-IoU segment loss.

Both take raw tensors and return per-element losses or their reduction, so any head can reuse them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["none", "mean", "sum"]


def _reduce(loss: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else loss.sum()  # an empty mean is 0, not NaN
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 0.25, gamma: float = 2.0,
                       reduction: Reduction = "none") -> torch.Tensor:
    """Focal loss (Lin et al., 2017) of independent sigmoid outputs, elementwise over ``logits``.

    ``targets`` has the shape of ``logits`` and values in [0, 1] (soft targets, e.g. label smoothing, allowed).
    With ``p = sigmoid(logit)`` and ``p_t = p * y + (1 - p) * (1 - y)``, each element is
    ``alpha_t * (1 - p_t) ** gamma * BCE(logit, y)`` where ``alpha_t = alpha * y + (1 - alpha) * (1 - y)``;
    ``alpha < 0`` turns the class weighting off.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"sigmoid_focal_loss: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
                         f"must have the same shape")
    targets = targets.to(logits.dtype)
    prob = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return _reduce(loss, reduction)


def diou_loss_1d(pred: torch.Tensor, target: torch.Tensor, *, reduction: Reduction = "none",
                 eps: float = 1e-8) -> torch.Tensor:
    """Distance-IoU loss (Zheng et al., 2020) of 1-D segments ``[N, 2]`` given as (start, end), any unit.

    ``1 - IoU + (centre distance / enclosing length) ** 2`` per pair: 0 for identical segments, up to 2 for far
    apart ones; the distance term still gives a gradient when the segments do not overlap. Scale-invariant.
    """
    if pred.shape != target.shape or pred.dim() != 2 or pred.shape[-1] != 2:
        raise ValueError(f"diou_loss_1d: expected pred and target [N, 2], got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    p_start, p_end = pred.unbind(-1)  # [N] each
    t_start, t_end = target.unbind(-1)  # [N] each
    inter = (torch.minimum(p_end, t_end) - torch.maximum(p_start, t_start)).clamp(min=0)  # [N]
    union = (p_end - p_start) + (t_end - t_start) - inter  # [N]
    iou = inter / union.clamp(min=eps)
    enclosing = torch.maximum(p_end, t_end) - torch.minimum(p_start, t_start)  # [N]
    centre_dist = 0.5 * (p_start + p_end - t_start - t_end)  # [N]
    loss = 1 - iou + (centre_dist / enclosing.clamp(min=eps)) ** 2
    return _reduce(loss, reduction)
