"""Sliding windows end to end on long videos: a head trained by stage 3 (``run_head_stage`` with ``data.windows``) on
ideal features at a fixed snippet rate finds every instance of long validation videos once, at the right time, also
the instances that straddle the seams between windows (cut by one window's edge, whole only in the next)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from lofi.config import load_config
from lofi.data.annotations import AnnotationSet, Segment, VideoAnnotation
from lofi.data.formats.activitynet import read_results, write_ground_truth
from lofi.data.ideal_features import write_ideal_features
from lofi.runtime.context import make_context
from lofi.train.head_stage import run_head_stage

RATE = 2.0  # snippets per second
WINDOW = 32  # snippets: 16 s
STRIDE = 16  # snippets: windows start every 8 s
CLASSES = ("jump", "spin")


def _training_video(index: int, rng: random.Random) -> VideoAnnotation:
    segments, t = [], rng.uniform(1.0, 6.0)
    while True:
        length = rng.choice([2.0, 3.0, 4.0, 5.0])
        if t + length > 118.0:
            break
        segments.append(Segment(round(t * 2) / 2, round((t + length) * 2) / 2, rng.choice(CLASSES)))
        t += length + rng.uniform(3.0, 9.0)
    return VideoAnnotation(video_id=f"train_{index}", duration_sec=120.0, subset="training", segments=tuple(segments))


#: Validation instances across the seams: window [0, 16) s ends at 16 s, [8, 24) at 24 s, [16, 32) at 32 s, ...
SEAM_INSTANCES = {
    "long_a": ((14.5, 18.5, "jump"), (31.0, 34.0, "spin"), (46.0, 50.5, "jump"), (63.5, 65.5, "spin"),
               (86.0, 91.0, "spin"), (103.5, 106.0, "jump"), (127.0, 130.0, "jump")),
    "long_b": ((7.0, 9.5, "spin"), (23.0, 25.5, "jump"), (39.5, 42.5, "spin"), (55.0, 57.0, "jump"),
               (70.5, 73.5, "jump"), (95.0, 97.5, "spin")),
}
DURATIONS = {"long_a": 133.5, "long_b": 101.0}  # not a whole number of strides: the last window is moved back


def _tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def test_instances_at_window_seams_are_found_once_at_the_right_time(tmp_path: Path):
    torch.set_num_threads(1)
    rng = random.Random(3)
    videos = [_training_video(i, rng) for i in range(12)]
    videos += [VideoAnnotation(video_id=vid, duration_sec=DURATIONS[vid], subset="validation",
                               segments=tuple(Segment(s, e, c) for s, e, c in segs))
               for vid, segs in SEAM_INSTANCES.items()]
    annotations = AnnotationSet.from_videos(videos, classes=CLASSES)
    write_ground_truth(annotations, tmp_path / "annotations.json")
    features = write_ideal_features(annotations, tmp_path / "features", num_snippets=WINDOW, dim=16, seed=0,
                                    snippets_per_sec=RATE)
    config = load_config("synthetic", [
        f"data.annotations={tmp_path / 'annotations.json'}", f"data.videos={tmp_path / 'videos'}",
        f"out_dir={tmp_path}", "name=windows", "device=cpu", f"fidelity.num_snippets={WINDOW}",
        f"data.windows={{snippets_per_sec: {RATE}, stride_snippets: {STRIDE}}}", "model.head=actionformer",
        "model.head_options={embed_dim: 32, num_levels: 3}", "eval.tiou=0.5,0.9",
        "head.optim={optimizer: adamw, lr: 0.003, weight_decay: 0.0001, epochs: 12, batch_size: 8, "
        "lr_step_epochs: 10}"])
    context = make_context(config, progress=False)
    result = run_head_stage(context, features_dir=features, out_dir=tmp_path / "head", resume=False,
                            eval_every_epochs=10 ** 6).result
    predictions = read_results(tmp_path / "head" / "predictions.json")
    for video_id, instances in SEAM_INSTANCES.items():
        found = predictions[video_id]
        assert all(0.0 <= d.start_sec <= d.end_sec <= DURATIONS[video_id] for d in found)
        top = max(d.score for d in found)
        high = [d for d in found if d.score >= 0.3 * top]  # the confident detections, duplicates suppressed
        for start, end, label in instances:
            near = [d for d in high if _tiou((d.start_sec, d.end_sec), (start, end)) >= 0.3]
            assert len(near) == 1, f"{video_id} [{start}, {end}]: {len(near)} confident detections: {near}"
            assert near[0].label == label
            assert _tiou((near[0].start_sec, near[0].end_sec), (start, end)) >= 0.9, (video_id, start, end, near)
        assert len(high) == len(instances), f"{video_id}: {len(high)} confident detections for {len(instances)}"
    assert float(result.mAP[1]) >= 0.9  # mAP@0.9
