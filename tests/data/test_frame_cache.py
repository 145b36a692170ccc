"""FrameCache: decode once, store atomically, rebuild stale entries; resample: the temporal and spatial rules."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from lofi.core.fidelity import Fidelity
from lofi.data import frame_cache as frame_cache_module
from lofi.data.annotations import AnnotationSet, Segment, VideoAnnotation
from lofi.data.frame_cache import FrameCache, resample, snippet_indices
from lofi.data.synthetic import SyntheticConfig, generate_dataset
from lofi.data.windows import VideoWindowDataset

FIDELITIES = {"full": Fidelity("full", 6, 32), "S": Fidelity("S", 6, 16), "T": Fidelity("T", 2, 32)}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[AnnotationSet, Path]:
    root = tmp_path_factory.mktemp("synth")
    config = SyntheticConfig(num_videos=2, num_classes=2, seed=1, width_px=64, height_px=48, fps=10.0,
                             video_duration_sec=(6.0, 7.0), middle_sec=(1.0, 1.5), gap_sec=(1.0, 2.0))
    data = generate_dataset(root, config, workers=1, progress=False)
    (data.videos_dir / "video_bad.mp4").write_bytes(b"\x00" * 1000)
    bad = VideoAnnotation("video_bad", "training", (Segment(1.0, 2.0, config.class_names[0]),))
    return AnnotationSet.from_videos([*data.annotations, bad], classes=config.class_names), data.videos_dir


def _cache(cache_dir: Path, num_snippets: int = 6) -> FrameCache:
    return FrameCache(cache_dir, num_snippets=num_snippets, frames_per_snippet=2, short_side_px=32)


def _dataset(synth, cache: FrameCache | None, **kwargs) -> VideoWindowDataset:
    annotations, videos_dir = synth
    return VideoWindowDataset(annotations=annotations, videos_dir=videos_dir, classes=annotations.classes,
                              fidelities=FIDELITIES, frames_per_snippet=2, cache=cache, **kwargs)


def test_snippet_indices_rule() -> None:
    assert snippet_indices(8, 8).tolist() == list(range(8))  # full fidelity: identity
    assert snippet_indices(9, 3).tolist() == [1, 4, 7]  # odd ratio: centres coincide
    assert snippet_indices(8, 2).tolist() == [2, 6]  # even ratio: centre on a boundary -> the later snippet
    assert snippet_indices(4, 3).tolist() == [0, 2, 3]  # centres 1/6, 1/2, 5/6 in spans [0,.25) [.5,.75) [.75,1)


def test_resample_resize_crop_flip() -> None:
    frames = torch.randint(0, 256, (4, 2, 24, 36, 3), dtype=torch.uint8)  # [T, F, H, W, 3]
    out = resample(frames, num_snippets=4, frame_size_px=24)  # no resize: a centre crop
    assert out.shape == (4, 2, 3, 24, 24) and out.dtype == torch.uint8
    assert torch.equal(out, frames[:, :, :, 6:30].permute(0, 1, 4, 2, 3))
    flipped = resample(frames, num_snippets=4, frame_size_px=24, flip=True)
    assert torch.equal(flipped, out.flip(-1))
    small = resample(frames, num_snippets=2, frame_size_px=12)  # resized to 18x12, cropped to 12x12
    assert small.shape == (2, 2, 3, 12, 12)
    flat = torch.full((1, 1, 24, 36, 3), 77, dtype=torch.uint8)
    assert torch.all(resample(flat, num_snippets=1, frame_size_px=8) == 77)  # resizing keeps flat colours
    crops = [resample(frames, num_snippets=4, frame_size_px=24, crop="random",
                      generator=torch.Generator().manual_seed(s)) for s in (0, 0, 1, 2, 3)]
    assert torch.equal(crops[0], crops[1]) and any(not torch.equal(crops[0], c) for c in crops[2:])


def test_cache_layout_and_sidecar(synth, tmp_path: Path) -> None:
    _, videos_dir = synth
    cache = _cache(tmp_path / "cache")
    frames = cache.frames(videos_dir / "video_0000.mp4", "video_0000")
    assert frames.shape == (6, 2, 32, 43, 3) and frames.dtype == torch.uint8  # 64x48 -> 43x32, not cropped
    frames_path, meta_path = cache.entry_paths("video_0000")
    meta = json.loads(meta_path.read_text())
    assert meta["num_snippets"] == 6 and meta["short_side_px"] == 32 and meta["shape"] == [6, 2, 32, 43, 3]
    assert meta["source_size_bytes"] == (videos_dir / "video_0000.mp4").stat().st_size
    assert sorted(p.name for p in frames_path.parent.iterdir()) == ["video_0000.json", "video_0000.npy"]


def test_cached_matches_direct_decoding(synth, tmp_path: Path) -> None:
    cached, direct = _dataset(synth, _cache(tmp_path / "cache")), _dataset(synth, None)
    for index in (0, 1):
        a, b = cached[(index, "full")], direct[(index, "full")]
        assert a["frames"].shape == b["frames"].shape == (6, 2, 3, 32, 32)
        assert (a["frames"].float() - b["frames"].float()).abs().mean() < 1.0  # same frames at full fidelity
        assert a["duration_sec"] == pytest.approx(b["duration_sec"])
        torch.testing.assert_close(a["segments"], b["segments"])
        # half size: torch antialiased resize of the cached frames vs swscale from the source
        a, b = cached[(index, "S")], direct[(index, "S")]
        assert a["frames"].shape == b["frames"].shape == (6, 2, 3, 16, 16)
        assert (a["frames"].float() - b["frames"].float()).abs().mean() < 6.0


def test_second_pass_does_not_decode(synth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _cache(tmp_path / "cache")
    dataset = _dataset(synth, cache)
    first = [dataset[(i, "T")] for i in range(3)]
    assert cache.num_decoded == 2 and cache.num_hits == 0 and first[2] is None  # video_bad skipped
    second = [dataset[(i, "S")] for i in range(3)] + [dataset[(i, "full")] for i in range(2)]
    assert cache.num_decoded == 2 and cache.num_hits == 4 and second[2] is None
    assert [vid for vid, _ in dataset.skipped] == ["video_bad", "video_bad"]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(frame_cache_module, "sample_snippets_between", no_decoding)
    fresh = _cache(tmp_path / "cache")  # a new process reads the files written by the first
    again = _dataset(synth, fresh)[(0, "T")]
    assert torch.equal(again["frames"], first[0]["frames"]) and fresh.num_hits == 1


def test_stale_entries_rebuilt(synth, tmp_path: Path) -> None:
    _, videos_dir = synth
    video = tmp_path / "v.mp4"
    shutil.copy(videos_dir / "video_0001.mp4", video)
    cache = _cache(tmp_path / "cache")
    cache.frames(video, "v")
    cache.frames(video, "v")
    assert cache.num_decoded == 1
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the source changed
    cache.frames(video, "v")
    assert cache.num_decoded == 2
    other = _cache(tmp_path / "cache", num_snippets=4)  # another spec in the same directory
    assert other.frames(video, "v").shape[0] == 4 and other.num_decoded == 1


def test_cache_must_cover_the_fidelities(synth, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_snippets >= 6 and short_side_px >= 32"):
        _dataset(synth, FrameCache(tmp_path, num_snippets=6, frames_per_snippet=2, short_side_px=16))
    with pytest.raises(ValueError, match="same frames_per_snippet"):
        _dataset(synth, FrameCache(tmp_path, num_snippets=6, frames_per_snippet=1, short_side_px=32))


def test_augmentation_same_from_cache(synth, tmp_path: Path) -> None:
    cached = _dataset(synth, _cache(tmp_path / "cache"), augment=True, seed=4)
    direct = _dataset(synth, None, augment=True, seed=4)
    for epoch in range(3):
        cached.set_epoch(epoch)
        direct.set_epoch(epoch)
        a, b = cached[(0, "full")]["frames"], direct[(0, "full")]["frames"]
        assert (a.float() - b.float()).abs().mean() < 1.0  # same crop box and flip drawn on both paths
