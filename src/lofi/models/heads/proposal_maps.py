"""Proposal-map targets and losses shared by the G-TAD and BMN heads, and the sampling-matrix helper they use.

Grid convention and map layouts: :mod:`lofi.core.proposal_grid`, which builds the candidate grids.

Any window length: both heads take features of any ``T`` at forward time (LoFi's stage 2 changes ``T`` with the
fidelity while the weights stay the same). Their ``num_snippets`` is the reference length, built eagerly; the
grids of other lengths are built on first use and cached per (T, device, dtype) by :class:`LengthCache`, never in
the state_dict. A head's ``max_duration_snippets`` is counted at its ``num_snippets`` and scaled to the same
fraction of the window at other lengths (:func:`~lofi.core.proposal_grid.scaled_max_duration`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from lofi.core.segments import broadcast_segment_iou
from lofi.core.targets import SegmentTargets
from lofi.models.heads.snippet_classifier import snippet_classification_loss
from lofi.models.heads.video_classifier import video_classification_loss

_EPS = 1e-6


def interpolation_matrix(positions: torch.Tensor, num_snippets: int, *,
                         point_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weights that sample a feature sequence by linear interpolation: positions ``[..., G]`` -> ``[..., T]``.

    Positions are in snippet coordinates (snippet ``t``'s feature sits at ``t``); the sequence is zero-padded
    outside ``[0, T-1]``. Row ``r`` of the result, applied as ``x @ row`` to ``x [C, T]``, gives
    ``sum_g point_weights[r, g] * interp(x, positions[r, g])``; ``point_weights`` defaults to ``1/G`` (the mean
    of the ``G`` points, as in RoIAlign bins and BMN's per-bin samples).
    """
    lead, num_points = positions.shape[:-1], positions.shape[-1]
    pos = positions.reshape(-1, num_points).to(torch.float64)  # [R, G]
    if point_weights is None:
        weights = torch.full_like(pos, 1.0 / num_points)  # [R, G]
    else:
        weights = point_weights.reshape(-1, num_points).to(torch.float64)  # [R, G]
    low = torch.floor(pos)  # [R, G]
    frac = pos - low  # [R, G]
    # Slot s + 1 holds snippet s; slots 0 and T + 1 collect everything outside the window and are dropped.
    slot_low = (low + 1).clamp(0, num_snippets + 1).long()  # [R, G]
    slot_high = (low + 2).clamp(0, num_snippets + 1).long()  # [R, G]
    out = torch.zeros(pos.shape[0], num_snippets + 2, dtype=torch.float64)  # [R, T+2]
    out.scatter_add_(1, slot_low, weights * (1 - frac))
    out.scatter_add_(1, slot_high, weights * frac)
    return out[:, 1:-1].to(torch.float32).reshape(*lead, num_snippets)


# ---------------------------------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class ProposalTargets:
    """Dense targets of a batch: boundary label sequences and the IoU of every candidate with the ground truth.

    ``start``, ``end`` ``[B, T]`` in [0, 1] (the fraction of a boundary anchor covered by a ground-truth boundary
    region; positives are ``> 0.5``); ``iou`` ``[B, *map]`` the max IoU of each candidate with any ground-truth
    segment (0 for windows without one); ``best`` ``[B, *map]`` bool, True at each ground-truth segment's
    best-matching valid candidate(s) (the highest IoU with it, ties included; none for a segment no valid candidate
    overlaps).
    """

    start: torch.Tensor
    end: torch.Tensor
    iou: torch.Tensor
    best: torch.Tensor


def clip_segments(segments: torch.Tensor) -> torch.Tensor:
    """Ground truth ``[N, 2]`` (fractions) clipped to the window, segments left empty dropped -> ``[N', 2]``."""
    clipped = segments.to(torch.float32).clamp(0.0, 1.0)  # [N, 2]
    return clipped[clipped[:, 1] > clipped[:, 0]]


