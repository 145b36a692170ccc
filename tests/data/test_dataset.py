"""SnippetDataset: items with ground truth, skipping or raising on bad videos, and batching."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lofi.data.annotations import AnnotationSet, Segment, VideoAnnotation
from lofi.data.dataset import SnippetDataset, collate_skipping_none
from lofi.data.sampling import SnippetSpec
from lofi.data.video import VideoReadError

SPEC = SnippetSpec(num_snippets=4, frames_per_snippet=2, short_side_px=16)


def _annotations(*video_ids: str) -> AnnotationSet:
    videos = [VideoAnnotation(video_id=vid, subset="training",
                              segments=(Segment(0.5, 1.5, "jump"), Segment(1.0, 1.8, "clap")))
              for vid in video_ids]
    return AnnotationSet.from_videos(videos)


@pytest.fixture
def videos_dir(write_clip, tmp_path: Path) -> Path:
    write_clip("videos/v_good.mp4", num_frames=50)
    write_clip("videos/other.mp4", num_frames=40, width=40, height=30)
    (tmp_path / "videos" / "corrupt.mp4").write_text("not a video\n" * 100)
    return tmp_path / "videos"


def test_item_has_frames_and_targets(videos_dir: Path) -> None:
    dataset = SnippetDataset(annotations=_annotations("good"), videos_dir=videos_dir, spec=SPEC)
    item = dataset[0]
    assert item is not None and item["video_id"] == "good"  # found as v_good.mp4
    assert item["frames"].shape == (4, 2, 3, 16, 16) and item["frames"].dtype == torch.uint8
    assert item["times_sec"].shape == (4, 2)
    assert item["duration_sec"] == pytest.approx(2.0)
    assert torch.equal(item["segments_sec"], torch.tensor([[0.5, 1.5], [1.0, 1.8]]))
    assert torch.equal(item["labels"], torch.tensor([1, 0]))  # classes sorted: clap, jump


def test_video_without_segments(videos_dir: Path) -> None:
    annotations = AnnotationSet.from_videos([VideoAnnotation("other", "testing", ())], classes=["jump"])
    item = SnippetDataset(annotations=annotations, videos_dir=videos_dir, spec=SPEC)[0]
    assert item is not None
    assert item["segments_sec"].shape == (0, 2) and item["labels"].shape == (0,)


def test_skip_mode_skips_and_reports(videos_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    dataset = SnippetDataset(annotations=_annotations("good", "corrupt", "missing"), videos_dir=videos_dir,
                             spec=SPEC, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="lofi.data.dataset"):
        items = [dataset[i] for i in range(len(dataset))]
    assert items[0] is not None and items[1] is None and items[2] is None
    assert [vid for vid, _ in dataset.skipped] == ["corrupt", "missing"]
    corrupt_reason, missing_reason = (reason for _, reason in dataset.skipped)
    assert str(videos_dir / "corrupt.mp4") in corrupt_reason and "not a readable video" in corrupt_reason
    assert "'missing'" in missing_reason and str(videos_dir) in missing_reason
    assert len(caplog.records) == 2 and "corrupt.mp4" in caplog.records[0].getMessage()


def test_raise_mode_raises_naming_the_file(videos_dir: Path) -> None:
    dataset = SnippetDataset(annotations=_annotations("corrupt", "missing"), videos_dir=videos_dir, spec=SPEC)
    with pytest.raises(VideoReadError, match="corrupt.mp4"):
        dataset[0]
    with pytest.raises(VideoReadError, match=r"no video file for id 'missing' in .*videos"):
        dataset[1]


def test_collate_drops_none_and_stacks(videos_dir: Path) -> None:
    dataset = SnippetDataset(annotations=_annotations("good", "corrupt", "other"), videos_dir=videos_dir,
                             spec=SPEC, on_error="skip")
    batches = list(DataLoader(dataset, batch_size=3, collate_fn=collate_skipping_none))
    assert len(batches) == 1
    batch = batches[0]
    assert batch["video_id"] == ["good", "other"]
    assert batch["frames"].shape == (2, 4, 2, 3, 16, 16)
    assert torch.equal(batch["frames"][1], dataset[2]["frames"])
    assert batch["times_sec"].shape == (2, 4, 2)
    assert torch.allclose(batch["duration_sec"], torch.tensor([2.0, 1.6]))
    assert len(batch["segments_sec"]) == len(batch["labels"]) == 2
    assert collate_skipping_none([None, None]) is None


def test_collate_rejects_mixed_sizes(videos_dir: Path) -> None:
    spec = SnippetSpec(num_snippets=2)  # no resize: 32x24 and 40x30 frames
    dataset = SnippetDataset(annotations=_annotations("good", "other"), videos_dir=videos_dir, spec=spec)
    with pytest.raises(ValueError, match="different shapes"):
        collate_skipping_none([dataset[0], dataset[1]])


def test_random_crops_follow_seed_and_epoch(videos_dir: Path) -> None:
    spec = SnippetSpec(num_snippets=2, short_side_px=30, crop_px=8, crop="random")  # other.mp4 stays 40x30
    dataset = SnippetDataset(annotations=_annotations("other"), videos_dir=videos_dir, spec=spec, seed=3)
    first, again = dataset[0], dataset[0]
    assert torch.equal(first["frames"], again["frames"])
    crops = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        crops.append(dataset[0]["frames"].numpy().tobytes())
    assert crops[0] == first["frames"].numpy().tobytes() and len(set(crops)) > 1
    other_seed = SnippetDataset(annotations=_annotations("other"), videos_dir=videos_dir, spec=spec, seed=4)
    assert not np.array_equal(other_seed[0]["frames"].numpy(), first["frames"].numpy())


def test_rejects_unknown_on_error(videos_dir: Path) -> None:
    with pytest.raises(ValueError, match="on_error"):
        SnippetDataset(annotations=_annotations("good"), videos_dir=videos_dir, spec=SPEC, on_error="ignore")
