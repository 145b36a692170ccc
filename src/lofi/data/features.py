"""Stage 3 data: per-video feature files written by the frozen encoder, and a dataset of them for the head.

A feature file ``<features_dir>/<stem>.pt`` holds ``{"features": [D, T] tensor, "video_id": str,
"meta": JSON string}``; it loads with ``torch.load(weights_only=True)``. ``meta`` is the configuration that made
the features (encoder, checkpoint, fidelity, ...), JSON-serialisable; put ``duration_sec`` (the span the ``L``
snippets cover, i.e. the video file's duration) in it so that :class:`FeatureDataset` turns segments into
fractions of exactly that span (it falls back to the annotation's ``duration_sec``).

``<stem>`` is :func:`lofi.io.safe_file_stem` of the video id (the id itself when it is made of ``[A-Za-z0-9._-]``).
Readers also accept a file named by lofi 0.1.0.dev0 and earlier (other characters replaced by ``_``, no hash) when
the id stored inside it is the one looked for; every file read must hold the id it is read for.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence, TypedDict

import torch
from torch.utils.data import Dataset

from lofi.core.targets import SegmentTargets
from lofi.data.annotations import AnnotationSet
from lofi.data.windows import label_indices, segment_fractions
from lofi.io import atomic_torch_save, safe_file_stem, stems_clash

FEATURE_SUFFIX = ".pt"
_LEGACY_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")  # the naming of lofi 0.1.0.dev0 and earlier


def feature_path(features_dir: str | os.PathLike, video_id: str) -> Path:
    """Where the features of ``video_id`` are written: ``<features_dir>/<safe_file_stem(video_id)>.pt``."""
    return Path(features_dir) / f"{safe_file_stem(video_id)}{FEATURE_SUFFIX}"


def _stored_video_id(path: Path) -> str | None:
    """The id inside a feature file, or None when there is no readable one (reads no tensor data)."""
    try:
        video_id = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["video_id"]
    except Exception:  # missing, not a zip archive, not a dict, no key: no id
        return None
    return video_id if isinstance(video_id, str) else None


def find_feature_file(features_dir: str | os.PathLike, video_id: str) -> Path | None:
    """The feature file of ``video_id``: :func:`feature_path`, else the name an older lofi gave it (other
    characters replaced by ``_``) if that file holds ``video_id``; None when there is neither."""
    path = feature_path(features_dir, video_id)
    if path.is_file():
        return path
    legacy = Path(features_dir) / f"{_LEGACY_UNSAFE_CHARS.sub('_', video_id)}{FEATURE_SUFFIX}"
    if legacy != path and legacy.is_file() and _stored_video_id(legacy) == video_id:
        return legacy
    return None


def write_features(path: str | os.PathLike, features: torch.Tensor, *, video_id: str,
                   meta: Mapping[str, Any]) -> None:
    """Write ``features`` ``[D, T]`` (floating point, stored as given) atomically (temp file + ``os.replace``)."""
    path = Path(path)
    if features.dim() != 2 or not features.is_floating_point():
        raise ValueError(f"{path}: video {video_id!r}: features must be a floating [D, T] tensor, got "
                         f"{features.dtype} {tuple(features.shape)}")
    try:
        meta_json = json.dumps(dict(meta), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: video {video_id!r}: meta must be JSON-serialisable ({exc})") from exc
    stored_id = _stored_video_id(path) if path.exists() else None
    if stored_id is not None and stems_clash(video_id, stored_id):
        raise ValueError(f"{path}: holds the features of video {stored_id!r}, and {video_id!r} maps to the same file "
                         f"(their names differ only in letter case, which this file system ignores); write the "
                         f"features to a case-sensitive file system or rename one of the two videos")
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
        raise ValueError(f"{path}: features must be a [D, T] tensor")
    return features.float(), video_id, meta


def read_feature_file(path: str | os.PathLike) -> tuple[torch.Tensor, str, dict[str, Any]]:
    """``(features float32 [D, T], the video id stored in it, meta)`` from a file written by :func:`write_features`."""
    return _read(Path(path))


def read_features(path: str | os.PathLike) -> tuple[torch.Tensor, dict[str, Any]]:
    """``(features float32 [D, T], meta)`` from a file written by :func:`write_features`."""
    features, _, meta = _read(Path(path))
    return features, meta


class FeatureItem(TypedDict):
    video_id: str
    features: torch.Tensor  # [D, T] float32
    segments: torch.Tensor  # [N, 2] float32, fractions of the video, clipped to [0, 1]
    labels: torch.Tensor  # [N] int64
    duration_sec: float


class FeatureBatch(TypedDict):
    features: torch.Tensor  # [B, D, T] float32
    targets: SegmentTargets
    video_ids: list[str]
    durations_sec: torch.Tensor  # [B] float32 seconds


class FeatureDataset(Dataset):
    """Features and ground truth of every video of ``annotations``, from ``features_dir/<stem>.pt``.

    Files are found by :func:`find_feature_file`. Raises ``FileNotFoundError`` when built if any video has no
    feature file (naming the videos and the files expected), and ``ValueError`` naming the video when a file's
    ``[D, T]`` differs from the first video's, it holds another video's features, or a video has no duration
    (neither ``meta["duration_sec"]`` nor the annotation's). Files are checked as they are loaded (building reads
    only the first); :meth:`verify` checks them all at once.
    """

    def __init__(self, *, features_dir: str | os.PathLike, annotations: AnnotationSet,
                 classes: Sequence[str]) -> None:
        self.features_dir = Path(features_dir)
        self.annotations = annotations
        self.classes = tuple(classes)
        self.video_ids: list[str] = list(annotations.videos)
        self._label_to_index = label_indices(annotations, self.classes)
        found = {vid: find_feature_file(self.features_dir, vid) for vid in self.video_ids}
        missing = [vid for vid, path in found.items() if path is None]
        if missing:
            shown = ", ".join(f"{v!r} ({feature_path(self.features_dir, v).name})" for v in missing[:5])
            if len(missing) > 5:
                shown += f" and {len(missing) - 5} more"
            raise FileNotFoundError(f"{self.features_dir}: no feature file for {len(missing)} of "
                                    f"{len(self.video_ids)} videos: {shown}; extract features for them first")
        self._paths: dict[str, Path] = {vid: path for vid, path in found.items() if path is not None}
        self.shape: tuple[int, int] | None = None  # [D, T] of the first video
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
        path = self._paths[video_id]
        features, stored_id, meta = _read(path)
        if stored_id != video_id:
            raise ValueError(f"{path}: holds features of video {stored_id!r}, expected {video_id!r}")
        if self.shape is not None and tuple(features.shape) != self.shape:
            raise ValueError(f"{path}: video {video_id!r}: features are [D, T] = {list(features.shape)} but "
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
    """Stack features to ``[B, D, T]`` with the windows' :class:`SegmentTargets`."""
    return FeatureBatch(features=torch.stack([item["features"] for item in items]),  # [B, D, T]
                        targets=SegmentTargets(segments=[item["segments"] for item in items],
                                               labels=[item["labels"] for item in items]),
                        video_ids=[item["video_id"] for item in items],
                        durations_sec=torch.tensor([item["duration_sec"] for item in items], dtype=torch.float32))
