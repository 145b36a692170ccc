"""Detections of many videos as columns: the fast form for evaluation and saved raw predictions.

A mapping ``{video_id: [Detection, ...]}`` is the readable form; at ActivityNet scale (4,700 videos x 100
detections) building and walking half a million :class:`Detection` objects costs more than evaluating them.
:class:`DetectionTable` holds the same content as numpy columns, in input order (videos in mapping order, each
video's detections in list order: the order the official evaluator's ranking ties depend on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from lofi.data.annotations import Detection


@dataclass(frozen=True, eq=False)
class DetectionTable:
    """Scored, labelled segments of many videos, one row per detection."""

    video_ids: tuple[str, ...]  # every video given, in input order (videos without detections included)
    labels: tuple[str, ...]  # distinct labels, in first-seen order
    video_index: np.ndarray  # [M] int64, row -> position in video_ids
    label_index: np.ndarray  # [M] int64, row -> position in labels
    segments_sec: np.ndarray  # [M, 2] float64, start and end in seconds
    scores: np.ndarray  # [M] float64

    def __post_init__(self) -> None:
        num_rows = self.scores.shape[0]
        if self.scores.ndim != 1 or self.segments_sec.shape != (num_rows, 2) or \
                self.video_index.shape != (num_rows,) or self.label_index.shape != (num_rows,):
            raise ValueError(f"DetectionTable columns disagree: scores {self.scores.shape}, segments_sec "
                             f"{self.segments_sec.shape}, video_index {self.video_index.shape}, label_index "
                             f"{self.label_index.shape}; expected [M], [M, 2], [M], [M]")
        if num_rows and (self.video_index.min() < 0 or self.video_index.max() >= len(self.video_ids)
                         or self.label_index.min() < 0 or self.label_index.max() >= len(self.labels)):
            raise ValueError("DetectionTable: video_index or label_index points outside video_ids or labels")

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def from_columns(cls, *, video_ids: Iterable[str], labels: Iterable[str], video_index: np.ndarray,
                     label_index: np.ndarray, segments_sec: np.ndarray, scores: np.ndarray) -> DetectionTable:
        """Build from array-likes, converted to the column dtypes (int64, float64)."""
        return cls(video_ids=tuple(video_ids), labels=tuple(labels),
                   video_index=np.asarray(video_index, dtype=np.int64).reshape(-1),
                   label_index=np.asarray(label_index, dtype=np.int64).reshape(-1),
                   segments_sec=np.asarray(segments_sec, dtype=np.float64).reshape(-1, 2),
                   scores=np.asarray(scores, dtype=np.float64).reshape(-1))

    @classmethod
    def from_mapping(cls, detections_by_video: Mapping[str, Iterable[Detection]]) -> DetectionTable:
        """The table of ``{video_id: [Detection, ...]}``, rows in mapping then list order."""
        video_ids = tuple(detections_by_video)
        per_video = [list(detections_by_video[v]) for v in video_ids]
        counts = np.fromiter((len(d) for d in per_video), dtype=np.int64, count=len(per_video))  # [V]
        flat = [d for dets in per_video for d in dets]
        label_of: dict[str, int] = {}
        label_index = np.fromiter((label_of.setdefault(d.label, len(label_of)) for d in flat), dtype=np.int64,
                                  count=len(flat))  # [M]
        values = np.fromiter((x for d in flat for x in (d.start_sec, d.end_sec, d.score)), dtype=np.float64,
                             count=3 * len(flat)).reshape(-1, 3)  # [M, 3]
        return cls(video_ids=video_ids, labels=tuple(label_of),
                   video_index=np.repeat(np.arange(len(video_ids), dtype=np.int64), counts),
                   label_index=label_index, segments_sec=np.ascontiguousarray(values[:, :2]),
                   scores=np.ascontiguousarray(values[:, 2]))

    def detections_of(self, video_id: str) -> list[Detection]:
        """The detections of one video, in table order (empty for a video the table does not have)."""
        try:
            position = self.video_ids.index(video_id)
        except ValueError:
            return []
        rows = np.nonzero(self.video_index == position)[0]
        return [Detection(start_sec=start, end_sec=end, label=self.labels[li], score=score)
                for (start, end), li, score in zip(self.segments_sec[rows].tolist(), self.label_index[rows].tolist(),
                                                   self.scores[rows].tolist())]

    def to_mapping(self) -> dict[str, list[Detection]]:
        """``{video_id: [Detection, ...]}`` for every video of the table, rows in table order."""
        out: dict[str, list[Detection]] = {v: [] for v in self.video_ids}
        for vi, li, (start, end), score in zip(self.video_index.tolist(), self.label_index.tolist(),
                                               self.segments_sec.tolist(), self.scores.tolist()):
            out[self.video_ids[vi]].append(Detection(start_sec=start, end_sec=end, label=self.labels[li],
                                                     score=score))
        return out

    def check(self, *, source: str = "predictions") -> None:
        """Raise ValueError naming the video and the detection if a value is non-finite or an end precedes its
        start."""
        values = np.column_stack([self.segments_sec, self.scores])  # [M, 3]
        bad = ~np.isfinite(values).all(axis=1) | (self.segments_sec[:, 1] < self.segments_sec[:, 0])
        if not bad.any():
            return
        row = int(np.argmax(bad))
        vi = int(self.video_index[row])
        position = int(np.count_nonzero(self.video_index[:row] == vi)) + 1
        start, end = self.segments_sec[row].tolist()
        where = f"{source}: video {self.video_ids[vi]!r}: detection {position}"
        if not np.isfinite(values[row]).all():
            raise ValueError(f"{where}: non-finite start, end or score ({start}, {end}, {float(self.scores[row])})")
        raise ValueError(f"{where}: end_sec {end} < start_sec {start}; fix the decoder or drop the detection")
