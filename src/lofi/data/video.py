"""Video files: finding them, reading their metadata, decoding them to the end, and errors that name the file.

Decoding by timestamps lives in :mod:`lofi.data.sampling`; this module opens, probes and (for ``lofi data check``)
scans a whole video stream without converting a frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

#: File extensions looked for when matching video ids to files (lower case, with the dot).
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")


class VideoReadError(RuntimeError):
    """A video could not be opened or decoded; ``path`` names the file and ``reason`` says why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of a video file's first video stream.

    ``duration_sec`` is the video stream's own duration (not the container's, which may include a longer audio
    track). ``num_frames`` is the container's frame count, or an estimate from duration × fps when the container
    does not store it (``num_frames_exact`` tells which). ``fps`` is the average frame rate.
    """

    path: str
    duration_sec: float
    fps: float
    num_frames: int
    num_frames_exact: bool
    width: int
    height: int
    codec: str
    start_sec: float = 0.0

    @property
    def short_side_px(self) -> int:
        return min(self.width, self.height)


def open_video(path: str | os.PathLike) -> av.container.InputContainer:
    """Open ``path`` with PyAV, turning every failure into a :class:`VideoReadError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise VideoReadError(path, "file not found")
    if path.is_dir():
        raise VideoReadError(path, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoReadError(path, f"not a readable video container ({exc.__class__.__name__}: {exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "has no video stream")
    return container


def _stream_duration_sec(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's metadata without decoding it.

    Raises :class:`VideoReadError` for missing, empty, non-video or unreadable files, and for files whose
    duration or frame rate cannot be determined.
    """
    container = open_video(path)
    try:
        return probe_container(container, path)
    finally:
        container.close()


def probe_container(container: av.container.InputContainer, path: str | os.PathLike) -> VideoInfo:
    """Read the metadata of an already opened container's first video stream (``path`` is for messages).

    Raises :class:`VideoReadError` like :func:`probe_video`; the container is left open.
    """
    if not container.streams.video:
        raise VideoReadError(path, "has no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or float(rate) <= 0:
        raise VideoReadError(path, "frame rate unknown")
    fps = float(Fraction(rate))
    duration_sec = _stream_duration_sec(container, stream)
    if duration_sec is None:
        raise VideoReadError(path, "duration unknown")
    start_sec = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    exact = bool(stream.frames and stream.frames > 0)
    num_frames = int(stream.frames) if exact else max(1, round(duration_sec * fps))
    width = stream.codec_context.width
    height = stream.codec_context.height
    if not width or not height:
        raise VideoReadError(path, "frame size unknown")
    return VideoInfo(path=str(path), duration_sec=duration_sec, fps=fps, num_frames=num_frames,
                     num_frames_exact=exact, width=width, height=height, codec=stream.codec_context.name,
                     start_sec=start_sec)


@dataclass(frozen=True)
class VideoScan:
    """What decoding a file's first video stream to the end found.

    ``frames_end_sec`` is where the frames stop: the last frame's presentation time from the stream start plus one
    frame (``1 / fps``), 0 when no frame decoded; compare it with ``info.duration_sec`` to find truncation.
    ``duration_from_stream`` is False when the video stream states no duration and ``info.duration_sec`` is the
    container's (Matroska and WebM files; it covers the longest stream). ``error`` is the demuxer's or decoder's
    complaint that ended decoding early, if any.
    """

    info: VideoInfo
    num_frames_decoded: int
    frames_end_sec: float
    duration_from_stream: bool = True
    error: str | None = None


def scan_video(path: str | os.PathLike, *, threads: int = 0) -> VideoScan:
    """Demux and decode every packet of the first video stream, converting no frame (no RGB, no resize) and
    skipping the deblocking filter (no pixel is looked at; the bitstream is still parsed in full).

    ``threads``: decoder threads (0 lets FFmpeg choose). Raises :class:`VideoReadError` like :func:`probe_video`;
    a decoding failure part-way is not raised but returned in ``error``, with the frames decoded until then.
    """
    container = open_video(path)
    try:
        info = probe_container(container, path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        stream.codec_context.options = {"skip_loop_filter": "all"}  # deblocking only smooths pixels: ~25% faster
        # read before close: PyAV >= 18.1.1 refuses every stream attribute once its container is closed
        from_stream = bool(stream.duration and stream.duration > 0)  # what _stream_duration_sec used
        count, last_sec, error = 0, info.start_sec - 1.0 / info.fps, None
        try:
            for packet in container.demux(stream):  # ends with an empty packet that flushes the decoder
                for frame in packet.decode():
                    count += 1
                    time_sec = frame.time if frame.time is not None else last_sec + 1.0 / info.fps  # no pts: next
                    last_sec = max(last_sec, time_sec)
        except av.FFmpegError as exc:
            error = f"{exc.__class__.__name__}: {exc}"
    finally:
        container.close()
    end_sec = last_sec - info.start_sec + 1.0 / info.fps if count else 0.0
    return VideoScan(info=info, num_frames_decoded=count, frames_end_sec=end_sec, duration_from_stream=from_stream,
                     error=error)


def find_video_files(videos_dir: str | os.PathLike) -> dict[str, Path]:
    """Map video ids to files in ``videos_dir`` (searched recursively).

    A file ``v_abc.mp4`` answers to both ``v_abc`` and ``abc`` (ActivityNet files carry a ``v_`` prefix that the
    JSON ids lack). When two files share a stem, the extension earlier in :data:`VIDEO_EXTENSIONS` wins.
    """
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise FileNotFoundError(f"{videos_dir}: videos directory not found")
    rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
    found: dict[str, Path] = {}
    for path in sorted(videos_dir.rglob("*")):
        ext = path.suffix.lower()
        if ext not in rank or not path.is_file():
            continue
        keys = [path.stem]
        if path.stem.startswith("v_") and len(path.stem) > 2:
            keys.append(path.stem[2:])
        for key in keys:
            if key not in found or rank[ext] < rank[found[key].suffix.lower()]:
                found[key] = path
    return found



def video_file(files: dict[str, Path], videos_dir: str | os.PathLike, video_id: str) -> Path:
    """``files[video_id]`` (a :func:`find_video_files` map); raises :class:`VideoReadError` naming the id and the
    directory when the video has no file."""
    path = files.get(video_id)
    if path is None:
        raise VideoReadError(Path(videos_dir) / video_id, f"no video file for id {video_id!r} in {videos_dir}")
    return path