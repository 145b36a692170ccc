"""VideoWindowDataset (whole videos as windows at several fidelities), collate_windows, FidelityBatchSampler."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from lofi.data.annotations import AnnotationSet, Segment, VideoAnnotation
from lofi.data.synthetic import SyntheticConfig, generate_dataset
from lofi.data.video import VideoReadError, probe_video
from lofi.data.windows import (FidelityBatchSampler, VideoWindowDataset, collate_windows, segment_fractions)
from lofi.core.fidelity import CYCLE, Fidelity, FidelitySchedule
from lofi.core.targets import SegmentTargets

FIDELITIES = {"full": Fidelity("full", 8, 32), "S": Fidelity("S", 8, 16), "T": Fidelity("T", 2, 32)}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[AnnotationSet, Path]:
    """3 tiny synthetic videos (64x48, 10 fps, 6-8 s) plus an annotated corrupt file, ``video_bad``."""
    root = tmp_path_factory.mktemp("synth")
    config = SyntheticConfig(num_videos=3, num_classes=2, seed=0, width_px=64, height_px=48, fps=10.0,
                             video_duration_sec=(6.0, 8.0), middle_sec=(1.0, 1.5), gap_sec=(1.0, 2.0))
    data = generate_dataset(root, config, workers=1, progress=False)
    (data.videos_dir / "video_bad.mp4").write_text("not a video\n" * 50)
    bad = VideoAnnotation("video_bad", "training", (Segment(1.0, 2.0, config.class_names[0]),), duration_sec=5.0)
    annotations = AnnotationSet.from_videos([*data.annotations, bad], classes=config.class_names)
    return annotations, data.videos_dir


def _dataset(synth, **kwargs) -> VideoWindowDataset:
    annotations, videos_dir = synth
    kwargs.setdefault("fidelities", FIDELITIES)
    return VideoWindowDataset(annotations=annotations, videos_dir=videos_dir, classes=annotations.classes,
                              frames_per_snippet=2, **kwargs)


def test_items_at_two_fidelities(synth) -> None:
    dataset = _dataset(synth)
    assert len(dataset) == 4
    for name, shape in (("full", (8, 2, 3, 32, 32)), ("S", (8, 2, 3, 16, 16)), ("T", (2, 2, 3, 32, 32))):
        item = dataset[(1, name)]
        assert item is not None and item["video_id"] == "video_0001" and item["fidelity"] == name
        assert item["frames"].shape == shape and item["frames"].dtype == torch.uint8
        assert item["segments"].dtype == torch.float32 and item["segments"].shape == (1, 2)
        assert item["labels"].dtype == torch.int64 and item["labels"].shape == (1,)


def test_segment_fractions_hand_checked(synth) -> None:
    annotations, videos_dir = synth
    # video_0000: 73 frames at 10 fps, one 'circle_ccw' action from 1.3 s to 3.5 s
    assert annotations["video_0000"].segments == (Segment(1.3, 3.5, "circle_ccw"),)
    assert probe_video(videos_dir / "video_0000.mp4").duration_sec == pytest.approx(7.3)
    item = _dataset(synth)[(0, "T")]
    assert item["duration_sec"] == pytest.approx(7.3)
    torch.testing.assert_close(item["segments"], torch.tensor([[1.3 / 7.3, 3.5 / 7.3]]))
    assert item["labels"].tolist() == [annotations.classes.index("circle_ccw")]
    # clipping to [0, 1]; a segment wholly past the end is dropped
    segments = [Segment(-1.0, 2.0, "a"), Segment(6.0, 9.0, "b"), Segment(9.0, 10.0, "a")]
    fractions, labels = segment_fractions(segments, 8.0, {"a": 0, "b": 1})
    torch.testing.assert_close(fractions, torch.tensor([[0.0, 0.25], [0.75, 1.0]]))
    assert labels.tolist() == [0, 1]


def test_keys(synth) -> None:
    single = _dataset(synth, fidelities={"T": FIDELITIES["T"]})
    assert single[0]["frames"].shape == (2, 2, 3, 32, 32)
    with pytest.raises(KeyError, match="index with"):
        _dataset(synth)[0]
    with pytest.raises(KeyError, match="unknown fidelity 'ST'"):
        _dataset(synth)[(0, "ST")]


def test_unknown_label_fails_early(synth) -> None:
    annotations, videos_dir = synth
    with pytest.raises(ValueError, match="video 'video_0000': label 'circle_ccw' is not in classes"):
        VideoWindowDataset(annotations=annotations, videos_dir=videos_dir, classes=["other"], fidelities=FIDELITIES)


def test_corrupt_video_skipped_and_reported(synth, caplog: pytest.LogCaptureFixture) -> None:
    dataset = _dataset(synth)
    with caplog.at_level(logging.WARNING, logger="lofi.data.windows"):
        assert dataset[(3, "T")] is None
    assert [vid for vid, _ in dataset.skipped] == ["video_bad"]
    assert "video_bad.mp4" in dataset.skipped[0][1] and "video_bad.mp4" in caplog.records[0].getMessage()
    with pytest.raises(VideoReadError, match="video_bad.mp4"):
        _dataset(synth, on_error="raise")[(3, "T")]
    assert collate_windows([None, None]) is None


def test_collate_drops_none_and_stacks(synth) -> None:
    dataset = _dataset(synth)
    batch = collate_windows([dataset[(0, "T")], dataset[(3, "T")], dataset[(2, "T")]])
    assert batch is not None and batch["video_ids"] == ["video_0000", "video_0002"]
    assert batch["frames"].shape == (2, 2, 2, 3, 32, 32) and batch["frames"].dtype == torch.uint8
    assert isinstance(batch["targets"], SegmentTargets) and len(batch["targets"]) == 2
    torch.testing.assert_close(batch["durations_sec"], torch.tensor([7.3, 6.2]))
    assert batch["fidelity"] == "T"
    with pytest.raises(ValueError, match="one fidelity per batch"):
        collate_windows([dataset[(0, "T")], dataset[(0, "S")]])


def test_augmentation_reproducible_by_seed_epoch_index(synth) -> None:
    first, second = _dataset(synth, augment=True, seed=3), _dataset(synth, augment=True, seed=3)
    plain = _dataset(synth)[(0, "T")]["frames"]
    draws = []
    for epoch in range(4):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        a, b = first[(0, "T")]["frames"], second[(0, "T")]["frames"]
        assert torch.equal(a, b)  # same (seed, epoch, index): same crop and flip, whichever instance loads it
        draws.append(a)
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # new draws in other epochs
    assert any(not torch.equal(plain, d) for d in draws)


# --- the sampler -------------------------------------------------------------------------------------------------

def _schedule(cycle_steps: int = 2) -> FidelitySchedule:
    return FidelitySchedule(mode="C-short", full=Fidelity("full", 8, 32), cycle_steps=cycle_steps)


def test_sampler_batch_sizes_and_fidelities() -> None:
    sampler = FidelityBatchSampler(num_items=10, batch_size=3, schedule=_schedule(), seed=1)
    batches = list(sampler)
    assert len(sampler) == 4 and [len(b) for b in batches] == [3, 3, 3, 1]
    assert sorted(i for b in batches for i, _ in b) == list(range(10))
    names = [{name for _, name in b} for b in batches]
    assert all(len(n) == 1 for n in names)  # one fidelity per batch
    assert [n.pop() for n in names] == ["S", "S", "T", "T"]  # step = batch, cycle every 2 steps
    sampler.set_epoch(1)  # steps 4..7
    assert [b[0][1] for b in sampler] == ["ST", "ST", "S", "S"]
    assert [len(b) for b in FidelityBatchSampler(num_items=10, batch_size=3, schedule=_schedule(),
                                                 drop_last=True)] == [3, 3, 3]
    accumulated = FidelityBatchSampler(num_items=24, batch_size=2, schedule=_schedule(), grad_accum_steps=2)
    assert [b[0][1] for b in accumulated] == [CYCLE[(b // 4) % 3] for b in range(12)]  # step = batch // 2


def test_sampler_shards_across_ranks() -> None:
    for num_items in (10, 11):
        ranks = [FidelityBatchSampler(num_items=num_items, batch_size=2, schedule=_schedule(), seed=5,
                                      num_replicas=2, rank=r) for r in range(2)]
        for epoch in (0, 1):
            per_rank = []
            for sampler in ranks:
                sampler.set_epoch(epoch)
                per_rank.append(list(sampler))
            assert len(per_rank[0]) == len(per_rank[1]) == len(ranks[0]) == 3
            indices = [i for batches in per_rank for b in batches for i, _ in b]
            if num_items == 10:
                assert sorted(indices) == list(range(10))  # every index exactly once per epoch
            else:
                assert set(indices) == set(range(11)) and len(indices) == 12  # padded by one repeat
            assert [b[0][1] for b in per_rank[0]] == [b[0][1] for b in per_rank[1]]


def test_sampler_start_batch_resumes_exactly() -> None:
    sampler = FidelityBatchSampler(num_items=13, batch_size=2, schedule=_schedule(cycle_steps=1), seed=2)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start_batch=4)
    assert list(sampler) == full[4:]
    sampler.set_epoch(4)
    assert len(list(sampler)) == len(sampler) == 7
    with pytest.raises(ValueError, match="start_batch"):
        sampler.set_epoch(4, start_batch=8)


def test_dataloader_with_sampler(synth) -> None:
    annotations, videos_dir = synth
    schedule = FidelitySchedule(mode="C-short", full=Fidelity("full", 4, 32), cycle_steps=1)
    dataset = VideoWindowDataset(annotations=annotations, videos_dir=videos_dir, classes=annotations.classes,
                                 fidelities=schedule.fidelities)
    sampler = FidelityBatchSampler(num_items=len(dataset), batch_size=2, schedule=schedule, shuffle=False)
    batches = list(DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_windows))
    assert [(b["fidelity"], tuple(b["frames"].shape)) for b in batches] == [
        ("S", (2, 4, 1, 3, 16, 16)), ("T", (1, 1, 1, 3, 32, 32))]  # video_bad dropped from the second batch
