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
