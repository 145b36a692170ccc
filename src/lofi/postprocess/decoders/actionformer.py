"""Decoding of ActionFormer raw outputs into scored, labelled candidate segments, one set per window.

Replayable without the model: everything needed (``cls_logits``, ``offsets`` and ``points``) is in the outputs.
A point at window fraction ``centre`` with stride ``stride`` (both from ``outputs["points"]``, see
:mod:`lofi.models.heads.actionformer`) and offsets ``(d_start, d_end)`` gives the segment
``(centre - d_start * stride, centre + d_end * stride)``, clipped to [0, 1]; its score for class ``c`` is
``sigmoid(cls_logits[..., c])``. No suppression here: NMS comes after (:mod:`lofi.postprocess`).

The outputs: a head's :class:`~lofi.core.raw_outputs.PointOutputs`, or a plain dict with the same keys.
"""

from __future__ import annotations

from typing import Mapping

import torch

from lofi.postprocess.candidates import Candidates


@torch.no_grad()
def decode_actionformer(outputs: Mapping[str, torch.Tensor], *, score_threshold: float = 0.001,
                        top_k_per_window: int = 1000, min_length: float = 0.0) -> list[Candidates]:
    """Raw outputs of a batch of B windows -> B :class:`Candidates`, best score first.

    Every (point, class) pair whose score exceeds ``score_threshold`` is a candidate; the ``top_k_per_window``
    best are kept, then those not longer than ``min_length`` (a fraction of the window) after clipping dropped.
    """
    if top_k_per_window < 1:
        raise ValueError(f"decode_actionformer: top_k_per_window must be >= 1, got {top_k_per_window}")
    logits, offsets, points = outputs["cls_logits"], outputs["offsets"], outputs["points"]  # [B,P,C] [B,P,2] [P,4]
    if logits.dim() != 3 or offsets.shape != (*logits.shape[:2], 2) or points.shape[0] != logits.shape[1]:
        raise ValueError(f"decode_actionformer: expected cls_logits [B, P, C], offsets [B, P, 2], points [P, 4]; "
                         f"got {tuple(logits.shape)}, {tuple(offsets.shape)}, {tuple(points.shape)}")
    num_classes = logits.shape[2]
    centre, stride = points[:, 0].float(), points[:, 1].float()  # [P] each
    results = []
    for b in range(logits.shape[0]):
        scores = logits[b].float().sigmoid().flatten()  # [P * C], point-major
        flat_idx = torch.nonzero(scores > score_threshold).squeeze(1)  # [K]
        scores = scores[flat_idx]
        if scores.numel() > top_k_per_window:
            scores, order = scores.topk(top_k_per_window)  # sorted, best first
            flat_idx = flat_idx[order]
        else:
            scores, order = scores.sort(descending=True, stable=True)
            flat_idx = flat_idx[order]
        point_idx, labels = flat_idx // num_classes, flat_idx % num_classes  # [K] each
        dist = offsets[b, point_idx].float() * stride[point_idx, None]  # [K, 2] window fractions
        segments = torch.stack([centre[point_idx] - dist[:, 0], centre[point_idx] + dist[:, 1]], 1).clamp(0, 1)
        keep = (segments[:, 1] - segments[:, 0]) > min_length  # [K]
        results.append(Candidates(segments=segments[keep], scores=scores[keep], labels=labels[keep]))
    return results
