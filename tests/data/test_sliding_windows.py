"""Sliding windows: window placement, ground truth clipped at window edges, windowed feature items, and the shift of
per-window predictions to video time and their merge (lofi.core.windows, lofi.data.feature_windows,
lofi.infer.predict)."""

from __future__ import annotations

import pytest
import torch

from lofi.config import ConfigError, load_config
from lofi.core.windows import WindowSpan, clip_to_window, video_num_snippets, window_cores, window_starts
from lofi.data.annotations import AnnotationSet, Segment, VideoAnnotation
from lofi.data.feature_windows import FeatureWindowDataset, collate_feature_windows
from lofi.data.features import feature_path, write_features
from lofi.data.ideal_features import write_ideal_features
from lofi.infer.predict import RawPredictions, collect_candidates, finish_predictions
from lofi.postprocess import PostprocessConfig


# -- placement ------------------------------------------------------------------------------------------------------
def test_windows_start_every_stride_and_the_last_ends_at_the_video_end():
    assert window_starts(100, window_snippets=32, stride_snippets=16) == [0, 16, 32, 48, 64, 68]
    assert window_starts(96, window_snippets=32, stride_snippets=16) == [0, 16, 32, 48, 64]  # no extra window
    for total, stride in [(100, 16), (33, 32), (1000, 7), (257, 256)]:
        starts = window_starts(total, window_snippets=32, stride_snippets=min(stride, 32))
        assert starts[-1] + 32 == total  # the tail is covered, with no padding
        assert all(b - a <= stride for a, b in zip(starts, starts[1:]))  # no gap, at most a stride apart
        assert starts == sorted(set(starts))


def test_a_video_of_at_most_one_window_is_one_window_at_zero():
    assert window_starts(1, window_snippets=32, stride_snippets=8) == [0]
    assert window_starts(20, window_snippets=32, stride_snippets=8) == [0]
    assert window_starts(32, window_snippets=32, stride_snippets=8) == [0]


def test_placement_rejects_non_positive_sizes():
    with pytest.raises(ValueError):
        window_starts(10, window_snippets=0, stride_snippets=1)
    with pytest.raises(ValueError):
        window_starts(10, window_snippets=4, stride_snippets=0)


def test_video_snippets_count_a_last_partial_snippet():
    assert video_num_snippets(10.0, 2.0) == 20
    assert video_num_snippets(10.1, 2.0) == 21
    assert video_num_snippets(0.2, 2.0) == 1
    assert video_num_snippets(0.3 * 3, 10.0) == 9  # float noise (0.8999...) does not add a snippet
    span = WindowSpan(start_snippet=16, num_snippets=32, snippet_sec=0.5)
    assert (span.start_sec, span.end_sec) == (8.0, 24.0)


# -- ground truth of a window ---------------------------------------------------------------------------------------
def test_instances_inside_are_kept_as_fractions_of_the_window():
    seg = torch.tensor([[18.0, 26.0]])  # snippets of the video
    segments, labels = clip_to_window(seg, torch.tensor([3]), start_snippet=16, window_snippets=32,
                                      min_inside_fraction=0.5)
    assert torch.allclose(segments, torch.tensor([[2 / 32, 10 / 32]])) and labels.tolist() == [3]


def test_instances_cut_by_an_edge_are_clipped_when_enough_is_inside_else_dropped():
    seg = torch.tensor([[10.0, 20.0],  # 4 of 10 inside [16, 48): dropped at 0.5
                        [12.0, 20.0],  # 4 of 8 inside: kept, clipped to [16, 20]
                        [44.0, 50.0],  # 4 of 6 inside: kept, clipped to [44, 48]
                        [48.0, 60.0],  # outside
                        [0.0, 100.0]])  # covers the window, 32 % inside: dropped
    segments, labels = clip_to_window(seg, torch.arange(5), start_snippet=16, window_snippets=32,
                                      min_inside_fraction=0.5)
    assert labels.tolist() == [1, 2]
    assert torch.allclose(segments, torch.tensor([[0.0, 4 / 32], [28 / 32, 1.0]]))
    loose, loose_labels = clip_to_window(seg, torch.arange(5), start_snippet=16, window_snippets=32,
                                         min_inside_fraction=0.3)
    assert loose_labels.tolist() == [0, 1, 2, 4]
    assert torch.allclose(loose[-1], torch.tensor([0.0, 1.0]))
    assert bool((segments >= 0).all() and (segments <= 1).all())


def test_a_window_without_instances_has_empty_targets():
    segments, labels = clip_to_window(torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64), start_snippet=0,
                                      window_snippets=8, min_inside_fraction=0.5)
    assert segments.shape == (0, 2) and labels.shape == (0,)


