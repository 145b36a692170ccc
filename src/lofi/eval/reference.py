"""A deliberately slow, plain-loop rendering of the official ActivityNet detection mAP, for tests and benchmarks.

Written from the algorithm (see :mod:`lofi.eval.detection`), one prediction and one threshold at a time, with
Python floats. The only numpy calls are the two orderings, ``np.argsort(...)[::-1]``, kept because they *are* the
official tie rule. Use :func:`lofi.eval.evaluate_detection` for real work.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from lofi.data.annotations import AnnotationSet, Detection
from lofi.eval.detection import (
    ACTIVITYNET_TIOU_THRESHOLDS,
    DetectionCounts,
    DetectionResult,
    check_detection,
    check_thresholds,
    evaluated_set,
)


def reference_evaluate_detection(ground_truth: AnnotationSet, predictions: Mapping[str, Sequence[Detection]], *,
                                 tiou_thresholds: ArrayLike = ACTIVITYNET_TIOU_THRESHOLDS,
                                 subset: str | None = "validation") -> DetectionResult:
    """Same contract and result as :func:`lofi.eval.evaluate_detection`, computed the slow, obvious way."""
    thresholds = [float(t) for t in check_thresholds(tiou_thresholds)]
    gt_set = evaluated_set(ground_truth, subset)

    gt_by_class: dict[str, dict[str, list[tuple[float, float]]]] = {}
    num_gt = 0
    for video in gt_set:
        for seg in video.segments:
            gt_by_class.setdefault(seg.label, {}).setdefault(video.video_id, []).append((seg.start_sec, seg.end_sec))
            num_gt += 1
    if not gt_by_class:
        raise ValueError(f"{ground_truth.source}: no ground-truth segments in subset {subset!r}")

    preds_by_class: dict[str, list[tuple[str, float, float, float]]] = {}
    num_predictions = num_unknown = num_outside = 0
    for video_id, dets in predictions.items():
        for det in dets:
            num_predictions += 1
            check_detection(video_id, det)
            if det.label not in gt_by_class:
                num_unknown += 1
                continue
            if video_id not in gt_set:
                num_outside += 1
            preds_by_class.setdefault(det.label, []).append((video_id, det.start_sec, det.end_sec, det.score))

    ap = {}
    for label in sorted(gt_by_class):
        ap[label] = np.array(_class_ap(gt_by_class[label], preds_by_class.get(label, []), thresholds))
    mean_ap = np.array([sum(a[k] for a in ap.values()) / len(ap) for k in range(len(thresholds))])
    counts = DetectionCounts(
        num_classes=len(ap), num_videos=len(gt_set), num_ground_truth=num_gt, num_predictions=num_predictions,
        num_evaluated=num_predictions - num_unknown, num_outside_subset=num_outside, num_unknown_label=num_unknown)
    return DetectionResult(tiou_thresholds=np.array(thresholds), mAP=mean_ap,
                           average_mAP=sum(mean_ap.tolist()) / len(thresholds), ap=ap, counts=counts)


def _tiou(start: float, end: float, gt_start: float, gt_end: float) -> float:
    inter = max(0.0, min(end, gt_end) - max(start, gt_start))
    union = (gt_end - gt_start) + (end - start) - inter
    return inter / union


def _class_ap(gt_videos: dict[str, list[tuple[float, float]]], preds: list[tuple[str, float, float, float]],
              thresholds: list[float]) -> list[float]:
    if not preds:
        return [0.0] * len(thresholds)
    npos = sum(len(v) for v in gt_videos.values())
    used = [{video: [False] * len(segs) for video, segs in gt_videos.items()} for _ in thresholds]
    ranking = np.argsort(np.array([p[3] for p in preds]))[::-1]  # the official ranking, ties included
    hits = [[0] * len(preds) for _ in thresholds]
    for i, p in enumerate(ranking.tolist()):
        video, start, end, _ = preds[p]
        segs = gt_videos.get(video)
        if not segs:
            continue  # false positive at every threshold
        tious = [_tiou(start, end, s, e) for s, e in segs]
        visit = np.argsort(np.array(tious))[::-1].tolist()  # best tIoU first, official tie rule
        for k, thr in enumerate(thresholds):
            for j in visit:
                if tious[j] < thr:
                    break
                if used[k][video][j]:
                    continue
                used[k][video][j] = True
                hits[k][i] = 1
                break
    return [_voc_ap(h, npos) for h in hits]


def _voc_ap(hits: list[int], npos: int) -> float:
    precision, recall = [], []
    tp = fp = 0
    for h in hits:
        tp += h
        fp += 1 - h
        precision.append(float(tp) / float(tp + fp))
        recall.append(float(tp) / float(npos))
    mprec = [0.0] + precision + [0.0]
    mrec = [0.0] + recall + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    total = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            total += (mrec[i] - mrec[i - 1]) * mprec[i]
    return total
