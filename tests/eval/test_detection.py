"""Detection mAP: hand-computed cases, the official tie rule, and fast == slow reference on random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from lofi.data.annotations import AnnotationSet, Detection, Segment, VideoAnnotation
from lofi.eval import (
    ACTIVITYNET_TIOU_THRESHOLDS,
    evaluate_detection,
    parse_tiou_thresholds,
    segment_tiou,
)
from lofi.eval.reference import reference_evaluate_detection


def _gt(videos: dict[str, list[tuple[float, float, str]]], subset: str = "validation") -> AnnotationSet:
    return AnnotationSet.from_videos(
        VideoAnnotation(video_id=vid, subset=subset, segments=tuple(Segment(s, e, lab) for s, e, lab in segs))
        for vid, segs in videos.items())


def _both(gt, preds, **kw):
    fast = evaluate_detection(gt, preds, **kw)
    slow = reference_evaluate_detection(gt, preds, **kw)
    np.testing.assert_allclose(fast.mAP, slow.mAP, rtol=0, atol=1e-12)
    assert fast.ap.keys() == slow.ap.keys()
    for label in fast.ap:
        np.testing.assert_allclose(fast.ap[label], slow.ap[label], rtol=0, atol=1e-12)
    assert fast.counts == slow.counts
    return fast


def test_segment_tiou_matrix():
    tiou = segment_tiou([[0, 10], [5, 15], [30, 40]], [[0, 10], [10, 20]])
    assert tiou.shape == (3, 2)
    np.testing.assert_allclose(tiou, [[1, 0], [1 / 3, 1 / 3], [0, 0]])


def test_hand_computed_ap_two_gt_three_predictions():
    # TP (p=1, r=.5), FP (p=.5, r=.5), TP (p=2/3, r=1) -> AP = .5 * 1 + .5 * 2/3
    gt = _gt({"a": [(0, 10, "run"), (20, 30, "run")]})
    preds = {"a": [Detection(0, 10, "run", 0.9), Detection(50, 60, "run", 0.8), Detection(20, 30, "run", 0.7)]}
    res = _both(gt, preds)
    np.testing.assert_allclose(res.ap["run"], np.full(10, 0.5 + 1 / 3), atol=1e-12)
    assert res.average_mAP == pytest.approx(0.5 + 1 / 3, abs=1e-12)


def test_threshold_dependent_ap():
    # tIoU .6: a TP at thresholds <= .6, a FP above
    gt = _gt({"a": [(0, 10, "run")]})
    preds = {"a": [Detection(0, 6, "run", 0.9)]}
    res = _both(gt, preds, tiou_thresholds=[0.5, 0.6, 0.7])
    np.testing.assert_allclose(res.mAP, [1.0, 1.0, 0.0])


def test_tie_in_tiou_follows_official_argsort():
    # p1 overlaps both GT by 1/3; the official code takes np.argsort(tiou)[::-1][0]; p2 only overlaps GT #1
    gt = _gt({"a": [(0, 10, "run"), (10, 20, "run")]})
    preds = {"a": [Detection(5, 15, "run", 0.9), Detection(12, 20, "run", 0.8)]}
    res = _both(gt, preds, tiou_thresholds=[0.3])
    p1_takes = int(np.argsort(np.array([1 / 3, 1 / 3]))[::-1][0])
    expected = 0.5 if p1_takes == 1 else 1.0  # p1 took GT #1 -> p2 is a FP: TP, FP -> AP .5
    assert res.ap["run"][0] == pytest.approx(expected)


def test_tie_in_score_follows_official_argsort():
    # two equal scores, one TP and one FP: AP is 1 if the TP is ranked first, .5 otherwise
    gt = _gt({"a": [(0, 10, "run")]})
    preds = {"a": [Detection(0, 10, "run", 0.5), Detection(40, 50, "run", 0.5)]}
    res = _both(gt, preds, tiou_thresholds=[0.5])
    first = int(np.argsort(np.array([0.5, 0.5]))[::-1][0])
    assert res.ap["run"][0] == pytest.approx(1.0 if first == 0 else 0.5)


def test_duplicate_detection_is_false_positive():
    gt = _gt({"a": [(0, 10, "run")]})
    preds = {"a": [Detection(0, 10, "run", 0.9), Detection(0, 10, "run", 0.8)]}
    res = _both(gt, preds)
    np.testing.assert_allclose(res.mAP, 1.0)  # FP after full recall does not lower AP
    preds = {"a": [Detection(0, 10, "run", 0.9), Detection(0, 10, "run", 0.8), Detection(20, 30, "run", 0.7)]}
    gt2 = _gt({"a": [(0, 10, "run"), (20, 30, "run")]})
    res = _both(gt2, preds)  # TP, FP(dup), TP -> .5 + .5 * 2/3
    np.testing.assert_allclose(res.mAP, 0.5 + 1 / 3)


def test_class_without_predictions_scores_zero_and_lowers_map():
    gt = _gt({"a": [(0, 10, "run")], "b": [(0, 10, "jump")]})
    preds = {"a": [Detection(0, 10, "run", 0.9)]}
    res = _both(gt, preds)
    np.testing.assert_allclose(res.ap["jump"], 0.0)
    np.testing.assert_allclose(res.ap["run"], 1.0)
    np.testing.assert_allclose(res.mAP, 0.5)


def test_prediction_for_unknown_video_is_false_positive():
    gt = _gt({"a": [(0, 10, "run")]})
    preds = {"zzz": [Detection(0, 10, "run", 0.95)], "a": [Detection(0, 10, "run", 0.9)]}
    res = _both(gt, preds)  # FP then TP -> AP = 1 * .5
    np.testing.assert_allclose(res.mAP, 0.5)
    assert res.counts.num_outside_subset == 1


def test_prediction_in_video_without_gt_of_class_is_false_positive():
    gt = _gt({"a": [(0, 10, "run")], "b": [(0, 10, "jump")]})
    preds = {"b": [Detection(0, 10, "run", 0.95)], "a": [Detection(0, 10, "run", 0.9)]}
    res = _both(gt, preds)
    np.testing.assert_allclose(res.ap["run"], 0.5)
    assert res.counts.num_outside_subset == 0


def test_other_subset_videos_are_outside():
    gt = AnnotationSet.from_videos([
        VideoAnnotation("a", "validation", (Segment(0, 10, "run"),)),
        VideoAnnotation("t", "training", (Segment(0, 10, "run"), Segment(0, 5, "swim"))),
    ])
    preds = {"t": [Detection(0, 10, "run", 0.95)], "a": [Detection(0, 10, "run", 0.9)]}
    res = _both(gt, preds, subset="val")
    assert list(res.ap) == ["run"]  # "swim" has no validation GT: not a class of this evaluation
    np.testing.assert_allclose(res.mAP, 0.5)
    res_all = _both(gt, preds, subset=None)
    np.testing.assert_allclose(res_all.ap["run"], 1.0)
    np.testing.assert_allclose(res_all.ap["swim"], 0.0)


def test_label_not_in_ground_truth_is_ignored():
    gt = _gt({"a": [(0, 10, "run")]})
    preds = {"a": [Detection(0, 10, "fly", 0.99), Detection(0, 10, "run", 0.9)]}
    res = _both(gt, preds)
    assert list(res.ap) == ["run"]
    np.testing.assert_allclose(res.mAP, 1.0)
    assert res.counts.num_unknown_label == 1
    assert res.counts.num_evaluated == 1
    assert res.counts.num_predictions == 2


def test_no_ground_truth_raises():
    with pytest.raises(ValueError, match="no ground-truth segments"):
        evaluate_detection(_gt({"a": []}), {})


def test_bad_detection_raises():
    with pytest.raises(ValueError, match="end_sec"):
        evaluate_detection(_gt({"a": [(0, 10, "run")]}), {"a": [Detection(5, 1, "run", 0.5)]})


def _random_case(seed: int, *, videos: int = 20, classes: int = 3, tie_scores: bool = False):
    rng = np.random.default_rng(seed)
    labels = [f"c{i}" for i in range(classes)]
    gt_videos = {}
    for v in range(videos):
        segs = []
        for _ in range(rng.integers(0, 5)):
            start = float(rng.uniform(0, 90))
            segs.append((start, start + float(rng.uniform(1, 30)), labels[rng.integers(classes)]))
        gt_videos[f"v{v}"] = segs
    if not any(gt_videos.values()):
        gt_videos["v0"] = [(0.0, 10.0, labels[0])]
    preds = {}
    for v in list(gt_videos) + ["extra0", "extra1"]:
        dets = []
        for s, e, lab in gt_videos.get(v, []):  # jittered copies: matches at various tIoU, duplicates
            for _ in range(rng.integers(0, 4)):
                js, je = s + rng.normal(0, 3), e + rng.normal(0, 3)
                dets.append((min(js, je), max(js, je), lab))
        for _ in range(rng.integers(0, 8)):
            start = float(rng.uniform(0, 100))
            dets.append((start, start + float(rng.uniform(0.5, 40)), labels[rng.integers(classes)]))
        scores = rng.integers(0, 5, len(dets)) / 4 if tie_scores else rng.uniform(size=len(dets))
        preds[v] = [Detection(float(s), float(e), lab, float(sc)) for (s, e, lab), sc in zip(dets, scores)]
    return _gt(gt_videos), preds


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("thresholds", ["activitynet", "thumos14", "0.1:0.9:0.1"])
def test_random_cases_match_reference(seed, thresholds):
    gt, preds = _random_case(seed, tie_scores=seed % 3 == 0)
    fast = evaluate_detection(gt, preds, tiou_thresholds=parse_tiou_thresholds(thresholds))
    slow = reference_evaluate_detection(gt, preds, tiou_thresholds=parse_tiou_thresholds(thresholds))
    assert np.max(np.abs(fast.mAP - slow.mAP)) <= 1e-9
    assert abs(fast.average_mAP - slow.average_mAP) <= 1e-9
    assert np.max(np.abs(fast.ap_matrix - slow.ap_matrix)) <= 1e-9
    assert fast.counts == slow.counts
    assert np.all((fast.mAP >= 0) & (fast.mAP <= 1))


def test_random_case_with_many_ties_in_one_group():
    # many GT and predictions in one (class, video) group, integer segments: lots of tIoU and score ties
    rng = np.random.default_rng(7)
    segs = [(float(s), float(s + rng.integers(1, 6)), "c0") for s in rng.integers(0, 40, 25)]
    gt = _gt({"a": segs})
    preds = {"a": [Detection(float(s), float(s + rng.integers(1, 6)), "c0", float(rng.integers(0, 3)))
                   for s in rng.integers(0, 40, 60)]}
    _both(gt, preds, tiou_thresholds=parse_tiou_thresholds("0.1:0.9:0.1"))


def test_parse_tiou_thresholds():
    np.testing.assert_array_equal(parse_tiou_thresholds("0.5:0.95:0.05"), np.linspace(0.5, 0.95, 10))
    np.testing.assert_array_equal(parse_tiou_thresholds("activitynet"), ACTIVITYNET_TIOU_THRESHOLDS)
    np.testing.assert_array_equal(parse_tiou_thresholds("THUMOS14"), [0.3, 0.4, 0.5, 0.6, 0.7])
    np.testing.assert_array_equal(parse_tiou_thresholds("0.3, 0.4,0.5"), [0.3, 0.4, 0.5])
    np.testing.assert_allclose(parse_tiou_thresholds("0.3:0.7:0.1"), [0.3, 0.4, 0.5, 0.6, 0.7])
    np.testing.assert_array_equal(parse_tiou_thresholds("0.5"), [0.5])
    for bad in ["", "0:1:0.1", "0.5:0.4:0.1", "0.5:0.95:0.07", "a,b", "0.5:0.9", "1.5", "0.5:0.9:0"]:
        with pytest.raises(ValueError):
            parse_tiou_thresholds(bad)


def test_no_predictions_scores_zero():
    gt = _gt({"a": [(0, 10, "run")]})
    for preds in ({}, {"a": []}):
        res = _both(gt, preds)
        np.testing.assert_array_equal(res.mAP, 0.0)
        assert res.counts.num_predictions == 0


@pytest.mark.parametrize("seed", range(4))
def test_table_input_gives_the_same_result(seed):
    from lofi.data.detection_table import DetectionTable

    gt, preds = _random_case(seed, tie_scores=seed % 2 == 0)
    from_mapping = evaluate_detection(gt, preds)
    from_table = evaluate_detection(gt, DetectionTable.from_mapping(preds))
    np.testing.assert_array_equal(from_table.ap_matrix, from_mapping.ap_matrix)
    assert from_table.counts == from_mapping.counts


def test_kept_curves_are_the_ranked_precision_recall_points():
    # class run: ranked hit, miss, hit against 2 GT -> precision 1, 1/2, 2/3 and recall 1/2, 1/2, 1
    gt = _gt({"a": [(0, 10, "run"), (20, 30, "run")], "b": [(0, 5, "jump")]})
    preds = {"a": [Detection(0, 10, "run", 0.9), Detection(50, 60, "run", 0.8), Detection(20, 30, "run", 0.7)]}
    result = evaluate_detection(gt, preds, tiou_thresholds=[0.5, 0.7], keep_curves=True)
    assert set(result.curves) == {"jump", "run"}
    run = result.curves["run"]
    np.testing.assert_allclose(run.precision, [[1, 1 / 2, 2 / 3]] * 2)
    np.testing.assert_allclose(run.recall, [[1 / 2, 1 / 2, 1]] * 2)
    assert result.curves["jump"].precision.shape == (2, 0)
    assert evaluate_detection(gt, preds).curves == {}


def test_kept_curves_integrate_to_the_ap():
    from lofi.eval.plots import interpolated_precision

    gt, preds = _random_case(3)
    result = evaluate_detection(gt, preds, keep_curves=True)
    grid = np.linspace(0, 1, 100001)
    for label, pr in result.curves.items():
        for k in range(len(result.tiou_thresholds)):
            if pr.precision.shape[1] == 0:
                assert result.ap[label][k] == 0
                continue
            # the interpolated precision is a step function of recall; a fine Riemann sum approaches the AP
            area = np.mean(interpolated_precision(pr.precision[k], pr.recall[k], grid[1:]))
            assert area == pytest.approx(result.ap[label][k], abs=2e-4)
