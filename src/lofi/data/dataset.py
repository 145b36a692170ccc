"""A map-style dataset of sampled snippets with their ground-truth segments, one item per annotated video.

Bad videos (missing, empty, corrupt, truncated) either raise (``on_error="raise"``) or are skipped: the item is
None, a warning names the file and the reason, the dataset's ``skip_log`` (:class:`~lofi.data.skips.SkipLog`,
which DataLoader workers write too) records it, and :func:`collate_skipping_none` drops it from the batch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, Sequence, TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from lofi.data.annotations import AnnotationSet, VideoAnnotation
from lofi.data.sampling import SnippetSpec, sample_snippets
from lofi.data.skips import SkipLog, SkipRecord
from lofi.data.video import VideoReadError, find_video_files, video_file

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of item ``index`` in ``epoch``: the same in every worker and process."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class ItemReadError(VideoReadError):
    """A dataset item's :class:`VideoReadError` under ``on_error="raise"``.

    torch rebuilds an error raised in a DataLoader worker from its formatted traceback alone (``type(text)``);
    this class accepts that text and recovers the file and the reason from its last line, so the main process
    still gets a :class:`VideoReadError` naming the file (plain VideoReadError would become a RuntimeError).
    """

    def __init__(self, path: str | os.PathLike, reason: str | None = None) -> None:
        if reason is None:  # rebuilt from "Caught ItemReadError in DataLoader worker process 0 ... Traceback ..."
            text, marker = str(path), f"{ItemReadError.__module__}.{ItemReadError.__qualname__}: "
            tail = text[text.rfind(marker) + len(marker):] if marker in text else text
            path, _, reason = tail.strip().partition(": ")
        super().__init__(path, reason)


def skip_or_raise(error: VideoReadError, *, on_error: OnError, skipped: list[tuple[str, str]], video_id: str,
                  what: str, log: SkipLog | None = None, kind: str = "video") -> None:
    """A dataset's bad video: raise it as an :class:`ItemReadError` (``on_error="raise"``), or log a warning
    naming ``what``, append ``(video_id, reason)`` to ``skipped`` (this process only) and, with ``log``, record
    that a ``kind`` of the video was left out; the caller then returns None for the item."""
    if on_error == "raise":
        raise ItemReadError(error.path, error.reason) from error
    logger.warning("skipping %s: %s", what, error)
    skipped.append((video_id, str(error)))
    if log is not None:
        log.record(SkipRecord(file=error.path, video_id=video_id, what=kind, reason=error.reason))


def stack_frames(frames: Sequence[torch.Tensor]) -> torch.Tensor:
    """Items' ``[T, F, 3, H, W]`` frames -> ``[B, T, F, 3, H, W]``, keeping their channels-last memory."""
    stacked = torch.stack([f.permute(0, 1, 3, 4, 2) for f in frames])  # [B, T, F, H, W, 3]
    return stacked.permute(0, 1, 2, 5, 3, 4)  # [B, T, F, 3, H, W]


class SnippetItem(TypedDict):
    """One video: snippets, their times, and the ground truth (times in seconds from the video start)."""

    video_id: str
    frames: torch.Tensor  # [T, F, 3, H, W] uint8 RGB, channels-last memory (see SampledClip)
    times_sec: torch.Tensor  # [T, F] float32, requested times
    duration_sec: float  # of the video file's video stream
    segments_sec: torch.Tensor  # [N, 2] float32, (start, end)
    labels: torch.Tensor  # [N] int64, indices into AnnotationSet.classes


class SnippetBatch(TypedDict):
    """Items stacked by :func:`collate_skipping_none`; segments stay per video (their counts differ)."""

    video_id: list[str]
    frames: torch.Tensor  # [B, T, F, 3, H, W] uint8, channels-last memory
    times_sec: torch.Tensor  # [B, T, F] float32
    duration_sec: torch.Tensor  # [B] float32
    segments_sec: list[torch.Tensor]  # B x [N_b, 2] float32
    labels: list[torch.Tensor]  # B x [N_b] int64