# -- windowed feature items ------------------------------------------------------------------------------------------
def _annotations(*videos: VideoAnnotation) -> AnnotationSet:
    return AnnotationSet.from_videos(list(videos), classes=("a", "b"))


def test_feature_windows_cut_pad_and_place_their_targets(tmp_path):
    long = VideoAnnotation(video_id="long", duration_sec=50.0, subset="training",
                           segments=(Segment(11.0, 13.0, "a"), Segment(30.0, 34.0, "b")))
    short = VideoAnnotation(video_id="short", duration_sec=5.0, subset="training",
                            segments=(Segment(1.0, 2.0, "b"),))
    annotations = _annotations(long, short)
    write_ideal_features(annotations, tmp_path, num_snippets=1, dim=6, noise_std=0.0, snippets_per_sec=2.0)
    dataset = FeatureWindowDataset(features_dir=tmp_path, annotations=annotations, classes=("a", "b"),
                                   window_snippets=32, stride_snippets=16, snippets_per_sec=2.0)
    assert dataset.num_video_snippets == {"long": 100, "short": 10}
    assert [(dataset.video_ids[w.video_index], w.span.start_snippet) for w in dataset.windows] == [
        ("long", 0), ("long", 16), ("long", 32), ("long", 48), ("long", 64), ("long", 68), ("short", 0)]
    second = dataset[1]  # snippets [16, 48) = [8 s, 24 s): holds "a" at [11, 13] s = snippets [22, 26)
    assert (second["window_start_sec"], second["window_end_sec"]) == (8.0, 24.0)
    assert torch.allclose(second["segments"], torch.tensor([[6 / 32, 10 / 32]])) and second["labels"].tolist() == [0]
    padded = dataset[6]  # the short video: 10 real snippets, 22 zeros
    assert padded["features"].shape == (6, 32)
    assert bool((padded["features"][:, 10:] == 0).all()) and bool(padded["features"][:, :10].abs().sum() > 0)
    assert torch.allclose(padded["segments"], torch.tensor([[2 / 32, 4 / 32]]))
    batch = collate_feature_windows([dataset[i] for i in range(len(dataset))])
    assert batch["features"].shape == (7, 6, 32) and len(batch["targets"]) == 7
    assert batch["window_starts_sec"].tolist() == [0.0, 8.0, 16.0, 24.0, 32.0, 34.0, 0.0]


def test_feature_windows_refuse_features_of_another_rate(tmp_path):
    video = VideoAnnotation(video_id="v", duration_sec=10.0, subset="training", segments=())
    write_features(feature_path(tmp_path, "v"), torch.zeros(4, 32), video_id="v", meta={"duration_sec": 10.0})
    with pytest.raises(ValueError, match="snippets_per_sec"):
        FeatureWindowDataset(features_dir=tmp_path, annotations=_annotations(video), classes=("a", "b"),
                             window_snippets=32, stride_snippets=16, snippets_per_sec=2.0)


# -- shift and merge -------------------------------------------------------------------------------------------------
def test_window_candidates_are_shifted_to_video_time_clipped_and_merged(monkeypatch):
    from lofi.infer import predict
    from lofi.postprocess.candidates import Candidates

    windows = [  # (window start s, end s, candidate in window fractions, score)
        (0.0, 16.0, (0.75, 0.875), 0.9),  # [12, 14] s
        (8.0, 24.0, (0.25, 0.375), 0.8),  # [12, 14] s again, from the overlapping window
        (8.0, 24.0, (0.9, 1.0), 0.7),  # [22.4, 24] s, clipped to the 23 s video
    ]
    fake = [Candidates(segments=torch.tensor([list(seg)]), scores=torch.tensor([p]), labels=torch.tensor([1]))
            for _, _, seg, p in windows]
    monkeypatch.setattr(predict, "decode_raw", lambda outputs, **_: fake)
    raw = RawPredictions()
    collect_candidates({}, video_ids=["v", "v", "v"], durations_sec=[23.0] * 3, classes=("a", "b"),
                       into=raw, window_starts_sec=[w[0] for w in windows], window_ends_sec=[w[1] for w in windows])
    got = [(round(d.start_sec, 5), round(d.end_sec, 5), d.label, round(d.score, 5)) for d in raw.detections["v"]]
    assert got == [(12.0, 14.0, "b", 0.9), (12.0, 14.0, "b", 0.8), (22.4, 23.0, "b", 0.7)]
    final = finish_predictions(raw, PostprocessConfig(method="nms", iou_threshold=0.5, sigma=0.5, min_score=0.0,
                                                      max_detections=10))
    assert [(round(d.start_sec, 5), round(d.score, 5)) for d in final["v"]] == [(12.0, 0.9), (22.4, 0.7)]


