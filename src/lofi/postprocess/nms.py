"""Non-maximum suppression for 1-D segments: hard NMS and Soft-NMS, in pure torch (no compiled ops).

Every function takes raw tensors and returns tensors, so post-processing can be replayed from saved raw
predictions without the model. Segments are ``[N, 2]`` (start, end) in any unit (seconds, snippets); scores are
``[N]``; labels, when given, are ``[N]`` integer class indices and make suppression class-wise (a segment only
suppresses segments of its own class). Greedy order is highest score first, ties broken by the lower index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from lofi.core.segments import broadcast_segment_iou
from lofi.data.annotations import Detection

SoftNMSMethod = Literal["gaussian", "linear"]
FuseMode = Literal["multiply", "geometric"]
PostprocessMethod = Literal["nms", "soft_nms_gaussian", "soft_nms_linear", "none"]
POSTPROCESS_METHODS: tuple[str, ...] = ("nms", "soft_nms_gaussian", "soft_nms_linear", "none")


def segment_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Temporal IoU of every segment of ``a`` [N, 2] with every segment of ``b`` [M, 2] -> [N, M].

    Pairs whose union is empty (two zero-length segments at the same point) get IoU 0.
    """
    _check_segments(a, "a")
    _check_segments(b, "b")
    return broadcast_segment_iou(a[:, None, :], b[None, :, :])  # [N, M]


def nms(segments: torch.Tensor, scores: torch.Tensor, *, iou_threshold: float,
        labels: torch.Tensor | None = None, max_detections: int | None = None) -> torch.Tensor:
    """Hard NMS: the indices [K] (int64, into the inputs) of the kept segments, in decreasing score order.

    A segment is suppressed when its IoU with an already kept segment (of the same label, when ``labels`` is
    given) is strictly greater than ``iou_threshold``. At most ``max_detections`` indices are returned.
    """
    _check_inputs(segments, scores, labels)
    _check_threshold(iou_threshold, "iou_threshold")
    _check_max_detections(max_detections)
    n = scores.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    order = torch.sort(scores, descending=True, stable=True).indices  # [N]; ties keep the lower index first
    seg = segments[order]  # [N, 2]
    lab = labels[order] if labels is not None else None  # [N]
    remaining = torch.arange(n, device=scores.device)  # [R] positions in `order`, best first
    kept: list[torch.Tensor] = []
    limit = n if max_detections is None else max_detections
    while remaining.numel() > 0 and len(kept) < limit:
        best, rest = remaining[0], remaining[1:]
        kept.append(best)
        suppress = broadcast_segment_iou(seg[best], seg[rest]) > iou_threshold
        if lab is not None:
            suppress &= lab[rest] == lab[best]
        remaining = rest[~suppress]
    return order[torch.stack(kept)]


