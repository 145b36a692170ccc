"""Stage 2 data with sliding windows: one item is one window of ``L`` snippets of one video, at a chosen fidelity.

With ``data.windows`` a video is not rescaled to ``L`` snippets (as :mod:`lofi.data.windows` does): it has
``T = video_num_snippets(duration_sec, snippets_per_sec)`` snippets at the fixed rate, and windows of ``L``
(``window_snippets``, the full fidelity's snippet count) start every ``stride_snippets``
(:func:`~lofi.core.windows.window_starts`), placed as stage 3's feature windows are. Window ``[s, s + L)`` spans
``[s, s + L) / snippets_per_sec`` seconds. The video's ``duration_sec`` comes from the annotations: the windows
are known before anything is decoded (a video without it raises ``ValueError`` naming it).

* **Fidelity.** At a fidelity of ``L_f`` snippets and ``S_f`` px the same seconds are sampled by ``L_f`` evenly
  spaced snippets, each ``L / L_f`` rate-snippets long, of ``S_f`` px (:func:`~lofi.data.sampling.rate_times_sec`
  at ``snippets_per_sec * L_f / L``): T-LoFi sees the window at a lower temporal resolution, not a shorter stretch
  of video, so the window's ground truth is the same at every fidelity.
* **Ground truth.** :func:`~lofi.core.windows.clip_to_window` with ``min_inside_fraction``, as fractions of the
  window. Training keeps only the windows holding at least one kept instance (``keep_empty=False``), as OpenTAD's
  sliding-window training set does: a background-only window gives the head nothing to localize, and long videos
  have many of them.
* **Decoding.** Only the window's span is decoded (:func:`~lofi.data.sampling.sample_snippets_at`), never the
  whole video; a window starting past the end of the file's video stream is a bad video (skipped or raised).
* **Padding.** A snippet whose centre lies past the video's ``T`` snippets (a video shorter than one window) is
  zeros, as in stage 3's feature windows (the first snippet is always decoded). Frames are
  ``[L_f, F, 3, S_f, S_f]`` whatever the video's length, so :func:`~lofi.data.windows.collate_windows` batches
  them.
* **Cache.** With a :class:`~lofi.data.frame_cache.FrameCache` built at ``snippets_per_sec`` (each video's ``T``
  snippets at full size), a window reads only its snippets from the entry: at ``L_f`` those nearest each target
  centre (:func:`~lofi.data.frame_cache.snippet_indices`), then resized and cropped
  (:func:`~lofi.data.frame_cache.resample`). This equals direct decoding when ``L / L_f`` is odd, up to the frames
  of a multi-frame snippet at a window's edge (the cache clamps them into the video, direct decoding into the
  window).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Mapping, Sequence

import torch

from lofi.core.fidelity import Fidelity
from lofi.core.windows import WindowSpan, clip_to_window, video_num_snippets, window_starts
from lofi.data.annotations import AnnotationSet
from lofi.data.dataset import OnError
from lofi.data.frame_cache import FrameCache, resample, snippet_indices
from lofi.data.sampling import CropMode, SnippetSpec, rate_times_sec, sample_snippets_at
from lofi.data.skips import SkipLog
from lofi.data.video import VideoInfo, VideoReadError
from lofi.data.windows import FidelityVideoDataset, WindowItem, WindowKey


class SlidingWindowItem(WindowItem):
    """One window of a video at one fidelity; ``segments`` are fractions of the window, ``duration_sec`` is the
    window's length (``L / snippets_per_sec``, what the snippets span)."""

    window_start_sec: float
    window_end_sec: float  # start + L / snippets_per_sec (may pass the video's end)
    video_duration_sec: float  # of the whole video, from the annotations


@dataclass(frozen=True)
class VideoWindow:
    """Window ``span`` of video ``video_index``, which has ``num_video_snippets`` snippets at the fixed rate."""

    video_index: int
    span: WindowSpan
    num_video_snippets: int
    num_instances: int  # kept by clip_to_window


