"""Tiny real video files for the tests, written with PyAV (and two unreadable ones)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(path: Path, *, duration_sec: float = 2.0, fps: int = 10, size_px: int = 32) -> Path:
    """Write ``duration_sec`` of ``size_px``² frames at ``fps`` with libx264 (yuv420p); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width = stream.height = size_px
        stream.pix_fmt = "yuv420p"
        for i in range(round(duration_sec * fps)):
            image = np.full((size_px, size_px, 3), (i * 7) % 256, dtype=np.uint8)  # [H, W, 3]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_empty_video(path: Path) -> Path:
    """A zero-byte file with a video extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_text_as_video(path: Path) -> Path:
    """A text file with a video extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not a video\n")
    return path


def write_cut_video(path: Path, *, duration_sec: float = 21.0, fps: int = 10, size_px: int = 32,
                    keep_fraction: float = 0.5) -> Path:
    """A video whose header still says ``duration_sec`` but whose bytes stop at ``keep_fraction`` of the file.

    The MP4 is written with its index first (``movflags=faststart``), so the cut file still opens; its frames are
    noise, so the bytes grow evenly with time and the frames stop near ``keep_fraction * duration_sec``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width = stream.height = size_px
        stream.pix_fmt = "yuv420p"
        for _ in range(round(duration_sec * fps)):
            image = rng.integers(0, 256, (size_px, size_px, 3), dtype=np.uint8)  # [H, W, 3]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    data = path.read_bytes()
    path.write_bytes(data[:round(len(data) * keep_fraction)])
    return path


def write_audio_only(path: Path, *, duration_sec: float = 2.0) -> Path:
    """A Matroska file with one PCM audio stream and no video stream."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, round(8000 * duration_sec)), dtype=np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_mkv_with_longer_audio(path: Path, *, video_sec: float = 3.0, audio_sec: float = 5.0, fps: int = 10) -> Path:
    """A Matroska file (no per-stream duration) whose AAC audio track runs past its H.264 video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps))
        video.width = video.height = 32
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=48000)
        for i in range(round(video_sec * fps)):
            image = np.full((32, 32, 3), (i * 7) % 256, dtype=np.uint8)  # [H, W, 3]
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        for _ in range(round(audio_sec * 48000 / 1024)):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate = 48000
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    return path