def iou_with_segments(candidates: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Max IoU of every candidate ``[..., 2]`` with any of ``segments`` ``[N, 2]`` -> ``[...]`` (0 when N = 0)."""
    if segments.shape[0] == 0:
        return candidates.new_zeros(candidates.shape[:-1])
    return broadcast_segment_iou(candidates[..., None, :], segments).amax(dim=-1)  # [..., N] -> [...]


def best_matches(candidates: torch.Tensor, segments: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``[...]`` bool: the valid candidates ``[..., 2]`` with the highest IoU with some segment of ``segments``
    ``[N, 2]`` (ties included; segments that overlap no valid candidate have none). All False when N = 0."""
    if segments.shape[0] == 0:
        return torch.zeros(candidates.shape[:-1], dtype=torch.bool, device=candidates.device)
    iou = broadcast_segment_iou(candidates[..., None, :], segments)  # [..., N]
    if valid is not None:
        iou = iou * valid[..., None].to(iou.dtype)
    flat = iou.reshape(-1, iou.shape[-1])  # [cells, N]
    top = flat.amax(dim=0, keepdim=True)  # [1, N]
    return ((flat == top) & (top > 0)).any(dim=1).view(candidates.shape[:-1])


def boundary_labels(segments: torch.Tensor, num_snippets: int, *,
                    region_snippets: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """BMN-style boundary label sequences of one window -> ``(start [T], end [T])`` in [0, 1].

    Each ground-truth boundary becomes a region ``region_snippets / T`` wide centred on it; the label at index
    ``t`` is the largest fraction of its anchor covered by a region. The start anchor of ``t`` is
    ``[(t-0.5)/T, (t+0.5)/T]`` (centred on the start boundary ``t/T``), the end anchor
    ``[(t+0.5)/T, (t+1.5)/T]`` (centred on the end boundary ``(t+1)/T``).
    """
    segments = clip_segments(segments)
    t = torch.arange(num_snippets, dtype=torch.float32, device=segments.device)
    half = 0.5 * region_snippets / num_snippets

    def cover(anchor_centres: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
        if boundaries.numel() == 0:
            return torch.zeros(num_snippets, device=segments.device)
        lo = torch.maximum(anchor_centres[:, None] - 0.5 / num_snippets, boundaries[None, :] - half)  # [T, N]
        hi = torch.minimum(anchor_centres[:, None] + 0.5 / num_snippets, boundaries[None, :] + half)  # [T, N]
        return ((hi - lo).clamp_min(0) * num_snippets).clamp_max(1.0).amax(dim=1)  # [T]

    return cover(t / num_snippets, segments[:, 0]), cover((t + 1) / num_snippets, segments[:, 1])


def proposal_targets(targets: SegmentTargets, *, candidates: torch.Tensor, num_snippets: int,
                     region_snippets: float = 3.0, valid: torch.Tensor | None = None) -> ProposalTargets:
    """Targets of a batch for candidates ``[*map, 2]`` (e.g. :func:`~lofi.core.proposal_grid.start_end_segments`;
    ``valid`` ``[*map]``, the cells that are candidates, default all) -> :class:`ProposalTargets`."""
    starts, ends, ious, bests = [], [], [], []
    for segments in targets.segments:
        gt = clip_segments(segments.to(candidates.device))  # [N, 2]
        start, end = boundary_labels(gt, num_snippets, region_snippets=region_snippets)  # [T], [T]
        starts.append(start)
        ends.append(end)
        ious.append(iou_with_segments(candidates, gt))  # [*map]
        bests.append(best_matches(candidates, gt, valid))  # [*map]
    if not starts:
        raise ValueError("proposal_targets: empty batch (no windows in targets)")
    return ProposalTargets(start=torch.stack(starts), end=torch.stack(ends), iou=torch.stack(ious),
                           best=torch.stack(bests))


# ---------------------------------------------------------------------------------------------------------------
# Losses


def balanced_bce(probs: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """BMN's weighted binary cross-entropy on probabilities: ``0.5 * mean_pos(-log p) + 0.5 * mean_neg(-log(1-p))``.

    Means are over the whole batch (``valid`` cells only); an empty side contributes 0, so all-negative batches
    (windows without actions) give a finite loss. Computed in float32 with ``log(p + 1e-6)``.
    """
    p = probs.float()
    pos = positive.float()
    neg = 1.0 - pos
    if valid is not None:
        pos = pos * valid.float()
        neg = neg * valid.float()
    loss_pos = -(torch.log(p + _EPS) * pos).sum() / pos.sum().clamp_min(1.0)
    loss_neg = -(torch.log(1.0 - p + _EPS) * neg).sum() / neg.sum().clamp_min(1.0)
    return 0.5 * loss_pos + 0.5 * loss_neg


def balanced_l2(probs: torch.Tensor, iou: torch.Tensor, valid: torch.Tensor, *, high_iou: float = 0.7,
                low_iou: float = 0.3) -> torch.Tensor:
    """BMN's regression loss ``0.5 * sum w (p - iou)^2 / sum w`` with deterministic balancing.

    BMN keeps every cell with IoU > ``high_iou`` and randomly samples as many cells from (``low_iou``,
    ``high_iou``] and from [0, ``low_iou``]; here each of those two sets gets that sampling's expected weight,
    ``min(1, max(n_high, 1) / n_set)`` per cell (no randomness; the ``max(., 1)`` keeps all-negative batches
    training toward 0). Unlike BMN, cells with IoU exactly 0 belong to the low set.
    """
    p = probs.float()
    g = iou.float()
    v = valid.float()
    high = (g > high_iou).float() * v
    mid = ((g > low_iou) & (g <= high_iou)).float() * v
    low = (g <= low_iou).float() * v
    n_high = high.sum().clamp_min(1.0)
    weights = (high + mid * (n_high / mid.sum().clamp_min(1.0)).clamp_max(1.0)
               + low * (n_high / low.sum().clamp_min(1.0)).clamp_max(1.0)).detach()
    return 0.5 * (weights * (p - g).square()).sum() / weights.sum().clamp_min(1.0)


def proposal_map_losses(*, start: torch.Tensor, end: torch.Tensor, confidence: torch.Tensor, valid: torch.Tensor,
                        targets: ProposalTargets, positive_iou: float = 0.9, high_iou: float = 0.7,
                        low_iou: float = 0.3, reg_weight: float = 10.0,
                        best_match: bool = True) -> dict[str, torch.Tensor]:
    """The G-TAD / BMN localisation losses from probabilities.

    ``start``, ``end`` ``[B, T]``; ``confidence`` ``[B, 2, *map]`` (channel 0 classification, channel 1
    regression); ``valid`` ``[*map]`` bool. Returns ``"boundary"`` (balanced BCE on start + on end, positives
    label > 0.5), ``"map_cls"`` (balanced BCE, positives IoU > ``positive_iou``, and with ``best_match`` each
    ground truth's best-matching cells too, so that a segment no cell of the grid matches that closely still has
    a positive), ``"map_reg"`` (:func:`balanced_l2`) and their total ``"localization" = boundary + map_cls +
    reg_weight * map_reg``.
    """
    boundary = balanced_bce(start, targets.start > 0.5) + balanced_bce(end, targets.end > 0.5)
    mask = valid.expand_as(targets.iou)  # [B, *map]
    positive = targets.iou > positive_iou  # [B, *map]
    if best_match:
        positive = positive | targets.best
    map_cls = balanced_bce(confidence[:, 0], positive, mask)
    map_reg = balanced_l2(confidence[:, 1], targets.iou, mask, high_iou=high_iou, low_iou=low_iou)
    return {"localization": boundary + map_cls + reg_weight * map_reg, "boundary": boundary, "map_cls": map_cls,
            "map_reg": map_reg}


def check_features(features: torch.Tensor, in_dim: int, min_snippets: int, name: str) -> None:
    """Raise unless ``features`` is ``[B, in_dim, T]`` with ``T >= min_snippets`` (any such ``T``)."""
    if features.dim() != 3 or features.shape[1] != in_dim or features.shape[2] < min_snippets:
        raise ValueError(f"{name}: expected features [B, {in_dim}, T] with T >= {min_snippets} (built for "
                         f"in_dim={in_dim}), got {tuple(features.shape)}")


def check_confidence_map(confidence: torch.Tensor, map_shape: tuple[int, ...], name: str) -> None:
    """Raise unless ``confidence`` is ``[B, 2, *map_shape]`` (the map of the outputs' ``T``)."""
    if confidence.dim() != 2 + len(map_shape) or confidence.shape[1] != 2 or confidence.shape[2:] != map_shape:
        raise ValueError(f"{name}.loss: expected confidence [B, 2, {', '.join(map(str, map_shape))}] for the "
                         f"outputs' T, got {tuple(confidence.shape)}")


# ---------------------------------------------------------------------------------------------------------------
# Loss configuration and the full head loss


@dataclass(frozen=True)
class MapLossConfig:
    """Options of the G-TAD / BMN losses (the heads take them as keyword options).

    ``boundary_region_snippets``: width of the region around a ground-truth boundary, in snippets (BMN: 3);
    ``positive_iou``: classification positives have IoU > this (BMN / G-TAD: 0.9); ``high_iou`` / ``low_iou``:
    the regression balancing sets (0.7 / 0.3); ``reg_weight``: weight of the regression loss (10);
    ``video_weight``: weight of the window-level classification BCE (``video_logits``); ``snippet_weight``: weight
    of the per-snippet classification BCE (``snippet_logits``); ``best_match``: each ground truth's best-matching
    cell is a classification positive too (see :func:`proposal_map_losses`).
    """

    boundary_region_snippets: float = 3.0
    positive_iou: float = 0.9
    high_iou: float = 0.7
    low_iou: float = 0.3
    reg_weight: float = 10.0
    video_weight: float = 1.0
    snippet_weight: float = 1.0
    best_match: bool = True

    def __post_init__(self) -> None:
        if not self.boundary_region_snippets > 0:
            raise ValueError(f"boundary_region_snippets must be > 0, got {self.boundary_region_snippets}")
        if not 0 <= self.low_iou <= self.high_iou < 1 or not 0 <= self.positive_iou < 1:
            raise ValueError(f"IoU thresholds need 0 <= low_iou <= high_iou < 1 and 0 <= positive_iou < 1; got "
                             f"low_iou={self.low_iou}, high_iou={self.high_iou}, positive_iou={self.positive_iou}")
        if min(self.reg_weight, self.video_weight, self.snippet_weight) < 0:
            raise ValueError(f"loss weights must be >= 0, got reg_weight={self.reg_weight}, "
                             f"video_weight={self.video_weight}, snippet_weight={self.snippet_weight}")


def map_head_loss(outputs: Mapping[str, torch.Tensor], targets: SegmentTargets, *, candidates: torch.Tensor,
                  valid: torch.Tensor, config: MapLossConfig) -> dict[str, torch.Tensor]:
    """Total loss of a G-TAD / BMN head from its raw outputs (``start``, ``end``, ``confidence``, and
    ``snippet_logits`` and/or ``video_logits``).

    ``candidates`` ``[*map, 2]`` and ``valid`` ``[*map]`` describe the map layout. Returns ``"loss" =
    localization + snippet_weight * snippet_cls + video_weight * video_cls`` (each class term only when its output
    is there) and the parts (see :func:`proposal_map_losses`).
    """
    start = outputs["start"]  # [B, T]
    if len(targets) != start.shape[0]:
        raise ValueError(f"loss: {start.shape[0]} windows in the outputs but {len(targets)} in the targets")
    maps = proposal_targets(targets, candidates=candidates, num_snippets=start.shape[1],
                            region_snippets=config.boundary_region_snippets, valid=valid)
    parts = proposal_map_losses(start=start, end=outputs["end"], confidence=outputs["confidence"], valid=valid,
                                targets=maps, positive_iou=config.positive_iou, high_iou=config.high_iou,
                                low_iou=config.low_iou, reg_weight=config.reg_weight, best_match=config.best_match)
    total = parts["localization"]
    if "snippet_logits" in outputs:
        parts["snippet_cls"] = snippet_classification_loss(outputs["snippet_logits"], targets)
        total = total + config.snippet_weight * parts["snippet_cls"]
    if "video_logits" in outputs:
        parts["video_cls"] = video_classification_loss(outputs["video_logits"], targets)
        total = total + config.video_weight * parts["video_cls"]
    return {"loss": total, **parts}


# ---------------------------------------------------------------------------------------------------------------
# Tensors of other window lengths


class LengthCache:
    """Tensors that depend on the window length ``T``, built on first use and kept per (T, device, dtype).

    ``build(T)`` returns a tuple of tensors (built on the CPU, as at construction; other items, e.g. shapes, are
    kept as they are); :meth:`get` moves them to ``device`` and casts the floating-point ones to ``dtype``
    (integer and bool ones keep theirs), i.e. what ``Module.to`` does to buffers, so a tensor built lazily equals
    the buffer a module built for that ``T`` would hold after the same ``.to``. Plain attribute, not a buffer:
    never in a state_dict. Owners call :meth:`clear` from ``Module._apply`` so that a move or cast drops the stale
    copies. ``build`` should be picklable (a module-level function or a ``functools.partial`` of one) so that
    whole modules still pickle.
    """

    def __init__(self, build: Callable[[int], tuple]) -> None:
        self.build = build
        self._tensors: dict[tuple[int, torch.device, torch.dtype], tuple] = {}

    def get(self, length: int, *, device: torch.device, dtype: torch.dtype) -> tuple:
        key = (int(length), torch.device(device), dtype)
        if key not in self._tensors:
            self._tensors[key] = tuple(
                t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype) if isinstance(t, torch.Tensor)
                else t for t in self.build(key[0]))
        return self._tensors[key]

    def clear(self) -> None:
        self._tensors.clear()

    def __len__(self) -> int:
        return len(self._tensors)


# ---------------------------------------------------------------------------------------------------------------
# The fused sample-and-project layer (G-TAD's SGAlign + first 1x1 conv, BMN's BM layer + Conv3d)


class ProposalSampler(nn.Module):
    """Features of every candidate, sampled with a fixed interpolation matrix and projected: ``[B, C, T] -> [B, O,
    *map]``.

    ``matrix`` ``[M, P, T]`` holds, for each of the ``M`` valid candidates, ``P`` sampling rows (see
    :func:`interpolation_matrix`); ``cell_index`` ``[M]`` their flat positions in the map of shape ``map_shape``.
    Mathematically this is "sample ``[B, C, P, *map]`` (:meth:`sample`), then a linear layer over ``(C, P)``"
    (G-TAD's first 1x1 conv after SGAlign, BMN's ``(N, 1, 1)`` Conv3d after the BM layer). It is computed
    projection-first, ``(W x) @ S``: one matmul with the precomputed ``[P*T, M]`` buffer, never holding the
    ``P``-times larger sampled tensor. Cells off the grid are 0 (before the bias, which every cell gets).

    Any length: ``matrix`` is for the reference length ``num_snippets = matrix.shape[-1]`` (the buffers
    ``sampling`` and ``cell_index``); with ``build``, a callable ``T -> (matrix [M', P, T], cell_index [M'],
    map_shape)``, inputs of any other length ``T`` use ``build(T)``, built on first use and cached per (T, device,
    dtype) (:class:`LengthCache`; device and dtype those of the ``sampling`` buffer, so they follow ``.to``). The
    parameters do not depend on ``T``. Without ``build`` only ``num_snippets`` is accepted.
    """

    def __init__(self, *, in_dim: int, out_dim: int, matrix: torch.Tensor, cell_index: torch.Tensor,
                 map_shape: tuple[int, ...],
                 build: Callable[[int], tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]] | None = None) -> None:
        super().__init__()
        num_cells, num_points, num_snippets = matrix.shape
        if cell_index.shape != (num_cells,):
            raise ValueError(f"cell_index: expected shape ({num_cells},), got {tuple(cell_index.shape)}")
        self.map_shape = tuple(map_shape)
        self.num_points = num_points
        self.num_snippets = num_snippets
        self.register_buffer("sampling", matrix.permute(1, 2, 0).reshape(num_points * num_snippets, num_cells)
                             .contiguous(), persistent=False)  # [P*T, M]
        self.register_buffer("cell_index", cell_index.long(), persistent=False)  # [M]
        bound = 1.0 / math.sqrt(in_dim * num_points)  # the default init of the equivalent conv over (C, P)
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim, num_points).uniform_(-bound, bound))  # [O, C, P]
        self.bias = nn.Parameter(torch.empty(out_dim).uniform_(-bound, bound))  # [O]
        self._lengths = None if build is None else LengthCache(partial(_sampler_grid, build, num_points))

    def grid(self, num_snippets: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        """``(sampling [P*T, M], cell_index [M], map_shape)`` for inputs of ``num_snippets`` snippets."""
        if num_snippets == self.num_snippets:
            return self.sampling, self.cell_index, self.map_shape
        if self._lengths is None:
            raise ValueError(f"ProposalSampler: built for T={self.num_snippets} snippets only (no build), got "
                             f"T={num_snippets}")
        return self._lengths.get(num_snippets, device=self.sampling.device, dtype=self.sampling.dtype)

    def _apply(self, fn, *args, **kwargs):
        if self._lengths is not None:
            self._lengths.clear()  # rebuilt on the new device / in the new dtype on next use
        return super()._apply(fn, *args, **kwargs)

    def sample(self, x: torch.Tensor) -> torch.Tensor:
        """The sampled features ``[B, C, T] -> [B, C, P, *map]`` (for inspection and tests; 0 off the grid)."""
        b, c, t = x.shape
        sampling, cell_index, map_shape = self.grid(t)
        matrix = sampling.view(self.num_points, t, -1)  # [P, T, M]
        cells = torch.einsum("bct,ptm->bcpm", x, matrix.to(x.dtype))  # [B, C, P, M]
        full = cells.new_zeros(b, c, self.num_points, math.prod(map_shape))  # [B, C, P, cells]
        full = full.index_copy(3, cell_index, cells)
        return full.view(b, c, self.num_points, *map_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape
        sampling, cell_index, map_shape = self.grid(t)
        out_dim, in_dim, points = self.weight.shape
        kernel = self.weight.permute(0, 2, 1).reshape(out_dim * points, in_dim, 1)  # [O*P, C, 1]
        projected = F.conv1d(x, kernel).view(b, out_dim, points * t)  # [B, O, P*T]
        cells = projected @ sampling.to(projected.dtype)  # [B, O, M]
        full = cells.new_zeros(b, out_dim, math.prod(map_shape))  # [B, O, cells]
        full = full.index_copy(2, cell_index, cells)
        return full.view(b, out_dim, *map_shape) + self.bias.view(out_dim, *(1,) * len(map_shape))


def _sampler_grid(build: Callable[[int], tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]], num_points: int,
                  num_snippets: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """``build(T)`` in :class:`ProposalSampler`'s buffer layout: ``(sampling [P*T, M], cell_index [M], map_shape)``."""
    matrix, cell_index, map_shape = build(num_snippets)
    num_cells, points, length = matrix.shape
    if points != num_points or length != num_snippets or cell_index.shape != (num_cells,):
        raise ValueError(f"ProposalSampler build({num_snippets}): expected matrix [M, {num_points}, {num_snippets}] "
                         f"and cell_index [M], got {tuple(matrix.shape)} and {tuple(cell_index.shape)}")
    sampling = matrix.permute(1, 2, 0).reshape(points * length, num_cells).contiguous()  # [P*T, M]
    return sampling, cell_index.long(), tuple(int(n) for n in map_shape)
