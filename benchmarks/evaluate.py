"""Detection mAP speed: lofi's vectorized evaluator against the slow plain-loop reference, side by side.

    python benchmarks/evaluate.py [--videos 4700] [--predictions 100] [--classes 200] [--seed 0] [--repeats 3]

Synthetic ActivityNet-scale input (seeded): ``--videos`` validation videos, ~1.5 ground-truth segments each
(1-3, from at most 3 classes per video, durations 30-240 s), ``--predictions`` detections per video: jittered copies of
the ground truth (scores high), detections of the video's classes elsewhere, and a tail of random classes (scores
low), scores rounded to 3 decimals so ties occur; 1% of the prediction videos are not in the ground truth. Both
evaluators run on the same input at the ActivityNet thresholds (0.5:0.95:0.05); the script asserts that every
per-class AP agrees within 1e-9 and prints both times and their ratio. The fast one runs ``--repeats`` times (best
and median reported), the reference once.

The input is also written to an ActivityNet results JSON in a temporary folder, to time the two readers:
``read_results`` (Detection lists, what the reference takes) and ``read_results_table`` (columns, what the fast
evaluator takes); both include the JSON parse, which is the same for any reader. The evaluation ratio compares the
evaluators on their own input forms; the end-to-end ratio adds each one's reader.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from lofi.data.annotations import AnnotationSet, Detection, Segment, VideoAnnotation
from lofi.data.detection_table import DetectionTable
from lofi.data.formats import read_results, read_results_table, write_results
from lofi.eval import evaluate_detection
from lofi.eval.reference import reference_evaluate_detection


def make_input(*, videos: int, predictions: int, classes: int, seed: int):
    """A seeded synthetic (ground truth, predictions) pair of ActivityNet's shape."""
    rng = np.random.default_rng(seed)
    labels = [f"class_{i:03d}" for i in range(classes)]
    gt_videos, preds = [], {}
    for v in range(videos):
        vid = f"v_{v:06d}"
        duration = float(rng.uniform(30, 240))
        video_labels = rng.choice(classes, size=min(3, classes), replace=False)
        segs = []
        for _ in range(int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))):  # 1.5 per video on average
            length = float(rng.uniform(0.05, 0.6)) * duration
            start = float(rng.uniform(0, duration - length))
            segs.append(Segment(start, start + length, labels[int(video_labels[rng.integers(len(video_labels))])]))
        gt_videos.append(VideoAnnotation(vid, "validation", tuple(segs), duration_sec=duration))
        dets = []
        for seg in segs:  # jittered copies of the ground truth
            for _ in range(int(rng.integers(3, 10))):
                s = seg.start_sec + rng.normal(0, 0.1) * seg.duration_sec
                e = seg.end_sec + rng.normal(0, 0.1) * seg.duration_sec
                s, e = min(s, e), max(s, e)
                dets.append((float(s), float(e), seg.label, float(rng.uniform(0.3, 1.0))))
        while len(dets) < predictions:  # the rest: video classes anywhere, then random classes, low scores
            s = float(rng.uniform(0, duration))
            e = float(min(duration, s + rng.uniform(1, duration / 2)))
            if rng.uniform() < 0.5:
                dets.append((s, e, labels[int(video_labels[rng.integers(len(video_labels))])],
                             float(rng.uniform(0.0, 0.6))))
            else:
                dets.append((s, e, labels[int(rng.integers(classes))], float(rng.uniform(0.0, 0.2))))
        dets = dets[:predictions]
        target = vid if rng.uniform() > 0.01 else f"x_{v:06d}"  # 1% for videos outside the ground truth
        preds[target] = [Detection(s, e, lab, round(sc, 3)) for s, e, lab, sc in dets]
    return AnnotationSet.from_videos(gt_videos, classes=labels), preds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4700)
    parser.add_argument("--predictions", type=int, default=100, help="detections per video")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the fast evaluator")
    parser.add_argument("--skip-reference", action="store_true", help="time only the fast evaluator")
    args = parser.parse_args()

    t0 = time.perf_counter()
    gt, preds = make_input(videos=args.videos, predictions=args.predictions, classes=args.classes, seed=args.seed)
    build_s = time.perf_counter() - t0
    num_pred = sum(len(d) for d in preds.values())
    num_gt = sum(len(v.segments) for v in gt)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.processor() or platform.machine()}")
    print(f"input: {len(gt)} videos, {num_gt} GT segments ({num_gt / len(gt):.2f}/video), {num_pred} predictions, "
          f"{args.classes} classes (built in {build_s:.1f} s)")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.json"
        write_results(preds, path)
        size_mb = path.stat().st_size / 1e6
        t0 = time.perf_counter()
        table = read_results_table(path)
        read_table_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        from_file = read_results(path)
        read_mapping_s = time.perf_counter() - t0
    assert table.to_mapping() == from_file == {v: list(d) for v, d in preds.items()}, "readers disagree"
    print(f"read:      {size_mb:.0f} MB JSON: read_results_table {read_table_s:6.3f} s, read_results (Detection "
          f"lists) {read_mapping_s:6.3f} s")
    t0 = time.perf_counter()
    DetectionTable.from_mapping(preds)
    print(f"           DetectionTable.from_mapping (what evaluate_detection does with Detection lists): "
          f"{time.perf_counter() - t0:6.3f} s")

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        fast = evaluate_detection(gt, table)
        times.append(time.perf_counter() - t0)
    fast_s, fast_med = min(times), statistics.median(times)
    print(f"fast:      best {fast_s:8.3f} s, median {fast_med:8.3f} s over {args.repeats} run(s) (DetectionTable)")
    print(f"           average mAP {100 * fast.average_mAP:.4f}%, mAP@0.5 {100 * fast.mAP[0]:.4f}%, "
          f"mAP@0.95 {100 * fast.mAP[-1]:.4f}%; {fast.counts}")
    if args.skip_reference:
        return

    t0 = time.perf_counter()
    slow = reference_evaluate_detection(gt, from_file)
    slow_s = time.perf_counter() - t0
    print(f"reference: {slow_s:8.3f} s (one run, Detection lists)")
    worst = max(float(np.max(np.abs(fast.ap_matrix - slow.ap_matrix))),
                float(np.max(np.abs(fast.mAP - slow.mAP))), abs(fast.average_mAP - slow.average_mAP))
    assert fast.ap.keys() == slow.ap.keys() and fast.counts == slow.counts, "evaluators disagree on the input"
    assert worst <= 1e-9, f"evaluators disagree: max |difference| {worst:.3e}"
    print(f"agreement: max |AP difference| {worst:.2e} (<= 1e-9)")
    print(f"speed-up:  evaluation {slow_s / fast_s:.1f}x (reference / fast best), {slow_s / fast_med:.1f}x at the "
          f"median; end to end from the JSON file {(read_mapping_s + slow_s) / (read_table_s + fast_s):.1f}x")

if __name__ == "__main__":
    main()
