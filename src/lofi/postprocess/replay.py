"""Post-processing of a whole predictions table, without the model: what ``lofi postprocess`` runs.

Raw candidates (a :class:`DetectionTable`, e.g. read from an ActivityNet results file a model wrote before any
suppression) go through :func:`lofi.postprocess.postprocess_video` one video at a time. With video-level class
scores (a classifier's output, the ActivityNet practice), the candidates are taken as class-agnostic proposals and
each is given the video's ``video_top_k`` best classes first (:func:`expand_to_video_classes`).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from lofi.data.annotations import Detection
from lofi.data.detection_table import DetectionTable
from lofi.postprocess.nms import FuseMode, PostprocessConfig, label_and_suppress


def postprocess_table(table: DetectionTable, config: PostprocessConfig, *,
                      video_scores: Mapping[str, Mapping[str, float]] | None = None, video_top_k: int = 2,
                      fuse: FuseMode = "multiply") -> dict[str, list[Detection]]:
    """Post-process every video of ``table`` -> ``{video_id: detections}`` (videos in table order).

    ``video_scores`` maps video id -> {label: score}; when given, candidate labels are ignored and every video of
    the table must have scores (ValueError naming the first one without).
    """
    table.check(source="raw predictions")
    order = np.argsort(table.video_index, kind="stable")  # [M] videos contiguous, input order inside
    bounds = np.searchsorted(table.video_index[order], np.arange(len(table.video_ids) + 1))  # [V+1]
    segments_all = torch.from_numpy(table.segments_sec[order])  # [M, 2] float64
    scores_all = torch.from_numpy(table.scores[order])  # [M]
    labels_all = torch.from_numpy(table.label_index[order])  # [M]
    classes: list[str] = list(table.labels)
    if video_scores is not None:
        classes = sorted({label for scores in video_scores.values() for label in scores})
        if not classes:
            raise ValueError("video scores: no class scores given")
    out: dict[str, list[Detection]] = {}
    for v, video_id in enumerate(table.video_ids):
        lo, hi = int(bounds[v]), int(bounds[v + 1])
        segments, scores, labels = segments_all[lo:hi], scores_all[lo:hi], labels_all[lo:hi]  # [n, 2], [n], [n]
        per_class = None
        if video_scores is not None:
            if video_id not in video_scores:
                raise ValueError(f"video scores: no scores for video {video_id!r}; give every video of the "
                                 f"predictions a score per class")
            per_class = torch.tensor([float(video_scores[video_id].get(c, 0.0)) for c in classes],
                                     dtype=torch.float64)  # [C]
        out[video_id] = label_and_suppress(segments, scores, None if per_class is not None else labels, config,
                                           classes=classes, video_class_scores=per_class, video_top_k=video_top_k,
                                           fuse=fuse)
    return out
