"""Detection mAP at several tIoU thresholds, as the official ActivityNet evaluator computes it.

The algorithm is that of ``activitynet/ActivityNet`` ``Evaluation/eval_detection.py`` (``ANETdetection``):

* the classes evaluated are the labels with ground truth in the evaluated subset; mAP is the mean of their AP,
  and a class with ground truth but no prediction scores 0;
* per class, predictions are ranked by ``np.argsort(scores)[::-1]`` on the scores in input order (videos in
  mapping order, then each video's list order). This is the official tie rule: equal scores are *not* broken by
  input order in any documented way, they fall wherever numpy's default argsort puts them, reversed (for small
  arrays numpy's sort is stable, so ties come out in *reverse* input order). We call the very same function on
  the very same array, so ties land exactly where the official evaluator puts them on the same numpy;
* each prediction, at each threshold, is matched to the first ground-truth instance of its class in its video,
  taken in ``np.argsort(tiou)[::-1]`` order (descending tIoU, same tie rule), whose tIoU is >= the threshold and
  that no higher-ranked prediction has matched at that threshold; otherwise it is a false positive. Duplicates,
  predictions in videos without ground truth of that class, and predictions for videos outside the subset are
  false positives;
* AP is the VOC-2011 interpolated AP (``interpolated_prec_rec``): precision made monotone from the right, summed
  over the points where recall changes.

The matching is vectorized: tIoUs are computed once per prediction against its (class, video) ground truth, and
the greedy step runs over prediction rank within a (class, video) group, for all groups and thresholds at once.
:mod:`lofi.eval.reference` is the slow, plain-loop oracle it is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike

from lofi.config import (ACTIVITYNET_TIOU_THRESHOLDS, THUMOS14_TIOU_THRESHOLDS, check_thresholds,  # noqa: F401
                         parse_tiou_thresholds)
from lofi.data.annotations import AnnotationSet, Detection
from lofi.data.detection_table import DetectionTable
from lofi.eval.tiou import paired_tiou


@dataclass(frozen=True)
class DetectionCounts:
    """What went into the evaluation."""

    num_classes: int  # labels with ground truth in the subset: the mAP denominator
    num_videos: int  # videos in the evaluated subset
    num_ground_truth: int  # ground-truth segments in the subset
    num_predictions: int  # every prediction given
    num_evaluated: int  # predictions whose label has ground truth: they enter the AP
    num_outside_subset: int  # evaluated predictions for videos not in the subset: all false positives
    num_unknown_label: int  # predictions whose label has no ground truth in the subset: ignored


#: Predictions as the evaluator takes them: ``{video_id: [Detection, ...]}`` or a :class:`DetectionTable`.
Predictions = Union[Mapping[str, Sequence[Detection]], DetectionTable]


@dataclass(frozen=True)
class PrecisionRecall:
    """One class's raw precision-recall points, one per ranked prediction, at every threshold."""

    precision: np.ndarray  # [K, Nc]
    recall: np.ndarray  # [K, Nc]


@dataclass(frozen=True)
class DetectionResult:
    """Per-threshold mAP, its mean, per-class AP and, when asked for, per-class precision-recall points."""

    tiou_thresholds: np.ndarray  # [K]
    mAP: np.ndarray  # [K]
    average_mAP: float
    ap: dict[str, np.ndarray]  # label -> [K], for every evaluated class (sorted labels)
    counts: DetectionCounts
    curves: dict[str, PrecisionRecall] = field(default_factory=dict)  # label -> points; empty unless kept

    @property
    def ap_matrix(self) -> np.ndarray:
        """Per-class AP as one ``[C, K]`` array, rows in the order of ``ap`` (sorted labels)."""
        return np.stack(list(self.ap.values())) if self.ap else np.zeros((0, len(self.tiou_thresholds)))

    def format(self) -> str:
        """A plain-text table for the terminal."""
        lines = [f"{'tIoU':>6} {'mAP':>7}"]
        lines += [f"{t:>6.2f} {100 * m:>6.2f}%" for t, m in zip(self.tiou_thresholds, self.mAP)]
        lines.append(f"{'avg':>6} {100 * self.average_mAP:>6.2f}%")
        return "\n".join(lines)




