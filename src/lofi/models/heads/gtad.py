"""G-TAD (Xu et al., CVPR 2020), the LoFi paper's head, in pure torch: GCNeXt graph blocks, SGAlign, matching map.

Features ``[B, D, T]`` -> ``start``/``end`` probabilities ``[B, T]``, a start-end ``confidence`` map
``[B, 2, T, T]`` (channel 0: classification confidence, channel 1: regressed IoU; probabilities, 0 on cells that
are not candidates) and per-snippet class logits ``snippet_logits`` ``[B, num_classes, T]`` (window-level
``video_logits`` ``[B, num_classes]`` instead with ``proposal_labels="video"``). Grid and target conventions are in
:mod:`lofi.models.heads.proposal_maps`: cell ``[ts, te]`` is the proposal ``[ts/T, (te+1)/T]``.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from lofi.core.proposal_grid import scaled_max_duration, start_end_segments, start_end_valid_mask
from lofi.core.raw_outputs import StartEndMapOutputs
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


def knn_indices(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``[B, T, k]`` of each snippet's ``k`` nearest snippets in feature space (itself first, distance 0).

    ``x`` is ``[B, C, T]``; Euclidean distance, computed in float32 without gradient (the graph is rebuilt from the
    current features at every call: G-TAD's dynamic semantic edges).
    """
    with torch.no_grad():
        xf = x.detach().float()
        sq = xf.square().sum(dim=1)  # [B, T]
        dist = sq[:, :, None] + sq[:, None, :] - 2 * xf.transpose(1, 2) @ xf  # [B, T, T]
        return dist.topk(k, dim=-1, largest=False).indices  # [B, T, k]


