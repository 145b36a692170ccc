"""ClipDataset (stage 1 action/background clips), background_gaps, sample_snippets_between."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from lofi.data.annotations import AnnotationSet, Segment, VideoAnnotation
from lofi.data.clips import ClipDataset, background_gaps, collate_clips
from lofi.data.sampling import SnippetSpec, sample_snippets, sample_snippets_between
from lofi.data.synthetic import SyntheticConfig, generate_dataset
from lofi.data.video import VideoReadError


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[AnnotationSet, Path]:
    root = tmp_path_factory.mktemp("synth")
    config = SyntheticConfig(num_videos=2, num_classes=2, seed=2, width_px=64, height_px=48, fps=10.0,
                             video_duration_sec=(7.0, 8.0), middle_sec=(1.0, 1.5), gap_sec=(1.0, 2.0))
    data = generate_dataset(root, config, workers=1, progress=False)
    (data.videos_dir / "video_bad.mp4").write_text("garbage\n" * 40)
    bad = VideoAnnotation("video_bad", "training", (Segment(1.0, 2.0, config.class_names[1]),), duration_sec=4.0)
    return AnnotationSet.from_videos([*data.annotations, bad], classes=config.class_names), data.videos_dir


def _dataset(synth, **kwargs) -> ClipDataset:
    annotations, videos_dir = synth
    kwargs = {"num_snippets": 4, "frames_per_snippet": 2, "frame_size_px": 32, **kwargs}
    return ClipDataset(annotations=annotations, videos_dir=videos_dir, classes=annotations.classes, **kwargs)


def test_background_gaps() -> None:
    video = VideoAnnotation("v", "training", (Segment(2.0, 4.0, "a"), Segment(3.0, 5.0, "b"), Segment(8.0, 12.0, "a")),
                            ignore_regions_sec=((6.0, 6.5),))
    assert background_gaps(video, 10.0) == [(0.0, 2.0), (5.0, 6.0), (6.5, 8.0)]
    assert background_gaps(VideoAnnotation("w", "training", ()), 3.0) == [(0.0, 3.0)]


def test_clip_list_and_background_outside_segments(synth) -> None:
    annotations, _ = synth
    dataset = _dataset(synth, background_per_video=2, min_background_sec=1.0)
    background = len(annotations.classes)
    for video in annotations:
        clips = [c for c in dataset.clips if c.video_id == video.video_id]
        actions = [c for c in clips if c.label != background]
        assert [(c.start_sec, c.end_sec) for c in actions] == [(s.start_sec, s.end_sec) for s in video.segments]
        backs = [c for c in clips if c.label == background]
        assert 1 <= len(backs) <= 2
        for c in backs:
            assert c.end_sec - c.start_sec >= 1.0 and 0 <= c.start_sec and c.end_sec <= video.duration_sec
            assert all(c.end_sec <= s.start_sec or c.start_sec >= s.end_sec for s in video.segments)
    # the frames of a background clip are displayed inside its range
    clip = next(c for c in dataset.clips if c.label == background and c.video_id == "video_0000")
    sampled = sample_snippets_between(dataset.video_path("video_0000"), dataset.spec, start_sec=clip.start_sec,
                                      end_sec=clip.end_sec)
    assert np.all(sampled.frame_times_sec >= clip.start_sec - 1e-6)
    assert np.all(sampled.frame_times_sec < clip.end_sec)
    assert len(_dataset(synth, background=False)) == sum(len(v.segments) for v in annotations)


def test_segment_margin(synth) -> None:
    annotations, _ = synth
    segment = annotations["video_0000"].segments[0]
    clip = _dataset(synth, background=False, segment_margin_frac=0.1).clips[0]
    length = segment.end_sec - segment.start_sec
    assert clip.start_sec == pytest.approx(segment.start_sec + 0.1 * length)
    assert clip.end_sec == pytest.approx(segment.end_sec - 0.1 * length)


@pytest.mark.parametrize("num_snippets,frames_per_snippet,size_px", [(4, 2, 32), (2, 1, 16)])
def test_item_shapes(synth, num_snippets: int, frames_per_snippet: int, size_px: int) -> None:
    dataset = _dataset(synth, num_snippets=num_snippets, frames_per_snippet=frames_per_snippet,
                       frame_size_px=size_px)
    items = [dataset[0], dataset[1]]
    for item, clip in zip(items, dataset.clips):
        assert item["frames"].shape == (num_snippets, frames_per_snippet, 3, size_px, size_px)
        assert item["frames"].dtype == torch.uint8
        assert item["label"].dtype == torch.int64 and item["label"].item() == clip.label
    batch = collate_clips(items + [None])
    assert batch["frames"].shape == (2, num_snippets, frames_per_snippet, 3, size_px, size_px)
    assert batch["labels"].tolist() == [dataset.clips[0].label, dataset.clips[1].label]


def test_corrupt_video_skipped(synth, caplog: pytest.LogCaptureFixture) -> None:
    dataset = _dataset(synth)
    bad = [i for i, c in enumerate(dataset.clips) if c.video_id == "video_bad"]
    # the action, and the longer of the two gaps of its 4 s annotation ([0, 1] and [2, 4]): one per video
    assert [(dataset.clips[i].start_sec, dataset.clips[i].end_sec) for i in bad] == [(1.0, 2.0), (2.0, 4.0)]
    with caplog.at_level(logging.WARNING, logger="lofi.data.clips"):
        assert dataset[bad[0]] is None
    assert dataset.skipped[0][0] == "video_bad" and "video_bad.mp4" in caplog.records[0].getMessage()
    with pytest.raises(VideoReadError, match="video_bad.mp4"):
        _dataset(synth, on_error="raise")[bad[0]]
    assert collate_clips([None]) is None


def test_augmentation_reproducible(synth) -> None:
    a, b = _dataset(synth, augment=True, seed=7), _dataset(synth, augment=True, seed=7)
    draws = []
    for epoch in range(4):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        x = a[1]["frames"]
        assert torch.equal(x, b[1]["frames"])
        draws.append(x)
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_sample_between_whole_video_equals_sample_snippets(synth) -> None:
    _, videos_dir = synth
    path = videos_dir / "video_0001.mp4"
    spec = SnippetSpec(num_snippets=3, frames_per_snippet=2, frame_stride=2, short_side_px=24)
    whole, between = sample_snippets(path, spec), sample_snippets_between(path, spec)
    assert torch.equal(whole.frames, between.frames)
    np.testing.assert_allclose(whole.times_sec, between.times_sec)
    part = sample_snippets_between(path, spec, start_sec=2.0, end_sec=4.0)
    # centres 2 + (i + 0.5) * 2 / 3, frames -/+ 0.1 s
    np.testing.assert_allclose(part.times_sec[:, 0] + 0.1, 2.0 + (np.arange(3) + 0.5) * 2 / 3)
    full = sample_snippets_between(path, spec, keep_full_frame=True)
    assert full.frames.shape == (3, 2, 3, 24, 32)  # resized 64x48 -> 32x24, not cropped
    with pytest.raises(ValueError, match="end_sec"):
        sample_snippets_between(path, spec, start_sec=3.0, end_sec=2.0)


def test_sub_clips_random_in_training_even_in_evaluation(synth) -> None:
    annotations, _ = synth
    train = _dataset(synth, clip_sec=0.5, clips_per_range=4, augment=True, seed=3, num_snippets=1)
    evaluation = _dataset(synth, clip_sec=0.5, clips_per_range=4, augment=False, num_snippets=1)
    assert len(train) == 4 * len(train.clips) == len(evaluation)
    rng = train.clips[0]
    even = [evaluation.sub_range(k, None) for k in range(4)]
    room = (rng.end_sec - rng.start_sec) - 0.5
    expected = [rng.start_sec + room * (k + 0.5) / 4 for k in range(4)]
    assert [a for a, _ in even] == pytest.approx(expected)
    assert [b for _, b in even] == pytest.approx([a + 0.5 for a in expected])
    drawn = [train[k] for k in range(4)]
    assert all(rng.start_sec - 1e-9 <= d["start_sec"] and d["end_sec"] <= rng.end_sec + 1e-9 for d in drawn)
    assert all(d["end_sec"] - d["start_sec"] == pytest.approx(0.5) for d in drawn)
    assert len({round(d["start_sec"], 6) for d in drawn}) == 4  # four different places in the same range
    again = _dataset(synth, clip_sec=0.5, clips_per_range=4, augment=True, seed=3, num_snippets=1)
    assert again[2]["start_sec"] == drawn[2]["start_sec"]  # the same item for the same (seed, epoch, index)
    again.set_epoch(1)
    assert again[2]["start_sec"] != drawn[2]["start_sec"]  # redrawn every epoch


def test_preloaded_frames_equal_decoding_per_clip(synth) -> None:
    decoded = _dataset(synth, clip_sec=1.0, clips_per_range=2, on_error="raise")
    preloaded = _dataset(synth, clip_sec=1.0, clips_per_range=2, on_error="raise", preload=True)
    good = [i for i in range(len(decoded)) if decoded.clips[i // 2].video_id != "video_bad"]
    for i in good[:6]:
        assert torch.equal(decoded[i]["frames"], preloaded[i]["frames"]), i
    assert preloaded[good[0]]["frames"].shape == (4, 2, 3, 32, 32)


def test_balanced_classes_get_about_the_same_number_of_clips(synth) -> None:
    dataset = _dataset(synth, clip_sec=0.5, clips_per_range=6, balance_classes=True, background_per_video=3,
                       num_snippets=1)
    counts: dict[int, int] = {}
    for range_index, _, _ in dataset.items:
        counts[dataset.clips[range_index].label] = counts.get(dataset.clips[range_index].label, 0) + 1
    assert len(counts) == 3 and max(counts.values()) - min(counts.values()) <= 0.35 * max(counts.values())
    plain = _dataset(synth, clip_sec=0.5, clips_per_range=6, background_per_video=3, num_snippets=1)
    assert abs(len(dataset) - len(plain)) <= 0.2 * len(plain)  # about the same epoch length