def evaluated_set(ground_truth: AnnotationSet, subset: str | None) -> AnnotationSet:
    """The ground truth an evaluation counts: ``subset`` of it (e.g. ``"validation"``), or all when None."""
    return ground_truth if subset is None else ground_truth.subset(subset)


def check_detection(video_id: str, det: Detection) -> None:
    """Raise ValueError naming the video if ``det`` is non-finite or has end < start."""
    if not all(math.isfinite(x) for x in (det.start_sec, det.end_sec, det.score)):
        raise ValueError(f"prediction for video {video_id!r}: non-finite start, end or score in {det}")
    if det.end_sec < det.start_sec:
        raise ValueError(f"prediction for video {video_id!r}: end_sec {det.end_sec} < start_sec {det.start_sec}; "
                         f"fix the decoder or drop the detection")


def as_detection_table(predictions: Predictions) -> DetectionTable:
    """``predictions`` as a :class:`DetectionTable` (a table is returned as is)."""
    return predictions if isinstance(predictions, DetectionTable) else DetectionTable.from_mapping(predictions)


def evaluate_detection(ground_truth: AnnotationSet, predictions: Predictions, *,
                       tiou_thresholds: ArrayLike = ACTIVITYNET_TIOU_THRESHOLDS,
                       subset: str | None = "validation", keep_curves: bool = False) -> DetectionResult:
    """Detection mAP of ``predictions`` against the ``subset`` of ``ground_truth``.

    ``predictions`` is ``{video_id: [Detection, ...]}`` or, faster, a :class:`DetectionTable`
    (:func:`lofi.data.formats.read_results_table`). ``subset=None`` evaluates every video. ``keep_curves`` keeps
    each class's precision-recall points in ``result.curves``. See the module docstring for the exact algorithm.
    Raises ValueError when the subset has no ground-truth segment, or a detection is non-finite or has end < start.
    Steps: :func:`_group_ground_truth`, :func:`_evaluated_predictions`, :func:`_rank_within_class`,
    :func:`_prediction_groups`, :func:`_match`, :func:`_average_precision`, :func:`_mean_ap`.
    """
    thresholds = check_thresholds(tiou_thresholds)  # [K]
    gt_set = evaluated_set(ground_truth, subset)
    table = as_detection_table(predictions)
    table.check()
    gt = _group_ground_truth(gt_set, source=ground_truth.source, subset=subset)
    preds = _evaluated_predictions(table, gt)
    ranked, rank, class_start = _rank_within_class(preds.cls, preds.scores, gt.num_classes)  # [N], [N], [C+1]
    tp = _match(_prediction_groups(preds, gt), rank, preds.segs, gt.gt_count, gt.gt_segs, thresholds)  # [N, K]

    # --- AP per class from its ranked true positives
    hits = tp[ranked]  # [N, K] in ranked order, class blocks
    ap = _average_precision(hits, class_start, gt.npos)  # [C, K]
    curves = {gt.classes[c]: _precision_recall(hits[class_start[c]:class_start[c + 1]], gt.npos[c])
              for c in range(gt.num_classes)} if keep_curves else {}
    mean_ap = _mean_ap(ap, gt_set, gt.class_of)  # [K]
    num_pred = preds.cls.size
    counts = DetectionCounts(
        num_classes=gt.num_classes, num_videos=gt.num_videos, num_ground_truth=int(gt.gt_count.sum()),
        num_predictions=len(table), num_evaluated=num_pred,
        num_outside_subset=int(np.count_nonzero(preds.vid < 0)), num_unknown_label=len(table) - num_pred)
    return DetectionResult(tiou_thresholds=thresholds, mAP=mean_ap, average_mAP=float(mean_ap.mean()),
                           ap={label: ap[i] for i, label in enumerate(gt.classes)}, counts=counts, curves=curves)