def decoded_snippets(*, window_snippets: int, num_snippets: int, inside_snippets: int) -> int:
    """How many of ``num_snippets`` (``L_f``) evenly spaced snippets of a window of ``window_snippets`` (``L``)
    have their centre in its first ``inside_snippets`` (the rest lie past the video's end): ``(i + 0.5) * L / L_f
    < inside``, at least 1."""
    i = torch.arange(num_snippets)
    return max(1, int(((2 * i + 1) * window_snippets < 2 * num_snippets * inside_snippets).sum()))


def pad_snippets(frames: torch.Tensor, num_snippets: int) -> torch.Tensor:
    """``[T', F, 3, S, S]`` -> ``[T, F, 3, S, S]`` (``T = num_snippets``) with zeros after the last, channels-last
    memory kept."""
    if frames.shape[0] == num_snippets:
        return frames
    out = frames.new_zeros((num_snippets, *frames.shape[1:2], *frames.shape[3:], 3))  # [T, F, S, S, 3]
    out[:frames.shape[0]] = frames.permute(0, 1, 3, 4, 2)
    return out.permute(0, 1, 4, 2, 3)  # [T, F, 3, S, S]


class SlidingVideoWindowDataset(FidelityVideoDataset):
    """The windows of ``window_snippets`` snippets at ``snippets_per_sec``, every ``stride_snippets``, over every
    video of ``annotations``, at any of ``fidelities`` (rules in the module docstring).

    ``dataset[(index, name)]`` -> :class:`SlidingWindowItem` or None (a skipped bad video); ``index`` counts
    windows (``windows[index]``). Keys, augmentation (crop and flip seeded by ``(seed, epoch, index)``),
    ``on_error``, ``skipped`` and ``skip_log`` as in :class:`~lofi.data.windows.VideoWindowDataset`. With
    ``keep_empty=False`` (training) windows without a kept instance are left out.
    """

    def __init__(self, *, annotations: AnnotationSet, videos_dir: str | os.PathLike, classes: Sequence[str],
                 fidelities: Mapping[str, Fidelity], window_snippets: int, stride_snippets: int,
                 snippets_per_sec: float, min_inside_fraction: float = 0.5, keep_empty: bool = False,
                 frames_per_snippet: int = 1, frame_stride: int = 1, cache: FrameCache | None = None,
                 augment: bool = False, on_error: OnError = "skip", seed: int = 0, threads: int = 1,
                 skip_log: SkipLog | None = None) -> None:
        if not snippets_per_sec > 0:
            raise ValueError(f"snippets_per_sec must be > 0, got {snippets_per_sec!r}")
        self.snippets_per_sec = float(snippets_per_sec)
        super().__init__(annotations=annotations, videos_dir=videos_dir, classes=classes, fidelities=fidelities,
                         frames_per_snippet=frames_per_snippet, frame_stride=frame_stride, cache=cache,
                         augment=augment, on_error=on_error, seed=seed, threads=threads, skip_log=skip_log)
        self.window_snippets, self.stride_snippets = window_snippets, stride_snippets
        self.min_inside_fraction, self.keep_empty = min_inside_fraction, keep_empty
        self.windows: list[VideoWindow] = []
        self.num_empty_windows = 0  # left out (keep_empty=False)
        for video_index, video_id in enumerate(self.video_ids):
            duration = self.annotations[video_id].duration_sec
            if duration is None or not duration > 0:
                raise ValueError(f"{annotations.source}: video {video_id!r}: sliding windows need its duration_sec "
                                 f"(> 0) in the annotations to place its windows")
            num_video = video_num_snippets(float(duration), self.snippets_per_sec)
            for start in window_starts(num_video, window_snippets=window_snippets, stride_snippets=stride_snippets):
                span = WindowSpan(start, window_snippets, 1.0 / self.snippets_per_sec)
                count = int(self._targets(video_id, span)[1].numel())
                if count == 0 and not keep_empty:
                    self.num_empty_windows += 1
                    continue
                self.windows.append(VideoWindow(video_index, span, num_video, count))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, key: int | WindowKey) -> SlidingWindowItem | None:
        index, name = self._parse_key(key)
        window, fidelity = self.windows[index], self.fidelities[name]
        video_id = self.video_ids[window.video_index]
        read_back = self._read_frames(index, video_id, partial(self._read, window=window, fidelity=fidelity))
        if read_back is None:
            return None
        frames, _ = read_back
        segments, labels = self._targets(video_id, window.span)
        return SlidingWindowItem(video_id=video_id, fidelity=name, frames=frames, segments=segments, labels=labels,
                                 duration_sec=window.span.end_sec - window.span.start_sec,
                                 window_start_sec=window.span.start_sec, window_end_sec=window.span.end_sec,
                                 video_duration_sec=float(self.annotations[video_id].duration_sec or 0.0))

    def _targets(self, video_id: str, span: WindowSpan) -> tuple[torch.Tensor, torch.Tensor]:
        """``([M, 2]`` fractions of the window, ``[M]`` labels``)`` by :func:`clip_to_window`."""
        segments = self.annotations[video_id].segments
        seg_snippets = torch.tensor([[s.start_sec, s.end_sec] for s in segments],
                                    dtype=torch.float64).reshape(-1, 2) * self.snippets_per_sec  # [N, 2] snippets
        labels = torch.tensor([self._label_to_index[s.label] for s in segments], dtype=torch.int64)  # [N]
        return clip_to_window(seg_snippets, labels, start_snippet=span.start_snippet,
                              window_snippets=span.num_snippets, min_inside_fraction=self.min_inside_fraction)

    def _read(self, path: Path, crop: CropMode, generator: torch.Generator | None, *, window: VideoWindow,
              fidelity: Fidelity) -> tuple[torch.Tensor, float]:
        """The window's frames ``[L_f, F, 3, S_f, S_f]`` (zeros past the video's end) and its length in seconds."""
        span = window.span
        inside = min(span.num_snippets, window.num_video_snippets - span.start_snippet)
        count = decoded_snippets(window_snippets=span.num_snippets, num_snippets=fidelity.num_snippets,
                                 inside_snippets=inside)
        if self.cache is not None:
            picked = snippet_indices(span.num_snippets, fidelity.num_snippets)[:count].clamp(max=inside - 1)  # [T']
            cached = self.cache.load(path, self.video_ids[window.video_index],
                                     duration_sec=self.annotations[self.video_ids[window.video_index]].duration_sec,
                                     picked=picked + span.start_snippet)  # [T', F, H, W, 3]
            frames = resample(cached.frames, num_snippets=count, frame_size_px=fidelity.frame_size_px, crop=crop,
                              generator=generator)  # [T', F, 3, S, S]: T' picked already, so no temporal pick
        else:
            spec = SnippetSpec(num_snippets=count, frames_per_snippet=self.frames_per_snippet,
                               frame_stride=self.frame_stride, short_side_px=fidelity.frame_size_px, crop=crop)
            rate = self.snippets_per_sec * fidelity.num_snippets / span.num_snippets  # the fidelity's snippets/s

            def times_sec(info: VideoInfo):  # [T', F]
                if span.start_sec >= info.duration_sec:
                    raise VideoReadError(path, f"window at {span.start_sec:.2f} s lies past the end of the video "
                                               f"stream ({info.duration_sec:.2f} s; the annotations say more)")
                return rate_times_sec(spec, info, snippets_per_sec=rate, start_sec=span.start_sec)

            frames = sample_snippets_at(path, spec, times_sec, generator=generator, threads=self.threads).frames
        return pad_snippets(frames, fidelity.num_snippets), span.end_sec - span.start_sec


__all__ = ["SlidingVideoWindowDataset", "SlidingWindowItem", "VideoWindow", "decoded_snippets", "pad_snippets"]
