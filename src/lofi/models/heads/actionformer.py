"""ActionFormer (Zhang et al., ECCV 2022): a local-attention transformer pyramid with anchor-free point heads.

Every position of every pyramid level is a *point*. Level ``l`` has stride ``s = 2 ** l`` snippets and
``ceil(T / s)`` points; point ``i`` of level ``l`` sits at the centre of snippet ``i * s`` (its receptive field is
centred there), i.e. at window fraction ``(i * s + 0.5) / T`` (snippet ``t`` spans ``[t / T, (t + 1) / T]``).
A point predicts per-class logits and two non-negative distances, to the start and to the end of its action, in
units of its stride. Targets (:func:`assign_points`) and decoding
(:func:`lofi.postprocess.decoders.actionformer.decode_actionformer`) both use ``outputs["points"]``, so they agree.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lofi.core.raw_outputs import PointOutputs
from lofi.core.targets import SegmentTargets
from lofi.models.heads.actionformer_blocks import ChannelNorm, ConvStack, TransformerBlock
from lofi.models.heads.base import TALHead
from lofi.models.losses import diou_loss_1d, sigmoid_focal_loss

#: An unbounded regression range (inf) is stored as this many window lengths, so that outputs stay finite.
_UNBOUNDED_WINDOWS = 1e4
#: The regression predictor's initial weights (normal, this std) and bias: offsets start near 1 stride, > 0.
REG_OUT_INIT_STD, REG_OUT_INIT_BIAS = 0.01, 1.0


def default_regression_ranges(num_levels: int) -> list[tuple[float, float]]:
    """ActionFormer's ranges in snippets, cut to ``num_levels``: (0, 4), (4, 8), (8, 16), ..., the last unbounded.

    A point may regress a segment when its larger distance to the two boundaries lies in its level's range.
    """
    ranges = [(0.0, 4.0)] + [(4.0 * 2 ** (l - 1), 4.0 * 2 ** l) for l in range(1, num_levels)]
    return ranges[:-1] + [(ranges[-1][0], math.inf)]


class ActionFormerHead(TALHead):
    """ActionFormer on ``[B, in_dim, T]`` features -> per-point class logits and boundary distances.

    Architecture: ``num_embed_layers`` convs (in_dim -> embed_dim), ``num_stem_layers`` local-attention transformer
    blocks at full resolution (pyramid level 0), then ``num_levels - 1`` strided transformer blocks each halving
    the length (levels 1, 2, ...), a LayerNorm per level, and classification / regression conv heads shared by all
    levels (``num_head_layers`` convs each, the last one the predictor; ReLU'd offsets with a learnable scale per
    level; the regression predictor starts with small weights and a bias of 1, so that no offset starts on the
    ReLU's dead side). Works for any T (not only multiples of ``2 ** (num_levels - 1)``); ``num_snippets`` is informational.

    Raw outputs, ``P = sum_l ceil(T / 2 ** l)`` points in level order:

    - ``"cls_logits"`` ``[B, P, C]``: per-class logits (sigmoid, not softmax);
    - ``"offsets"`` ``[B, P, 2]``: distances (>= 0) from the point to the start and to the end, in point strides;
    - ``"points"`` ``[P, 4]`` (no batch dim): centre, stride, regression range min and max, all as fractions of
      the window (see the module docstring; an unbounded max is stored as 1e4 windows).

    Loss (:meth:`loss`): sigmoid focal loss over all points and classes plus ``reg_loss_weight`` times the DIoU
    loss of the positive points, both summed and divided by ``max(num_positives, 1)`` over the batch.
    """

    def __init__(self, *, in_dim: int, num_classes: int, num_snippets: int, embed_dim: int = 128,
                 num_embed_layers: int = 2, num_stem_layers: int = 2, num_levels: int = 4, num_heads: int = 4,
                 window_size: int = 9, mlp_ratio: int = 4, head_dim: int | None = None, num_head_layers: int = 3,
                 dropout: float = 0.0, prior_prob: float = 0.01,
                 regression_ranges: Sequence[tuple[float, float]] | None = None,
                 center_sample_radius: float = 1.5, reg_loss_weight: float = 1.0, label_smoothing: float = 0.0,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0) -> None:
        super().__init__()
        if min(in_dim, num_classes, num_snippets, embed_dim, num_embed_layers, num_levels, num_head_layers) < 1:
            raise ValueError("ActionFormerHead: in_dim, num_classes, num_snippets, embed_dim, num_embed_layers, "
                             "num_levels and num_head_layers must all be >= 1")
        if not 0 < prior_prob < 1:
            raise ValueError(f"ActionFormerHead: prior_prob must be in (0, 1), got {prior_prob}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"ActionFormerHead: label_smoothing must be in [0, 1), got {label_smoothing}")
        ranges = list(regression_ranges) if regression_ranges is not None else default_regression_ranges(num_levels)
        if len(ranges) != num_levels or any(not 0 <= lo < hi for lo, hi in ranges):
            raise ValueError(f"ActionFormerHead: regression_ranges must be {num_levels} (min, max) pairs in "
                             f"snippets with 0 <= min < max, one per level; got {ranges}")
        self.num_classes, self.num_snippets, self.num_levels = num_classes, num_snippets, num_levels
        self.regression_ranges = [(float(lo), float(hi)) for lo, hi in ranges]
        self.center_sample_radius, self.reg_loss_weight = center_sample_radius, reg_loss_weight
        self.label_smoothing, self.focal_alpha, self.focal_gamma = label_smoothing, focal_alpha, focal_gamma
        head_dim = head_dim or embed_dim
        block = dict(dim=embed_dim, num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio,
                     dropout=dropout)

        self.embed = ConvStack(in_dim=in_dim, out_dim=embed_dim, num_layers=num_embed_layers)
        self.stem = nn.Sequential(*(TransformerBlock(**block) for _ in range(num_stem_layers)))
        self.branch = nn.ModuleList(TransformerBlock(stride=2, **block) for _ in range(num_levels - 1))
        self.level_norms = nn.ModuleList(ChannelNorm(dim=embed_dim) for _ in range(num_levels))
        self.cls_tower = ConvStack(in_dim=embed_dim, out_dim=head_dim, num_layers=num_head_layers - 1)
        self.cls_out = nn.Conv1d(head_dim if num_head_layers > 1 else embed_dim, num_classes, 3, padding=1)
        self.reg_tower = ConvStack(in_dim=embed_dim, out_dim=head_dim, num_layers=num_head_layers - 1)
        self.reg_out = nn.Conv1d(head_dim if num_head_layers > 1 else embed_dim, 2, 3, padding=1)
        self.reg_scales = nn.Parameter(torch.ones(num_levels))
        self._init_weights(prior_prob)

    def _init_weights(self, prior_prob: float) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv1d) and m.bias is not None:
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - prior_prob) / prior_prob))  # sigmoid(bias) = prior
        # Every point starts about one stride from each boundary, inside the ReLU's live side. With the default
        # init, the offsets of 95-99% of the positive points were ReLU'd to 0 for some seeds, so their DIoU loss
        # had no gradient and the regression branch could stay stuck (docs/models.md, "A stuck regression branch").
        nn.init.normal_(self.reg_out.weight, std=REG_OUT_INIT_STD)
        nn.init.constant_(self.reg_out.bias, REG_OUT_INIT_BIAS)

    def pyramid(self, features: torch.Tensor) -> list[torch.Tensor]:
        """``[B, in_dim, T]`` -> ``num_levels`` feature maps ``[B, embed_dim, ceil(T / 2 ** l)]``."""
        x = self.stem(self.embed(features))  # [B, E, T]
        levels = [x]
        for block in self.branch:
            levels.append(block(levels[-1]))  # [B, E, ceil(T_l / 2)]
        return [norm(level) for norm, level in zip(self.level_norms, levels)]

    def points(self, num_snippets: int, *, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[P, 4]`` points of a T-snippet window: centre, stride, regression min and max, as window fractions."""
        table = []
        for level, (lo, hi) in enumerate(self.regression_ranges):
            stride = 2 ** level
            centre = (torch.arange(0, num_snippets, stride, dtype=torch.float64) + 0.5) / num_snippets  # [P_l]
            row = [stride / num_snippets, lo / num_snippets, min(hi / num_snippets, _UNBOUNDED_WINDOWS)]
            table.append(torch.cat([centre[:, None], torch.tensor(row, dtype=torch.float64).expand(len(centre), 3)],
                                   dim=1))  # [P_l, 4]
        return torch.cat(table).to(device=device, dtype=dtype)  # [P, 4]

    def forward(self, features: torch.Tensor) -> PointOutputs:
        if features.dim() != 3:
            raise ValueError(f"ActionFormerHead expects features [B, D, T], got {tuple(features.shape)}")
        levels = self.pyramid(features)  # L x [B, E, ceil(T / 2 ** l)]
        logits, offsets = [], []
        for level, feat in enumerate(levels):
            logits.append(self.cls_out(self.cls_tower(feat)))  # [B, C, T_l]
            offsets.append(F.relu(self.reg_scales[level] * self.reg_out(self.reg_tower(feat))))  # [B, 2, T_l]
        return PointOutputs(
            cls_logits=torch.cat(logits, dim=2).transpose(1, 2),  # [B, P, C]
            offsets=torch.cat(offsets, dim=2).transpose(1, 2),  # [B, P, 2]
            points=self.points(features.shape[2], device=features.device),  # [P, 4] float32 even under autocast
        )

    def loss(self, outputs: PointOutputs, targets: SegmentTargets) -> dict[str, torch.Tensor]:
        """``{"loss", "cls_loss", "reg_loss", "num_positives"}``; ``loss = cls_loss + reg_loss_weight * reg_loss``.

        Ground-truth segments are clipped to the window; segments left empty by the clipping are ignored.
        """
        logits, offsets = outputs["cls_logits"].float(), outputs["offsets"].float()  # [B, P, C], [B, P, 2]
        points = outputs["points"].float()  # [P, 4]
        if points.shape[0] != logits.shape[1] or offsets.shape[:2] != logits.shape[:2]:
            raise ValueError(f"ActionFormerHead.loss: cls_logits {tuple(logits.shape)}, offsets "
                             f"{tuple(offsets.shape)} and points {tuple(points.shape)} disagree on the points")
        if len(targets) != logits.shape[0]:
            raise ValueError(f"ActionFormerHead.loss: {len(targets)} targets for a batch of {logits.shape[0]}")
        cls_targets, reg_targets = [], []
        for segments, labels in zip(targets.segments, targets.labels):
            cls_t, reg_t = assign_points(points, segments.to(points), labels.to(points.device),
                                         num_classes=self.num_classes,
                                         center_sample_radius=self.center_sample_radius)
            cls_targets.append(cls_t)
            reg_targets.append(reg_t)
        cls_target = torch.stack(cls_targets)  # [B, P, C]
        reg_target = torch.stack(reg_targets)  # [B, P, 2]
        positive = cls_target.sum(-1) > 0  # [B, P]
        num_pos = positive.sum()
        normaliser = num_pos.clamp(min=1).to(logits.dtype)

        if self.label_smoothing > 0:
            cls_target = cls_target * (1 - self.label_smoothing) + self.label_smoothing / (self.num_classes + 1)
        cls_loss = sigmoid_focal_loss(logits, cls_target, alpha=self.focal_alpha, gamma=self.focal_gamma,
                                      reduction="sum") / normaliser
        pred, gt = offsets[positive], reg_target[positive]  # [N_pos, 2] each, (to start, to end) in strides
        # As segments relative to the point: (-to_start, to_end). The "+ 0 * sum" keeps every regression
        # parameter in the graph (zero gradient) when the batch has no positive point.
        reg_loss = diou_loss_1d(torch.stack([-pred[:, 0], pred[:, 1]], -1), torch.stack([-gt[:, 0], gt[:, 1]], -1),
                                reduction="sum") / normaliser + 0 * offsets.sum()
        return {"loss": cls_loss + self.reg_loss_weight * reg_loss, "cls_loss": cls_loss.detach(),
                "reg_loss": reg_loss.detach(), "num_positives": num_pos.detach().to(logits.dtype)}


def assign_points(points: torch.Tensor, segments: torch.Tensor, labels: torch.Tensor, *, num_classes: int,
                  center_sample_radius: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """ActionFormer's label assignment of one window -> ``cls_targets [P, C]`` (0/1), ``reg_targets [P, 2]``.

    ``points`` ``[P, 4]`` as in :meth:`ActionFormerHead.points`; ``segments`` ``[N, 2]`` window fractions (clipped
    to [0, 1] here, empty ones dropped); ``labels`` ``[N]``. A point is positive for a segment when it lies strictly
    inside the segment's centre region (the segment cut to ``centre +- center_sample_radius * stride``; the whole
    segment when the radius is 0) and the larger of its distances to the two boundaries is within its level's
    regression range. A point positive for several segments takes the shortest (all of equally short ones' labels).
    ``reg_targets`` are the distances to the chosen segment's start and end in point strides (0 for negatives).
    """
    num_points = points.shape[0]
    cls_t = points.new_zeros(num_points, num_classes)
    reg_t = points.new_zeros(num_points, 2)
    segments = segments.clamp(0, 1)  # [N, 2]
    keep = segments[:, 1] > segments[:, 0]
    segments, labels = segments[keep], labels[keep]
    if segments.shape[0] == 0:
        return cls_t, reg_t
    centre, stride, range_min, range_max = (c[:, None] for c in points.unbind(-1))  # [P, 1] each
    start, end = segments[None, :, 0], segments[None, :, 1]  # [1, N] each
    to_start, to_end = centre - start, end - centre  # [P, N] each
    if center_sample_radius > 0:
        mid, radius = 0.5 * (start + end), center_sample_radius * stride  # [1, N], [P, 1]
        inside = torch.minimum(centre - torch.maximum(mid - radius, start),
                               torch.minimum(mid + radius, end) - centre) > 0  # [P, N]
    else:
        inside = torch.minimum(to_start, to_end) > 0  # [P, N]
    reach = torch.maximum(to_start, to_end)  # [P, N]
    eligible = inside & (reach >= range_min) & (reach <= range_max)  # [P, N]
    lengths = (end - start).expand(num_points, -1).masked_fill(~eligible, math.inf)  # [P, N]
    shortest, best = lengths.min(dim=1)  # [P] each
    positive = torch.isfinite(shortest)  # [P]
    ties = eligible & (lengths <= shortest[:, None] + 1e-6)  # [P, N]
    one_hot = F.one_hot(labels.long(), num_classes).to(points.dtype)  # [N, C]
    cls_t = (ties.to(points.dtype) @ one_hot).clamp(max=1)  # [P, C]
    rows = torch.arange(num_points, device=points.device)
    reg_t = torch.stack([to_start[rows, best], to_end[rows, best]], dim=1) / stride  # [P, 2]
    return cls_t, reg_t * positive[:, None]
