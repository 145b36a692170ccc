"""Feature files (write/read round trip, atomic, weights_only) and FeatureDataset with its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lofi.data.annotations import AnnotationSet, Segment, VideoAnnotation
from lofi.data.features import (FeatureDataset, collate_features, feature_path, read_features, write_features)
from lofi.core.targets import SegmentTargets

CLASSES = ("jump", "run")


def _annotations() -> AnnotationSet:
    return AnnotationSet.from_videos([
        VideoAnnotation("a", "training", (Segment(1.0, 3.0, "run"), Segment(6.0, 12.0, "jump")), duration_sec=10.0),
        VideoAnnotation("b/2", "training", (), duration_sec=4.0),
    ], classes=CLASSES)


def _write_all(features_dir: Path, *, dim: int = 6, length: int = 5) -> None:
    for i, vid in enumerate(("a", "b/2")):
        write_features(feature_path(features_dir, vid), torch.full((dim, length), float(i)), video_id=vid,
                       meta={"encoder": "tsm", "num_snippets": length, "duration_sec": [8.0, 4.0][i]})


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    features = torch.randn(7, 3, dtype=torch.float16)
    write_features(path, features, video_id="x", meta={"fidelity": {"L": 3, "S": 224}, "note": "é"})
    read, meta = read_features(path)
    assert read.dtype == torch.float32 and read.shape == (7, 3)
    torch.testing.assert_close(read, features.float())
    assert meta == {"fidelity": {"L": 3, "S": 224}, "note": "é"}
    assert torch.load(path, weights_only=True)["video_id"] == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]  # no temp file left behind
    with pytest.raises(ValueError, match="JSON-serialisable"):
        write_features(path, features, video_id="x", meta={"bad": object()})
    with pytest.raises(ValueError, match=r"\[D, T\]"):
        write_features(path, torch.zeros(2, 3, 4), video_id="x", meta={})
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt: not a readable feature file"):
        read_features(tmp_path / "junk.pt")


def test_dataset_items_and_collate(tmp_path: Path) -> None:
    _write_all(tmp_path)
    dataset = FeatureDataset(features_dir=tmp_path, annotations=_annotations(), classes=CLASSES)
    assert len(dataset) == 2 and dataset.shape == (6, 5)
    item = dataset[0]
    assert item["video_id"] == "a" and item["features"].shape == (6, 5) and item["features"].dtype == torch.float32
    assert item["duration_sec"] == 8.0  # from the feature meta, which wins over the annotation's 10 s
    torch.testing.assert_close(item["segments"], torch.tensor([[1 / 8, 3 / 8], [6 / 8, 1.0]]))
    assert item["labels"].tolist() == [1, 0]
    batch = collate_features([dataset[0], dataset[1]])
    assert batch["features"].shape == (2, 6, 5) and isinstance(batch["targets"], SegmentTargets)
    assert batch["targets"].segments[1].shape == (0, 2) and batch["video_ids"] == ["a", "b/2"]
    torch.testing.assert_close(batch["durations_sec"], torch.tensor([8.0, 4.0]))


def test_missing_file_named(tmp_path: Path) -> None:
    _write_all(tmp_path)
    feature_path(tmp_path, "b/2").unlink()
    with pytest.raises(FileNotFoundError, match=r"no feature file for 1 of 2 videos: 'b/2'"):
        FeatureDataset(features_dir=tmp_path, annotations=_annotations(), classes=CLASSES)


def test_shape_mismatch_named(tmp_path: Path) -> None:
    _write_all(tmp_path)
    write_features(feature_path(tmp_path, "b/2"), torch.zeros(6, 4), video_id="b/2", meta={"duration_sec": 4.0})
    dataset = FeatureDataset(features_dir=tmp_path, annotations=_annotations(), classes=CLASSES)
    with pytest.raises(ValueError, match=r"video 'b/2': features are \[D, T\] = \[6, 4\] but 'a' has \[6, 5\]"):
        dataset[1]
    with pytest.raises(ValueError, match="1 bad feature files"):
        dataset.verify()
    write_features(feature_path(tmp_path, "b/2"), torch.zeros(6, 5), video_id="a", meta={})
    with pytest.raises(ValueError, match="holds features of video 'a', expected 'b/2'"):
        dataset[1]
