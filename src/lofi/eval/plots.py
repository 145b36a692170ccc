"""PNG plots of detection results: mAP against tIoU, per-class AP, and one video's timeline.

Uses matplotlib's object API (:class:`matplotlib.figure.Figure` with the Agg canvas), so nothing touches
pyplot's global state or needs a display; every function writes a PNG and returns its path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from lofi.data.annotations import AnnotationSet, Detection, VideoAnnotation
from lofi.data.detection_table import DetectionTable
from lofi.eval.detection import DetectionResult, Predictions
from lofi.eval.proposals import ProposalResult
from lofi.io import safe_file_stem

__all__ = ["plot_map_vs_tiou", "plot_map_comparison", "plot_per_class_ap", "plot_precision_recall", "plot_detection_timeline",
           "plot_recall_vs_proposals", "class_colors", "interpolated_precision", "write_evaluation_plots"]

DPI = 120
# Qualitative palettes, concatenated: 60 distinct colours before any repeats.
_PALETTES = ("tab20", "tab20b", "tab20c")


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at :data:`DPI` (Agg, no display), creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def class_colors(classes: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """A fixed RGBA colour per class, by its index in ``classes`` (cycles after 60 classes)."""
    from matplotlib import colormaps

    palette = []
    for name in _PALETTES:
        colors = list(colormaps[name].colors)
        # tab20 pairs each hue with a lighter shade; take the strong shades first so neighbours differ.
        step = 2 if name == "tab20" else 4
        palette += [c for offset in range(step) for c in colors[offset::step]]
    return {label: to_rgba(palette[i % len(palette)]) for i, label in enumerate(classes)}


def plot_map_vs_tiou(result: DetectionResult, path: str | Path) -> Path:
    """mAP (%) at each tIoU threshold, as a line with markers; the average mAP goes in the title."""
    thresholds = np.asarray(result.tiou_thresholds, dtype=float)
    maps = 100.0 * np.asarray(result.mAP, dtype=float)
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(thresholds, maps, marker="o", color="tab:blue")
    for x, y in zip(thresholds, maps):
        ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xlabel("tIoU threshold")
    ax.set_ylabel("mAP (%)")
    ax.set_ylim(0, 100)
    if len(thresholds):
        ax.set_xticks(thresholds)
        ax.set_xticklabels([f"{t:.2f}" for t in thresholds], rotation=45 if len(thresholds) > 6 else 0)
        pad = 0.05 * max(float(np.ptp(thresholds)), 0.1)
        ax.set_xlim(thresholds.min() - pad, thresholds.max() + pad)
    ax.grid(True, alpha=0.4)
    ax.set_title(f"mAP vs tIoU (average mAP {100.0 * result.average_mAP:.2f}%)")
    return save_figure(fig, path)


def plot_map_comparison(results: Mapping[str, DetectionResult], path: str | Path) -> Path:
    """mAP (%) against tIoU for several results on one set of axes (e.g. frozen vs LoFi features); the legend
    gives each one's average mAP."""
    fig = Figure(figsize=(6.8, 4.4), layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^v<>"
    for i, (name, result) in enumerate(results.items()):
        thresholds = np.asarray(result.tiou_thresholds, dtype=float)
        ax.plot(thresholds, 100.0 * np.asarray(result.mAP, dtype=float), marker=markers[i % len(markers)],
                label=f"{name} (average {100.0 * result.average_mAP:.2f}%)")
    ax.set_xlabel("tIoU threshold")
    ax.set_ylabel("mAP (%)")
    highest = max((100.0 * float(np.max(r.mAP)) for r in results.values() if len(r.mAP)), default=0.0)
    ax.set_ylim(0, 100 if highest > 50 else max(5.0, 1.25 * highest))  # small values stay readable
    ax.grid(True, alpha=0.4)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Detection mAP by the features the head was trained on")
    return save_figure(fig, path)


def plot_per_class_ap(result: DetectionResult, path: str | Path, *, tiou_index: int | None = None) -> Path:
    """Per-class AP (%) as horizontal bars, best class on top.

    With ``tiou_index`` None the AP is averaged over the thresholds; otherwise it is the AP at
    ``result.tiou_thresholds[tiou_index]``. The figure grows with the number of classes.
    """
    labels = list(result.ap)
    matrix = result.ap_matrix
    if tiou_index is None:
        values = matrix.mean(axis=1) if matrix.size else np.zeros(len(labels))
        what = "averaged over tIoU " + (
            f"{result.tiou_thresholds[0]:.2f}-{result.tiou_thresholds[-1]:.2f}" if len(result.tiou_thresholds) else ""
        )
    else:
        values = matrix[:, tiou_index] if len(labels) else np.zeros(0)
        what = f"at tIoU {float(result.tiou_thresholds[tiou_index]):.2f}"
    values = 100.0 * np.asarray(values, dtype=float)
    order = np.argsort(-values, kind="stable")
    labels = [labels[i] for i in order]
    values = values[order]

    n = len(labels)
    fontsize = 9 if n <= 30 else 7 if n <= 80 else 6
    row_in = max(fontsize, 6) * 1.6 / 72  # inches per bar
    height = min(max(2.5, 1.3 + n * row_in), 400)
    longest = max((len(s) for s in labels), default=4)
    width = min(max(6.4, 3.5 + 0.075 * longest), 14)
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)
    ax.barh(y, values, color="tab:blue", height=0.75)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=fontsize)
    if n:
        ax.set_ylim(n - 0.5, -0.5)
    for yi, v in zip(y, values):
        ax.text(v + 1, yi, f"{v:.1f}", va="center", fontsize=fontsize - 1)
    ax.set_xlim(0, 108)
    ax.set_xlabel("AP (%)")
    ax.grid(True, axis="x", alpha=0.4)
    ax.set_axisbelow(True)
    ax.set_title(f"Per-class AP {what} ({n} classes, mAP {values.mean() if n else 0.0:.2f}%)", fontsize=10)
    if n > 40:
        ax.tick_params(axis="x", labeltop=True, top=True)
    return save_figure(fig, path)


