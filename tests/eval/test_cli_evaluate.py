"""``lofi evaluate``: the interface other tools call, its JSON output, and clear errors for malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lofi.cli import main

GT = {"version": "1.3", "taxonomy": [], "database": {
    "v1": {"subset": "validation", "duration": 100.0, "annotations": [
        {"segment": [10.0, 20.0], "label": "jump"}, {"segment": [50.0, 60.0], "label": "jump"}]},
    "v2": {"subset": "training", "duration": 100.0, "annotations": [{"segment": [0.0, 5.0], "label": "jump"}]},
}}
# rank 1: exact hit; rank 2: tIoU 0 (FP); rank 3: exact hit; string numbers accepted; v9 is not in the subset
PRED = {"version": "1.3", "external_data": {}, "results": {
    "v1": [{"label": "jump", "score": "0.9", "segment": ["10.0", "20.0"]},
           {"label": "jump", "score": 0.7, "segment": [50.0, 60.0]}],
    "v9": [{"label": "jump", "score": 0.8, "segment": [0.0, 5.0]}],
}}


def _files(tmp_path: Path, pred=PRED) -> tuple[Path, Path]:
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_text(json.dumps(GT))
    pred_path.write_text(json.dumps(pred))
    return gt_path, pred_path


def test_evaluate_writes_the_specified_json(tmp_path, capsys):
    gt, pred = _files(tmp_path)
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--ground-truth", str(gt), "--predictions", str(pred), "--tiou", "0.3,0.5",
                 "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"tiou", "mAP", "average_mAP", "per_class", "counts"}
    assert metrics["tiou"] == [0.3, 0.5]
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> interpolated AP = 0.5 * 1 + 0.5 * 2/3
    expected = 0.5 + 0.5 * 2 / 3
    assert metrics["mAP"] == pytest.approx([expected, expected], abs=1e-12)
    assert metrics["average_mAP"] == pytest.approx(expected, abs=1e-12)
    assert metrics["per_class"] == {"jump": pytest.approx([expected, expected], abs=1e-12)}
    assert metrics["counts"]["num_outside_subset"] == 1
    printed = capsys.readouterr().out
    assert "outside the evaluated ground truth" in printed


def test_thumos14_thresholds_by_name(tmp_path):
    gt, pred = _files(tmp_path)
    out = tmp_path / "m.json"
    assert main(["evaluate", "--ground-truth", str(gt), "--predictions", str(pred), "--tiou", "thumos14",
                 "--output", str(out)]) == 0
    assert json.loads(out.read_text())["tiou"] == [0.3, 0.4, 0.5, 0.6, 0.7]


@pytest.mark.parametrize("bad_entry, message", [
    ({"label": "jump", "score": "high", "segment": [1, 2]}, "score 'high' is not a number"),
    ({"label": "jump", "score": 0.5, "segment": [1]}, "'segment' must be [start, end]"),
    ({"label": "jump", "score": 0.5, "segment": [5, 2]}, "end 2.0 < start 5.0"),
])
def test_malformed_predictions_name_the_file_and_entry(tmp_path, capsys, bad_entry, message):
    gt, pred = _files(tmp_path, {"results": {"v1": [PRED["results"]["v1"][0], bad_entry]}})
    assert main(["evaluate", "--ground-truth", str(gt), "--predictions", str(pred)]) == 2
    err = capsys.readouterr().err
    assert "pred.json" in err and "'v1'" in err and "result 2" in err and message in err


def test_plots_are_written(tmp_path, capsys):
    gt, pred = _files(tmp_path)
    assert main(["evaluate", "--ground-truth", str(gt), "--predictions", str(pred), "--plots",
                 str(tmp_path / "plots")]) == 0
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["map_vs_tiou.png", "per_class_ap.png", "precision_recall.png", "timeline_v1.png"]
    for name in names:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_proposals_task_writes_ar_at_an(tmp_path, capsys):
    # v1 has 2 GT; v1's proposals: an exact hit on each (ranks 1 and 3) and a miss
    pred = {"version": "1.3", "external_data": {}, "results": {"v1": [
        {"label": "jump", "score": 0.9, "segment": [10.0, 20.0]},
        {"label": "other", "score": 0.8, "segment": [70.0, 80.0]},
        {"label": "jump", "score": 0.7, "segment": [50.0, 60.0]}]}}
    gt, pred_path = _files(tmp_path, pred)
    out = tmp_path / "ar.json"
    assert main(["evaluate", "--task", "proposals", "--ground-truth", str(gt), "--predictions", str(pred_path),
                 "--output", str(out), "--plots", str(tmp_path / "plots")]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"tiou", "AN", "AR", "recall", "AUC", "AR@AN", "counts"}
    assert len(metrics["AN"]) == len(metrics["AR"]) == 100 and metrics["AN"][-1] == pytest.approx(100.0)
    assert set(metrics["AR@AN"]) == {"1", "5", "10", "100"}
    # the three proposals are all kept (cap 100 per video); with all of them both GT are recalled
    assert metrics["AR@AN"]["100"] == pytest.approx(1.0) and metrics["AR"][-1] == pytest.approx(1.0)
    assert metrics["AUC"] > 90
    assert metrics["counts"]["num_proposals"] == 3
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["recall_vs_proposals.png"]
    assert "AUC" in capsys.readouterr().out


def test_max_proposals_sets_the_an_axis(tmp_path):
    gt, pred = _files(tmp_path)
    out = tmp_path / "ar.json"
    assert main(["evaluate", "--task", "proposals", "--max-proposals", "10", "--ground-truth", str(gt),
                 "--predictions", str(pred), "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["AN"][-1] == pytest.approx(10.0) and set(metrics["AR@AN"]) == {"1", "5", "10"}
