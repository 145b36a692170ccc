"""NMS, Soft-NMS, score fusion and replayable per-video post-processing, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from lofi.data.annotations import Detection
from lofi.postprocess import (
    PostprocessConfig,
    expand_to_video_classes,
    fuse_video_scores,
    nms,
    postprocess_video,
    segment_iou,
    soft_nms,
)
from lofi.postprocess.reference import reference_nms

DTYPES = [torch.float32, torch.float64]


def _three(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    segments = torch.tensor([[0.0, 10.0], [1.0, 11.0], [20.0, 30.0]], dtype=dtype)
    scores = torch.tensor([0.9, 0.8, 0.7], dtype=dtype)
    return segments, scores


# --- segment_iou ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_segment_iou_hand_values(dtype: torch.dtype) -> None:
    segments, _ = _three(dtype)
    iou = segment_iou(segments, segments)
    assert iou.shape == (3, 3) and iou.dtype == dtype
    assert iou[0, 1].item() == pytest.approx(9 / 11, rel=1e-6)
    assert iou[0, 2].item() == 0.0 and iou[1, 2].item() == 0.0
    assert torch.allclose(iou.diagonal(), torch.ones(3, dtype=dtype))
    assert torch.equal(iou, iou.T)


def test_segment_iou_empty_and_degenerate() -> None:
    assert segment_iou(torch.zeros(0, 2), torch.zeros(4, 2)).shape == (0, 4)
    point = torch.tensor([[5.0, 5.0]])
    assert segment_iou(point, point).item() == 0.0  # empty union: 0, not NaN
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        segment_iou(torch.zeros(3), torch.zeros(3, 2))


# --- hard NMS ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_nms_hand_case(dtype: torch.dtype) -> None:
    segments, scores = _three(dtype)
    assert nms(segments, scores, iou_threshold=0.5).tolist() == [0, 2]
    # 9/11 ~ 0.818 is not above 0.9: nothing is suppressed.
    assert nms(segments, scores, iou_threshold=0.9).tolist() == [0, 1, 2]


def test_nms_returns_indices_in_score_order() -> None:
    segments = torch.tensor([[20.0, 30.0], [1.0, 11.0], [0.0, 10.0]])
    scores = torch.tensor([0.7, 0.8, 0.9])
    assert nms(segments, scores, iou_threshold=0.5).tolist() == [2, 0]


def test_nms_class_wise_vs_agnostic() -> None:
    segments, scores = _three(torch.float32)
    labels = torch.tensor([0, 1, 0])
    assert nms(segments, scores, iou_threshold=0.5).tolist() == [0, 2]
    assert nms(segments, scores, iou_threshold=0.5, labels=labels).tolist() == [0, 1, 2]
    assert nms(segments, scores, iou_threshold=0.5, labels=torch.tensor([3, 3, 1])).tolist() == [0, 2]


def test_nms_max_detections() -> None:
    segments, scores = _three(torch.float64)
    assert nms(segments, scores, iou_threshold=0.9, max_detections=2).tolist() == [0, 1]
    assert nms(segments, scores, iou_threshold=0.5, max_detections=1).tolist() == [0]
    with pytest.raises(ValueError, match="max_detections"):
        nms(segments, scores, iou_threshold=0.5, max_detections=0)


def test_nms_ties_broken_by_lower_index() -> None:
    segments = torch.tensor([[0.0, 10.0], [0.0, 10.0], [0.5, 10.0]])
    scores = torch.tensor([0.5, 0.5, 0.5])
    assert nms(segments, scores, iou_threshold=0.5).tolist() == [0]
    # The later duplicate wins only when it scores higher.
    assert nms(segments, torch.tensor([0.5, 0.6, 0.5]), iou_threshold=0.5).tolist() == [1]


def test_nms_empty() -> None:
    kept = nms(torch.zeros(0, 2), torch.zeros(0), iou_threshold=0.5, labels=torch.zeros(0, dtype=torch.long))
    assert kept.dtype == torch.long and kept.numel() == 0


def test_nms_rejects_bad_inputs() -> None:
    segments, scores = _three(torch.float32)
    with pytest.raises(ValueError, match="scores"):
        nms(segments, scores[:2], iou_threshold=0.5)
    with pytest.raises(ValueError, match="NaN"):
        nms(segments, torch.tensor([0.9, float("nan"), 0.7]), iou_threshold=0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        nms(segments, scores, iou_threshold=1.5)
    with pytest.raises(ValueError, match="integer"):
        nms(segments, scores, iou_threshold=0.5, labels=torch.tensor([0.0, 1.0, 0.0]))


@pytest.mark.parametrize("class_wise", [False, True])
def test_nms_2000_random_matches_reference(class_wise: bool) -> None:
    # the speed of this case: benchmarks/postprocess.py
    gen = torch.Generator().manual_seed(0)
    n = 2000
    start = torch.rand(n, generator=gen, dtype=torch.float64) * 200
    segments = torch.stack([start, start + 1 + torch.rand(n, generator=gen, dtype=torch.float64) * 30], dim=1)
    scores = (torch.rand(n, generator=gen, dtype=torch.float64) * 100).round() / 100  # many ties
    labels = torch.randint(0, 5, (n,), generator=gen) if class_wise else None
    kept = nms(segments, scores, iou_threshold=0.5, labels=labels)
    expected = reference_nms(segments.tolist(), scores.tolist(), 0.5, None if labels is None else labels.tolist())
    assert kept.tolist() == expected


# --- Soft-NMS ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_soft_nms_gaussian_hand_case(dtype: torch.dtype) -> None:
    segments, scores = _three(dtype)
    out_segments, out_scores, out_labels = soft_nms(segments, scores, method="gaussian", sigma=0.5)
    decayed = 0.8 * math.exp(-((9 / 11) ** 2) / 0.5)  # ~0.2097, now below [20, 30]'s 0.7
    rel = 1e-12 if dtype == torch.float64 else 1e-6
    assert out_labels is None and out_scores.dtype == dtype
    assert out_segments.tolist() == [[0.0, 10.0], [20.0, 30.0], [1.0, 11.0]]
    assert out_scores[0].item() == pytest.approx(0.9, rel=rel)
    assert out_scores[1].item() == pytest.approx(0.7, rel=rel)
    assert out_scores[2].item() == pytest.approx(decayed, rel=rel)


@pytest.mark.parametrize("dtype", DTYPES)
def test_soft_nms_linear_hand_case(dtype: torch.dtype) -> None:
    segments, scores = _three(dtype)
    _, out_scores, _ = soft_nms(segments, scores, method="linear", iou_threshold=0.0)
    rel = 1e-12 if dtype == torch.float64 else 1e-6
    assert out_scores.tolist() == pytest.approx([0.9, 0.7, 0.8 * (1 - 9 / 11)], rel=rel)
    # Above the threshold only: 9/11 is not above 0.9, so nothing decays.
    _, untouched, _ = soft_nms(segments, scores, method="linear", iou_threshold=0.9)
    assert untouched.tolist() == pytest.approx([0.9, 0.8, 0.7], rel=rel)


def test_soft_nms_class_wise_vs_agnostic() -> None:
    segments, scores = _three(torch.float64)
    labels = torch.tensor([0, 1, 0])
    out_segments, out_scores, out_labels = soft_nms(segments, scores, method="gaussian", labels=labels)
    assert out_scores.tolist() == pytest.approx([0.9, 0.8, 0.7])  # no same-class overlap: nothing decays
    assert out_labels.tolist() == [0, 1, 0]
    assert out_segments.tolist() == segments.tolist()
    _, agnostic, _ = soft_nms(segments, scores, method="gaussian")
    assert agnostic[2].item() < 0.8


def test_soft_nms_min_score_drops() -> None:
    segments, scores = _three(torch.float64)
    out_segments, out_scores, _ = soft_nms(segments, scores, method="gaussian", min_score=0.3)
    assert out_segments.tolist() == [[0.0, 10.0], [20.0, 30.0]]  # decayed 0.21 < 0.3
    # Linear decay of an exact duplicate (IoU 1) reaches 0, below the default min_score of 1e-3: dropped.
    dup_segments, dup_scores, _ = soft_nms(torch.tensor([[0.0, 10.0], [0.0, 10.0]]), torch.tensor([0.9, 0.8]),
                                           method="linear")
    assert dup_segments.tolist() == [[0.0, 10.0]] and dup_scores.tolist() == pytest.approx([0.9])


def test_soft_nms_min_score_default_keeps_decayed_above() -> None:
    segments, _ = _three(torch.float64)
    scores = torch.tensor([0.9, 0.8, 0.0005], dtype=torch.float64)
    out_segments, out_scores, _ = soft_nms(segments, scores, method="linear")
    assert out_segments.tolist() == [[0.0, 10.0], [1.0, 11.0]]
    assert out_scores.tolist() == pytest.approx([0.9, 0.8 * 2 / 11])


def test_soft_nms_max_detections_ties_and_order() -> None:
    segments = torch.tensor([[0.0, 10.0], [50.0, 60.0], [100.0, 110.0], [0.0, 10.0]])
    scores = torch.tensor([0.5, 0.5, 0.9, 0.5])
    out_segments, out_scores, _ = soft_nms(segments, scores, method="gaussian", max_detections=2)
    assert out_segments.tolist() == [[100.0, 110.0], [0.0, 10.0]]  # tie among 0, 1, 3: index 0 first
    _, all_scores, _ = soft_nms(segments, scores, method="gaussian")
    assert torch.all(all_scores[:-1] >= all_scores[1:])
    assert all_scores[-1].item() == pytest.approx(0.5 * math.exp(-1 / 0.5), rel=1e-6)  # duplicate of [0, 10]


def test_soft_nms_empty_and_bad_method() -> None:
    out_segments, out_scores, out_labels = soft_nms(torch.zeros(0, 2), torch.zeros(0), method="linear",
                                                    labels=torch.zeros(0, dtype=torch.long))
    assert out_segments.shape == (0, 2) and out_scores.shape == (0,) and out_labels.shape == (0,)
    with pytest.raises(ValueError, match="method"):
        soft_nms(*_three(torch.float32), method="hard")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma"):
        soft_nms(*_three(torch.float32), method="gaussian", sigma=0.0)


def test_soft_nms_2000_random_is_sorted() -> None:
    # the speed of this case: benchmarks/postprocess.py
    gen = torch.Generator().manual_seed(1)
    n = 2000
    start = torch.rand(n, generator=gen) * 200
    segments = torch.stack([start, start + 1 + torch.rand(n, generator=gen) * 30], dim=1)
    scores = torch.rand(n, generator=gen)
    _, out_scores, _ = soft_nms(segments, scores, method="gaussian", max_detections=100)
    assert len(out_scores) == 100 and torch.all(out_scores[:-1] >= out_scores[1:])


# --- fusion with video-level class scores --------------------------------------------------------------------

def test_fuse_video_scores() -> None:
    scores = torch.tensor([0.5, 0.8])
    labels = torch.tensor([2, 0])
    video = torch.tensor([0.1, 0.3, 0.9])
    assert fuse_video_scores(scores, labels, video).tolist() == pytest.approx([0.45, 0.08])
    assert fuse_video_scores(scores, labels, video, mode="geometric").tolist() == pytest.approx(
        [math.sqrt(0.45), math.sqrt(0.08)])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        fuse_video_scores(scores, torch.tensor([3, 0]), video)
    with pytest.raises(ValueError, match="mode"):
        fuse_video_scores(scores, labels, video, mode="max")  # type: ignore[arg-type]


def test_expand_to_video_classes_top2() -> None:
    segments = torch.tensor([[0.0, 5.0], [10.0, 20.0]])
    scores = torch.tensor([0.5, 1.0])
    video = torch.tensor([0.1, 0.6, 0.3])
    out_segments, out_scores, out_labels = expand_to_video_classes(segments, scores, video, top_k=2)
    assert out_labels.tolist() == [1, 2, 1, 2]
    assert out_segments.tolist() == [[0.0, 5.0], [0.0, 5.0], [10.0, 20.0], [10.0, 20.0]]
    assert out_scores.tolist() == pytest.approx([0.3, 0.15, 0.6, 0.3])
    with pytest.raises(ValueError, match="top_k"):
        expand_to_video_classes(segments, scores, video, top_k=4)


# --- config and per-video replay -----------------------------------------------------------------------------

CLASSES = ("Jump", "Run")


def test_postprocess_config_validation() -> None:
    assert PostprocessConfig().max_detections == 100
    with pytest.raises(ValueError, match="soft_nms_gaussian"):
        PostprocessConfig(method="soft-nms")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma"):
        PostprocessConfig(sigma=-1.0)
    with pytest.raises(TypeError):
        PostprocessConfig(iou_treshold=0.5)  # type: ignore[call-arg]  # typos are not silently accepted


def test_postprocess_video_hard_nms_class_wise_and_agnostic() -> None:
    segments, scores = _three(torch.float64)
    labels = torch.tensor([0, 1, 0])
    dets = postprocess_video(segments, scores, labels, PostprocessConfig(method="nms"), classes=CLASSES)
    assert dets == [Detection(0.0, 10.0, "Jump", 0.9), Detection(1.0, 11.0, "Run", 0.8),
                    Detection(20.0, 30.0, "Jump", 0.7)]
    agnostic = postprocess_video(segments, scores, labels, PostprocessConfig(method="nms", class_agnostic=True),
                                 classes=CLASSES)
    assert [d.label for d in agnostic] == ["Jump", "Jump"] and [d.start_sec for d in agnostic] == [0.0, 20.0]


def test_postprocess_video_soft_nms_keeps_true_labels_when_class_agnostic() -> None:
    segments, scores = _three(torch.float64)
    labels = torch.tensor([0, 1, 0])
    config = PostprocessConfig(method="soft_nms_gaussian", class_agnostic=True)
    dets = postprocess_video(segments, scores, labels, config, classes=CLASSES)
    assert [d.label for d in dets] == ["Jump", "Jump", "Run"]
    assert dets[2].score == pytest.approx(0.8 * math.exp(-((9 / 11) ** 2) / 0.5))
    linear = postprocess_video(segments, scores, labels, PostprocessConfig(method="soft_nms_linear"),
                               classes=CLASSES)
    assert [d.score for d in linear] == pytest.approx([0.9, 0.8, 0.7])  # class-wise: no decay


def test_postprocess_video_none_min_score_max_detections_and_clipping() -> None:
    segments = torch.tensor([[-2.0, 4.0], [3.0, 9.0], [12.0, 15.0], [1.0, 2.0]])
    scores = torch.tensor([0.2, 0.9, 0.95, 0.0001])
    labels = torch.tensor([1, 0, 0, 1])
    config = PostprocessConfig(method="none", max_detections=2)
    dets = postprocess_video(segments, scores, labels, config, classes=CLASSES, duration_sec=10.0)
    # [12, 15] lies past the end and is dropped; [1, 2] is below min_score; then the cap of 2 applies.
    assert [(d.start_sec, d.end_sec, d.label) for d in dets] == [(3.0, 9.0, "Jump"), (0.0, 4.0, "Run")]


def test_postprocess_video_replay_is_deterministic_and_checks_labels() -> None:
    gen = torch.Generator().manual_seed(2)
    start = torch.rand(300, generator=gen) * 100
    segments = torch.stack([start, start + 5], dim=1)
    scores = torch.rand(300, generator=gen)
    labels = torch.randint(0, 2, (300,), generator=gen)
    for method in ("nms", "soft_nms_gaussian", "soft_nms_linear", "none"):
        config = PostprocessConfig(method=method)  # type: ignore[arg-type]
        first = postprocess_video(segments, scores, labels, config, classes=CLASSES)
        assert first == postprocess_video(segments.clone(), scores.clone(), labels.clone(), config, classes=CLASSES)
        assert 0 < len(first) <= 100
        assert all(isinstance(d, Detection) for d in first)
        assert [d.score for d in first] == sorted((d.score for d in first), reverse=True)
    empty = postprocess_video(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                              PostprocessConfig(), classes=CLASSES)
    assert empty == []
    with pytest.raises(ValueError, match="class list"):
        postprocess_video(segments, scores, labels + 1, PostprocessConfig(), classes=CLASSES)