def interpolated_precision(precision: np.ndarray, recall: np.ndarray, recall_grid: np.ndarray) -> np.ndarray:
    """The VOC interpolated precision (the best precision at recall >= r) at each ``recall_grid`` point.

    ``precision`` and ``recall`` are one class's ranked points ``[N]`` at one threshold; 0 beyond the last
    recall reached. The area under it is the class's AP."""
    envelope = np.maximum.accumulate(np.append(precision, 0.0)[::-1])[::-1]  # [N+1]
    return envelope[np.searchsorted(recall, recall_grid, side="left")]


def _default_pr_thresholds(num_thresholds: int) -> list[int]:
    return sorted({0, num_thresholds // 2, num_thresholds - 1}) if num_thresholds else []


def plot_precision_recall(result: DetectionResult, path: str | Path, *,
                          tiou_indices: Sequence[int] | None = None, max_legend_classes: int = 10) -> Path:
    """Interpolated precision-recall curves, one panel per chosen tIoU (default: lowest, middle, highest).

    Each panel shows every class's curve (coloured with a legend up to ``max_legend_classes`` classes, thin grey
    lines beyond) and, in black, the mean over classes of the interpolated precision, whose area is the mAP.
    Needs ``evaluate_detection(..., keep_curves=True)``.
    """
    if not result.curves:
        raise ValueError("the result has no precision-recall points: evaluate with keep_curves=True")
    num_thr = len(result.tiou_thresholds)
    indices = list(_default_pr_thresholds(num_thr) if tiou_indices is None else tiou_indices)
    for k in indices:
        if not 0 <= k < num_thr:
            raise ValueError(f"tiou index {k} out of range: the result has {num_thr} thresholds")
    labels = list(result.ap)
    colors = class_colors(labels)
    coloured = len(labels) <= max_legend_classes
    grid = np.linspace(0.0, 1.0, 201)  # [R]
    fig = Figure(figsize=(4.2 * max(len(indices), 1) + (2.6 if coloured else 0.4), 4.4), layout="constrained")
    axes = fig.subplots(1, max(len(indices), 1), squeeze=False)[0]
    for ax, k in zip(axes, indices):
        mean = np.zeros_like(grid)
        for label in labels:
            pr = result.curves.get(label)
            values = (interpolated_precision(pr.precision[k], pr.recall[k], grid)
                      if pr is not None and pr.precision.shape[1] else np.zeros_like(grid))  # [R]
            mean += values / len(labels)
            if coloured:
                ax.plot(grid, values, drawstyle="steps-post", color=colors[label], linewidth=1.2, label=label)
            else:
                ax.plot(grid, values, drawstyle="steps-post", color="0.6", linewidth=0.5, alpha=0.5)
        ax.plot(grid, mean, drawstyle="steps-post", color="black", linewidth=2.0,
                label="mean over classes (area = mAP)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("interpolated precision")
        ax.grid(True, alpha=0.3)
        ax.set_title(f"tIoU {float(result.tiou_thresholds[k]):.2f}: mAP {100 * float(result.mAP[k]):.2f}%",
                     fontsize=10)
    if coloured:
        handles, names = axes[-1].get_legend_handles_labels()
        axes[-1].legend(handles, names, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    else:
        axes[0].legend(loc="lower left", fontsize=8, title=f"{len(labels)} classes in grey", title_fontsize=8)
    fig.suptitle("Precision-recall per class (interpolated, as AP integrates it)", fontsize=11)
    return save_figure(fig, path)


def plot_recall_vs_proposals(result: ProposalResult, path: str | Path) -> Path:
    """Average recall against the average number of proposals per video (the AR@AN curve, black), with the
    recall at each tIoU threshold (coloured, light to dark as the threshold rises); AUC in the title."""
    from matplotlib import colormaps

    an = np.asarray(result.proposals_per_video, dtype=float)
    fig = Figure(figsize=(7.6, 4.6), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis"]
    num_thr = len(result.tiou_thresholds)
    for k, (t, row) in enumerate(zip(result.tiou_thresholds, result.recall)):
        ax.plot(an, 100 * np.asarray(row), color=cmap(k / max(num_thr - 1, 1)), linewidth=1.0,
                label=f"tIoU {float(t):.2f}")
    ax.plot(an, 100 * np.asarray(result.average_recall), color="black", linewidth=2.2, label="average recall")
    right = float(an[-1]) if an.size else 1.0
    for point, ar in result.ar_at.items():
        at_right = point > 0.8 * right
        ax.annotate(f"AR@{point} {100 * ar:.1f}", (point, 100 * ar), textcoords="offset points",
                    xytext=(-4 if at_right else 4, -12), ha="right" if at_right else "left", fontsize=8)
        ax.plot([point], [100 * ar], "o", color="black", markersize=3)
    ax.set_xlim(0, right)
    ax.set_ylim(0, 102)
    ax.set_xlabel("average number of proposals per video (AN)")
    ax.set_ylabel("recall (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(f"AR vs AN (AUC {result.auc:.2f}, {result.counts.num_videos} videos, "
                 f"{result.counts.num_ground_truth} segments)", fontsize=10)
    return save_figure(fig, path)


def plot_detection_timeline(
    video: VideoAnnotation,
    detections: Sequence[Detection],
    path: str | Path,
    *,
    classes: Sequence[str],
    top_k: int = 20,
    ground_truth: bool = True,
) -> Path:
    """Ground truth on the top row (without it when ``ground_truth`` is False: detections of a video nobody
    annotated), then the ``top_k`` best-scored predictions one per row (alpha = score).

    Colours are fixed per class by its index in ``classes``; labels not in ``classes`` are grey. The x axis
    runs from 0 to the video's duration (or to the last segment end when the duration is unknown).
    """
    colors = class_colors(classes)
    grey = to_rgba("0.5")
    top = sorted(detections, key=lambda d: d.score, reverse=True)[: max(int(top_k), 0)]

    ends = [s.end_sec for s in video.segments] + [d.end_sec for d in top]
    duration = video.duration_sec if video.duration_sec else max(ends, default=1.0)
    duration = max(float(duration), 1e-6)

    first = 1 if ground_truth else 0  # the row of the best prediction
    rows = first + len(top)
    fig = Figure(figsize=(10, min(max(2.6, 1.6 + 0.24 * rows), 40)), layout="constrained")
    ax = fig.add_subplot()
    used: dict[str, tuple] = {}

    for seg in video.segments if ground_truth else ():
        c = colors.get(seg.label, grey)
        used.setdefault(seg.label, c)
        ax.broken_barh([(seg.start_sec, seg.end_sec - seg.start_sec)], (-0.4, 0.8), facecolors=c,
                       edgecolors="black", linewidth=0.8)
    for start, end in video.ignore_regions_sec if ground_truth else ():
        ax.broken_barh([(start, end - start)], (-0.4, 0.8), facecolors="none", edgecolors="0.4", hatch="//",
                       linewidth=0.5)

    for i, det in enumerate(top, start=first):
        c = colors.get(det.label, grey)
        used.setdefault(det.label, c)
        alpha = float(np.clip(det.score, 0.05, 1.0))
        ax.broken_barh([(det.start_sec, det.end_sec - det.start_sec)], (i - 0.35, 0.7), facecolors=[(*c[:3], alpha)],
                       edgecolors=[(*c[:3], 1.0)], linewidth=0.6)

    if ground_truth:
        ax.axhline(0.5, color="black", linewidth=0.8)
    ax.set_yticks(range(rows))
    fs = 8 if rows <= 25 else 6
    ax.set_yticklabels(["ground truth"] * first + [f"#{i} {d.score:.2f}" for i, d in enumerate(top, start=1)],
                       fontsize=fs)
    ax.set_ylim(max(rows, 1) - 0.5, -0.5)
    ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    title = (f"ground truth ({len(video.segments)}) and top-{len(top)} predictions of {len(detections)}" if ground_truth
             else f"top-{len(top)} detections of {len(detections)}")
    ax.set_title(f"{video.video_id}: {title}", fontsize=10)
    if used:
        order = {label: i for i, label in enumerate(classes)}
        labels = sorted(used, key=lambda s: (order.get(s, len(order)), s))
        handles = [Patch(facecolor=used[label], edgecolor="black", label=label) for label in labels]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                  ncols=1 if len(labels) <= 25 else 2)
    return save_figure(fig, path)


def _detections_of(predictions: Predictions, video_id: str) -> Sequence[Detection]:
    if isinstance(predictions, DetectionTable):
        return predictions.detections_of(video_id)
    return predictions.get(video_id, [])


def write_evaluation_plots(result: DetectionResult, ground_truth: AnnotationSet, predictions: Predictions,
                           out_dir: str | os.PathLike, *, num_timelines: int = 3) -> list[Path]:
    """The pictures of ``lofi evaluate --plots``: mAP vs tIoU, per-class AP, precision-recall curves (when the
    result kept them) and timelines of the first videos (``timeline_<stem>.png``, :func:`lofi.io.safe_file_stem`)."""
    out = Path(out_dir)
    paths = [plot_map_vs_tiou(result, out / "map_vs_tiou.png"), plot_per_class_ap(result, out / "per_class_ap.png")]
    if result.curves:
        paths.append(plot_precision_recall(result, out / "precision_recall.png"))
    for video_id in sorted(ground_truth.videos)[:num_timelines]:
        paths.append(plot_detection_timeline(ground_truth[video_id], _detections_of(predictions, video_id),
                                             out / f"timeline_{safe_file_stem(video_id)}.png",
                                             classes=ground_truth.classes))
    return paths