@dataclass(frozen=True)
class _GroundTruth:
    """The evaluated ground truth, grouped by (class, video): group key ``class * num_videos + video``."""

    classes: tuple[str, ...]  # [C] the labels with ground truth, sorted
    class_of: dict[str, int]
    video_of: dict[str, int]
    group_keys: np.ndarray  # [Gr] int64, sorted
    gt_count: np.ndarray  # [Gr] segments per group
    gt_segs: np.ndarray  # [Gr, Gmax, 2] zero padded, annotation order within a group
    npos: np.ndarray  # [C] ground-truth segments per class

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_videos(self) -> int:
        return len(self.video_of)


@dataclass(frozen=True)
class _Predictions:
    """The predictions whose label has ground truth, in input order."""

    cls: np.ndarray  # [N] class index
    vid: np.ndarray  # [N] video index, -1 outside the subset
    segs: np.ndarray  # [N, 2]
    scores: np.ndarray  # [N]


def _group_ground_truth(gt_set: AnnotationSet, *, source: object, subset: str | None) -> _GroundTruth:
    """Step 1: the ground truth by (class, video); ValueError when the subset has none."""
    classes = tuple(sorted({s.label for v in gt_set for s in v.segments}))
    if not classes:
        raise ValueError(f"{source}: no ground-truth segments in subset {subset!r}; nothing to "
                         f"evaluate (pick another subset, or subset=None for all videos)")
    num_classes = len(classes)
    class_of = {label: i for i, label in enumerate(classes)}
    video_of = {vid: i for i, vid in enumerate(gt_set.videos)}
    num_videos = len(video_of)
    group_segments: dict[int, list[tuple[float, float]]] = {}
    for video in gt_set:
        vi = video_of[video.video_id]
        for seg in video.segments:
            group_segments.setdefault(class_of[seg.label] * num_videos + vi, []).append((seg.start_sec, seg.end_sec))
    group_keys = np.array(sorted(group_segments), dtype=np.int64)  # [Gr]
    gt_count = np.array([len(group_segments[k]) for k in group_keys], dtype=np.int64)  # [Gr]
    gt_segs = np.zeros((group_keys.size, int(gt_count.max()), 2))  # [Gr, Gmax, 2], zero padded
    for g, key in enumerate(group_keys):
        gt_segs[g, :gt_count[g]] = group_segments[int(key)]
    npos = np.bincount(group_keys // num_videos, weights=gt_count, minlength=num_classes)  # [C]
    return _GroundTruth(classes=classes, class_of=class_of, video_of=video_of, group_keys=group_keys,
                        gt_count=gt_count, gt_segs=gt_segs, npos=npos)


def _evaluated_predictions(table: DetectionTable, gt: _GroundTruth) -> _Predictions:
    """Step 2: the predictions in input order; labels without ground truth are dropped (and counted by the
    caller)."""
    class_of_label = np.array([gt.class_of.get(label, -1) for label in table.labels] + [-1],
                              dtype=np.int64)  # [Ct+1]
    video_of_table = np.array([gt.video_of.get(v, -1) for v in table.video_ids] + [-1], dtype=np.int64)  # [Vt+1]
    all_cls = class_of_label[table.label_index]  # [M]
    keep = np.nonzero(all_cls >= 0)[0]
    return _Predictions(cls=all_cls[keep], vid=video_of_table[table.video_index[keep]],
                        segs=table.segments_sec[keep], scores=table.scores[keep])


def _rank_within_class(cls: np.ndarray, scores: np.ndarray,
                       num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 3: rank within class by the official ``np.argsort(scores)[::-1]`` on the class's scores in input
    order -> ``(ranked [N]`` prediction indices in class blocks, best first; ``rank [N]`` of each prediction
    within its class; ``class_start [C+1])``."""
    num_pred = cls.size
    small = np.int16 if num_classes < 2 ** 15 else np.int64  # numpy radix-sorts 16-bit keys
    by_class = np.argsort(cls.astype(small), kind="stable")  # [N], classes contiguous, input order inside
    class_start = np.concatenate([[0], np.cumsum(np.bincount(cls, minlength=num_classes))])  # [C+1]
    ranked = np.empty(num_pred, dtype=np.int64)  # [N] prediction indices, class blocks, best first
    for c in range(num_classes):
        block = by_class[class_start[c]:class_start[c + 1]]
        ranked[class_start[c]:class_start[c + 1]] = block[np.argsort(scores[block])[::-1]]
    rank = np.empty(num_pred, dtype=np.int64)  # [N] rank of each prediction within its class
    rank[ranked] = np.arange(num_pred) - np.repeat(class_start[:-1], np.diff(class_start))
    return ranked, rank, class_start


def _prediction_groups(preds: _Predictions, gt: _GroundTruth) -> np.ndarray:
    """Step 4: the (class, video) ground-truth group of each prediction ``[N]``, -1 where there is none (a dense
    (class, video) -> group lookup)."""
    group_of_key = np.full(gt.num_classes * gt.num_videos, -1, dtype=np.int64)
    group_of_key[gt.group_keys] = np.arange(gt.group_keys.size)
    return np.where(preds.vid >= 0, group_of_key[preds.cls * gt.num_videos + np.maximum(preds.vid, 0)], -1)


def _mean_ap(ap: np.ndarray, gt_set: AnnotationSet, class_of: Mapping[str, int]) -> np.ndarray:
    """Last step: mAP ``[K]`` from AP ``[C, K]``, the class mean taken as the official code takes it, over a
    ``[K, C]`` array with the classes in order of first appearance in the subset's ground truth (a different
    order changes the last bit)."""
    first_seen = list(dict.fromkeys(s.label for v in gt_set for s in v.segments))
    return np.ascontiguousarray(ap[[class_of[label] for label in first_seen]].T).mean(axis=1)  # [K]


def _match(group: np.ndarray, rank: np.ndarray, segs: np.ndarray, gt_count: np.ndarray, gt_segs: np.ndarray,
           thresholds: np.ndarray) -> np.ndarray:
    """Greedy official matching for all predictions and thresholds -> true-positive flags ``[N, K]``.

    ``group`` is each prediction's (class, video) ground-truth group, -1 where there is none."""
    num_pred, num_thr = group.size, thresholds.size
    tp = np.zeros((num_pred, num_thr), dtype=bool)  # [N, K]
    idx = np.nonzero(group >= 0)[0]  # [n] predictions with ground truth of their class in their video
    if idx.size == 0:
        return tp
    grp = group[idx]  # [n]
    max_gt = gt_segs.shape[1]
    tiou = paired_tiou(segs[idx, None, :], gt_segs[grp])  # [n, Gmax]

    # GT visiting order per prediction: np.argsort(tiou)[::-1] on the group's real GT only (official tie rule)
    order = np.zeros((idx.size, max_gt), dtype=np.int64)  # [n, Gmax]
    sorted_tiou = np.full((idx.size, max_gt), -np.inf)  # [n, Gmax], -inf pads never match
    counts = gt_count[grp]
    for num in np.unique(counts):
        sel = np.nonzero(counts == num)[0]
        o = np.argsort(tiou[sel, :num], axis=1)[:, ::-1]
        order[sel, :num] = o
        sorted_tiou[sel, :num] = np.take_along_axis(tiou[sel, :num], o, axis=1)

    # only predictions reaching the lowest threshold with their best GT can ever be true positives
    cand = np.nonzero(sorted_tiou[:, 0] >= thresholds.min())[0]
    if cand.size == 0:
        return tp
    cand = cand[np.lexsort((rank[idx[cand]], grp[cand]))]  # grouped, best score first within a group
    groups, starts, sizes = np.unique(grp[cand], return_index=True, return_counts=True)
    by_size = np.argsort(-sizes, kind="stable")  # active groups at step r are a prefix
    starts, sizes = starts[by_size], sizes[by_size]
    locked = np.zeros((groups.size, num_thr, max_gt), dtype=bool)  # [groups, K, Gmax]
    thr = thresholds[None, :, None]  # [1, K, 1]
    for r in range(int(sizes[0])):
        n = int(np.count_nonzero(sizes > r))
        rows = cand[starts[:n] + r]  # [n] one prediction per active group, in rank order
        o = np.broadcast_to(order[rows][:, None, :], (n, num_thr, max_gt))  # [n, K, Gmax]
        taken = np.take_along_axis(locked[:n], o, axis=2)  # [n, K, Gmax]
        free = (sorted_tiou[rows][:, None, :] >= thr) & ~taken  # [n, K, Gmax]
        hit = free.any(axis=2)  # [n, K]
        first = free.argmax(axis=2)  # [n, K]
        gi, ki = np.nonzero(hit)
        locked[gi, ki, order[rows][gi, first[gi, ki]]] = True
        tp[idx[rows]] = hit
    return tp


def _average_precision(hits: np.ndarray, class_start: np.ndarray, npos: np.ndarray) -> np.ndarray:
    """VOC-2011 interpolated AP of every class at every threshold, from the ranked true-positive flags.

    ``hits`` is ``[N, K]`` in ranked order with classes in contiguous blocks ``class_start`` ``[C+1]``; ``npos``
    ``[C]`` counts each class's ground truth. Returns ``[C, K]``.

    The official ``interpolated_prec_rec`` sums ``(mrec[i] - mrec[i-1]) * mprec[i]`` over the points where
    recall changes: each true positive (the t-th, at rank p) and, when recall stops short of 1, a final point
    whose precision is 0. There, ``mrec`` is ``t / npos`` and ``mprec`` the best precision ``s / p_s`` at or
    after it, which is reached at a true positive. So only the true positives are needed; the terms are formed
    with the official arithmetic and summed by ``np.sum`` in the official order, so the AP is bit-identical.
    """
    num_classes, num_thr = npos.size, hits.shape[1]
    ap = np.zeros((num_classes, num_thr))  # [C, K]
    thr_idx, pos = np.nonzero(hits.T)  # [Nhit] each: true positives grouped by threshold, rank order inside
    if pos.size == 0:
        return ap
    cls = np.searchsorted(class_start, pos, side="right") - 1  # [Nhit]
    seg = thr_idx * num_classes + cls  # [Nhit], non-decreasing: one segment per (threshold, class)
    seg_first = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])  # [S] first hit of each segment
    seg_len = np.diff(np.r_[seg_first, seg.size])  # [S]
    within = np.arange(seg.size) - np.repeat(seg_first, seg_len)  # [Nhit] 0-based index inside the segment
    t = (within + 1).astype(np.float64)  # [Nhit] true positives so far
    rank_1 = (pos - class_start[cls] + 1).astype(np.float64)  # [Nhit] predictions so far (tp + fp)
    precision = t / rank_1  # [Nhit]
    npos_h = npos[cls]  # [Nhit]
    recall = t / npos_h  # [Nhit]
    recall_before = (t - 1.0) / npos_h  # [Nhit], 0/npos = 0.0 before the first true positive
    # best precision at or after each hit, per segment: a right-to-left running max over a padded grid
    grid = np.zeros((seg_first.size, int(seg_len.max())))  # [S, Lmax]
    row = np.repeat(np.arange(seg_first.size), seg_len)  # [Nhit]
    grid[row, within] = precision
    best_after = np.maximum.accumulate(grid[:, ::-1], axis=1)[:, ::-1][row, within]  # [Nhit]
    terms = (recall - recall_before) * best_after  # [Nhit]
    last = seg_first + seg_len - 1  # [S]
    short = recall[last] != 1.0  # [S] recall ends below 1: the official final point adds (1 - r) * 0
    seg_ids = seg[seg_first]
    for s_i, (start, length) in enumerate(zip(seg_first.tolist(), seg_len.tolist())):
        values = terms[start:start + length]
        if short[s_i]:
            values = np.append(values, (1.0 - recall[start + length - 1]) * 0.0)
        k, c = divmod(int(seg_ids[s_i]), num_classes)
        ap[c, k] = np.sum(values)
    return ap


def _precision_recall(hits: np.ndarray, npos: float) -> PrecisionRecall:
    """One class's ranked precision and recall points ``[K, Nc]`` from its ranked hits ``[Nc, K]``."""
    tp_cum = np.cumsum(hits.T, axis=1, dtype=np.int64)  # [K, Nc]
    seen = np.arange(1, hits.shape[0] + 1, dtype=np.float64)  # [Nc]
    return PrecisionRecall(precision=tp_cum / seen, recall=tp_cum / float(npos))