class VideoFileDataset(Dataset):
    """What the datasets that decode video files share: ``videos_dir`` and its id -> file map ``_files``
    (:func:`~lofi.data.video.find_video_files`), the ``epoch`` their augmentation is seeded with, and the
    ``skip_log`` that records the videos they skip (None: warnings only)."""

    videos_dir: Path
    _files: dict[str, Path]
    epoch: int
    skip_log: SkipLog | None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def video_path(self, video_id: str) -> Path:
        """The file of ``video_id``; raises :class:`VideoReadError` naming the id and directory if there is none."""
        return video_file(self._files, self.videos_dir, video_id)


class SnippetDataset(VideoFileDataset):
    """Snippets of every video in ``annotations``, read from files in ``videos_dir`` (matched by video id).

    Random crops are drawn from a generator seeded by ``(seed, epoch, index)``, so an item is the same whichever
    worker loads it; call :meth:`set_epoch` to draw new crops each epoch. ``skipped`` lists ``(video_id, reason)``
    for videos skipped in *this* process (DataLoader workers hold their own copies); ``skip_log`` records the
    skips of every process.
    """

    def __init__(self, *, annotations: AnnotationSet, videos_dir: str | os.PathLike, spec: SnippetSpec,
                 on_error: OnError = "raise", seed: int = 0, threads: int = 1,
                 skip_log: SkipLog | None = None) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.annotations = annotations
        self.videos_dir = Path(videos_dir)
        self.spec = spec
        self.on_error: OnError = on_error
        self.seed = seed
        self.threads = threads
        self.epoch = 0
        self.video_ids: list[str] = list(annotations.videos)
        self.skipped: list[tuple[str, str]] = []
        self.skip_log = skip_log
        self._files = find_video_files(self.videos_dir)
        self._label_to_index = annotations.label_to_index

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, index: int) -> SnippetItem | None:
        video_id = self.video_ids[index]
        try:
            clip = sample_snippets(self.video_path(video_id), self.spec, generator=self._generator(index),
                                   threads=self.threads)
        except VideoReadError as exc:
            skip_or_raise(exc, on_error=self.on_error, skipped=self.skipped, video_id=video_id,
                          what=f"video {video_id!r}", log=self.skip_log)
            return None
        segments_sec, labels = self._targets(self.annotations[video_id])
        return SnippetItem(video_id=video_id, frames=clip.frames,
                           times_sec=torch.from_numpy(clip.times_sec).float(),
                           duration_sec=clip.info.duration_sec, segments_sec=segments_sec, labels=labels)

    def _generator(self, index: int) -> torch.Generator | None:
        return item_generator(self.seed, self.epoch, index) if self.spec.crop == "random" else None

    def _targets(self, video: VideoAnnotation) -> tuple[torch.Tensor, torch.Tensor]:
        segments_sec = torch.tensor([[s.start_sec, s.end_sec] for s in video.segments],
                                    dtype=torch.float32).reshape(-1, 2)  # [N, 2]
        labels = torch.tensor([self._label_to_index[s.label] for s in video.segments], dtype=torch.int64)  # [N]
        return segments_sec, labels


def collate_skipping_none(batch: Sequence[SnippetItem | None]) -> SnippetBatch | None:
    """Drop skipped (None) items and stack the rest; None when nothing is left.

    All items must have the same frame size (set ``short_side_px``/``crop_px`` in the spec).
    """
    items = [item for item in batch if item is not None]
    if not items:
        return None
    shapes = {tuple(item["frames"].shape) for item in items}
    if len(shapes) > 1:
        raise ValueError(f"cannot batch snippets of different shapes {sorted(shapes)}; "
                         f"set SnippetSpec.short_side_px/crop_px so that all videos give one size")
    return SnippetBatch(video_id=[item["video_id"] for item in items],
                        frames=stack_frames([item["frames"] for item in items]),  # [B, T, F, 3, H, W]
                        times_sec=torch.stack([item["times_sec"] for item in items]),  # [B, T, F]
                        duration_sec=torch.tensor([item["duration_sec"] for item in items], dtype=torch.float32),
                        segments_sec=[item["segments_sec"] for item in items],
                        labels=[item["labels"] for item in items])
