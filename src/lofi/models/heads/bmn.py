"""BMN (Lin et al., ICCV 2019) in pure torch: base module, temporal evaluation, boundary-matching proposal evaluation.

Features ``[B, D, T]`` -> ``start``/``end`` probabilities ``[B, T]``, a duration-start ``confidence`` map
``[B, 2, Dmax, T]`` (channel 0 classification, channel 1 regressed IoU; probabilities, 0 off the grid) and
per-snippet class logits ``snippet_logits`` ``[B, C, T]`` (window-level ``video_logits`` with
``proposal_labels="video"``). Cell ``[d, ts]`` is the proposal ``[ts/T, (ts+d+1)/T]`` (see
:mod:`lofi.models.heads.proposal_maps`).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from lofi.core.proposal_grid import duration_start_segments, duration_start_valid_mask, scaled_max_duration
from lofi.core.raw_outputs import DurationStartMapOutputs
from lofi.core.targets import SegmentTargets
from lofi.models.heads.base import TALHead
from lofi.models.heads.layers import ClassBranchMixin, MapGridMixin, ProposalLabels, confidence_map_head
from lofi.models.heads.proposal_maps import (
    LengthCache,
    MapLossConfig,
    ProposalSampler,
    check_confidence_map,
    check_features,
    interpolation_matrix,
    map_head_loss,
)


def bm_matrix(num_snippets: int, max_duration_snippets: int, *, num_samples: int = 32, samples_per_bin: int = 3,
              context_ratio: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The boundary-matching sampling weights of every valid duration-start cell -> ``(matrix [M, N, T], cell_index
    [M])``.

    Candidate ``[d, ts]`` covers snippet coordinates ``[ts - 0.5, ts + d + 0.5]`` (snippet ``t``'s feature sits
    at ``t``), ``L = d + 1`` snippets, widened by ``context_ratio * L`` on each side (BMN's
    ``prop_boundary_ratio``, 0.5). ``N * samples_per_bin`` points are spread evenly over it, ends included; each
    of the ``N = num_samples`` outputs is the mean of ``samples_per_bin`` consecutive linearly interpolated
    points (features outside the window count as 0). ``cell_index`` is ``d * T + ts`` over the valid cells. BMN's
    ``[T, N x Dmax x T]`` sample mask is this matrix scattered to all cells and transposed.
    """
    if num_samples < 1 or samples_per_bin < 1 or context_ratio < 0:
        raise ValueError(f"bm_matrix: need num_samples >= 1, samples_per_bin >= 1, context_ratio >= 0; got "
                         f"{num_samples}, {samples_per_bin}, {context_ratio}")
    d, ts = duration_start_valid_mask(num_snippets, max_duration_snippets).nonzero(as_tuple=True)  # [M], [M]
    length = (d + 1).to(torch.float64)  # [M]
    lo = ts.to(torch.float64) - 0.5 - context_ratio * length  # [M]
    hi = (ts + d).to(torch.float64) + 0.5 + context_ratio * length  # [M]
    total = num_samples * samples_per_bin
    steps = torch.arange(total, dtype=torch.float64) / max(total - 1, 1)  # [N*S] in [0, 1]
    positions = lo[:, None] + (hi - lo)[:, None] * steps  # [M, N*S]
    positions = positions.view(-1, num_samples, samples_per_bin)  # [M, N, S]
    return interpolation_matrix(positions, num_snippets), d * num_snippets + ts


