"""Decode G-TAD raw outputs (start/end probabilities, start-end confidence map, class scores) into candidates.

Also the shared core, :func:`decode_start_end`, which :func:`lofi.postprocess.decoders.bmn.decode_bmn` uses after
re-indexing its duration-start map. Cell ``[ts, te]`` becomes the segment ``[ts/T, (te+1)/T]`` (window
fractions, as the targets define it in :mod:`lofi.models.heads.proposal_maps`); its score is BMN's
``start[ts] * end[te] * confidence_cls * confidence_reg``. With per-snippet class logits (``snippet_logits``
``[B, C, T]``, the heads' ``proposal_labels="snippet"``), each cell and class ``c`` is a labelled candidate
scored ``score * mean_{t in [ts, te]} sigmoid(snippet_logits[c, t])`` (:func:`proposal_class_scores`); without
them (``proposal_labels="video"``) the candidates are class-agnostic and take the video's classes afterwards.

The outputs: a head's :class:`~lofi.core.raw_outputs.StartEndMapOutputs`, or a plain dict with the same keys.
"""

from __future__ import annotations

from typing import Mapping

import torch

from lofi.core.proposal_grid import scaled_max_duration, start_end_valid_mask
from lofi.postprocess.candidates import Candidates


def boundary_peaks(probs: torch.Tensor, *, first: bool = False, last: bool = False) -> torch.Tensor:
    """BMN's boundary filter: ``[B, T]`` probabilities -> ``[B, T]`` bool, True at strict local maxima (an edge
    index compared with its one neighbour) or where the probability is >= half the window's maximum.

    ``first`` / ``last`` also keep index 0 / T-1 unconditionally (BMN keeps the window's first start and last end).
    """
    left = torch.nn.functional.pad(probs, (1, 0), value=float("-inf"))[:, :-1]  # [B, T] probs[t-1]
    right = torch.nn.functional.pad(probs, (0, 1), value=float("-inf"))[:, 1:]  # [B, T] probs[t+1]
    keep = ((probs > left) & (probs > right)) | (probs >= 0.5 * probs.amax(dim=1, keepdim=True))  # [B, T]
    if first:
        keep[:, 0] = True
    if last:
        keep[:, -1] = True
    return keep


def proposal_class_scores(class_probs: torch.Tensor) -> torch.Tensor:
    """Per-snippet class probabilities ``[B, C, T]`` -> their mean over every start-end cell, ``[B, T, T, C]``.

    Cell ``[ts, te]`` holds the mean over snippets ``ts..te`` (one cumulative sum); cells with ``te < ts`` hold 0.
    """
    b, c, t = class_probs.shape
    cumulative = torch.nn.functional.pad(class_probs.double().cumsum(dim=2), (1, 0))  # [B, C, T+1]
    index = torch.arange(t, device=class_probs.device)
    length = index[None, :] - index[:, None] + 1  # [T, T] snippets in [ts, te]
    sums = cumulative[:, :, None, 1:] - cumulative[:, :, :-1, None]  # [B, C, T, T] cum[te + 1] - cum[ts]
    means = torch.where(length > 0, sums / length.clamp_min(1), torch.zeros_like(sums)).clamp_min(0)  # [B, C, T, T]
    return means.permute(0, 2, 3, 1).to(class_probs.dtype)  # [B, T, T, C]


