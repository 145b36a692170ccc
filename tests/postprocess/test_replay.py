"""``lofi postprocess`` and postprocess_table: saved raw candidates in, suppressed detections out, no model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lofi.cli import main
from lofi.data.annotations import Detection
from lofi.data.detection_table import DetectionTable
from lofi.data.formats import read_results, read_video_scores
from lofi.postprocess import PostprocessConfig, postprocess_video
from lofi.postprocess.replay import postprocess_table

RAW = {
    # a: two "run" candidates with IoU 0.8 (the weaker one goes under NMS), one "jump" overlapping them
    "a": [Detection(0.0, 10.0, "run", 0.9), Detection(0.0, 8.0, "run", 0.6), Detection(1.0, 9.0, "jump", 0.7)],
    "b": [Detection(5.0, 6.0, "jump", 0.2)],
    "c": [],
}


def _write_raw(tmp_path: Path, raw=RAW) -> Path:
    path = tmp_path / "raw.json"
    path.write_text(json.dumps({"results": {v: [{"label": d.label, "score": d.score,
                                                  "segment": [d.start_sec, d.end_sec]} for d in dets]
                                              for v, dets in raw.items()}}))
    return path


def test_class_wise_nms_keeps_other_classes():
    out = postprocess_table(DetectionTable.from_mapping(RAW), PostprocessConfig(method="nms", iou_threshold=0.5))
    assert out == {"a": [Detection(0.0, 10.0, "run", 0.9), Detection(1.0, 9.0, "jump", 0.7)],
                   "b": [Detection(5.0, 6.0, "jump", 0.2)], "c": []}


def test_class_agnostic_nms_suppresses_across_classes():
    config = PostprocessConfig(method="nms", iou_threshold=0.5, class_agnostic=True)
    out = postprocess_table(DetectionTable.from_mapping(RAW), config)
    assert out["a"] == [Detection(0.0, 10.0, "run", 0.9)]  # jump [1, 9] has IoU 0.8 with run [0, 10]


def test_replay_equals_postprocess_video_per_video():
    config = PostprocessConfig(method="soft_nms_gaussian", sigma=0.3, max_detections=2)
    out = postprocess_table(DetectionTable.from_mapping(RAW), config)
    classes = ["run", "jump"]  # the table's first-seen label order
    dets = RAW["a"]
    direct = postprocess_video(torch.tensor([[d.start_sec, d.end_sec] for d in dets], dtype=torch.float64),
                               torch.tensor([d.score for d in dets], dtype=torch.float64),
                               torch.tensor([classes.index(d.label) for d in dets]), config, classes=classes)
    assert out["a"] == direct and len(direct) == 2


def test_video_scores_turn_candidates_into_top_class_detections():
    scores = {"a": {"run": 0.5, "jump": 0.25, "swim": 0.1}, "b": {"swim": 1.0}, "c": {}}
    out = postprocess_table(DetectionTable.from_mapping(RAW), PostprocessConfig(method="none", min_score=0),
                            video_scores=scores, video_top_k=2)
    # a: each of the 3 candidates x the two best classes (run 0.5, jump 0.25), scores multiplied
    assert [(d.label, d.score) for d in out["a"]] == [
        ("run", 0.45), ("run", 0.35), ("run", 0.3), ("jump", 0.225), ("jump", 0.175), ("jump", 0.15)]
    assert [(d.label, d.score) for d in out["b"]] == [("swim", 0.2), ("jump", 0.0)]  # classes sorted: jump 0
    with pytest.raises(ValueError, match="no scores for video 'c'"):
        postprocess_table(DetectionTable.from_mapping(RAW), PostprocessConfig(), video_scores={"a": {"x": 1}, "b": {}})


def test_cli_postprocess_then_evaluate_round_trip(tmp_path, capsys):
    raw = _write_raw(tmp_path)
    out = tmp_path / "pred.json"
    assert main(["postprocess", "--predictions", str(raw), "--output", str(out), "--method", "nms",
                 "--top-k", "1"]) == 0
    assert read_results(out) == {"a": [Detection(0.0, 10.0, "run", 0.9)], "b": [Detection(5.0, 6.0, "jump", 0.2)],
                                 "c": []}
    assert "4 candidates in 3 videos -> 2 detections" in capsys.readouterr().out


def test_cli_postprocess_with_video_scores(tmp_path):
    raw = _write_raw(tmp_path, {"a": RAW["a"]})
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"results": {"a": [{"label": "swim", "score": "0.8"},
                                                    {"label": "run", "score": 0.1}]}}))
    out = tmp_path / "pred.json"
    assert main(["postprocess", "--predictions", str(raw), "--output", str(out), "--video-scores", str(scores),
                 "--video-top-k", "1", "--method", "nms", "--class-agnostic"]) == 0
    assert read_results(out) == {"a": [Detection(0.0, 10.0, "swim", pytest.approx(0.72))]}


@pytest.mark.parametrize("content, message", [
    ({"results": {"a": [{"label": "x", "score": "high"}]}}, "video 'a': entry 1: score 'high' is not a number"),
    ({"results": {"a": [{"score": 1}]}}, "video 'a': entry 1: 'label' must be a non-empty string"),
    ({"results": {"a": {"x": None}}}, "video 'a': entry 1: score None is not a number"),
    ({"results": {"a": 3}}, "video 'a': expected a list of results"),
])
def test_bad_video_scores_name_the_entry(tmp_path, content, message):
    path = tmp_path / "scores.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        read_video_scores(path)


def test_video_scores_accept_both_layouts(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"results": {"a": [{"label": "x", "score": 0.2}, {"label": "x", "score": 0.5}],
                                            "b": {"y": "0.3"}}}))
    assert read_video_scores(path) == {"a": {"x": 0.5}, "b": {"y": 0.3}}


def test_cli_postprocess_reports_bad_input(tmp_path, capsys):
    raw = _write_raw(tmp_path)
    assert main(["postprocess", "--predictions", str(tmp_path / "absent.json"), "--output", "x.json"]) == 2
    assert "absent.json: file not found" in capsys.readouterr().err
    assert main(["postprocess", "--predictions", str(raw), "--output", "x.json", "--iou-threshold", "1.5"]) == 2
    assert "iou_threshold" in capsys.readouterr().err