def test_whole_video_candidates_replace_and_window_bounds_come_in_pairs(monkeypatch):
    from lofi.infer import predict
    from lofi.postprocess.candidates import Candidates

    fake = [Candidates(segments=torch.tensor([[0.5, 1.0]]), scores=torch.tensor([0.5]), labels=torch.tensor([0]))]
    monkeypatch.setattr(predict, "decode_raw", lambda outputs, **_: fake)
    raw = RawPredictions()
    for _ in range(2):
        collect_candidates({}, video_ids=["v"], durations_sec=[10.0], classes=("a",), into=raw)
    assert [(d.start_sec, d.end_sec) for d in raw.detections["v"]] == [(5.0, 10.0)]
    with pytest.raises(ValueError, match="both"):
        collect_candidates({}, video_ids=["v"], durations_sec=[10.0], classes=("a",), into=raw,
                           window_starts_sec=[0.0])


# -- config ----------------------------------------------------------------------------------------------------------
def test_windows_config_defaults_to_whole_videos_and_checks_the_stride():
    assert load_config("synthetic").data.windows is None
    config = load_config("synthetic", ["data.windows={snippets_per_sec: 2, stride_snippets: 8}"])
    assert config.data.windows.snippets_per_sec == 2.0 and config.data.windows.min_inside_fraction == 0.5
    assert load_config("thumos14").data.windows is not None
    with pytest.raises(ConfigError, match="stride_snippets"):
        load_config("synthetic", ["data.windows={snippets_per_sec: 2, stride_snippets: 64}"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config("synthetic", ["data.windows={snippets_per_sec: 2, stride: 8}"])


def test_window_cores_tile_the_video_between_window_centres():
    starts = window_starts(100, window_snippets=32, stride_snippets=16)  # [0, 16, 32, 48, 64, 68]
    cores = window_cores(starts, window_snippets=32, num_snippets_video=100)
    assert cores == [(0.0, 24.0), (24.0, 40.0), (40.0, 56.0), (56.0, 72.0), (72.0, 82.0), (82.0, 100.0)]
    assert window_cores([0], window_snippets=32, num_snippets_video=10) == [(0.0, 32.0)]
    # an instance of up to L - stride snippets whose centre a window owns lies inside that window
    for (lo, hi), start in zip(cores, starts):
        assert start + 8 <= lo or start == 0
        assert hi <= start + 32 - 8 or start == starts[-1]


def test_center_merge_keeps_each_windows_own_detections(monkeypatch):
    from lofi.infer import predict
    from lofi.postprocess.candidates import Candidates

    # two windows [0, 16) and [8, 24) s owning [0, 12) and [12, 23) s; a truncated view of [14, 18] s in the first
    fake = [Candidates(segments=torch.tensor([[0.875, 1.0], [0.25, 0.5]]), scores=torch.tensor([0.6, 0.8]),
                       labels=torch.tensor([0, 0])),
            Candidates(segments=torch.tensor([[0.375, 0.625]]), scores=torch.tensor([0.9]), labels=torch.tensor([0]))]
    monkeypatch.setattr(predict, "decode_raw", lambda outputs, **_: fake)
    raw = RawPredictions()
    collect_candidates({}, video_ids=["v", "v"], durations_sec=[23.0, 23.0], classes=("a",),
                       into=raw, window_starts_sec=[0.0, 8.0], window_ends_sec=[16.0, 24.0],
                       keep_sec=[(0.0, 12.0), (12.0, 24.0)])
    assert [(d.start_sec, d.end_sec) for d in raw.detections["v"]] == [(4.0, 8.0), (14.0, 18.0)]


def test_unset_windows_leave_every_stage_identity_as_before_and_set_ones_count_where_windowed():
    from lofi.runtime.run_identity import stage_identity

    plain, windowed = load_config("synthetic"), load_config("synthetic", [
        "data.windows={snippets_per_sec: 2, stride_snippets: 8}"])
    for stage in ("pretrain", "lofi", "extract", "head"):
        assert not any(k.startswith("data.windows") for k in stage_identity(stage, plain).config)
    assert stage_identity("pretrain", windowed).config == stage_identity("pretrain", plain).config
    for stage in ("lofi", "extract", "head"):  # stage 2 trains on the windows too
        assert stage_identity(stage, windowed).config["data.windows.snippets_per_sec"] == 2.0
