"""Extraction with sliding windows: each video at the fixed snippet rate (``[D, T]`` files with the rate in their
meta), encoded ``L`` snippets at a time, and read back as windows by stage 3's dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lofi.config import load_config
from lofi.data.feature_windows import FeatureWindowDataset
from lofi.data.features import FeatureDataset, feature_path, read_features
from lofi.data.chunked import iter_snippet_chunks
from lofi.data.sampling import SnippetSpec, sample_snippets
from lofi.infer.extract import extract_features
from lofi.models.encoders.base import normalize_frames
from lofi.runtime.builders import build_encoder, save_encoder
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


def test_snippet_chunks_hold_at_most_a_chunk_and_together_equal_one_whole_video_decode(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", duration_sec=3.0, fps=20, size_px=40)
    spec = SnippetSpec(num_snippets=11, frames_per_snippet=3, frame_stride=2, short_side_px=32)
    whole = sample_snippets(path, spec)
    chunks = list(iter_snippet_chunks(path, spec, chunk_snippets=4))
    assert [c.start_snippet for c in chunks] == [0, 4, 8]
    assert [c.clip.frames.shape[0] for c in chunks] == [4, 4, 3]  # never more than a chunk decoded at once
    assert torch.equal(torch.cat([c.clip.frames for c in chunks]), whole.frames)
    assert np.array_equal(np.concatenate([c.clip.frame_times_sec for c in chunks]), whole.frame_times_sec)
    with pytest.raises(ValueError, match="centre crop"):
        next(iter_snippet_chunks(path, SnippetSpec(num_snippets=4, short_side_px=32, crop="random"),
                                 chunk_snippets=2))


def test_chunked_extraction_writes_the_features_of_a_whole_video_encode(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    path = write_video(tmp_path / "videos" / "clip.mp4", duration_sec=2.5, fps=10)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"version": "1.3", "taxonomy": [], "database": {
        "clip": {"subset": "training", "duration": 2.5, "annotations": [{"segment": [0.5, 1.2], "label": "wave"}]}}}))
    config = load_config("synthetic", [
        f"data.annotations={gt}", f"data.videos={tmp_path / 'videos'}", f"out_dir={tmp_path / 'runs'}",
        "name=chunks", "device=cpu", "fidelity.num_snippets=4", "fidelity.frame_size_px=32",
        "data.frames_per_snippet=1", "model.encoder=tsm_resnet18", "data.windows={snippets_per_sec: 4, "
        "stride_snippets: 2}"])
    context = make_context(config, progress=False)
    weights = save_encoder(context, build_encoder(context, None), tmp_path / "encoder.pt")
    out = extract_features(context, encoder_weights=weights, features_dir=tmp_path / "features",
                           subsets=("training",))
    features, meta = read_features(feature_path(out, "clip"))
    assert features.shape[1] == 10 and meta["snippet_sec"] == pytest.approx(0.25)  # 2.5 s at 4 per second
    # the reference: the old path, the whole video decoded at once and encoded L = 4 snippets at a time
    encoder = build_encoder(context, weights).eval()
    frames = sample_snippets(path, SnippetSpec(num_snippets=10, short_side_px=32)).frames.unsqueeze(0)
    with torch.no_grad():
        reference = torch.cat([encoder(normalize_frames(frames[:, s:s + 4])).float() for s in range(0, 10, 4)],
                              dim=2)[0]  # [D, T]
    assert torch.equal(features, reference)
