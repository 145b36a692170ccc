"""Stage 2's sliding windows over video files (lofi.data.video_windows): placement, training windows, ground truth
clipped and the same at every fidelity, frames equal to decoding the window's seconds directly, padding of a short
video, bad videos skipped, and windows read from a frame cache at the fixed rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lofi.core.fidelity import Fidelity, FidelitySchedule
from lofi.core.windows import clip_to_window, video_num_snippets, window_starts
from lofi.data.annotations import AnnotationSet, Segment, VideoAnnotation
from lofi.data import frame_cache
from lofi.data.chunked import iter_snippet_chunks
from lofi.data.frame_cache import FrameCache
from lofi.data.sampling import SnippetSpec, sample_snippets_between
from lofi.data.video_windows import SlidingVideoWindowDataset, decoded_snippets
from lofi.data.windows import FidelityBatchSampler, VideoWindowDataset, collate_windows
from _videos import write_video

FULL = Fidelity("full", 8, 32)
LOW_T = Fidelity("low_t", 4, 32)  # the same seconds at half the snippets
LOW_S = Fidelity("low_s", 8, 16)
FIDELITIES = {"full": FULL, "low_t": LOW_T, "low_s": LOW_S}
RATE = 4.0  # snippets per second: a window of 8 is 2 s


def _annotations(videos: dict[str, tuple[float | None, list[tuple[float, float]]]]) -> AnnotationSet:
    return AnnotationSet.from_videos(
        [VideoAnnotation(video_id=vid, subset="training", duration_sec=duration,
                         segments=tuple(Segment(a, b, "wave") for a, b in segments))
         for vid, (duration, segments) in videos.items()], source="gt.json")


@pytest.fixture(scope="module")
def videos_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("videos")
    write_video(out / "long.mp4", duration_sec=6.0, fps=20, size_px=40)
    write_video(out / "short.mp4", duration_sec=1.0, fps=20, size_px=40)
    return out


def _dataset(videos_dir: Path, annotations: AnnotationSet, **kwargs) -> SlidingVideoWindowDataset:
    options = dict(window_snippets=8, stride_snippets=4, snippets_per_sec=RATE, on_error="raise")
    options.update(kwargs)
    return SlidingVideoWindowDataset(annotations=annotations, videos_dir=videos_dir, classes=annotations.classes,
                                     fidelities=FIDELITIES, **options)


def test_windows_are_placed_like_stage_3s_and_training_keeps_those_with_instances(videos_dir):
    annotations = _annotations({"long": (6.0, [(0.25, 1.0), (4.4, 5.4)])})  # 24 snippets: starts 0, 4, ..., 16
    all_windows = _dataset(videos_dir, annotations, keep_empty=True)
    assert [w.span.start_snippet for w in all_windows.windows] == window_starts(24, window_snippets=8,
                                                                                stride_snippets=4)
    assert len(all_windows) == 5
    training = _dataset(videos_dir, annotations)
    # [4, 12) and [8, 16) hold nothing: the first instance (snippets 1..4) has no length inside
    assert [w.span.start_snippet for w in training.windows] == [0, 12, 16]
    assert training.num_empty_windows == 2
    item = training[(1, "full")]
    assert item is not None and (item["window_start_sec"], item["window_end_sec"]) == (3.0, 5.0)
    expected, _ = clip_to_window(torch.tensor([[0.25, 1.0], [4.4, 5.4]]) * RATE, torch.tensor([0, 0]),
                                 start_snippet=12, window_snippets=8, min_inside_fraction=0.5)
    assert torch.allclose(item["segments"], expected)  # snippets [17.6, 21.6): 0.6 inside [12, 20), clipped
    assert torch.allclose(item["segments"], torch.tensor([[5.6 / 8, 1.0]]))
    strict = _dataset(videos_dir, annotations, min_inside_fraction=0.7)  # 0.6 inside is not enough any more
    assert [w.span.start_snippet for w in strict.windows] == [0, 16]
    assert item["duration_sec"] == 2.0 and item["video_duration_sec"] == 6.0


def test_ground_truth_is_the_same_at_every_fidelity_and_frames_keep_one_shape(videos_dir):
    annotations = _annotations({"long": (6.0, [(1.5, 2.5), (4.0, 5.5)])})
    dataset = _dataset(videos_dir, annotations, augment=True)
    for index in range(len(dataset)):
        items = {name: dataset[(index, name)] for name in FIDELITIES}
        for name, item in items.items():
            assert item is not None
            fidelity = FIDELITIES[name]
            assert tuple(item["frames"].shape) == (fidelity.num_snippets, 1, 3, fidelity.frame_size_px,
                                                   fidelity.frame_size_px)
            assert torch.equal(item["segments"], items["full"]["segments"])
            assert torch.equal(item["labels"], items["full"]["labels"])
    batch = collate_windows([dataset[(0, "low_t")], dataset[(1, "low_t")]])
    assert batch is not None and tuple(batch["frames"].shape) == (2, 4, 1, 3, 32, 32)


def test_a_window_decodes_the_same_frames_as_its_seconds_decoded_directly(videos_dir):
    annotations = _annotations({"long": (6.0, [(0.5, 5.5)])})
    dataset = _dataset(videos_dir, annotations, keep_empty=True)
    for index in (1, 4):  # [4, 12) and the last, [16, 24)
        span = dataset.windows[index].span
        for fidelity in (FULL, LOW_T):
            item = dataset[(index, fidelity.name)]
            spec = SnippetSpec(num_snippets=fidelity.num_snippets, short_side_px=fidelity.frame_size_px)
            direct = sample_snippets_between(videos_dir / "long.mp4", spec, start_sec=span.start_sec,
                                             end_sec=span.end_sec)
            assert item is not None and torch.equal(item["frames"], direct.frames)


def test_a_video_shorter_than_a_window_is_zero_padded(videos_dir):
    annotations = _annotations({"short": (1.0, [(0.2, 0.8)])})  # 4 snippets of a window of 8
    dataset = _dataset(videos_dir, annotations)
    assert len(dataset) == 1
    item = dataset[(0, "full")]
    assert item is not None and tuple(item["frames"].shape) == (8, 1, 3, 32, 32)
    assert bool((item["frames"][4:] == 0).all()) and bool((item["frames"][:4].float().mean((1, 2, 3, 4)) > 0).all())
    direct = sample_snippets_between(videos_dir / "short.mp4", SnippetSpec(num_snippets=4, short_side_px=32))
    assert torch.equal(item["frames"][:4], direct.frames)
    low = dataset[(0, "low_t")]  # centres at 1, 3 (inside the 4 snippets), 5, 7 (past the end)
    assert low is not None and bool((low["frames"][2:] == 0).all()) and bool((low["frames"][:2] > 0).any())
    assert torch.allclose(item["segments"], torch.tensor([[0.1, 0.4]]))  # fractions of the 2 s window
    assert decoded_snippets(window_snippets=256, num_snippets=16, inside_snippets=1) == 1  # always one decoded


def test_a_bad_video_is_skipped_with_the_reason_and_a_missing_duration_raises(videos_dir, tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "broken.mp4").write_text("not a video")
    annotations = _annotations({"broken": (3.0, [(0.5, 1.5)])})
    dataset = _dataset(tmp_path / "videos", annotations, on_error="skip")
    item = dataset[(0, "full")]
    assert item is None and collate_windows([item]) is None
    assert [vid for vid, _ in dataset.skipped] == ["broken"] and "broken.mp4" in dataset.skipped[0][1]
    with pytest.raises(ValueError, match="'nodur'.*duration_sec"):
        _dataset(videos_dir, _annotations({"nodur": (None, [(0.5, 1.5)])}))


def test_windows_from_a_frame_cache_at_the_rate_equal_direct_decoding_at_full_fidelity(videos_dir, tmp_path,
                                                                                        monkeypatch):
    annotations = _annotations({"long": (6.0, [(0.5, 5.5)]), "short": (1.0, [(0.2, 0.8)])})
    sizes: list[int] = []

    def spy(*args, **kwargs):
        for chunk in iter_snippet_chunks(*args, **kwargs):
            sizes.append(chunk.clip.frames.shape[0])
            yield chunk

    monkeypatch.setattr(frame_cache, "RATE_CHUNK_SNIPPETS", 5)  # the entry of 24 snippets is built 5 at a time
    monkeypatch.setattr(frame_cache, "iter_snippet_chunks", spy)
    cache = FrameCache(tmp_path / "cache", num_snippets=8, frames_per_snippet=1, short_side_px=32,
                       snippets_per_sec=RATE)
    cached = _dataset(videos_dir, annotations, cache=cache, keep_empty=True)
    direct = _dataset(videos_dir, annotations, keep_empty=True)
    for index in range(len(direct)):
        for name in ("full", "low_s"):  # L / L_f = 1: the same snippets; the same resize at 32 px
            a, b = cached[(index, name)], direct[(index, name)]
            assert a is not None and b is not None
            if name == "full":
                assert torch.equal(a["frames"], b["frames"])
            else:
                assert (a["frames"].float() - b["frames"].float()).abs().mean() < 3  # antialiased vs swscale
    assert cache.num_decoded == 2 and sizes == [5, 5, 5, 5, 4, 4]  # long: 24 snippets; short: 4
    meta = json.loads(cache.entry_paths("long")[1].read_text())
    assert meta["snippets_per_sec"] == RATE and meta["num_snippets"] == video_num_snippets(6.0, RATE)
    other = FrameCache(tmp_path / "cache", num_snippets=8, frames_per_snippet=1, short_side_px=32,
                       snippets_per_sec=2.0)  # another rate: the entry is not reused
    assert other.load(videos_dir / "long.mp4", "long", duration_sec=6.0).frames.shape[0] == 12
    assert other.num_decoded == 1
    whole = FrameCache(tmp_path / "cache", num_snippets=24, frames_per_snippet=1, short_side_px=32)
    assert whole.load(videos_dir / "long.mp4", "long").frames.shape[0] == 24 and whole.num_decoded == 1  # not reused
    with pytest.raises(ValueError, match="2 per second.*wants snippets at 4 per second"):
        _dataset(videos_dir, annotations, cache=other)
    with pytest.raises(ValueError, match="whole videos rescaled"):  # a rate cache does not serve whole videos
        VideoWindowDataset(annotations=annotations, videos_dir=videos_dir, classes=annotations.classes,
                           fidelities=FIDELITIES, cache=cache)


def test_fidelity_batches_of_windows_collate_at_each_batch_fidelity(videos_dir):
    annotations = _annotations({"long": (6.0, [(0.5, 5.5)]), "short": (1.0, [(0.2, 0.8)])})
    schedule = FidelitySchedule(mode="C-short", full=FULL, cycle_steps=1)
    dataset = SlidingVideoWindowDataset(annotations=annotations, videos_dir=videos_dir, classes=annotations.classes,
                                        fidelities=schedule.fidelities, window_snippets=8, stride_snippets=4,
                                        snippets_per_sec=RATE, augment=True, keep_empty=True)
    sampler = FidelityBatchSampler(num_items=len(dataset), batch_size=2, schedule=schedule)
    names = set()
    for keys in sampler:
        batch = collate_windows([dataset[key] for key in keys])
        fidelity = schedule.fidelities[keys[0][1]]
        names.add(fidelity.name)
        assert batch is not None and tuple(batch["frames"].shape[1:]) == (fidelity.num_snippets, 1, 3,
                                                                          fidelity.frame_size_px,
                                                                          fidelity.frame_size_px)
    assert len(names) > 1