def decode_start_end(start: torch.Tensor, end: torch.Tensor, confidence: torch.Tensor, *, valid: torch.Tensor,
                     top_k: int | None = 100, boundary_filter: bool = True,
                     class_probs: torch.Tensor | None = None) -> list[Candidates]:
    """Candidates from ``start``, ``end`` ``[B, T]`` and a start-end ``confidence`` ``[B, 2, T, T]`` (valid ``[T, T]``).

    Only valid cells are candidates; with ``boundary_filter``, only cells whose start and end pass
    :func:`boundary_peaks` (first start / last end always kept). Without ``class_probs`` labels are None
    (class-agnostic proposals). With ``class_probs`` ``[B, C, T]`` (per-snippet class probabilities), every kept
    cell gives one candidate per class, labelled, scored ``cell score * proposal_class_scores`` (the class's mean
    probability over the cell's snippets). Scores are sorted descending (ties: lower flat index first) and at most
    ``top_k`` candidates kept per window.
    """
    if start.dim() != 2 or end.shape != start.shape:
        raise ValueError(f"decode: expected start and end [B, T], got {tuple(start.shape)} and {tuple(end.shape)}")
    b, t = start.shape
    if confidence.shape != (b, 2, t, t) or valid.shape != (t, t):
        raise ValueError(f"decode: expected confidence [{b}, 2, {t}, {t}] and valid [{t}, {t}], got "
                         f"{tuple(confidence.shape)} and {tuple(valid.shape)}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"decode: top_k must be >= 1 or None, got {top_k}")
    if class_probs is not None and (class_probs.dim() != 3 or class_probs.shape[0] != b or class_probs.shape[2] != t):
        raise ValueError(f"decode: expected class_probs [{b}, C, {t}], got {tuple(class_probs.shape)}")
    start, end, confidence = start.detach().float(), end.detach().float(), confidence.detach().float()
    scores = start[:, :, None] * end[:, None, :] * confidence[:, 0] * confidence[:, 1]  # [B, T, T]
    keep = valid.to(start.device).expand(b, t, t)  # [B, T, T]
    if boundary_filter:
        keep = keep & boundary_peaks(start, first=True)[:, :, None] & boundary_peaks(end, last=True)[:, None, :]
    index = torch.arange(t, device=start.device, dtype=torch.float32)
    segments = torch.stack([(index / t)[:, None].expand(t, t), ((index + 1) / t)[None, :].expand(t, t)],
                           dim=-1).reshape(t * t, 2)  # [T*T, 2] (ts/T, (te+1)/T)
    per_class = None if class_probs is None else proposal_class_scores(class_probs.detach().float())  # [B, T, T, C]
    out = []
    for i in range(b):
        cells = keep[i].reshape(-1).nonzero().flatten()  # [K] flat cells ts * T + te
        cell_scores = scores[i].reshape(-1)[cells]  # [K]
        if per_class is None:
            order = torch.sort(cell_scores, descending=True, stable=True).indices[:top_k]  # [K']
            out.append(Candidates(segments=segments[cells[order]], scores=cell_scores[order]))
            continue
        num_classes = per_class.shape[-1]
        labelled = (cell_scores[:, None] * per_class[i].reshape(t * t, num_classes)[cells]).reshape(-1)  # [K*C]
        order = torch.sort(labelled, descending=True, stable=True).indices[:top_k]  # [K'] cell-major flat index
        out.append(Candidates(segments=segments[cells[order // num_classes]], scores=labelled[order],
                              labels=order % num_classes))
    return out


def decode_gtad(outputs: Mapping[str, torch.Tensor], *, top_k: int | None = 100,
                max_duration_snippets: int | None = None, num_snippets: int | None = None,
                boundary_filter: bool = True) -> list[Candidates]:
    """One :class:`Candidates` per window from G-TAD outputs (``start``, ``end`` ``[B, T]``, ``confidence``
    ``[B, 2, T, T]``, and ``snippet_logits`` ``[B, C, T]`` for labelled candidates), at the ``T`` of the outputs.

    ``max_duration_snippets`` and ``num_snippets`` should be the head's (``GTADHead.max_duration_snippets`` /
    ``.num_snippets``) to skip cells it never scores: ``max_duration_snippets`` is counted at ``num_snippets``
    (default: the outputs' ``T``) and is scaled to the outputs' ``T`` as the head does
    (:func:`~lofi.core.proposal_grid.scaled_max_duration`, i.e. ``GTADHead.max_duration_at(T)``).
    """
    t = outputs["start"].shape[1]
    limit = scaled_max_duration(max_duration_snippets, t if num_snippets is None else num_snippets, t)
    return decode_start_end(outputs["start"], outputs["end"], outputs["confidence"],
                            valid=start_end_valid_mask(t, max_duration=limit), top_k=top_k,
                            boundary_filter=boundary_filter, class_probs=snippet_class_probs(outputs))


def snippet_class_probs(outputs: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """``sigmoid(outputs["snippet_logits"])`` ``[B, C, T]``, or None when the head labels by video
    (``proposal_labels="video"``: no ``snippet_logits``)."""
    logits = outputs.get("snippet_logits")
    return None if logits is None else torch.sigmoid(logits.detach().float())


__all__ = ["boundary_peaks", "decode_gtad", "decode_start_end", "proposal_class_scores", "snippet_class_probs"]
