"""The plotting functions write readable PNGs of plausible size, for 1 and for 50 classes."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from lofi.data.annotations import Detection, Segment, VideoAnnotation  # noqa: E402
from lofi.eval.detection import DetectionCounts, DetectionResult  # noqa: E402
from lofi.eval.plots import (  # noqa: E402
    class_colors,
    plot_detection_timeline,
    plot_map_vs_tiou,
    plot_per_class_ap,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _classes(n: int) -> list[str]:
    return [f"class_{i:03d}_action" for i in range(n)]


def _result(num_classes: int) -> DetectionResult:
    rng = np.random.default_rng(num_classes)
    thresholds = np.linspace(0.5, 0.95, 10)
    ap = {label: np.sort(rng.uniform(0, 1, len(thresholds)))[::-1].copy() for label in _classes(num_classes)}
    maps = np.stack(list(ap.values())).mean(axis=0)
    counts = DetectionCounts(num_classes, 3, num_classes, 10, 10, 0, 0)
    return DetectionResult(thresholds, maps, float(maps.mean()), ap, counts)


def _video(num_classes: int) -> tuple[VideoAnnotation, list[Detection]]:
    classes = _classes(num_classes)
    rng = np.random.default_rng(7)
    segments = tuple(Segment(10.0 * i + 1, 10.0 * i + 6, classes[i % num_classes]) for i in range(6))
    detections = [
        Detection(float(s), float(s + rng.uniform(2, 10)), classes[int(rng.integers(num_classes))],
                  float(rng.uniform()))
        for s in rng.uniform(0, 55, 60)
    ]
    return VideoAnnotation("v_test", "validation", segments, duration_sec=65.0), detections


@pytest.mark.parametrize("num_classes", [1, 50])
def test_map_vs_tiou(tmp_path: Path, num_classes: int) -> None:
    out = plot_map_vs_tiou(_result(num_classes), tmp_path / "map.png")
    assert out == tmp_path / "map.png" and out.is_file()
    width, height = _png_size(out)
    assert 400 <= width <= 2000 and 300 <= height <= 2000


@pytest.mark.parametrize("num_classes", [1, 50])
@pytest.mark.parametrize("tiou_index", [None, 0])
def test_per_class_ap(tmp_path: Path, num_classes: int, tiou_index: int | None) -> None:
    out = plot_per_class_ap(_result(num_classes), tmp_path / "sub" / "ap.png", tiou_index=tiou_index)
    assert out.is_file()
    width, height = _png_size(out)
    assert 400 <= width <= 2000 and 250 <= height
    if num_classes == 50:
        assert height >= 800  # grows with the class count


def test_per_class_ap_height_scales(tmp_path: Path) -> None:
    _, small = _png_size(plot_per_class_ap(_result(5), tmp_path / "a.png"))
    _, large = _png_size(plot_per_class_ap(_result(200), tmp_path / "b.png"))
    assert large > 3 * small


@pytest.mark.parametrize("num_classes", [1, 50])
def test_detection_timeline(tmp_path: Path, num_classes: int) -> None:
    video, detections = _video(num_classes)
    out = plot_detection_timeline(video, detections, tmp_path / "t.png", classes=_classes(num_classes), top_k=20)
    assert out.is_file()
    width, height = _png_size(out)
    assert 800 <= width <= 2500 and 300 <= height <= 3000


def test_detection_timeline_edge_cases(tmp_path: Path) -> None:
    video = VideoAnnotation("v_empty", "validation", (), duration_sec=None)
    out = plot_detection_timeline(video, [], tmp_path / "empty.png", classes=["a"])
    assert _png_size(out)[0] > 0
    det = [Detection(0.0, 3.0, "unknown", 0.9)]
    out = plot_detection_timeline(video, det, tmp_path / "unknown.png", classes=["a"], top_k=5)
    assert _png_size(out)[0] > 0


def test_class_colors_consistent() -> None:
    a = class_colors(_classes(50))
    b = class_colors(_classes(50))
    assert a == b
    assert len(set(list(a.values())[:20])) == 20


def _evaluated(num_classes: int):
    from lofi.data.annotations import AnnotationSet
    from lofi.eval import evaluate_detection

    classes = _classes(num_classes)
    rng = np.random.default_rng(num_classes)
    videos, preds = [], {}
    for v in range(max(4, num_classes)):
        segs = tuple(Segment(float(s), float(s + 8), classes[int(rng.integers(num_classes))])
                     for s in (5.0, 30.0, 60.0))
        videos.append(VideoAnnotation(f"v{v}", "validation", segs, duration_sec=80.0))
        preds[f"v{v}"] = [Detection(seg.start_sec + float(rng.normal(0, 2)), seg.end_sec + float(rng.normal(0, 2)),
                                    seg.label if rng.uniform() < 0.7 else classes[int(rng.integers(num_classes))],
                                    float(rng.uniform())) for seg in segs for _ in range(3)]
    return evaluate_detection(AnnotationSet.from_videos(videos), preds, keep_curves=True)


@pytest.mark.parametrize("num_classes", [1, 5, 50])
def test_precision_recall(tmp_path: Path, num_classes: int) -> None:
    from lofi.eval.plots import plot_precision_recall

    out = plot_precision_recall(_evaluated(num_classes), tmp_path / "pr.png")
    width, height = _png_size(out)
    assert 1000 <= width <= 2500 and 400 <= height <= 800  # three panels side by side


def test_precision_recall_needs_curves_and_valid_indices(tmp_path: Path) -> None:
    from lofi.eval.plots import plot_precision_recall

    with pytest.raises(ValueError, match="keep_curves=True"):
        plot_precision_recall(_result(3), tmp_path / "pr.png")
    with pytest.raises(ValueError, match="out of range"):
        plot_precision_recall(_evaluated(2), tmp_path / "pr.png", tiou_indices=[10])
    one = plot_precision_recall(_evaluated(2), tmp_path / "one.png", tiou_indices=[0])
    assert _png_size(one)[0] < 1000


def test_interpolated_precision_hand_computed() -> None:
    from lofi.eval.plots import interpolated_precision

    # points (recall, precision): (0.5, 1), (0.5, 0.5), (1, 2/3): envelope 1 up to recall 0.5, then 2/3
    values = interpolated_precision(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0]),
                                    np.array([0.0, 0.5, 0.51, 1.0]))
    np.testing.assert_allclose(values, [1, 1, 2 / 3, 2 / 3])
    # recall never reaches 1: precision 0 beyond the last point
    np.testing.assert_allclose(interpolated_precision(np.array([1.0]), np.array([0.5]), np.array([0.6])), [0])


def test_timelines_of_tricky_ids_stay_in_the_plots_folder(tmp_path: Path) -> None:
    """A video id is no path: ``x/../../../NAME`` and ``a b`` / ``a_b`` each get their own PNG inside the folder."""
    from lofi.data.annotations import AnnotationSet
    from lofi.eval import evaluate_detection
    from lofi.eval.plots import write_evaluation_plots
    from lofi.io import safe_file_stem

    ids = ["x/../../../NAME", "a b", "a_b", "/tmp/abs"]
    videos = [VideoAnnotation(vid, "validation", (Segment(1.0, 4.0, "a"),), duration_sec=10.0) for vid in ids]
    ground_truth = AnnotationSet.from_videos(videos)
    predictions = {vid: [Detection(1.5, 4.0, "a", 0.8)] for vid in ids}
    plots = tmp_path / "deep" / "er" / "plots"
    paths = write_evaluation_plots(evaluate_detection(ground_truth, predictions), ground_truth, predictions, plots,
                                   num_timelines=len(ids))
    timelines = [p for p in paths if p.name.startswith("timeline_")]
    assert len(timelines) == len(ids) == len({p.name for p in timelines})
    assert {p.name for p in timelines} == {f"timeline_{safe_file_stem(vid)}.png" for vid in ids}
    for path in paths:
        assert path.resolve().parent == plots.resolve() and _png_size(path)[0] > 0
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(written) == len(paths) and all(p.parent == Path("deep/er/plots") for p in written), written