def gather_neighbours(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Neighbour features: ``x [B, C, T]``, ``index [B, T, k]`` -> ``[B, C, T, k]``."""
    b, c, t = x.shape
    k = index.shape[-1]
    flat = x.transpose(1, 2).reshape(b * t, c)  # [B*T, C]
    offset = (torch.arange(b, device=x.device) * t).view(b, 1, 1)
    picked = flat[(index + offset).reshape(-1)]  # [B*T*k, C]
    return picked.view(b, t, k, c).permute(0, 3, 1, 2)  # [B, C, T, k]


class GCNeXt(nn.Module):
    """G-TAD's graph block: ``relu(x + temporal(x) + semantic(x))``, ``[B, C, T] -> [B, C, T]``.

    Temporal edges link each snippet to its neighbours in time (a grouped kernel-3 conv); semantic edges link it
    to its ``k`` nearest snippets in feature space, with EdgeConv features ``(x_j - x_i, x_i)`` max-pooled over
    the neighbours. Both paths are ResNeXt bottlenecks: 1x1 in, ``groups`` grouped paths of ``width_per_group``
    channels, 1x1 out.
    """

    def __init__(self, *, channels: int, k: int = 3, groups: int = 32, width_per_group: int = 4) -> None:
        super().__init__()
        if k < 1 or groups < 1 or width_per_group < 1:
            raise ValueError(f"GCNeXt: k, groups and width_per_group must be >= 1, got {k}, {groups}, "
                             f"{width_per_group}")
        self.k = k
        width = groups * width_per_group
        self.temporal = nn.Sequential(
            nn.Conv1d(channels, width, kernel_size=1), nn.ReLU(inplace=True),
            nn.Conv1d(width, width, kernel_size=3, padding=1, groups=groups), nn.ReLU(inplace=True),
            nn.Conv1d(width, channels, kernel_size=1),
        )
        self.semantic = nn.Sequential(
            nn.Conv2d(2 * channels, width, kernel_size=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, kernel_size=1, groups=groups), nn.ReLU(inplace=True),
            nn.Conv2d(width, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        neighbours = gather_neighbours(x, knn_indices(x, self.k))  # [B, C, T, k]
        centre = x.unsqueeze(-1).expand_as(neighbours)  # [B, C, T, k]
        semantic = self.semantic(torch.cat([neighbours - centre, centre], dim=1)).amax(dim=-1)  # [B, C, T]
        return F.relu(x + self.temporal(x) + semantic)  # [B, C, T]


def sgalign_matrix(num_snippets: int, *, num_samples: int = 16, samples_per_bin: int = 0,
                   context_ratio: float = 0.5,
                   max_duration_snippets: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SGAlign's sampling weights for every candidate of the start-end map -> ``(matrix [M, P, T], cell_index [M])``.

    Candidate ``[ts, te]`` covers snippet coordinates ``[ts - 0.5, te + 0.5]`` (snippet ``t``'s feature sits at
    ``t``), ``L = te - ts + 1`` snippets; it is widened by ``context_ratio * L`` on each side (G-TAD: 0.5) and
    split into ``P = num_samples`` equal bins. Bin ``p`` is the mean of ``g`` linearly interpolated points at
    its sub-bin centres (RoIAlign in 1-D), ``g = samples_per_bin``, or ``ceil(bin width)`` when 0 (G-TAD's
    adaptive default). Outside the window the features count as 0. ``cell_index`` is ``ts * T + te``, row-major
    over the valid cells (:func:`start_end_valid_mask`).
    """
    if num_samples < 1 or samples_per_bin < 0 or context_ratio < 0:
        raise ValueError(f"sgalign_matrix: need num_samples >= 1, samples_per_bin >= 0, context_ratio >= 0; got "
                         f"{num_samples}, {samples_per_bin}, {context_ratio}")
    ts, te = start_end_valid_mask(num_snippets, max_duration=max_duration_snippets).nonzero(as_tuple=True)  # [M], [M]
    length = (te - ts + 1).to(torch.float64)  # [M]
    lo = ts.to(torch.float64) - 0.5 - context_ratio * length  # [M]
    bin_width = (1 + 2 * context_ratio) * length / num_samples  # [M]
    grid = (torch.full_like(bin_width, float(samples_per_bin)) if samples_per_bin > 0
            else torch.ceil(bin_width - 1e-9).clamp_min(1))  # [M] points per bin
    max_grid = int(grid.max())
    p = torch.arange(num_samples, dtype=torch.float64).view(1, -1, 1)  # [1, P, 1]
    i = torch.arange(max_grid, dtype=torch.float64).view(1, 1, -1)  # [1, 1, G]
    g = grid.view(-1, 1, 1)  # [M, 1, 1]
    positions = lo.view(-1, 1, 1) + (p + (i + 0.5) / g) * bin_width.view(-1, 1, 1)  # [M, P, G]
    weights = torch.where(i < g, 1.0 / g, torch.zeros_like(g)).expand_as(positions)  # [M, P, G]
    matrix = interpolation_matrix(positions, num_snippets, point_weights=weights)  # [M, P, T]
    return matrix, ts * num_snippets + te


class GTADHead(MapGridMixin, ClassBranchMixin, TALHead):
    """G-TAD: GCNeXt backbone, start/end branches, SGAlign over every candidate and the matching head.

    Outputs (:class:`~lofi.core.raw_outputs.StartEndMapOutputs`, all float, batch first): ``"start"``, ``"end"``
    ``[B, T]`` probabilities of a boundary at ``t/T`` (start) and ``(t+1)/T`` (end); ``"confidence"`` ``[B, 2, T, T]``
    probabilities indexed ``[ts, te]`` (channel 0 classification, 1 regression; 0 where ``te < ts`` or the duration
    exceeds ``max_duration_snippets``); ``"snippet_logits"`` ``[B, num_classes, T]`` (multi-label logits per snippet), or
    ``"video_logits"`` ``[B, num_classes]`` with ``proposal_labels="video"``
    (:class:`~lofi.models.heads.layers.ClassBranchMixin`). The valid-cell mask is the buffer
    ``valid_mask`` ``[T, T]`` (at ``T = num_snippets``; :meth:`map_grid` gives it at any ``T``).

    Any length: ``forward`` takes features of any ``T >= k``; the weights do not depend on ``T``. ``num_snippets``
    is the reference length whose SGAlign matrix, ``valid_mask`` and ``candidate_segments`` are built eagerly;
    those of other lengths are built on first use and cached per (T, device, dtype) (not in the state_dict; they
    follow ``.to``). :meth:`loss` uses the ``T`` of the outputs it gets. ``max_duration_snippets`` is in snippets at
    ``num_snippets``; at another ``T`` the limit is the same fraction of the window, rounded up
    (:func:`~lofi.core.proposal_grid.scaled_max_duration`, see :meth:`max_duration_at`); None = no limit
    (``T``) at every length.

    Options: ``hidden_dim`` (1-D width, G-TAD 256), ``align_dim`` (width after SGAlign, G-TAD 512), ``map_dim``
    (2-D width, G-TAD 128), ``k`` (semantic neighbours), ``groups``/``width_per_group`` (GCNeXt paths),
    ``stem_groups`` (grouped input conv), ``num_samples``/``samples_per_bin``/``context_ratio`` (SGAlign, see
    :func:`sgalign_matrix`), ``max_duration_snippets`` (longest candidate, in snippets at ``num_snippets``; default
    None: no limit), ``proposal_labels`` (``"snippet"`` or ``"video"``), ``class_hidden_dim`` / ``video_hidden_dim``
    (the width of that class branch), and the loss options of :class:`MapLossConfig`.
    """

    def __init__(self, *, in_dim: int, num_classes: int, num_snippets: int, hidden_dim: int = 256,
                 align_dim: int = 512, map_dim: int = 128, k: int = 3, groups: int = 32, width_per_group: int = 4,
                 stem_groups: int = 4, num_samples: int = 16, samples_per_bin: int = 0, context_ratio: float = 0.5,
                 max_duration_snippets: int | None = None, video_hidden_dim: int = 256,
                 boundary_region_snippets: float = 3.0, positive_iou: float = 0.9, high_iou: float = 0.7,
                 low_iou: float = 0.3, reg_weight: float = 10.0, video_weight: float = 1.0,
                 proposal_labels: ProposalLabels = "snippet", class_hidden_dim: int = 256,
                 snippet_weight: float = 1.0, best_match: bool = True) -> None:
        super().__init__()
        if not 1 <= k <= num_snippets:
            raise ValueError(f"GTADHead: k={k} semantic neighbours need 1 <= k <= num_snippets={num_snippets}")
        if in_dim % stem_groups or hidden_dim % stem_groups:
            raise ValueError(f"GTADHead: in_dim={in_dim} and hidden_dim={hidden_dim} must be divisible by "
                             f"stem_groups={stem_groups}; pass stem_groups=1 for any width")
        if max_duration_snippets is not None and not 1 <= max_duration_snippets <= num_snippets:
            raise ValueError(f"GTADHead: max_duration_snippets must be in [1, num_snippets={num_snippets}] (counted "
                             f"at num_snippets), got {max_duration_snippets}")
        self.num_classes = num_classes
        self.num_snippets = num_snippets
        self.max_duration_snippets = max_duration_snippets
        self.k = k
        self.loss_config = MapLossConfig(boundary_region_snippets=boundary_region_snippets,
                                         positive_iou=positive_iou, high_iou=high_iou, low_iou=low_iou,
                                         reg_weight=reg_weight, video_weight=video_weight,
                                         snippet_weight=snippet_weight, best_match=best_match)
        block = dict(channels=hidden_dim, k=k, groups=groups, width_per_group=width_per_group)

        self.stem = nn.Sequential(
            nn.Conv1d(in_dim, hidden_dim, kernel_size=3, padding=1, groups=stem_groups), nn.ReLU(inplace=True),
            GCNeXt(**block),
        )
        self.start_branch = nn.Sequential(GCNeXt(**block), nn.Conv1d(hidden_dim, 1, kernel_size=1))
        self.end_branch = nn.Sequential(GCNeXt(**block), nn.Conv1d(hidden_dim, 1, kernel_size=1))
        self.backbone = GCNeXt(**block)
        matrix, cell_index = sgalign_matrix(num_snippets, num_samples=num_samples, samples_per_bin=samples_per_bin,
                                            context_ratio=context_ratio, max_duration_snippets=max_duration_snippets)
        sgalign = dict(num_samples=num_samples, samples_per_bin=samples_per_bin, context_ratio=context_ratio,
                       num_snippets=num_snippets, max_duration_snippets=max_duration_snippets)
        self.align = ProposalSampler(in_dim=2 * hidden_dim, out_dim=align_dim, matrix=matrix, cell_index=cell_index,
                                     map_shape=(num_snippets, num_snippets), build=partial(_sgalign_grid, **sgalign))
        self.matching = confidence_map_head(align_dim, map_dim)
        self.build_class_branch(proposal_labels=proposal_labels, in_dim=hidden_dim, num_classes=num_classes,
                                class_hidden_dim=class_hidden_dim, video_hidden_dim=video_hidden_dim)
        self.register_buffer("valid_mask", start_end_valid_mask(num_snippets, max_duration=max_duration_snippets),
                             persistent=False)  # [T, T]
        self.register_buffer("candidate_segments", start_end_segments(num_snippets), persistent=False)  # [T, T, 2]
        self.in_dim = in_dim
        self._grids = LengthCache(partial(_start_end_grid, num_snippets=num_snippets,
                                          max_duration_snippets=max_duration_snippets))

    def forward(self, features: torch.Tensor) -> StartEndMapOutputs:
        check_features(features, self.in_dim, self.k, "GTADHead")
        valid_mask, _ = self.map_grid(features.shape[2])
        base = self.stem(features)  # [B, D, T] -> [B, Dh, T]
        start = torch.sigmoid(self.start_branch(base)).squeeze(1)  # [B, T]
        end = torch.sigmoid(self.end_branch(base)).squeeze(1)  # [B, T]
        deep = self.backbone(base)  # [B, Dh, T]
        context = gather_neighbours(deep, knn_indices(deep, self.k)).mean(dim=-1)  # [B, Dh, T] semantic context
        aligned = self.align(torch.cat([deep, context], dim=1))  # [B, 2Dh, T] -> [B, A, T, T]
        confidence = torch.sigmoid(self.matching(aligned)) * valid_mask  # [B, 2, T, T]
        return StartEndMapOutputs(start=start, end=end, confidence=confidence, **self.class_outputs(base))

    def loss(self, outputs: StartEndMapOutputs, targets: SegmentTargets) -> dict[str, torch.Tensor]:
        """``"loss"`` = boundary + map_cls + reg_weight * map_reg + snippet_weight * snippet_cls (or video_weight *
        video_cls) (see
        :func:`lofi.models.heads.proposal_maps.proposal_map_losses`), at the ``T`` of ``outputs``."""
        t = outputs["start"].shape[1]
        valid_mask, candidates = self.map_grid(t)
        check_confidence_map(outputs["confidence"], valid_mask.shape, "GTADHead")
        return map_head_loss(outputs, targets, candidates=candidates, valid=valid_mask, config=self.loss_config)


def _sgalign_grid(length: int, *, num_samples: int, samples_per_bin: int, context_ratio: float, num_snippets: int,
                  max_duration_snippets: int | None) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """G-TAD's SGAlign matrix at a window of ``length`` snippets (``max_duration_snippets`` counted at
    ``num_snippets``)."""
    limit = scaled_max_duration(max_duration_snippets, num_snippets, length)
    matrix, cell_index = sgalign_matrix(length, num_samples=num_samples, samples_per_bin=samples_per_bin,
                                        context_ratio=context_ratio, max_duration_snippets=limit)
    return matrix, cell_index, (length, length)


def _start_end_grid(length: int, *, num_snippets: int,
                    max_duration_snippets: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(valid_mask, candidate_segments)`` of the start-end map at ``length`` snippets."""
    limit = scaled_max_duration(max_duration_snippets, num_snippets, length)
    return start_end_valid_mask(length, max_duration=limit), start_end_segments(length)


__all__ = ["GCNeXt", "GTADHead", "gather_neighbours", "knn_indices", "sgalign_matrix"]