def soft_nms(segments: torch.Tensor, scores: torch.Tensor, *, method: SoftNMSMethod, sigma: float = 0.5,
             iou_threshold: float = 0.0, min_score: float = 1e-3, labels: torch.Tensor | None = None,
             max_detections: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Soft-NMS: decay the scores of overlapping segments instead of dropping them.

    Each step picks the remaining segment with the highest (decayed) score (ties: lower index), then decays every
    other remaining segment (of the same label, when ``labels`` is given) in one tensor op:

    - ``"gaussian"``: ``score *= exp(-iou**2 / sigma)`` (``iou_threshold`` is not used);
    - ``"linear"``: ``score *= 1 - iou`` where ``iou > iou_threshold``.

    Segments whose score falls below ``min_score`` are dropped. Returns ``(segments [K, 2], scores [K],
    labels [K] or None)``, sorted by decayed score, descending; at most ``max_detections`` of them.
    """
    index, out_scores = _soft_nms_indices(segments, scores, method=method, sigma=sigma,
                                          iou_threshold=iou_threshold, min_score=min_score, labels=labels,
                                          max_detections=max_detections)
    return segments[index], out_scores, (labels[index] if labels is not None else None)


def _soft_nms_indices(segments: torch.Tensor, scores: torch.Tensor, *, method: SoftNMSMethod, sigma: float,
                      iou_threshold: float, min_score: float, labels: torch.Tensor | None,
                      max_detections: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS core: (picked indices [K] into the inputs, their decayed scores [K]), best first."""
    _check_inputs(segments, scores, labels)
    if method not in ("gaussian", "linear"):
        raise ValueError(f"soft_nms: method must be 'gaussian' or 'linear', got {method!r}")
    if not sigma > 0:
        raise ValueError(f"soft_nms: sigma must be > 0, got {sigma}")
    _check_threshold(iou_threshold, "iou_threshold")
    if not min_score >= 0:
        raise ValueError(f"soft_nms: min_score must be >= 0, got {min_score}")
    _check_max_detections(max_detections)

    alive = torch.nonzero(scores >= min_score).flatten()  # [R] indices into the inputs, ascending
    current = scores[alive].clone()  # [R] decayed scores of `alive`
    picked: list[torch.Tensor] = []
    picked_scores: list[torch.Tensor] = []
    limit = scores.shape[0] if max_detections is None else max_detections
    while alive.numel() > 0 and len(picked) < limit:
        j = int(torch.argmax(current))  # the first maximum: ties go to the lower index
        best = alive[j]
        picked.append(best)
        picked_scores.append(current[j])
        rest = torch.cat([alive[:j], alive[j + 1:]])
        rest_scores = torch.cat([current[:j], current[j + 1:]])
        iou = broadcast_segment_iou(segments[best], segments[rest])
        if method == "gaussian":
            decay = torch.exp(-(iou * iou) / sigma)
        else:
            decay = torch.where(iou > iou_threshold, 1 - iou, torch.ones_like(iou))
        if labels is not None:
            decay = torch.where(labels[rest] == labels[best], decay, torch.ones_like(decay))
        rest_scores = rest_scores * decay  # every remaining candidate decayed in one op
        keep = rest_scores >= min_score
        alive, current = rest[keep], rest_scores[keep]

    if not picked:
        return torch.zeros(0, dtype=torch.long, device=scores.device), scores[:0]
    # Picked scores are non-increasing: each pick is the current maximum and decay never raises a score.
    return torch.stack(picked), torch.stack(picked_scores)


def fuse_video_scores(scores: torch.Tensor, labels: torch.Tensor, video_class_scores: torch.Tensor, *,
                      mode: FuseMode = "multiply") -> torch.Tensor:
    """Fuse proposal scores [N] with the video-level score [C] of each proposal's class -> [N].

    ActivityNet practice: ``"multiply"`` gives ``score * video_class_scores[label]``; ``"geometric"`` gives the
    square root of that product (same ranking, scores kept on the proposals' scale).
    """
    if video_class_scores.dim() != 1:
        raise ValueError(f"video_class_scores: expected shape [C], got {tuple(video_class_scores.shape)}")
    if labels.shape != scores.shape:
        raise ValueError(f"labels: expected shape {tuple(scores.shape)} to match scores, got {tuple(labels.shape)}")
    num_classes = video_class_scores.shape[0]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) to index video_class_scores; "
                         f"got range [{int(labels.min())}, {int(labels.max())}]")
    fused = scores * video_class_scores.to(scores.dtype)[labels]  # [N]
    if mode == "multiply":
        return fused
    if mode == "geometric":
        return fused.clamp_min(0).sqrt()
    raise ValueError(f"fuse_video_scores: mode must be 'multiply' or 'geometric', got {mode!r}")