class BMNHead(MapGridMixin, ClassBranchMixin, TALHead):
    """BMN: base module, temporal evaluation module (start/end), proposal evaluation module (BM layer + 3-D/2-D convs).

    Outputs (:class:`~lofi.core.raw_outputs.DurationStartMapOutputs`, batch first): ``"start"``, ``"end"`` ``[B, T]``
    probabilities of a boundary at ``t/T`` (start) and ``(t+1)/T`` (end); ``"confidence"`` ``[B, 2, Dmax, T]``
    probabilities indexed ``[d, ts]`` (channel 0 classification, 1 regression; 0 where ``ts + d >= T``);
    ``"snippet_logits"`` ``[B, num_classes, T]``, or ``"video_logits"`` ``[B, num_classes]`` with
    ``proposal_labels="video"``. The
    valid-cell mask is the buffer ``valid_mask`` ``[Dmax, T]`` (at ``T = num_snippets``; :meth:`map_grid` gives it
    at any ``T``).

    Any length: ``forward`` takes features of any ``T >= 1``; the weights do not depend on ``T``. ``num_snippets``
    is the reference length whose BM sampling matrix, ``valid_mask`` and ``candidate_segments`` are built eagerly;
    those of other lengths are built on first use and cached per (T, device, dtype) (not in the state_dict; they
    follow ``.to``). :meth:`loss` uses the ``T`` of the outputs it gets. ``max_duration_snippets`` (``Dmax``) is in
    snippets at ``num_snippets``; at another ``T`` the map has ``Dmax(T) = ceil(max_duration_snippets * T /
    num_snippets)`` rows, the same fraction of the window rounded up
    (:func:`~lofi.core.proposal_grid.scaled_max_duration`, see :meth:`max_duration_at`); the default
    (``num_snippets``) gives ``Dmax(T) = T`` at every length.

    Options: ``hidden_dim`` (1-D width, BMN 256), ``hidden_dim_3d`` (after the BM layer's ``(N,1,1)`` conv, BMN
    512), ``hidden_dim_2d`` (BMN 128), ``groups`` (grouped 1-D convs, BMN 4), ``max_duration_snippets`` (``Dmax`` in
    snippets at ``num_snippets``; default ``num_snippets``), ``num_samples``/``samples_per_bin``/``context_ratio``
    (BM layer, see :func:`bm_matrix`), ``proposal_labels`` (``"snippet"`` or ``"video"``), ``class_hidden_dim`` /
    ``video_hidden_dim`` (the width of that class branch), and the loss options of :class:`MapLossConfig`.
    """

    def __init__(self, *, in_dim: int, num_classes: int, num_snippets: int, hidden_dim: int = 256,
                 hidden_dim_2d: int = 128, hidden_dim_3d: int = 512, groups: int = 4,
                 max_duration_snippets: int | None = None, num_samples: int = 32, samples_per_bin: int = 3,
                 context_ratio: float = 0.5, video_hidden_dim: int = 256, boundary_region_snippets: float = 3.0,
                 positive_iou: float = 0.9, high_iou: float = 0.7, low_iou: float = 0.3, reg_weight: float = 10.0,
                 video_weight: float = 1.0, proposal_labels: ProposalLabels = "snippet",
                 class_hidden_dim: int = 256, snippet_weight: float = 1.0, best_match: bool = True) -> None:
        super().__init__()
        if in_dim % groups or hidden_dim % groups:
            raise ValueError(f"BMNHead: in_dim={in_dim} and hidden_dim={hidden_dim} must be divisible by "
                             f"groups={groups}; pass groups=1 for any width")
        max_duration_snippets = num_snippets if max_duration_snippets is None else max_duration_snippets
        if not 1 <= max_duration_snippets <= num_snippets:
            raise ValueError(f"BMNHead: max_duration_snippets must be in [1, num_snippets={num_snippets}] (counted "
                             f"at num_snippets), got {max_duration_snippets}")
        self.num_classes = num_classes
        self.num_snippets = num_snippets
        self.max_duration_snippets = max_duration_snippets
        self.in_dim = in_dim
        self.loss_config = MapLossConfig(boundary_region_snippets=boundary_region_snippets,
                                         positive_iou=positive_iou, high_iou=high_iou, low_iou=low_iou,
                                         reg_weight=reg_weight, video_weight=video_weight,
                                         snippet_weight=snippet_weight, best_match=best_match)

        self.base = nn.Sequential(
            nn.Conv1d(in_dim, hidden_dim, kernel_size=3, padding=1, groups=groups), nn.ReLU(inplace=True),
            nn.Conv1d(hidden_dim, hidden_dim, kernel_size=3, padding=1, groups=groups), nn.ReLU(inplace=True),
        )
        self.start_branch = _boundary_branch(hidden_dim, groups)
        self.end_branch = _boundary_branch(hidden_dim, groups)
        self.proposal_1d = nn.Sequential(nn.Conv1d(hidden_dim, hidden_dim, kernel_size=3, padding=1),
                                         nn.ReLU(inplace=True))
        matrix, cell_index = bm_matrix(num_snippets, max_duration_snippets, num_samples=num_samples,
                                       samples_per_bin=samples_per_bin, context_ratio=context_ratio)
        bm = dict(num_samples=num_samples, samples_per_bin=samples_per_bin, context_ratio=context_ratio,
                  num_snippets=num_snippets, max_duration_snippets=max_duration_snippets)
        self.boundary_matching = ProposalSampler(in_dim=hidden_dim, out_dim=hidden_dim_3d, matrix=matrix,
                                                 cell_index=cell_index, map_shape=(max_duration_snippets, num_snippets),
                                                 build=partial(_bm_grid, **bm))
        self.proposal_2d = confidence_map_head(hidden_dim_3d, hidden_dim_2d)
        self.build_class_branch(proposal_labels=proposal_labels, in_dim=hidden_dim, num_classes=num_classes,
                                class_hidden_dim=class_hidden_dim, video_hidden_dim=video_hidden_dim)
        self.register_buffer("valid_mask", duration_start_valid_mask(num_snippets, max_duration_snippets),
                             persistent=False)  # [Dmax, T]
        self.register_buffer("candidate_segments", duration_start_segments(num_snippets, max_duration_snippets),
                             persistent=False)  # [Dmax, T, 2]
        self._grids = LengthCache(partial(_duration_start_grid, num_snippets=num_snippets,
                                          max_duration_snippets=max_duration_snippets))

    def forward(self, features: torch.Tensor) -> DurationStartMapOutputs:
        check_features(features, self.in_dim, 1, "BMNHead")
        valid_mask, _ = self.map_grid(features.shape[2])
        base = self.base(features)  # [B, D, T] -> [B, Dh, T]
        start = torch.sigmoid(self.start_branch(base)).squeeze(1)  # [B, T]
        end = torch.sigmoid(self.end_branch(base)).squeeze(1)  # [B, T]
        matched = self.boundary_matching(self.proposal_1d(base))  # [B, Dh, T] -> [B, Dh3, Dmax, T]
        confidence = torch.sigmoid(self.proposal_2d(matched)) * valid_mask  # [B, 2, Dmax, T]
        return DurationStartMapOutputs(start=start, end=end, confidence=confidence, **self.class_outputs(base))

    def loss(self, outputs: DurationStartMapOutputs, targets: SegmentTargets) -> dict[str, torch.Tensor]:
        """``"loss"`` = tem (boundary) + pem_cls (map_cls) + reg_weight * pem_reg (map_reg) + snippet_weight *
        snippet_cls (or video_weight * video_cls) (see
        :func:`lofi.models.heads.proposal_maps.proposal_map_losses`), at the ``T`` of ``outputs``."""
        valid_mask, candidates = self.map_grid(outputs["start"].shape[1])
        check_confidence_map(outputs["confidence"], valid_mask.shape, "BMNHead")
        return map_head_loss(outputs, targets, candidates=candidates, valid=valid_mask, config=self.loss_config)


