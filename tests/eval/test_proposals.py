"""Proposal AR@AN: hand-computed cases, the per-video cap, and fast == plain-loop restatement on random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from lofi.data.annotations import AnnotationSet, Detection, Segment, VideoAnnotation
from lofi.eval import ACTIVITYNET_TIOU_THRESHOLDS, evaluate_proposals, segment_tiou


def _gt(videos: dict[str, list[tuple[float, float]]], subset: str = "validation") -> AnnotationSet:
    return AnnotationSet.from_videos(
        VideoAnnotation(video_id=vid, subset=subset, segments=tuple(Segment(s, e, "a") for s, e in segs))
        for vid, segs in videos.items())


def _junk(n: int, score: float = 0.5) -> list[tuple[float, float, float]]:
    """``n`` proposals far from any ground truth (tIoU 0)."""
    return [(1000.0 + i, 1001.0 + i, score) for i in range(n)]


def test_exact_match_at_rank_one():
    res = evaluate_proposals(_gt({"v": [(0, 10)]}), {"v": [(0.0, 10.0, 0.9)]})
    assert res.recall.shape == (10, 100) and res.average_recall.shape == (100,)
    np.testing.assert_allclose(res.proposals_per_video, np.arange(1, 101))
    np.testing.assert_allclose(res.average_recall, 1.0)
    assert res.ar_at == {1: 1.0, 5: 1.0, 10: 1.0, 100: 1.0}
    # official AUC divides the trapezoid area (99 * 1.0) by AN[-1] = 100, not by AN[-1] - AN[0]
    assert res.auc == pytest.approx(99.0)


def test_tiou_072_passes_half_the_thresholds():
    # tIoU 7.2 / 10 = 0.72 passes 0.50, 0.55, 0.60, 0.65, 0.70 and fails 0.75 .. 0.95
    res = evaluate_proposals(_gt({"v": [(0, 10)]}), {"v": [(0.0, 7.2, 1.0)]})
    np.testing.assert_allclose(res.recall[:5], 1.0)
    np.testing.assert_allclose(res.recall[5:], 0.0)
    assert res.ar_at[1] == pytest.approx(0.5)
    assert res.auc == pytest.approx(49.5)


def test_match_at_rank_two_counts_from_an_two():
    # 100 proposals, ratio 1: AN = k uses the top k; the hit is ranked second
    props = _junk(98, score=0.1) + [(0.0, 10.0, 0.8), (500.0, 600.0, 0.9)]
    res = evaluate_proposals(_gt({"v": [(0, 10)]}), {"v": props})
    assert res.average_recall[0] == 0.0
    np.testing.assert_allclose(res.average_recall[1:], 1.0)
    assert res.ar_at == {1: 0.0, 5: 1.0, 10: 1.0, 100: 1.0}
    assert res.auc == pytest.approx(100 * 98.5 / 100)


def test_video_without_proposals_halves_recall():
    res = evaluate_proposals(_gt({"v1": [(0, 10)], "v2": [(0, 10)]}), {"v1": [(0.0, 10.0, 1.0)]})
    np.testing.assert_allclose(res.average_recall, 0.5)
    np.testing.assert_allclose(res.proposals_per_video, np.arange(1, 101))
    assert res.counts.num_videos_without_proposals == 1
    assert res.counts.num_videos == 2 and res.counts.num_ground_truth == 2


def test_one_proposal_recalls_several_segments():
    res = evaluate_proposals(_gt({"v": [(0, 10), (0, 10), (50, 60)]}), {"v": [(0.0, 10.0, 1.0)]})
    np.testing.assert_allclose(res.average_recall, 2 / 3)


def test_cap_drops_proposals_beyond_max_avg():
    # 200 proposals for one video, max 100 on average: only the top 100 are kept; the hit is ranked 150th
    props = [(1000.0 + i, 1001.0 + i, 1.0 - i / 1000) for i in range(200)]
    props[149] = (0.0, 10.0, props[149][2])
    res = evaluate_proposals(_gt({"v": [(0, 10)]}), {"v": props})
    assert res.counts.num_kept == 100
    np.testing.assert_allclose(res.average_recall, 0.0)
    assert res.auc == 0.0


def test_proposals_outside_subset_count_in_the_ratio():
    # the official loader keeps every video's proposals: 200 given for 1 evaluated video -> ratio 0.5
    props = _junk(59, score=0.9) + [(0.0, 10.0, 0.5)] + _junk(40, score=0.1)
    gt = AnnotationSet.from_videos([
        VideoAnnotation("v", "validation", (Segment(0, 10, "a"),)),
        VideoAnnotation("t", "training", (Segment(0, 10, "a"),)),
    ])
    alone = evaluate_proposals(gt, {"v": props})
    assert alone.ar_at[100] == 1.0 and alone.ar_at[10] == 0.0
    with_outside = evaluate_proposals(gt, {"v": props, "t": _junk(100)})
    assert with_outside.counts.num_proposals == 200 and with_outside.counts.num_kept == 50
    np.testing.assert_allclose(with_outside.average_recall, 0.0)
    everything = evaluate_proposals(gt, {"v": props, "t": [(0.0, 10.0, 1.0)]}, subset=None)
    assert everything.counts.num_videos == 2


def test_detections_and_tuples_agree_and_labels_are_ignored():
    gt = _gt({"v": [(0, 10), (20, 30)]})
    tuples = [(0.0, 9.0, 0.3), (21.0, 30.0, 0.7), (5.0, 25.0, 0.9)]
    dets = [Detection(s, e, "whatever", sc) for s, e, sc in tuples]
    a, b = evaluate_proposals(gt, {"v": tuples}), evaluate_proposals(gt, {"v": dets})
    np.testing.assert_array_equal(a.recall, b.recall)
    assert a.auc == b.auc


def test_no_proposals_at_all_gives_zero():
    res = evaluate_proposals(_gt({"v": [(0, 10)]}), {})
    np.testing.assert_allclose(res.average_recall, 0.0)
    np.testing.assert_allclose(res.proposals_per_video, np.arange(1, 101))
    assert res.auc == 0.0 and res.ar_at[100] == 0.0


@pytest.mark.parametrize("props, match", [
    ({"v": [(5.0, 1.0, 0.5)]}, "end_sec"),
    ({"v": [(0.0, float("nan"), 0.5)]}, "non-finite"),
    ({"v": [(0.0, 1.0)]}, "expected"),
])
def test_bad_proposals_raise(props, match):
    with pytest.raises(ValueError, match=match):
        evaluate_proposals(_gt({"v": [(0, 10)]}), props)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="no ground-truth"):
        evaluate_proposals(_gt({"v": [(0, 10)]}, subset="training"), {})
    with pytest.raises(ValueError, match="max_avg_proposals"):
        evaluate_proposals(_gt({"v": [(0, 10)]}), {}, max_avg_proposals=0)


def _loop_reference(gt: AnnotationSet, props: dict, max_avg: float) -> tuple[np.ndarray, np.ndarray]:
    """The official algorithm restated with plain loops: (recall [K, 100], proposals_per_video [100])."""
    thresholds = ACTIVITYNET_TIOU_THRESHOLDS
    videos = [v for v in gt.subset("validation") if v.segments]
    total_given = sum(len(p) for p in props.values())
    ratio = max_avg * float(len(videos)) / total_given
    scores, total = [], 0
    for v in videos:
        g = np.array([(s.start_sec, s.end_sec) for s in v.segments])
        p = np.array(props.get(v.video_id, []), dtype=float).reshape(-1, 3)
        if p.shape[0] == 0:
            scores.append(np.zeros((g.shape[0], 1)))
            continue
        p = p[np.argsort(p[:, 2])[::-1]]
        n = min(int(p.shape[0] * ratio), p.shape[0])
        total += n
        scores.append(segment_tiou(g, p[:n, :2]))
    pcn = np.arange(1, 101) / 100.0 * (max_avg * float(len(videos)) / total)
    recall = np.zeros((thresholds.size, 100))
    for k, thr in enumerate(thresholds):
        matched = np.zeros(100)
        for score in scores:
            for j, n in enumerate(np.minimum((score.shape[1] * pcn).astype(int), score.shape[1])):
                matched[j] += np.count_nonzero((score[:, :n] >= thr).sum(axis=1))
        recall[k] = matched / sum(s.shape[0] for s in scores)
    return recall, pcn * (float(total) / len(videos))


@pytest.mark.parametrize("seed, max_avg", [(0, 100), (1, 100), (2, 10), (3, 37.5)])
def test_random_matches_loop_reference_and_is_monotone(seed, max_avg):
    rng = np.random.default_rng(seed)
    videos = {}
    for i in range(12):
        starts = rng.uniform(0, 90, size=rng.integers(1, 5))
        videos[f"v{i}"] = [(float(s), float(s + rng.uniform(1, 20))) for s in starts]
    props = {}
    for i in range(14):  # v12, v13 have no ground truth; v11 gets no proposals
        if i == 11:
            continue
        n = int(rng.integers(1, 250))
        starts = rng.uniform(0, 100, size=n)
        props[f"v{i}"] = [(float(s), float(s + rng.uniform(0.5, 25)), float(sc))
                          for s, sc in zip(starts, rng.integers(0, 20, size=n) / 20)]  # with ties
    gt = _gt(videos)
    res = evaluate_proposals(gt, props, max_avg_proposals=max_avg)
    ref_recall, ref_ppv = _loop_reference(gt, props, max_avg)
    np.testing.assert_allclose(res.recall, ref_recall, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.proposals_per_video, ref_ppv, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.proposals_per_video, np.arange(1, 101) * max_avg / 100, rtol=1e-9)
    assert np.all(np.diff(res.recall, axis=1) >= 0)
    assert np.all(np.diff(res.average_recall) >= 0)
    assert np.all((res.recall >= 0) & (res.recall <= 1))
    np.testing.assert_allclose(res.average_recall, res.recall.mean(axis=0))
    area = np.trapezoid(res.average_recall, res.proposals_per_video)
    assert res.auc == pytest.approx(100 * area / res.proposals_per_video[-1])
    assert 0 <= res.auc <= 100
    if max_avg == 100:
        assert set(res.ar_at) == {1, 5, 10, 100}
        assert res.ar_at[100] == res.average_recall[99] and res.ar_at[1] == res.average_recall[0]


def test_table_input_gives_the_same_result():
    from lofi.data.detection_table import DetectionTable

    rng = np.random.default_rng(5)
    videos, proposals = [], {}
    for v in range(8):
        segs = tuple(Segment(float(s), float(s + rng.uniform(2, 20)), "x") for s in rng.uniform(0, 60, 3))
        videos.append(VideoAnnotation(f"v{v}", "validation", segs))
        proposals[f"v{v}"] = [Detection(float(s), float(s + rng.uniform(1, 25)), "any", float(rng.integers(0, 4)))
                              for s in rng.uniform(0, 70, int(rng.integers(0, 30)))]
    gt = AnnotationSet.from_videos(videos)
    from_mapping = evaluate_proposals(gt, proposals, max_avg_proposals=10)
    from_table = evaluate_proposals(gt, DetectionTable.from_mapping(proposals), max_avg_proposals=10)
    np.testing.assert_array_equal(from_table.recall, from_mapping.recall)
    np.testing.assert_array_equal(from_table.proposals_per_video, from_mapping.proposals_per_video)
    assert from_table.counts == from_mapping.counts
