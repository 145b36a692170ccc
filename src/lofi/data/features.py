"""Stage 3 data: per-video feature files written by the frozen encoder, and a dataset of them for the head.

A feature file ``<features_dir>/<video_id>.pt`` holds ``{"features": [D, L] tensor, "video_id": str,
"meta": JSON string}``; it loads with ``torch.load(weights_only=True)``. ``meta`` is the configuration that made
the features (encoder, checkpoint, fidelity, ...), JSON-serialisable; put ``duration_sec`` (the span the ``L``
snippets cover, i.e. the video file's duration) in it so that :class:`FeatureDataset` turns segments into
fractions of exactly that span (it falls back to the annotation's ``duration_sec``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence, TypedDict

import torch
from torch.utils.data import Dataset

from lofi.data.annotations import AnnotationSet
from lofi.data.windows import label_indices, segment_fractions
from lofi.io import atomic_torch_save
from lofi.models.heads.base import SegmentTargets

FEATURE_SUFFIX = ".pt"
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def feature_path(features_dir: str | os.PathLike, video_id: str) -> Path:
    """Where the features of ``video_id`` live (characters unsafe in file names become ``_``)."""
    return Path(features_dir) / f"{_UNSAFE_CHARS.sub('_', video_id)}{FEATURE_SUFFIX}"


def write_features(path: str | os.PathLike, features: torch.Tensor, *, video_id: str,
                   meta: Mapping[str, Any]) -> None:
    """Write ``features`` ``[D, L]`` (floating point, stored as given) atomically (temp file + ``os.replace``)."""
    path = Path(path)
    if features.dim() != 2 or not features.is_floating_point():
        raise ValueError(f"{path}: video {video_id!r}: features must be a floating [D, L] tensor, got "
                         f"{features.dtype} {tuple(features.shape)}")
    try:
        meta_json = json.dumps(dict(meta), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: video {video_id!r}: meta must be JSON-serialisable ({exc})") from exc
    payload = {"features": features.detach().cpu().contiguous(), "video_id": video_id, "meta": meta_json}
    atomic_torch_save(payload, path)


def _read(path: Path) -> tuple[torch.Tensor, str, dict[str, Any]]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        features, video_id, meta = payload["features"], payload["video_id"], json.loads(payload["meta"])
    except FileNotFoundError:
        raise
    except Exception as exc:  # unpickling, missing keys, bad JSON: all mean "not a feature file"
        raise ValueError(f"{path}: not a readable feature file ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(features, torch.Tensor) or features.dim() != 2:
        raise ValueError(f"{path}: features must be a [D, L] tensor")
    return features.float(), video_id, meta


def read_features(path: str | os.PathLike) -> tuple[torch.Tensor, dict[str, Any]]:
    """``(features float32 [D, L], meta)`` from a file written by :func:`write_features`."""
    features, _, meta = _read(Path(path))
    return features, meta


class FeatureItem(TypedDict):
    video_id: str
    features: torch.Tensor  # [D, L] float32
    segments: torch.Tensor  # [N, 2] float32, fractions of the video, clipped to [0, 1]
    labels: torch.Tensor  # [N] int64
    duration_sec: float


class FeatureBatch(TypedDict):
    features: torch.Tensor  # [B, D, L] float32
    targets: SegmentTargets
    video_ids: list[str]
    durations_sec: torch.Tensor  # [B] float32 seconds


class FeatureDataset(Dataset):
    """Features and ground truth of every video of ``annotations``, from ``features_dir/<video_id>.pt``.

    Raises ``FileNotFoundError`` when built if any video has no feature file (naming them), and ``ValueError``
    naming the video when a file's ``[D, L]`` differs from the first video's, it holds another video's features,
    or a video has no duration (neither ``meta["duration_sec"]`` nor the annotation's). Files are checked as they
    are loaded (building reads only the first); :meth:`verify` checks them all at once.
    """

    def __init__(self, *, features_dir: str | os.PathLike, annotations: AnnotationSet,
                 classes: Sequence[str]) -> None:
        self.features_dir = Path(features_dir)
        self.annotations = annotations
        self.classes = tuple(classes)
        self.video_ids: list[str] = list(annotations.videos)
        self._label_to_index = label_indices(annotations, self.classes)
        missing = [vid for vid in self.video_ids if not feature_path(self.features_dir, vid).is_file()]
        if missing:
            shown = ", ".join(repr(v) for v in missing[:5])
            if len(missing) > 5:
                shown += f" and {len(missing) - 5} more"
            raise FileNotFoundError(f"{self.features_dir}: no feature file for {len(missing)} of "
                                    f"{len(self.video_ids)} videos: {shown}; extract features for them first")
        self.shape: tuple[int, int] | None = None  # [D, L] of the first video
        if self.video_ids:
            self.shape = tuple(self[0]["features"].shape)  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.video_ids)

    def verify(self) -> None:
        """Read every file now (the dataset otherwise checks each one when it is loaded); raise listing all errors."""
        errors = []
        for index in range(len(self)):
            try:
                self[index]
            except ValueError as exc:
                errors.append(str(exc))
        if errors:
            raise ValueError(f"{len(errors)} bad feature files in {self.features_dir}:\n" + "\n".join(errors))

    def __getitem__(self, index: int) -> FeatureItem:
        video_id = self.video_ids[index]
        path = feature_path(self.features_dir, video_id)
        features, stored_id, meta = _read(path)
        if stored_id != video_id:
            raise ValueError(f"{path}: holds features of video {stored_id!r}, expected {video_id!r}")
        if self.shape is not None and tuple(features.shape) != self.shape:
            raise ValueError(f"{path}: video {video_id!r}: features are [D, L] = {list(features.shape)} but "
                             f"{self.video_ids[0]!r} has {list(self.shape)}; re-extract with one encoder and one "
                             f"num_snippets")
        video = self.annotations[video_id]
        duration_sec = meta.get("duration_sec", video.duration_sec)
        if duration_sec is None:
            raise ValueError(f"{path}: video {video_id!r}: no duration (add duration_sec to the feature meta or "
                             f"to the annotations)")
        segments, labels = segment_fractions(video.segments, float(duration_sec), self._label_to_index)
        return FeatureItem(video_id=video_id, features=features, segments=segments, labels=labels,
                           duration_sec=float(duration_sec))


def collate_features(items: Sequence[FeatureItem]) -> FeatureBatch:
    """Stack features to ``[B, D, L]`` with the windows' :class:`SegmentTargets`."""
    return FeatureBatch(features=torch.stack([item["features"] for item in items]),  # [B, D, L]
                        targets=SegmentTargets(segments=[item["segments"] for item in items],
                                               labels=[item["labels"] for item in items]),
                        video_ids=[item["video_id"] for item in items],
                        durations_sec=torch.tensor([item["duration_sec"] for item in items], dtype=torch.float32))
