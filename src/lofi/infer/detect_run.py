"""``lofi detect``: a model file run over video files and folders, with the outputs a practitioner wants.

:func:`run_detect` finds the videos (files as given, folders searched recursively for video extensions), runs
:class:`~lofi.infer.detector.Detector` over them with progress per video and overall, and writes what was asked:
an ActivityNet results JSON (``results.{video}[{label, score, segment}]``, seconds, readable by ``lofi
evaluate``), a CSV (``video_id,label,start_sec,end_sec,score``), a timeline PNG per video, and a viewer page. A
video that cannot be decoded is reported by name and left out; the others are still processed.
"""

from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from lofi.data.annotations import AnnotationSet, Detection, VideoAnnotation
from lofi.data.formats import write_results
from lofi.data.video import VIDEO_EXTENSIONS
from lofi.errors import UserError
from lofi.infer.detector import Detector, VideoResult
from lofi.io import atomic_write, safe_file_stem


@dataclass
class DetectSummary:
    """What a detection run did: every video's result (the skipped ones with their reason) and the files written."""

    results: list[VideoResult] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def skipped(self) -> list[VideoResult]:
        return [r for r in self.results if not r.ok]

    @property
    def detections(self) -> dict[str, list[Detection]]:
        return {r.video_id: r.detections for r in self.results if r.ok}


def collect_videos(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The video files of ``inputs``: a file as given (whatever its extension: FFmpeg decides), a folder's files
    with a video extension (recursively, sorted). A path that does not exist is kept, to be reported as skipped;
    a folder without videos is an error."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
            if not files:
                raise UserError(f"{path}: no video files in this folder (looked for {', '.join(VIDEO_EXTENSIONS)})")
            found.extend(files)
        else:
            found.append(path)
    if not found:
        raise UserError("no video given")
    return found


def run_detect(detector: Detector, inputs: Sequence[str | os.PathLike], *, output: str | os.PathLike | None = None,
               csv_path: str | os.PathLike | None = None, plots_dir: str | os.PathLike | None = None,
               html_dir: str | os.PathLike | None = None, ground_truth: AnnotationSet | None = None,
               threshold: float = 0.0, top_k: int | None = None, progress: bool = True,
               on_video: Callable[[VideoResult], None] | None = None) -> DetectSummary:
    """Detect actions in every video of ``inputs`` and write the requested outputs (see the module docstring).
    ``ground_truth`` adds a ground-truth row to the pictures; ``on_video`` is called as each video is done."""
    paths = collect_videos(inputs)
    summary = DetectSummary()
    started = time.perf_counter()
    overall = tqdm(total=len(paths), desc="videos", unit="video", disable=not progress, position=0)
    current = tqdm(total=0, desc="snippets", unit="snippet", disable=not progress, position=1, leave=False)
    shown = {"index": -1}

    def on_snippets(index: int, done: int, total: int) -> None:
        if index != shown["index"]:
            shown["index"] = index
            current.reset(total=total)
            current.set_description(paths[index].name[:40])
        current.n = done
        current.refresh()

    for result in detector.detect_many(paths, threshold=threshold, top_k=top_k, on_error="skip",
                                       progress=on_snippets if progress else None):
        summary.results.append(result)
        overall.update(1)
        if not result.ok and progress:  # at once; the caller lists every skipped video at the end too
            overall.write(f"skipped {result.path}: {result.error}")
        if on_video is not None:
            on_video(result)
    current.close()
    overall.close()
    summary.seconds = time.perf_counter() - started
    if output is not None:
        summary.written.append(_write_json(summary, Path(output)))
    if csv_path is not None:
        summary.written.append(write_csv(summary.detections, Path(csv_path)))
    if plots_dir is not None:
        summary.written.extend(write_timelines(summary, Path(plots_dir), classes=detector.classes,
                                               ground_truth=ground_truth))
    if html_dir is not None:
        summary.written.append(write_page(summary, Path(html_dir), classes=detector.classes,
                                          ground_truth=ground_truth))
    return summary


def _write_json(summary: DetectSummary, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_results(summary.detections, path)
    return path


def write_csv(detections: dict[str, list[Detection]], path: Path) -> Path:
    """``video_id,label,start_sec,end_sec,score``, one row per detection, videos in order, best first."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["video_id", "label", "start_sec", "end_sec", "score"])
    for video_id, found in detections.items():
        for d in found:
            writer.writerow([video_id, d.label, f"{d.start_sec:.3f}", f"{d.end_sec:.3f}", f"{d.score:.4f}"])
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.getvalue().encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


def _annotation(result: VideoResult, ground_truth: AnnotationSet | None) -> tuple[VideoAnnotation, bool]:
    if ground_truth is not None and result.video_id in ground_truth.videos:
        return ground_truth[result.video_id], True
    return VideoAnnotation(video_id=result.video_id, subset="", segments=(), duration_sec=result.duration_sec), False


def write_timelines(summary: DetectSummary, out_dir: Path, *, classes: Sequence[str],
                    ground_truth: AnnotationSet | None = None, top_k: int = 20) -> list[Path]:
    """``<video>.png`` per processed video: its ``top_k`` best detections on a timeline (ground truth on top)."""
    from lofi.eval.plots import plot_detection_timeline

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for result in summary.results:
        if result.ok:
            video, has_truth = _annotation(result, ground_truth)
            written.append(plot_detection_timeline(video, result.detections,
                                                   out_dir / f"{safe_file_stem(result.video_id)}.png",
                                                   classes=classes, top_k=top_k, ground_truth=has_truth))
    return written


def write_page(summary: DetectSummary, out_dir: Path, *, classes: Sequence[str],
               ground_truth: AnnotationSet | None = None) -> Path:
    """The viewer page (``index.html``): each video beside its timeline (:mod:`lofi.eval.viewer`)."""
    from lofi.eval.viewer import ViewerVideo, write_viewer

    videos = []
    for result in summary.results:
        if result.ok:
            video, has_truth = _annotation(result, ground_truth)
            videos.append(ViewerVideo(video_id=result.video_id, video_path=result.path.resolve(),
                                      duration_sec=float(result.duration_sec or 0.0), detections=result.detections,
                                      ground_truth=list(video.segments) if has_truth else None))
    return write_viewer(out_dir, videos, classes=classes)


__all__ = ["DetectSummary", "collect_videos", "run_detect", "write_csv", "write_page", "write_timelines"]
