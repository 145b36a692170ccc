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

**Sub-clip rule.** With ``clip_sec`` set, each range (action or background) gives ``clips_per_range`` items of
``clip_sec`` seconds (the whole range when it is shorter): with ``augment``, each at a random place in the range,
drawn anew every epoch (many different training clips per instance); without, evenly spaced (item ``k`` of ``n``
starts at ``(k + 0.5) / n`` of the free room), so evaluation is deterministic. ``clip_sec=None`` is one clip
spanning the range. ``balance_classes=True`` gives each range of class ``c`` ``round(clips_per_range * R / (K *
R_c))`` items instead (at least 1; ``R`` ranges in all, ``R_c`` of class ``c``, ``K`` classes present): every
class, background included, then has about the same number of clips per epoch, and the epoch about the same
length as without balancing.

**Frames.** ``preload=True`` decodes each video once, whole, at the working short side and keeps its frames in
memory (:func:`decode_all_frames`): clips then cost no decoding, which is what makes many random sub-clips per
epoch affordable on small datasets; without it every clip is decoded from the file. Both give the same frames
(the frame displayed at each requested time). Augmentation is :func:`lofi.data.augment.augment_clip`.

Bad videos raise (``on_error="raise"``) or are skipped (item None, warning, a record in ``skip_log``:
:func:`collate_clips` drops it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypedDict

import numpy as np
import torch

from lofi.data.annotations import AnnotationSet, VideoAnnotation
from lofi.data.augment import ClipAugment, augment_clip
from lofi.data.dataset import OnError, VideoFileDataset, item_generator, skip_or_raise, stack_frames
from lofi.data.sampling import SnippetSpec, frame_indices_for_cfr, range_times_sec, sample_snippets_between
from lofi.data.skips import SkipLog, SkipRecord
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


@dataclass(frozen=True)
class DecodedFrames:
    """Every frame of one video, resized to a short side: ``frames`` uint8 ``[N, H, W, 3]``."""

    frames: torch.Tensor  # [N, H, W, 3] uint8
    fps: float
    duration_sec: float

    def at(self, times_sec: np.ndarray) -> torch.Tensor:
        """The frames displayed at ``times_sec`` (any shape ``[...]``) -> uint8 ``[..., H, W, 3]``."""
        index = np.clip(frame_indices_for_cfr(times_sec, self.fps), 0, self.frames.shape[0] - 1)
        return self.frames[torch.from_numpy(index.reshape(-1))].view(*index.shape, *self.frames.shape[1:])


def decode_all_frames(path: str | os.PathLike, *, short_side_px: int, threads: int = 1) -> DecodedFrames:
    """Decode the whole video once (one forward pass), resized so that its short side is ``short_side_px``."""
    info = probe_video(path)
    num_frames = max(1, info.num_frames)
    # one snippet per frame, centred in frame k's display span [k / fps, (k + 1) / fps), the span DecodedFrames.at
    # looks up; the end is clamped to the stream (a frame count estimated from the duration may overshoot it)
    end_sec = min(num_frames / info.fps, info.duration_sec)
    num_frames = max(1, min(num_frames, int(round(end_sec * info.fps))))
    spec = SnippetSpec(num_snippets=num_frames, short_side_px=short_side_px)
    sampled = sample_snippets_between(path, spec, end_sec=num_frames / info.fps, keep_full_frame=True, info=info,
                                      threads=threads)
    frames = sampled.frames[:, 0].permute(0, 2, 3, 1).contiguous()  # [N, 1, 3, H, W] -> [N, H, W, 3]
    return DecodedFrames(frames=frames, fps=info.fps, duration_sec=info.duration_sec)


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
    ``augment=True`` applies ``augmentation`` (default: a random crop of the short side and a horizontal flip with
    probability 1/2), drawn from a generator seeded by ``(seed, epoch, index)`` (:meth:`set_epoch`), and places
    sub-clips at random. ``clips`` lists every range (:class:`ClipRange`); item ``i`` is a clip of range
    ``items[i][0]`` (see the sub-clip rule).
    """

    def __init__(self, *, annotations: AnnotationSet, videos_dir: str | os.PathLike, classes: Sequence[str],
                 num_snippets: int, frames_per_snippet: int, frame_size_px: int, frame_stride: int = 1,
                 background: bool = True, background_per_video: int = 1, min_background_sec: float = 1.0,
                 segment_margin_frac: float = 0.0, augment: bool = False, seed: int = 0,
                 on_error: OnError = "skip", threads: int = 1, clip_sec: float | None = None,
                 clips_per_range: int = 1, augmentation: ClipAugment | None = None, preload: bool = False,
                 balance_classes: bool = False, skip_log: SkipLog | None = None) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not 0.0 <= segment_margin_frac < 0.5:
            raise ValueError(f"segment_margin_frac must be in [0, 0.5), got {segment_margin_frac!r}")
        if background_per_video < 0 or not min_background_sec > 0:
            raise ValueError(f"background_per_video must be >= 0 and min_background_sec > 0, got "
                             f"{background_per_video!r} and {min_background_sec!r}")
        if clip_sec is not None and not clip_sec > 0:
            raise ValueError(f"clip_sec must be > 0 or None, got {clip_sec!r}")
        if clips_per_range < 1:
            raise ValueError(f"clips_per_range must be >= 1, got {clips_per_range!r}")
        self.spec = SnippetSpec(num_snippets=num_snippets, frames_per_snippet=frames_per_snippet,
                                frame_stride=frame_stride, short_side_px=frame_size_px)
        self.frame_size_px = frame_size_px
        self.clip_sec = clip_sec
        self.clips_per_range = clips_per_range
        self.augmentation = augmentation if augmentation is not None else ClipAugment(flip=True)
        self.preload = preload
        self._decoded: dict[str, DecodedFrames] = {}
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
        self.skip_log = skip_log
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
        self.items = self._item_table(balance_classes)

    def _background(self, video: VideoAnnotation, count: int, min_sec: float) -> list[ClipRange]:
        duration_sec = video.duration_sec
        if duration_sec is None:
            try:
                duration_sec = probe_video(self.video_path(video.video_id)).duration_sec
            except VideoReadError as exc:
                if self.on_error == "raise":
                    raise
                logger.warning("no background clips for video %r: %s", video.video_id, exc)
                if self.skip_log is not None:
                    self.skip_log.record(SkipRecord(file=exc.path, video_id=video.video_id, what="background clips",
                                                    reason=exc.reason))
                return []
        gaps = [g for g in background_gaps(video, duration_sec) if g[1] - g[0] >= min_sec]
        longest = sorted(gaps, key=lambda g: (-(g[1] - g[0]), g[0]))[:count]
        return [ClipRange(video.video_id, a, b, self.background_label) for a, b in sorted(longest)]

    def _item_table(self, balance: bool) -> list[tuple[int, int, int]]:
        """``(range index, k, n)`` per item: item ``k`` of the ``n`` cut from that range."""
        per_class: dict[int, int] = {}
        for clip in self.clips:
            per_class[clip.label] = per_class.get(clip.label, 0) + 1
        items = []
        for r, clip in enumerate(self.clips):
            n = self.clips_per_range
            if not self.augment and self._room_sec(clip) == 0:
                n = 1  # evaluation: every clip of such a range would be the same clip
            elif balance:
                share = len(self.clips) / (len(per_class) * per_class[clip.label])
                n = max(1, int(round(self.clips_per_range * share)))
            items.extend((r, k, n) for k in range(n))
        return items

    def __len__(self) -> int:
        return len(self.items)

    def _room_sec(self, clip: ClipRange) -> float:
        """How far a sub-clip can move inside ``clip``: 0 when it spans the whole range."""
        if self.clip_sec is None:
            return 0.0
        return max(0.0, (clip.end_sec - clip.start_sec) - self.clip_sec)

    def sub_range(self, index: int, generator: torch.Generator | None) -> tuple[float, float]:
        """The ``[start_sec, end_sec)`` of item ``index`` (see the module's sub-clip rule)."""
        range_index, k, n = self.items[index]
        clip = self.clips[range_index]
        room = self._room_sec(clip)
        if room == 0:
            return clip.start_sec, clip.end_sec
        if generator is not None:
            offset = room * float(torch.rand((), generator=generator))
        else:
            offset = room * (k + 0.5) / n
        return clip.start_sec + offset, clip.start_sec + offset + self.clip_sec

    def _frames(self, video_id: str, start_sec: float, end_sec: float) -> torch.Tensor:
        """uint8 ``[T, F, H, W, 3]`` (short side resized, not cropped) of the clip ``[start_sec, end_sec)``."""
        path = self.video_path(video_id)
        if not self.preload:
            sampled = sample_snippets_between(path, self.spec, start_sec=start_sec, end_sec=end_sec,
                                              keep_full_frame=True, threads=self.threads)
            return sampled.frames.permute(0, 1, 3, 4, 2)  # [T, F, 3, H, W] view -> [T, F, H, W, 3]
        decoded = self._decoded.get(video_id)
        if decoded is None:
            decoded = decode_all_frames(path, short_side_px=self.frame_size_px, threads=self.threads)
            self._decoded[video_id] = decoded
        times = range_times_sec(self.spec, start_sec=start_sec, end_sec=end_sec, duration_sec=decoded.duration_sec,
                                fps=decoded.fps, path=path)  # [T, F]
        return decoded.at(times)  # [T, F, H, W, 3]

    def __getitem__(self, index: int) -> ClipItem | None:
        clip = self.clips[self.items[index][0]]
        generator = item_generator(self.seed, self.epoch, index) if self.augment else None
        start_sec, end_sec = self.sub_range(index, generator)
        try:
            raw = self._frames(clip.video_id, start_sec, end_sec)  # [T, F, H, W, 3]
        except VideoReadError as exc:
            skip_or_raise(exc, on_error=self.on_error, skipped=self.skipped, video_id=clip.video_id,
                          what=f"clip {index} of video {clip.video_id!r}", log=self.skip_log, kind="clip")
            return None
        frames = augment_clip(raw, size_px=self.frame_size_px, augment=self.augmentation if self.augment else None,
                              generator=generator)  # [T, F, 3, S, S]
        return ClipItem(video_id=clip.video_id, frames=frames, label=torch.tensor(clip.label, dtype=torch.int64),
                        start_sec=start_sec, end_sec=end_sec)


def collate_clips(items: Sequence[ClipItem | None]) -> ClipBatch | None:
    """Drop skipped (None) items and stack the rest; None when nothing is left."""
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    return ClipBatch(frames=stack_frames([item["frames"] for item in kept]),  # [B, T, F, 3, S, S]
                     labels=torch.stack([item["label"] for item in kept]),  # [B]
                     video_ids=[item["video_id"] for item in kept])
