"""Temporal intersection over union (tIoU) between segments, in the official ActivityNet arithmetic."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def segment_tiou(candidates: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """tIoU of every candidate with every target: ``[N, 2]`` x ``[M, 2]`` -> ``[N, M]``.

    Segments are ``(start, end)`` rows in any time unit. The arithmetic is the official evaluator's
    (``segment_iou``): intersection ``max(0, min(ends) - max(starts))``, union ``len_a + len_b - intersection``,
    so results are bit-identical to it.
    """
    cand = np.asarray(candidates, dtype=np.float64).reshape(-1, 2)  # [N, 2]
    targ = np.asarray(targets, dtype=np.float64).reshape(-1, 2)  # [M, 2]
    return paired_tiou(cand[:, None, :], targ[None, :, :])  # [N, M]


def paired_tiou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise tIoU of broadcastable segment arrays ``[..., 2]`` -> ``[...]``."""
    inter = (np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0])).clip(0)
    union = (b[..., 1] - b[..., 0]) + (a[..., 1] - a[..., 0]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union
