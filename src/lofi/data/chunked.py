"""The snippets of a long video decoded a chunk at a time, so that memory holds one chunk, not the whole video.

:func:`iter_snippet_chunks` yields the ``T = spec.num_snippets`` snippets that
:func:`~lofi.data.sampling.sample_snippets` would decode, in order, ``chunk_snippets`` at a time: chunk ``k``
holds snippets ``[k * C, (k + 1) * C)`` at exactly the times :func:`~lofi.data.sampling.snippet_times_sec` gives
them over the whole video, so concatenating the chunks gives the same frames as one whole-video decode (the crop is
centred: a random crop would be drawn once per chunk). Each chunk reopens the file (probed once) and seeks to its
first frame. ``times_sec`` places the snippets otherwise (the frame cache at a fixed rate:
:func:`~lofi.data.sampling.rate_times_sec`); ``keep_full_frame`` resizes without cropping, as
:func:`~lofi.data.sampling.sample_snippets_between` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from lofi.data.sampling import SampledClip, SnippetSpec, sample_snippets_at, snippet_times_sec
from lofi.data.video import VideoInfo, probe_video


@dataclass
class SnippetChunk:
    """Snippets ``[start_snippet, start_snippet + clip.frames.shape[0])`` of the video."""

    start_snippet: int
    clip: SampledClip  # frames [C, F, 3, S, S] uint8, channels-last memory


def iter_snippet_chunks(path: str | os.PathLike, spec: SnippetSpec, *, chunk_snippets: int,
                        times_sec: Callable[[VideoInfo], np.ndarray] | None = None, keep_full_frame: bool = False,
                        info: VideoInfo | None = None, threads: int = 1) -> Iterator[SnippetChunk]:
    """The snippets of ``spec`` over the whole video at ``path`` (or at ``times_sec(info)`` ``[T, F]``),
    ``chunk_snippets`` at a time (the last chunk may be shorter). Raises
    :class:`~lofi.data.video.VideoReadError` naming the file, as the samplers do."""
    if isinstance(chunk_snippets, bool) or not isinstance(chunk_snippets, int) or chunk_snippets < 1:
        raise ValueError(f"chunk_snippets must be an int >= 1, got {chunk_snippets!r}")
    if spec.crop != "center":
        raise ValueError("iter_snippet_chunks needs a centre crop (a random one would move between chunks)")
    video = probe_video(path) if info is None else info
    if times_sec is None:
        times = snippet_times_sec(video.duration_sec, video.fps, spec)  # [T, F], all the video's snippets
    else:
        times = times_sec(video)  # [T, F]
    for start in range(0, spec.num_snippets, chunk_snippets):
        chunk_times = times[start:start + chunk_snippets]  # [C, F]
        chunk_spec = SnippetSpec(num_snippets=len(chunk_times), frames_per_snippet=spec.frames_per_snippet,
                                 frame_stride=spec.frame_stride, short_side_px=spec.short_side_px,
                                 crop_px=spec.crop_px, crop="center")
        clip = sample_snippets_at(path, chunk_spec, lambda _info, t=chunk_times: t, info=video,
                                  keep_full_frame=keep_full_frame, threads=threads)
        yield SnippetChunk(start_snippet=start, clip=clip)


__all__ = ["SnippetChunk", "iter_snippet_chunks"]