def _bm_grid(length: int, *, num_samples: int, samples_per_bin: int, context_ratio: float, num_snippets: int,
             max_duration_snippets: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """BMN's BM matrix at a window of ``length`` snippets (``max_duration_snippets`` counted at ``num_snippets``)."""
    limit = scaled_max_duration(max_duration_snippets, num_snippets, length)
    matrix, cell_index = bm_matrix(length, limit, num_samples=num_samples, samples_per_bin=samples_per_bin,
                                   context_ratio=context_ratio)
    return matrix, cell_index, (limit, length)


def _duration_start_grid(length: int, *, num_snippets: int,
                         max_duration_snippets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(valid_mask, candidate_segments)`` of the duration-start map at ``length`` snippets."""
    limit = scaled_max_duration(max_duration_snippets, num_snippets, length)
    return duration_start_valid_mask(length, limit), duration_start_segments(length, limit)


def _boundary_branch(hidden_dim: int, groups: int) -> nn.Sequential:
    """BMN's temporal evaluation branch: grouped conv, ReLU, 1x1 to one logit per snippet."""
    return nn.Sequential(nn.Conv1d(hidden_dim, hidden_dim, kernel_size=3, padding=1, groups=groups),
                         nn.ReLU(inplace=True), nn.Conv1d(hidden_dim, 1, kernel_size=1))


__all__ = ["BMNHead", "bm_matrix"]
