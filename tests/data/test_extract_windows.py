"""Extraction with sliding windows: each video at the fixed snippet rate (``[D, T]`` files with the rate in their
meta), encoded ``L`` snippets at a time, and read back as windows by stage 3's dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lofi.config import load_config
from lofi.data.feature_windows import FeatureWindowDataset
from lofi.data.features import FeatureDataset, feature_path, read_features
from lofi.infer.extract import extract_features
from lofi.runtime.context import make_context
from _videos import write_video


def test_extraction_at_a_fixed_rate_writes_every_snippet_of_long_and_short_videos(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    durations = {"long": 6.0, "short": 1.5}
    for vid, duration in durations.items():
        write_video(tmp_path / "videos" / f"{vid}.mp4", duration_sec=duration, fps=10)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"version": "1.3", "taxonomy": [], "database": {
        vid: {"subset": "training", "duration": d, "annotations": [{"segment": [0.5, 1.2], "label": "wave"}]}
        for vid, d in durations.items()}}))
    config = load_config("synthetic", [
        f"data.annotations={gt}", f"data.videos={tmp_path / 'videos'}", f"data.cache_dir={tmp_path / 'cache'}",
        f"out_dir={tmp_path / 'runs'}", "name=windows", "device=cpu", "fidelity.num_snippets=4",
        "fidelity.frame_size_px=32", "data.frames_per_snippet=1", "model.encoder=tsm_resnet18",
        "data.windows={snippets_per_sec: 2, stride_snippets: 2}"])
    context = make_context(config, progress=False)
    out = extract_features(context, encoder_weights=None, features_dir=tmp_path / "features",
                           subsets=("training",))
    shapes = {}
    for vid, duration in durations.items():
        features, meta = read_features(feature_path(out, vid))
        shapes[vid] = features.shape[1]
        assert meta["snippets_per_sec"] == 2.0 and meta["num_snippets"] == 4
        assert meta["snippet_sec"] == pytest.approx(meta["duration_sec"] / features.shape[1])
        assert bool(torch.isfinite(features).all())
    assert shapes == {"long": 12, "short": 3}  # 6 s and 1.5 s at 2 snippets per second
    windows = FeatureWindowDataset(features_dir=out, annotations=context.annotations, classes=context.classes,
                                   window_snippets=4, stride_snippets=2, snippets_per_sec=2.0)
    assert [w.span.start_snippet for w in windows.windows] == [0, 2, 4, 6, 8, 0]
    assert windows[0]["features"].shape[1] == 4 and bool((windows[5]["features"][:, 3:] == 0).all())
    with pytest.raises(ValueError):  # whole-video readers refuse files of different lengths, as before
        FeatureDataset(features_dir=out, annotations=context.annotations, classes=context.classes).verify()
