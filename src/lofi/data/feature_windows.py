"""Stage 3 data with sliding windows: feature files at a fixed snippet rate, cut into windows of ``L`` snippets.

A feature file made with ``data.windows`` holds ``[D, T]`` features, ``T = ceil(duration_sec * snippets_per_sec)``
(:func:`lofi.core.windows.video_num_snippets`), with ``snippets_per_sec`` in its meta and, when its snippets are
not exactly ``1 / snippets_per_sec`` long, ``snippet_sec`` (extraction spreads the ``T`` snippets evenly over the
video, so ``snippet_sec = duration_sec / T``). :class:`FeatureWindowDataset`
has one item per window (:func:`lofi.core.windows.window_starts`): ``[D, T]`` features (zero-padded past the end of
a video shorter than one window), the instances inside it as fractions of the window
(:func:`lofi.core.windows.clip_to_window`) and the window's place in the video in seconds, which prediction uses to
bring the window's detections back to video time before merging the windows of a video, and the span of the
video the window owns (:func:`lofi.core.windows.window_cores`; with ``merge="all"`` its whole span).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypedDict

import torch
from torch.utils.data import Dataset

from lofi.core.targets import SegmentTargets
from lofi.core.windows import WindowSpan, clip_to_window, cut_window, window_spans
from lofi.data.annotations import AnnotationSet
from lofi.data.features import feature_path, find_feature_file, read_feature_file
from lofi.data.windows import label_indices


class FeatureWindowItem(TypedDict):
    video_id: str
    features: torch.Tensor  # [D, T] float32, zeros past the video's last snippet
    segments: torch.Tensor  # [N, 2] float32, fractions of the window in [0, 1]
    labels: torch.Tensor  # [N] int64
    duration_sec: float  # of the whole video
    window_start_sec: float
    window_end_sec: float  # start + L / snippets_per_sec (may pass the video's end)
    keep_from_sec: float  # prediction keeps the detections whose centre lies in [keep_from_sec, keep_to_sec)
    keep_to_sec: float


class FeatureWindowBatch(TypedDict):
    features: torch.Tensor  # [B, D, T] float32
    targets: SegmentTargets
    video_ids: list[str]
    durations_sec: torch.Tensor  # [B] float64 seconds
    window_starts_sec: torch.Tensor  # [B] float64 seconds
    window_ends_sec: torch.Tensor  # [B] float64 seconds
    keep_from_sec: torch.Tensor  # [B] float64 seconds
    keep_to_sec: torch.Tensor  # [B] float64 seconds


@dataclass(frozen=True)
class _Window:
    video_index: int
    span: WindowSpan


class FeatureWindowDataset(Dataset):
    """The windows of ``window_snippets`` snippets, every ``stride_snippets``, over the feature files of every video
    of ``annotations`` (written at ``snippets_per_sec``).

    Building reads every file (its ``[D, T]`` and meta): a file of another rate, another
    ``D`` than the first, or of another video raises ``ValueError`` naming it; a missing file raises
    ``FileNotFoundError`` naming the videos, as :class:`~lofi.data.features.FeatureDataset` does.
    """

    def __init__(self, *, features_dir: str | os.PathLike, annotations: AnnotationSet, classes: Sequence[str],
                 window_snippets: int, stride_snippets: int, snippets_per_sec: float,
                 min_inside_fraction: float = 0.5, merge: str = "center") -> None:
        if merge not in ("center", "all"):
            raise ValueError(f"merge must be 'center' or 'all', got {merge!r}")
        self.features_dir = Path(features_dir)
        self.annotations = annotations
        self.classes = tuple(classes)
        self.window_snippets, self.stride_snippets = window_snippets, stride_snippets
        self.snippets_per_sec, self.min_inside_fraction = float(snippets_per_sec), min_inside_fraction
        self._label_to_index = label_indices(annotations, self.classes)
        self.video_ids: list[str] = list(annotations.videos)
        self._paths = _find_all(self.features_dir, annotations, self.video_ids)
        self.windows: list[_Window] = []
        self.num_video_snippets: dict[str, int] = {}
        self.durations_sec: dict[str, float] = {}
        self.snippets_sec: dict[str, float] = {}
        self.feature_dim: int | None = None
        for index, video_id in enumerate(self.video_ids):
            features, meta = self._header(video_id)
            num_snippets = int(features.shape[1])
            self.num_video_snippets[video_id] = num_snippets
            duration = meta.get("duration_sec", annotations[video_id].duration_sec)
            if duration is None:
                raise ValueError(f"{self._paths[video_id]}: video {video_id!r}: no duration (add duration_sec to the "
                                 f"feature meta or to the annotations)")
            self.durations_sec[video_id] = float(duration)
            snippet_sec = float(meta.get("snippet_sec", 1.0 / self.snippets_per_sec))
            self.snippets_sec[video_id] = snippet_sec
            for span in window_spans(num_snippets, window_snippets=window_snippets, stride_snippets=stride_snippets,
                                     snippet_sec=snippet_sec, merge=merge):
                self.windows.append(_Window(index, span))

    def _header(self, video_id: str) -> tuple[torch.Tensor, dict]:
        path = self._paths[video_id]
        features, stored_id, meta = read_feature_file(path)
        if stored_id != video_id:
            raise ValueError(f"{path}: holds features of video {stored_id!r}, expected {video_id!r}")
        rate = meta.get("snippets_per_sec")
        if rate is None or abs(float(rate) - self.snippets_per_sec) > 1e-9:
            raise ValueError(f"{path}: video {video_id!r}: features at snippets_per_sec={rate!r}, but the windows "
                             f"want {self.snippets_per_sec:g}; extract again with data.windows.snippets_per_sec="
                             f"{self.snippets_per_sec:g} (whole-video features have no rate)")
        if self.feature_dim is None:
            self.feature_dim = int(features.shape[0])
        elif int(features.shape[0]) != self.feature_dim:
            raise ValueError(f"{path}: video {video_id!r}: features have D = {features.shape[0]} but "
                             f"{self.video_ids[0]!r} has {self.feature_dim}; re-extract with one encoder")
        return features, meta

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> FeatureWindowItem:
        window = self.windows[index]
        video_id = self.video_ids[window.video_index]
        features, _ = self._header(video_id)  # [D, T]
        span = window.span
        out = cut_window(features, span)  # [D, L]
        video = self.annotations[video_id]
        seg_snippets = torch.tensor([[s.start_sec, s.end_sec] for s in video.segments],
                                    dtype=torch.float64).reshape(-1, 2) / span.snippet_sec  # [N, 2] snippets
        labels = torch.tensor([self._label_to_index[s.label] for s in video.segments], dtype=torch.int64)  # [N]
        segments, labels = clip_to_window(seg_snippets, labels, start_snippet=span.start_snippet,
                                          window_snippets=span.num_snippets,
                                          min_inside_fraction=self.min_inside_fraction)
        return FeatureWindowItem(video_id=video_id, features=out, segments=segments, labels=labels,
                                 duration_sec=self.durations_sec[video_id], window_start_sec=span.start_sec,
                                 window_end_sec=span.end_sec, keep_from_sec=span.core_sec[0],
                                 keep_to_sec=span.core_sec[1])


def _find_all(features_dir: Path, annotations: AnnotationSet, video_ids: list[str]) -> dict[str, Path]:
    found = {vid: find_feature_file(features_dir, vid) for vid in video_ids}
    missing = [vid for vid, path in found.items() if path is None]
    if missing:
        shown = ", ".join(f"{v!r} ({feature_path(features_dir, v).name})" for v in missing[:5])
        raise FileNotFoundError(f"{features_dir}: no feature file for {len(missing)} of {len(video_ids)} videos: "
                                f"{shown}; extract features for them first")
    return {vid: path for vid, path in found.items() if path is not None}


def collate_feature_windows(items: Sequence[FeatureWindowItem]) -> FeatureWindowBatch:
    """Stack windows to ``[B, D, T]`` with their :class:`SegmentTargets` and places in their videos."""
    def seconds(key: str) -> torch.Tensor:
        return torch.tensor([item[key] for item in items], dtype=torch.float64)  # type: ignore[literal-required]

    return FeatureWindowBatch(features=torch.stack([item["features"] for item in items]),  # [B, D, T]
                              targets=SegmentTargets(segments=[item["segments"] for item in items],
                                                     labels=[item["labels"] for item in items]),
                              video_ids=[item["video_id"] for item in items], durations_sec=seconds("duration_sec"),
                              window_starts_sec=seconds("window_start_sec"),
                              window_ends_sec=seconds("window_end_sec"), keep_from_sec=seconds("keep_from_sec"),
                              keep_to_sec=seconds("keep_to_sec"))