def expand_to_video_classes(segments: torch.Tensor, scores: torch.Tensor, video_class_scores: torch.Tensor, *,
                            top_k: int = 2, mode: FuseMode = "multiply"
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Give class-agnostic proposals the video's ``top_k`` classes (ActivityNet practice, e.g. top-2).

    Each proposal ``i`` becomes ``top_k`` detections, one per top class ``c`` (best class first), scored with
    :func:`fuse_video_scores`. Returns ``(segments [N*k, 2], scores [N*k], labels [N*k])``, proposal-major.
    """
    _check_inputs(segments, scores, None)
    if video_class_scores.dim() != 1:
        raise ValueError(f"video_class_scores: expected shape [C], got {tuple(video_class_scores.shape)}")
    if not 1 <= top_k <= video_class_scores.shape[0]:
        raise ValueError(f"top_k must be in [1, {video_class_scores.shape[0]}] (the number of classes), got {top_k}")
    top = torch.sort(video_class_scores, descending=True, stable=True).indices[:top_k]  # [k]
    n = scores.shape[0]
    labels = top.to(scores.device).repeat(n)  # [N*k]
    out_segments = segments.repeat_interleave(top_k, dim=0)  # [N*k, 2]
    out_scores = fuse_video_scores(scores.repeat_interleave(top_k), labels, video_class_scores, mode=mode)  # [N*k]
    return out_segments, out_scores, labels


@dataclass(frozen=True)
class PostprocessConfig:
    """How raw per-video predictions become detections; the model never owns these settings.

    ``max_detections`` and ``min_score`` apply to every method (``"none"`` only sorts, filters and caps).
    ``class_agnostic`` makes suppression ignore labels (a segment suppresses overlapping segments of any class).
    """

    method: PostprocessMethod = "soft_nms_gaussian"
    iou_threshold: float = 0.5
    sigma: float = 0.5
    min_score: float = 1e-3
    max_detections: int | None = 100
    class_agnostic: bool = False

    def __post_init__(self) -> None:
        if self.method not in POSTPROCESS_METHODS:
            raise ValueError(f"postprocess method must be one of {', '.join(POSTPROCESS_METHODS)}; "
                             f"got {self.method!r}")
        _check_threshold(self.iou_threshold, "iou_threshold")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if not self.min_score >= 0:
            raise ValueError(f"min_score must be >= 0, got {self.min_score}")
        _check_max_detections(self.max_detections)


def postprocess_video(segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                      config: PostprocessConfig, *, classes: Sequence[str],
                      duration_sec: float | None = None) -> list[Detection]:
    """Turn one video's raw predictions (segments [N, 2] in seconds, scores [N], labels [N]) into detections.

    A pure function of its inputs, so it can replay saved raw predictions. When ``duration_sec`` is given,
    segments are first clipped to ``[0, duration_sec]`` and those left empty are dropped. ``classes`` maps label
    indices to names. Returns at most ``config.max_detections`` detections, by decreasing score.
    """
    _check_inputs(segments, scores, labels)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
        raise ValueError(f"labels must lie in [0, {len(classes)}) to index the class list; "
                         f"got range [{int(labels.min())}, {int(labels.max())}]")
    if duration_sec is not None:
        if not duration_sec > 0:
            raise ValueError(f"duration_sec must be > 0, got {duration_sec}")
        segments = segments.clamp(0, duration_sec)  # [N, 2]
        nonempty = segments[:, 1] > segments[:, 0]  # [N]
        segments, scores, labels = segments[nonempty], scores[nonempty], labels[nonempty]
    group = None if config.class_agnostic else labels
    if config.method == "nms":
        candidates = torch.nonzero(scores >= config.min_score).flatten()  # [R]
        kept = candidates[nms(segments[candidates], scores[candidates], iou_threshold=config.iou_threshold,
                              labels=None if group is None else group[candidates],
                              max_detections=config.max_detections)]  # [K]
        out_segments, out_scores, out_labels = segments[kept], scores[kept], labels[kept]
    elif config.method == "none":
        order = torch.sort(scores, descending=True, stable=True).indices  # [N]
        order = order[scores[order] >= config.min_score][:config.max_detections]  # [K]
        out_segments, out_scores, out_labels = segments[order], scores[order], labels[order]
    else:
        index, out_scores = _soft_nms_indices(
            segments, scores, method="gaussian" if config.method == "soft_nms_gaussian" else "linear",
            sigma=config.sigma, iou_threshold=config.iou_threshold, min_score=config.min_score, labels=group,
            max_detections=config.max_detections)  # [K], [K]
        out_segments, out_labels = segments[index], labels[index]
    return [Detection(start_sec=float(s), end_sec=float(e), label=classes[int(c)], score=float(p))
            for (s, e), p, c in zip(out_segments.tolist(), out_scores.tolist(), out_labels.tolist())]


def label_and_suppress(segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor | None,
                       config: PostprocessConfig, *, classes: Sequence[str],
                       video_class_scores: torch.Tensor | None = None, video_top_k: int = 2,
                       fuse: FuseMode = "multiply", duration_sec: float | None = None) -> list[Detection]:
    """:func:`postprocess_video`, after giving class-agnostic candidates (``labels`` None: G-TAD, BMN proposals)
    the video's ``video_top_k`` best classes from ``video_class_scores`` ``[C]`` (:func:`expand_to_video_classes`)."""
    if labels is None:
        if video_class_scores is None:
            raise ValueError("class-agnostic candidates (G-TAD, BMN) need video-level class scores to be labelled")
        segments, scores, labels = expand_to_video_classes(
            segments, scores, video_class_scores, top_k=min(video_top_k, len(classes)), mode=fuse)
    return postprocess_video(segments, scores, labels, config, classes=classes, duration_sec=duration_sec)


def _check_segments(segments: torch.Tensor, name: str) -> None:
    if segments.dim() != 2 or segments.shape[1] != 2:
        raise ValueError(f"{name}: expected segments of shape [N, 2], got {tuple(segments.shape)}")
    if not segments.is_floating_point():
        raise ValueError(f"{name}: expected floating-point segments, got {segments.dtype}")


def _check_inputs(segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor | None) -> None:
    _check_segments(segments, "segments")
    if scores.dim() != 1 or scores.shape[0] != segments.shape[0]:
        raise ValueError(f"scores: expected shape [{segments.shape[0]}] to match segments, got {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise ValueError(f"scores: expected floating-point scores, got {scores.dtype}")
    if not bool(torch.isfinite(scores).all()) or not bool(torch.isfinite(segments).all()):
        raise ValueError("segments/scores contain NaN or inf; fix the model outputs before post-processing")
    if labels is not None:
        if labels.shape != scores.shape:
            raise ValueError(f"labels: expected shape {tuple(scores.shape)} to match scores, got {tuple(labels.shape)}")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"labels: expected integer class indices, got {labels.dtype}")


def _check_threshold(value: float, name: str) -> None:
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _check_max_detections(max_detections: int | None) -> None:
    if max_detections is not None and max_detections < 1:
        raise ValueError(f"max_detections must be >= 1 or None, got {max_detections}")
