"""Snippet sampling: T snippets of F frames spread over a video, decoded by timestamps in one pass.

The time rules are pure functions (:func:`snippet_times_sec`, :func:`frame_indices_for_cfr`) so that they can be
cited, tested and reused without a video. :func:`sample_snippets` applies them to a file:

* **By timestamps.** The frame used for a requested time ``t`` is the frame *displayed* at ``t``: the last decoded
  frame whose presentation time is ``<= t`` (within :data:`PTS_EPSILON_SEC`). Times are seconds from the start of
  the video stream (``VideoInfo.start_sec`` is subtracted). This is correct for variable-frame-rate videos; for
  constant-frame-rate videos it selects frame ``floor(t * fps)``, as :func:`frame_indices_for_cfr` computes.
* **One pass.** All requested times are sorted and the video is decoded in one forward pass. Only frames that are
  actually used are converted (one swscale call does bilinear resize + YUV->RGB), so memory is the output buffer
  plus one pending decoded frame (and the decoder's own reference frames), also for hour-long videos. When the
  next requested time lies more than ``seek_gap_sec`` ahead, the demuxer seeks forward to the keyframe before it instead of decoding everything in between; the
  result is the same frames. Seeks are skipped across gaps shorter than the keyframe interval seen so far (a seek
  could not skip anything there); a seek that lands past the target goes back and decodes sequentially.
* **Errors.** Every failure raises :class:`~lofi.data.video.VideoReadError` naming the file. A file whose
  decoding stops (or fails) more than ``max(0.5 s, 3 frames)`` before the last requested time is reported as
  truncated or corrupt; requested times beyond the last frame but within that tolerance use the last frame.
* **Not handled.** Frames are used as stored: a non-square sample aspect ratio or rotation metadata is ignored.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Iterator, Literal

import av
import numpy as np
import torch
from av.video.reformatter import Interpolation, VideoReformatter

from lofi.data.video import VideoInfo, VideoReadError, open_video, probe_container

#: A frame whose presentation time is at most this much after a requested time still counts as displayed at it
#: (absorbs float and time-base rounding, e.g. 29.97 fps pts rounded to a 1/12800 s time base).
PTS_EPSILON_SEC: float = 1e-4

#: Decoding may stop this long (at least) before the last requested time before the file is called truncated.
TRUNCATION_TOLERANCE_SEC: float = 0.5

CropMode = Literal["center", "random"]


def _check_int(name: str, value: object, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = f"an int >= {minimum}" + (" or None" if optional else "")
        raise ValueError(f"SnippetSpec.{name} must be {kind}, got {value!r}")


@dataclass(frozen=True)
class SnippetSpec:
    """What to sample from each video.

    ``num_snippets`` (T) snippets spread uniformly over the video, each of ``frames_per_snippet`` (F) frames
    ``frame_stride`` (r) source frames apart (at the video's average fps). Frames are resized so that their short
    side is ``short_side_px`` (S; None keeps the decoded size), then a square of side ``crop_px`` is cut out, at
    the centre or at a random place (one box per video, the same for all its frames). ``crop_px`` defaults to
    ``short_side_px``; with both None frames are neither resized nor cropped.
    """

    num_snippets: int
    frames_per_snippet: int = 1
    frame_stride: int = 1
    short_side_px: int | None = None
    crop_px: int | None = None
    crop: CropMode = "center"

    def __post_init__(self) -> None:
        _check_int("num_snippets", self.num_snippets, minimum=1)
        _check_int("frames_per_snippet", self.frames_per_snippet, minimum=1)
        _check_int("frame_stride", self.frame_stride, minimum=1)
        _check_int("short_side_px", self.short_side_px, minimum=1, optional=True)
        _check_int("crop_px", self.crop_px, minimum=1, optional=True)
        if self.crop not in ("center", "random"):
            raise ValueError(f"SnippetSpec.crop must be 'center' or 'random', got {self.crop!r}")
        if self.crop_px is None and self.short_side_px is not None:
            object.__setattr__(self, "crop_px", self.short_side_px)
        if self.crop_px is not None and self.short_side_px is not None and self.crop_px > self.short_side_px:
            raise ValueError(f"SnippetSpec.crop_px ({self.crop_px}) must not exceed short_side_px "
                             f"({self.short_side_px}): the crop must fit inside the resized frame")
        if self.crop == "random" and self.crop_px is None:
            raise ValueError("SnippetSpec.crop='random' needs crop_px or short_side_px (there is nothing to crop)")


@dataclass
class SampledClip:
    """The snippets sampled from one video.

    ``frames`` is uint8 RGB of shape ``[T, F, 3, H, W]`` (snippet, frame in snippet, channel, row, column). It is
    a permuted view of a contiguous ``[T, F, H, W, 3]`` buffer, i.e. channels-last memory: call ``.contiguous()``
    for the standard layout. ``times_sec`` ``[T, F]`` are the requested times and ``frame_times_sec`` ``[T, F]``
    the presentation times of the frames used, both in seconds from the start of the video stream.
    ``crop_box`` is ``(x, y, width, height)`` in pixels of the resized frame. The ``num_*`` counters describe the
    decode pass (useful for benchmarks and for checking that only needed frames were converted).
    """

    frames: torch.Tensor  # [T, F, 3, H, W] uint8
    times_sec: np.ndarray  # [T, F] float64
    frame_times_sec: np.ndarray  # [T, F] float64
    info: VideoInfo
    crop_box: tuple[int, int, int, int]
    num_decoded_frames: int = 0
    num_converted_frames: int = 0
    num_seeks: int = 0


def snippet_times_sec(duration_sec: float, fps: float, spec: SnippetSpec) -> np.ndarray:
    """The requested time of every frame of every snippet, ``[T, F]`` seconds.

    Rules: snippet ``i`` (of ``T``) is centred at ``(i + 0.5) * duration_sec / T``; its frame ``j`` (of ``F``)
    is at ``centre + (j - (F - 1) / 2) * r / fps``, with ``r`` the frame stride; every time is then clamped into
    ``[0, duration_sec - 1 / fps]`` (the start of the last frame), so snippets near the ends repeat edge frames.
    """
    if not duration_sec > 0 or not math.isfinite(duration_sec):
        raise ValueError(f"duration_sec must be a positive number, got {duration_sec!r}")
    if not fps > 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    num_snippets, num_frames = spec.num_snippets, spec.frames_per_snippet
    centres = (np.arange(num_snippets) + 0.5) * (duration_sec / num_snippets)  # [T]
    offsets = (np.arange(num_frames) - (num_frames - 1) / 2) * (spec.frame_stride / fps)  # [F]
    times = centres[:, None] + offsets[None, :]  # [T, F]
    return np.clip(times, 0.0, max(0.0, duration_sec - 1.0 / fps))


def frame_indices_for_cfr(times_sec: np.ndarray, fps: float) -> np.ndarray:
    """The index of the frame displayed at each time in a constant-frame-rate video: ``floor(t * fps + 1e-6)``.

    Frame ``k`` is displayed during ``[k / fps, (k + 1) / fps)``; the ``1e-6`` (in frames) absorbs float error for
    times that sit exactly on a frame start. Same shape as ``times_sec``, dtype int64.
    """
    return np.floor(np.asarray(times_sec, dtype=np.float64) * fps + 1e-6).astype(np.int64)


def resized_size_px(width: int, height: int, short_side_px: int | None) -> tuple[int, int]:
    """``(width, height)`` after scaling the short side to ``short_side_px``, keeping the aspect ratio.

    The long side is rounded to the nearest pixel (halves up), e.g. 37x23 at 16 -> 26x16. None: unchanged.
    """
    if short_side_px is None:
        return width, height
    if width <= height:
        return short_side_px, max(short_side_px, math.floor(height * short_side_px / width + 0.5))
    return max(short_side_px, math.floor(width * short_side_px / height + 0.5)), short_side_px


def crop_box(width: int, height: int, spec: SnippetSpec, generator: torch.Generator | None,
              path: str | os.PathLike) -> tuple[int, int, int, int]:
    """One ``(x, y, w, h)`` crop inside a ``width`` x ``height`` frame."""
    side = spec.crop_px
    if side is None:
        return 0, 0, width, height
    if side > width or side > height:
        raise ValueError(f"{path}: crop_px={side} does not fit in the {width}x{height} frame; "
                         f"set short_side_px to resize first")
    if spec.crop == "center":
        return (width - side) // 2, (height - side) // 2, side, side
    x = int(torch.randint(0, width - side + 1, (1,), generator=generator))
    y = int(torch.randint(0, height - side + 1, (1,), generator=generator))
    return x, y, side, side


@dataclass
class DecodeStats:
    """Counters of one decode pass: frames decoded, seeks made."""

    decoded: int = 0
    seeks: int = 0


def _frame_time_sec(frame: av.VideoFrame, previous_sec: float, fps: float) -> float:
    """Presentation time of a decoded frame (stream clock); one frame after the previous one if it has none."""
    if frame.time is not None:
        return frame.time
    if frame.dts is not None and frame.time_base is not None:
        return float(frame.dts * frame.time_base)
    return previous_sec + 1.0 / fps if math.isfinite(previous_sec) else 0.0


def _seek(container: av.container.InputContainer, stream: av.video.stream.VideoStream, time_sec: float) -> bool:
    """Seek to the keyframe at or before ``time_sec`` (stream clock); False if the file cannot seek."""
    try:
        container.seek(int(math.floor(time_sec / stream.time_base)), stream=stream, backward=True, any_frame=False)
    except av.FFmpegError:
        return False
    return True


def _seek_back(container: av.container.InputContainer, info: VideoInfo, frame_sec: float, why: str) -> None:
    """Return to the frame at ``frame_sec`` after a seek went wrong, to go on sequentially from there."""
    if not _seek(container, container.streams.video[0], frame_sec + info.start_sec):
        raise VideoReadError(info.path, f"{why}, and seeking back failed; decode with seek_gap_sec=None")


@dataclass
class _DecodeState:
    """Where one forward pass of :func:`decode_at_times` stands."""

    targets: list[float]  # the requested times, sorted (Python floats: cheaper to compare per frame than numpy's)
    min_gap_sec: float  # seek only across gaps longer than this
    next_target: int = 0  # targets before this index are resolved
    pending: av.VideoFrame | None = None  # the last accepted frame: displayed at the next unresolved target so far
    pending_sec: float = -math.inf
    last_key_sec: float | None = None  # the last keyframe seen since the last seek
    just_seeked: bool = False  # no frame decoded since the last seek yet

    @property
    def done(self) -> bool:
        return self.next_target >= len(self.targets)


def decode_at_times(container: av.container.InputContainer, targets_sec: np.ndarray, *, info: VideoInfo,
                     seek_gap_sec: float | None, stats: DecodeStats
                     ) -> Iterator[tuple[av.VideoFrame, float, int, int]]:
    """Decode forward and yield ``(frame, frame_time_sec, lo, hi)``: ``frame`` is used for ``targets_sec[lo:hi]``.

    ``targets_sec`` must be sorted ascending (seconds from the video start). Each frame is yielded at most once,
    in presentation order; frames not used by any target are never yielded. Seeks as the module docstring says;
    a seek after which nothing decodes (e.g. into a truncated part) also goes back and decodes sequentially.
    Each decoded frame goes through the steps :func:`_note_keyframe`, :func:`_check_landing` (right after a
    seek), :func:`_targets_before` and :func:`_seek_ahead`.
    """
    stream = container.streams.video[0]
    state = _DecodeState(targets=targets_sec.tolist(), min_gap_sec=math.inf if seek_gap_sec is None else seek_gap_sec)
    error: av.FFmpegError | None = None
    while not state.done:
        restart = False  # a seek was made: decode again from the new position
        try:
            for frame in container.decode(stream):
                stats.decoded += 1
                frame_sec = _frame_time_sec(frame, state.pending_sec + info.start_sec, info.fps) - info.start_sec
                _note_keyframe(state, frame, frame_sec)
                if state.just_seeked and _check_landing(state, frame_sec, container, info):
                    restart = True
                    break
                if frame_sec <= state.pending_sec:  # already passed (after a seek) or out of order: nothing new
                    continue
                hi = _targets_before(state, frame_sec)
                if hi > state.next_target:  # these targets lie before this frame: the pending frame is displayed then
                    if state.pending is None:  # targets before the first frame use the first frame
                        yield frame, frame_sec, state.next_target, hi
                    else:
                        yield state.pending, state.pending_sec, state.next_target, hi
                    state.next_target = hi
                state.pending, state.pending_sec = frame, frame_sec
                if state.done:
                    break
                if _seek_ahead(state, frame_sec, container, info, stats):
                    restart = True
                    break
        except av.FFmpegError as exc:
            error = exc
        if not restart and state.just_seeked:  # nothing decoded after the seek: go back, decode sequentially
            state.just_seeked, error, state.min_gap_sec = False, None, math.inf
            _seek_back(container, info, state.pending_sec, "nothing could be decoded after a seek")
            restart = True
        if not restart:
            break  # end of stream, decoding error, or all targets resolved
    if not state.done:  # decoding ended early: the last frame serves the rest if it is close enough
        _check_reached(info, state.pending, state.pending_sec, state.targets[-1], error)
        assert state.pending is not None  # _check_reached raised otherwise
        yield state.pending, state.pending_sec, state.next_target, len(state.targets)


def _note_keyframe(state: _DecodeState, frame: av.VideoFrame, frame_sec: float) -> None:
    """Widen the smallest gap worth a seek to the keyframe interval seen (a seek can only skip frames when a
    keyframe lies in the gap)."""
    if frame.key_frame:
        if state.last_key_sec is not None:
            state.min_gap_sec = max(state.min_gap_sec, frame_sec - state.last_key_sec)
        state.last_key_sec = frame_sec


def _check_landing(state: _DecodeState, frame_sec: float, container: av.container.InputContainer,
                   info: VideoInfo) -> bool:
    """The first frame after a seek: True when it landed past the next target and the pass went back (decode
    again from there); a landing behind us only widens the smallest gap worth a seek."""
    state.just_seeked = False
    if frame_sec <= state.pending_sec:  # landed behind us: keyframes are at least this far apart
        state.min_gap_sec = max(state.min_gap_sec, state.targets[state.next_target] - frame_sec)
    elif frame_sec > state.targets[state.next_target] + PTS_EPSILON_SEC:  # landed too late: go back
        state.min_gap_sec = math.inf
        _seek_back(container, info, state.pending_sec, "a seek landed past the requested time")
        return True
    return False


def _targets_before(state: _DecodeState, frame_sec: float) -> int:
    """The end of the unresolved targets that lie before ``frame_sec`` (the pending frame is displayed at them)."""
    targets, hi = state.targets, state.next_target
    while hi < len(targets) and targets[hi] + PTS_EPSILON_SEC < frame_sec:
        hi += 1
    return hi


def _seek_ahead(state: _DecodeState, frame_sec: float, container: av.container.InputContainer, info: VideoInfo,
                stats: DecodeStats) -> bool:
    """Seek to the next target when it lies further ahead than the smallest gap worth a seek; True when it did
    (decode again from there). A file that cannot seek is decoded sequentially from then on."""
    target_sec = state.targets[state.next_target]
    if not target_sec - frame_sec > state.min_gap_sec:
        return False
    if _seek(container, container.streams.video[0], target_sec + info.start_sec):
        stats.seeks += 1
        state.just_seeked = True
        state.last_key_sec = None
        return True
    state.min_gap_sec = math.inf
    return False


def _check_reached(info: VideoInfo, last_frame: av.VideoFrame | None, last_frame_sec: float, last_target_sec: float,
                   error: av.FFmpegError | None) -> None:
    """Raise if decoding stopped (or failed) too far before the last requested time: truncated or corrupt file."""
    detail = f" ({error.__class__.__name__}: {error})" if error is not None else ""
    if last_frame is None:
        raise VideoReadError(info.path, f"no video frame could be decoded{detail}")
    if last_target_sec > last_frame_sec + max(TRUNCATION_TOLERANCE_SEC, 3.0 / info.fps):
        raise VideoReadError(info.path, f"decoding stopped at {last_frame_sec:.2f} s of {info.duration_sec:.2f} s "
                                        f"(truncated or corrupt file){detail}")


def configure_threads(stream: av.video.stream.VideoStream, threads: int) -> None:
    """Decoder threads for ``stream``: 1 (DataLoader workers), or N / 0 (FFmpeg chooses) frame threads."""
    if threads == 1:
        stream.codec_context.thread_count = 1
        return
    stream.thread_type = "AUTO"  # frame + slice threading
    stream.codec_context.thread_count = threads


def sample_snippets(path: str | os.PathLike, spec: SnippetSpec, *, generator: torch.Generator | None = None,
                    info: VideoInfo | None = None, seek_gap_sec: float | None = 1.0,
                    threads: int = 1) -> SampledClip:
    """Decode the snippets of ``spec`` from the video at ``path`` in one pass (see the module docstring).

    ``generator`` drives the random crop (the global torch RNG when None). ``info`` skips probing when the caller
    already has it. ``seek_gap_sec``: seek forward when the next needed frame is further ahead than this and than
    the keyframe interval seen so far (None: never seek; the frames are the same either way). ``threads``: decoder
    and scaler threads (1 suits DataLoader workers; 0 lets FFmpeg choose). Raises :class:`VideoReadError` naming
    the file for anything unreadable.
    """
    _check_decode_options(seek_gap_sec=seek_gap_sec, threads=threads)
    return _sample(path, spec, lambda video: snippet_times_sec(video.duration_sec, video.fps, spec), info=info,
                   generator=generator, keep_full_frame=False, seek_gap_sec=seek_gap_sec, threads=threads)


def range_times_sec(spec: SnippetSpec, *, start_sec: float, end_sec: float | None, duration_sec: float, fps: float,
                    path: str | os.PathLike) -> np.ndarray:
    """The requested times ``[T, F]`` of ``spec``'s snippets spread over ``[start_sec, end_sec)`` of a video of
    ``duration_sec`` (rules in :func:`sample_snippets_between`); ``VideoReadError`` naming ``path`` when the range
    lies outside the video."""
    stop_sec = duration_sec if end_sec is None else min(end_sec, duration_sec)
    if not stop_sec > start_sec:
        raise VideoReadError(path, f"time range [{start_sec:.3f}, {end_sec}] s lies outside the video "
                                   f"({duration_sec:.3f} s)")
    times = snippet_times_sec(stop_sec - start_sec, fps, spec) + start_sec  # [T, F]
    return np.clip(times, 0.0, max(0.0, duration_sec - 1.0 / fps))


def rate_times_sec(spec: SnippetSpec, info: VideoInfo, *, snippets_per_sec: float,
                   start_sec: float = 0.0) -> np.ndarray:
    """The requested times ``[T, F]`` of ``spec``'s snippets placed at a fixed rate from ``start_sec``, whatever the
    video's length: snippet ``i`` is centred at ``start_sec + (i + 0.5) / snippets_per_sec``, frame offsets as in
    :func:`snippet_times_sec` (clamped into the snippets' span), then every time is clamped into the video
    (``[0, duration_sec - 1 / fps]``). Within the video this is :func:`range_times_sec` over
    ``[start_sec, start_sec + T / snippets_per_sec)``."""
    span_sec = spec.num_snippets / snippets_per_sec
    times = snippet_times_sec(span_sec, info.fps, spec) + start_sec  # [T, F]
    return np.clip(times, 0.0, max(0.0, info.duration_sec - 1.0 / info.fps))


def sample_snippets_between(path: str | os.PathLike, spec: SnippetSpec, *, start_sec: float = 0.0,
                            end_sec: float | None = None, generator: torch.Generator | None = None,
                            keep_full_frame: bool = False, info: VideoInfo | None = None,
                            seek_gap_sec: float | None = 1.0, threads: int = 1) -> SampledClip:
    """Like :func:`sample_snippets`, but the ``T`` snippets spread over ``[start_sec, end_sec)`` only.

    Times follow :func:`snippet_times_sec` applied to the range: snippet ``i`` is centred at
    ``start_sec + (i + 0.5) * (end_sec - start_sec) / T``, frame offsets as there, and every time is clamped into
    ``[start_sec, end_sec - 1 / fps]`` (so frames come from inside the range) and then into the video
    (``[0, duration_sec - 1 / fps]``). ``end_sec`` None means the end of the video; ``start_sec=0, end_sec=None``
    gives exactly :func:`sample_snippets`. ``keep_full_frame=True`` resizes to ``spec.short_side_px`` but does not
    crop (``crop_px``/``crop`` are ignored, no random draw is made): frames are ``[T, F, 3, h, w]`` with the
    aspect ratio kept (used by the frame cache, which crops later). Frame selection, one-pass decoding, seeking
    and errors are those of :func:`sample_snippets`.
    """
    _check_decode_options(seek_gap_sec=seek_gap_sec, threads=threads)
    if not math.isfinite(start_sec) or start_sec < 0:
        raise ValueError(f"start_sec must be a finite number >= 0, got {start_sec!r}")
    if end_sec is not None and not (math.isfinite(end_sec) and end_sec > start_sec):
        raise ValueError(f"end_sec must be a finite number > start_sec ({start_sec}), got {end_sec!r}")

    def times_sec(video: VideoInfo) -> np.ndarray:
        return range_times_sec(spec, start_sec=start_sec, end_sec=end_sec, duration_sec=video.duration_sec,
                               fps=video.fps, path=path)  # [T, F]

    return _sample(path, spec, times_sec, info=info, generator=generator, keep_full_frame=keep_full_frame,
                   seek_gap_sec=seek_gap_sec, threads=threads)


def sample_snippets_at(path: str | os.PathLike, spec: SnippetSpec, times_sec: Callable[[VideoInfo], np.ndarray], *,
                       generator: torch.Generator | None = None, keep_full_frame: bool = False,
                       info: VideoInfo | None = None, seek_gap_sec: float | None = 1.0,
                       threads: int = 1) -> SampledClip:
    """Like :func:`sample_snippets_between`, but the caller places the frames: ``times_sec(info)`` gives the
    requested times ``[T, F]`` (``T = spec.num_snippets``, seconds from the video start, already inside the video)
    of the probed video. Used where snippets sit at a fixed rate whatever the file's own duration (a sliding window
    of stage 2, which may pass the video's end). Frame selection, decoding and errors as in
    :func:`sample_snippets`."""
    _check_decode_options(seek_gap_sec=seek_gap_sec, threads=threads)

    def checked(video: VideoInfo) -> np.ndarray:
        times = times_sec(video)
        if times.shape != (spec.num_snippets, spec.frames_per_snippet):
            raise ValueError(f"{path}: times_sec gave shape {times.shape}, expected "
                             f"{(spec.num_snippets, spec.frames_per_snippet)} (num_snippets, frames_per_snippet)")
        return times

    return _sample(path, spec, checked, info=info, generator=generator, keep_full_frame=keep_full_frame,
                   seek_gap_sec=seek_gap_sec, threads=threads)


def _check_decode_options(*, seek_gap_sec: float | None, threads: int) -> None:
    """The decoding options both samplers take, checked before the file is opened."""
    if seek_gap_sec is not None and not seek_gap_sec > 0:
        raise ValueError(f"seek_gap_sec must be positive or None, got {seek_gap_sec!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an int >= 0, got {threads!r}")


def _sample(path: str | os.PathLike, spec: SnippetSpec, times_sec: Callable[[VideoInfo], np.ndarray], *,
            info: VideoInfo | None, generator: torch.Generator | None, keep_full_frame: bool,
            seek_gap_sec: float | None, threads: int) -> SampledClip:
    """The one path of both samplers: open ``path``, probe it (unless ``info`` is given), decode the frames at
    ``times_sec(info)`` ``[T, F]`` and close it; decoding errors become :class:`VideoReadError` naming the file."""
    container = open_video(path)
    try:
        if info is None:
            info = probe_container(container, path)
        return _sample_times_open(container, path, spec, times_sec(info), info=info, generator=generator,
                                  keep_full_frame=keep_full_frame, seek_gap_sec=seek_gap_sec, threads=threads)
    except av.FFmpegError as exc:
        raise VideoReadError(path, f"decoding failed ({exc.__class__.__name__}: {exc})") from exc
    finally:
        container.close()


def _sample_times_open(container: av.container.InputContainer, path: str | os.PathLike, spec: SnippetSpec,
                       times: np.ndarray, *, info: VideoInfo, generator: torch.Generator | None,
                       keep_full_frame: bool, seek_gap_sec: float | None, threads: int) -> SampledClip:
    """Decode the frames displayed at ``times`` ``[T, F]``, resize and crop them (one pass, forward seeks)."""
    ((_, clip),) = decode_chunks_open(container, path, spec, times, chunk_snippets=times.shape[0], info=info,
                                      generator=generator, keep_full_frame=keep_full_frame,
                                      seek_gap_sec=seek_gap_sec, threads=threads)
    return clip


def decode_chunks_open(container: av.container.InputContainer, path: str | os.PathLike, spec: SnippetSpec,
                       times: np.ndarray, *, chunk_snippets: int, info: VideoInfo,
                       generator: torch.Generator | None, keep_full_frame: bool, seek_gap_sec: float | None,
                       threads: int) -> Iterator[tuple[int, SampledClip]]:
    """Decode the frames displayed at ``times`` ``[T, F]`` in one pass (forward seeks), resize and crop them, and
    yield ``(start_snippet, clip)`` for each chunk of ``chunk_snippets`` snippets once all its frames are converted
    (memory: the chunks being filled). One chunk of all ``T`` is what :func:`sample_snippets` returns."""
    stream = container.streams.video[0]
    configure_threads(stream, threads)
    resized_w, resized_h = resized_size_px(info.width, info.height, spec.short_side_px)
    if keep_full_frame:
        x, y, crop_w, crop_h = 0, 0, resized_w, resized_h
    else:
        x, y, crop_w, crop_h = crop_box(resized_w, resized_h, spec, generator, path)
    num_snippets, num_frames = times.shape
    per_chunk = chunk_snippets * num_frames  # slots (snippet frames) per full chunk
    flat_times = times.reshape(-1)  # [T*F]
    order = np.argsort(flat_times, kind="stable")
    num_chunks = -(-num_snippets // chunk_snippets)
    last_position = np.full(num_chunks, -1, dtype=np.int64)  # the last sorted target of each chunk
    np.maximum.at(last_position, order // per_chunk, np.arange(order.size))
    buffers: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # chunk -> ([C*F, H, W, 3], [C*F] frame times)
    counts = [0, 0, 0]  # decoded, converted, seeks at the last chunk handed out
    stats = DecodeStats()
    converted = 0
    next_chunk = 0
    reformatter = VideoReformatter()

    def buffer(chunk: int) -> tuple[np.ndarray, np.ndarray]:
        if chunk not in buffers:
            size = min(per_chunk, flat_times.size - chunk * per_chunk)
            buffers[chunk] = (np.empty((size, crop_h, crop_w, 3), dtype=np.uint8), np.empty(size, dtype=np.float64))
        return buffers[chunk]

    def finish(chunk: int) -> tuple[int, SampledClip]:
        out, frame_times = buffers.pop(chunk)
        start = chunk * chunk_snippets
        chunk_times = times[start:start + chunk_snippets]  # [C, F]
        frames = torch.from_numpy(out).view(len(chunk_times), num_frames, crop_h, crop_w, 3)  # [C, F, H, W, 3]
        clip = SampledClip(frames=frames.permute(0, 1, 4, 2, 3), times_sec=chunk_times,  # [C, F, 3, H, W]
                           frame_times_sec=frame_times.reshape(chunk_times.shape), info=info,
                           crop_box=(x, y, crop_w, crop_h), num_decoded_frames=stats.decoded - counts[0],
                           num_converted_frames=converted - counts[1], num_seeks=stats.seeks - counts[2])
        counts[:] = [stats.decoded, converted, stats.seeks]
        return start, clip

    for frame, frame_sec, lo, hi in decode_at_times(container, flat_times[order], info=info,
                                                     seek_gap_sec=seek_gap_sec, stats=stats):
        rgb = reformatter.reformat(frame, width=resized_w, height=resized_h, format="rgb24",
                                   interpolation=Interpolation.BILINEAR, threads=threads).to_ndarray()
        crop = rgb[y:y + crop_h, x:x + crop_w]
        slots = order[lo:hi]
        chunks = slots // per_chunk
        for chunk in range(int(chunks.min()), int(chunks.max()) + 1):
            mine = slots[chunks == chunk] - chunk * per_chunk
            if mine.size:
                out, frame_times = buffer(chunk)
                out[mine] = crop  # [H, W, 3] broadcast into each slot
                frame_times[mine] = frame_sec
        converted += 1
        while next_chunk < num_chunks and last_position[next_chunk] < hi:
            yield finish(next_chunk)
            next_chunk += 1
    assert next_chunk == num_chunks, "the decoding pass resolves every target or raises"
