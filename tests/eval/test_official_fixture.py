"""Bit-identical to the official ActivityNet evaluator on a fixture it scored (see the fixture's provenance)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lofi.cli import main
from lofi.data.formats import load_annotations, read_results
from lofi.eval.reference import reference_evaluate_detection

FIXTURE = Path(__file__).parent / "data" / "official_activitynet_fixture.json"


def _files(tmp_path: Path, expected: str = "expected") -> tuple[dict, Path, Path]:
    fixture = json.loads(FIXTURE.read_text())
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps(fixture["ground_truth"]))
    pred.write_text(json.dumps(fixture["predictions"]))
    return fixture[expected], gt, pred


def test_lofi_evaluate_reproduces_the_official_numbers_exactly(tmp_path):
    expected, gt, pred = _files(tmp_path)
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--ground-truth", str(gt), "--predictions", str(pred), "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["mAP"] == expected["mAP"]  # float equality: same bits
    assert metrics["average_mAP"] == expected["average_mAP"]
    assert metrics["per_class"] == expected["per_class"]
    assert metrics["per_class"]["class_lonely"] == [0.0] * 10  # ground truth, no predictions
    assert metrics["counts"]["num_outside_subset"] == 46  # 3 videos absent from the ground truth x 15, v_train 1


def test_slow_reference_agrees_with_the_official_numbers(tmp_path):
    expected, gt, pred = _files(tmp_path)
    result = reference_evaluate_detection(load_annotations(gt, as_annotated=True).annotations, read_results(pred))
    np.testing.assert_allclose(result.mAP, expected["mAP"], rtol=0, atol=1e-12)
    for label, ap in expected["per_class"].items():
        np.testing.assert_allclose(result.ap[label], ap, rtol=0, atol=1e-12)


def test_lofi_proposals_reproduce_the_official_numbers_exactly(tmp_path):
    expected, gt, pred = _files(tmp_path, "expected_proposals")
    out = tmp_path / "ar.json"
    assert main(["evaluate", "--task", "proposals", "--ground-truth", str(gt), "--predictions", str(pred),
                 "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["AN"] == expected["AN"]
    assert metrics["AR"] == expected["AR"]
    assert metrics["recall"] == expected["recall"]
    assert metrics["AUC"] == expected["AUC"]
