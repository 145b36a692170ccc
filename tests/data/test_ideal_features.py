"""Ideal features from annotations: class coverage, start and end indicators, a fixed mix, seeded noise, and files
that stage 3's FeatureDataset reads."""

from __future__ import annotations

import pytest
import torch

from lofi.data.annotations import AnnotationSet, Segment, VideoAnnotation
from lofi.data.features import FeatureDataset, feature_path, read_features
from lofi.data.ideal_features import ideal_channels, ideal_features, write_ideal_features

CLASSES = ("a", "b")


def _video(video_id: str = "v", subset: str = "training") -> VideoAnnotation:
    # 8 s, 4 snippets of 2 s: "a" over [1, 4), "b" over [5, 8)
    return VideoAnnotation(video_id=video_id, subset=subset, duration_sec=8.0,
                           segments=(Segment(start_sec=1.0, end_sec=4.0, label="a"),
                                     Segment(start_sec=5.0, end_sec=8.0, label="b")))


def test_channels_are_class_coverage_and_boundary_indicators():
    channels = ideal_channels(_video(), CLASSES, num_snippets=4)
    assert channels.shape == (4, 4)
    assert channels[0].tolist() == pytest.approx([0.5, 1.0, 0.0, 0.0])
    assert channels[1].tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0])
    assert channels[2].tolist() == [1.0, 0.0, 1.0, 0.0]  # starts at 1 s (snippet 0) and 5 s (snippet 2)
    assert channels[3].tolist() == [0.0, 1.0, 0.0, 1.0]  # ends at 4 s (snippet 1's last instant) and 8 s


def test_features_are_deterministic_mixed_up_to_dim_and_noisy():
    video = _video()
    one = ideal_features(video, CLASSES, num_snippets=4, dim=8, noise_std=0.05, seed=1, video_index=0)
    assert one.shape == (8, 4)
    assert torch.equal(one, ideal_features(video, CLASSES, num_snippets=4, dim=8, noise_std=0.05, seed=1,
                                           video_index=0))
    assert not torch.equal(one, ideal_features(video, CLASSES, num_snippets=4, dim=8, noise_std=0.05, seed=1,
                                               video_index=1))
    clean = ideal_features(video, CLASSES, num_snippets=4, dim=None, noise_std=0.0)
    assert torch.equal(clean, ideal_channels(video, CLASSES, num_snippets=4))
    assert (one[:4] - clean).abs().max() < 0.3
    with pytest.raises(ValueError, match="below the 4 ideal channels"):
        ideal_features(video, CLASSES, num_snippets=4, dim=3)


def test_written_files_are_stage_3_feature_files(tmp_path):
    annotations = AnnotationSet.from_videos([_video("v1"), _video("v/2", "validation")], classes=CLASSES,
                                            source="test")
    out = write_ideal_features(annotations, tmp_path / "features", num_snippets=4, dim=8, seed=0)
    features, meta = read_features(feature_path(out, "v/2"))
    assert features.shape == (8, 4) and meta["duration_sec"] == 8.0 and meta["encoder"] == "ideal"
    dataset = FeatureDataset(features_dir=out, annotations=annotations, classes=CLASSES)
    item = dataset[0]
    assert torch.allclose(item["segments"], torch.tensor([[0.125, 0.5], [0.625, 1.0]]))
    assert item["labels"].tolist() == [0, 1]
