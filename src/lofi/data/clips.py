"""Stage 1 data: trimmed clips cut from a TAL dataset's own annotations, for clip classification pre-training.

One clip per ground-truth segment (labelled with its class) and, with ``background``, clips from unannotated
spans (labelled ``len(classes)``, the background class). Each clip is ``T`` snippets of ``F`` frames spread over
its time range (:func:`~lofi.data.sampling.sample_snippets_between`: all frames lie inside the range).

**Background rule.** A video's gaps are the parts of ``[0, duration_sec]`` covered by no segment and no ignore
region. Gaps shorter than ``min_background_sec`` are dropped; of the rest, the ``background_per_video`` longest
(ties: the earlier) each give one clip spanning the whole gap. A video with fewer long-enough gaps gives fewer
background clips. The video's duration is the annotation's ``duration_sec``, or the file's when that is missing
(the file is then probed once, when the dataset is built).

**Margin rule.** ``segment_margin_frac`` trims each action clip by that fraction of the segment's length at both
ends (0.1 keeps the middle 80%), which keeps the ambiguous onset and offset out of the classifier's input.

Bad videos raise (``on_error="raise"``) or are skipped (item None, warning, :func:`collate_clips` drops it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypedDict

import torch

from lofi.data.annotations import AnnotationSet, VideoAnnotation
from lofi.data.dataset import OnError, VideoFileDataset, item_generator, skip_or_raise, stack_frames
from lofi.data.sampling import SnippetSpec, sample_snippets_between
from lofi.data.video import VideoReadError, find_video_files, probe_video
from lofi.data.windows import label_indices

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class ClipRange:
    """One clip: a time range of a video (seconds from its start) and its class index."""

    video_id: str
    start_sec: float
    end_sec: float
    label: int  # index into classes; len(classes) for background


class ClipItem(TypedDict):
    video_id: str
    frames: torch.Tensor  # [T, F, 3, S, S] uint8 RGB, channels-last memory
    label: torch.Tensor  # [] int64
    start_sec: float
    end_sec: float


class ClipBatch(TypedDict):
    frames: torch.Tensor  # [B, T, F, 3, S, S] uint8, channels-last memory
    labels: torch.Tensor  # [B] int64
    video_ids: list[str]


def background_gaps(video: VideoAnnotation, duration_sec: float) -> list[tuple[float, float]]:
    """The spans of ``[0, duration_sec]`` covered by no segment and no ignore region, in order (seconds)."""
    covered = sorted([(s.start_sec, s.end_sec) for s in video.segments] + list(video.ignore_regions_sec))
    gaps, cursor = [], 0.0
    for start, end in covered:
        if start > cursor:
            gaps.append((cursor, min(start, duration_sec)))
        cursor = max(cursor, end)
    if cursor < duration_sec:
        gaps.append((cursor, duration_sec))
    return [(a, b) for a, b in gaps if b > a]


class ClipDataset(VideoFileDataset):
    """Action and background clips of every video in ``annotations`` (see the module docstring for the rules).

    Items are :class:`ClipItem`: ``frames`` uint8 ``[T, F, 3, S, S]`` with ``T = num_snippets``,
    ``F = frames_per_snippet``, ``S = frame_size_px`` (short side resized to S, square crop), ``label`` int64.
    ``augment=True`` places the crop at random and flips horizontally with probability 1/2, drawn from a generator
    seeded by ``(seed, epoch, index)`` (:meth:`set_epoch`). ``clips`` lists every item's :class:`ClipRange`.
    """

    def __init__(self, *, annotations: AnnotationSet, videos_dir: str | os.PathLike, classes: Sequence[str],
                 num_snippets: int, frames_per_snippet: int, frame_size_px: int, frame_stride: int = 1,
                 background: bool = True, background_per_video: int = 1, min_background_sec: float = 1.0,
                 segment_margin_frac: float = 0.0, augment: bool = False, seed: int = 0,
                 on_error: OnError = "skip", threads: int = 1) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not 0.0 <= segment_margin_frac < 0.5:
            raise ValueError(f"segment_margin_frac must be in [0, 0.5), got {segment_margin_frac!r}")
        if background_per_video < 0 or not min_background_sec > 0:
            raise ValueError(f"background_per_video must be >= 0 and min_background_sec > 0, got "
                             f"{background_per_video!r} and {min_background_sec!r}")
        self.spec = SnippetSpec(num_snippets=num_snippets, frames_per_snippet=frames_per_snippet,
                                frame_stride=frame_stride, short_side_px=frame_size_px,
                                crop="random" if augment else "center")
        self.annotations = annotations
        self.videos_dir = Path(videos_dir)
        self.classes = tuple(classes)
        self.background_label = len(self.classes)
        self.augment = augment
        self.seed = seed
        self.on_error: OnError = on_error
        self.threads = threads
        self.epoch = 0
        self.skipped: list[tuple[str, str]] = []
        self._files = find_video_files(self.videos_dir)
        to_index = label_indices(annotations, self.classes)
        self.clips: list[ClipRange] = []
        for video in annotations:
            for s in video.segments:
                margin = segment_margin_frac * (s.end_sec - s.start_sec)
                self.clips.append(ClipRange(video.video_id, s.start_sec + margin, s.end_sec - margin,
                                            to_index[s.label]))
            if background and background_per_video > 0:
                self.clips.extend(self._background(video, background_per_video, min_background_sec))

    def _background(self, video: VideoAnnotation, count: int, min_sec: float) -> list[ClipRange]:
        duration_sec = video.duration_sec
        if duration_sec is None:
            try:
                duration_sec = probe_video(self.video_path(video.video_id)).duration_sec
            except VideoReadError as exc:
                if self.on_error == "raise":
                    raise
                logger.warning("no background clips for video %r: %s", video.video_id, exc)
                return []
        gaps = [g for g in background_gaps(video, duration_sec) if g[1] - g[0] >= min_sec]
        longest = sorted(gaps, key=lambda g: (-(g[1] - g[0]), g[0]))[:count]
        return [ClipRange(video.video_id, a, b, self.background_label) for a, b in sorted(longest)]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> ClipItem | None:
        clip = self.clips[index]
        generator = item_generator(self.seed, self.epoch, index) if self.augment else None
        try:
            sampled = sample_snippets_between(self.video_path(clip.video_id), self.spec, start_sec=clip.start_sec,
                                              end_sec=clip.end_sec, generator=generator, threads=self.threads)
        except VideoReadError as exc:
            skip_or_raise(exc, on_error=self.on_error, skipped=self.skipped, video_id=clip.video_id,
                          what=f"clip {index} of video {clip.video_id!r}")
            return None
        frames = sampled.frames  # [T, F, 3, S, S]
        if generator is not None and bool(torch.rand((), generator=generator) < 0.5):
            frames = frames.flip(-1)
        return ClipItem(video_id=clip.video_id, frames=frames, label=torch.tensor(clip.label, dtype=torch.int64),
                        start_sec=clip.start_sec, end_sec=clip.end_sec)


def collate_clips(items: Sequence[ClipItem | None]) -> ClipBatch | None:
    """Drop skipped (None) items and stack the rest; None when nothing is left."""
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    return ClipBatch(frames=stack_frames([item["frames"] for item in kept]),  # [B, T, F, 3, S, S]
                     labels=torch.stack([item["label"] for item in kept]),  # [B]
                     video_ids=[item["video_id"] for item in kept])
