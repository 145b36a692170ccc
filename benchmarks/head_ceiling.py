"""The head ceiling: every registered head, trained by stage 3 on ideal features, should detect nearly everything.

    python benchmarks/head_ceiling.py [--heads gtad bmn actionformer] [--settings demo dense] [--dim 32]
                                      [--cue instance|middle] [--synth KEY=VALUE ...] [-o KEY=VALUE ...]
                                      [--out DIR] [--seed 0]

For each data setting, a synthetic dataset is planned (annotations only, no video is rendered:
``lofi.data.synthetic.generate.plan_dataset`` + ``to_annotations``), ideal features are written from its
annotations (``lofi.data.ideal_features``: per-snippet class coverage, start and end indicators, a fixed random mix
up to ``--dim`` channels, Gaussian noise), and each head is trained and evaluated on them with the stage-3 code
path (``lofi.train.head_stage.run_head_stage``, the ``synthetic`` preset's head options and optimiser at
``fidelity.num_snippets`` = 32). The table gives mAP@0.5, mAP@0.75 and the average over tIoU 0.5:0.95 on the
validation subset, with the training time.

Settings:

- ``demo``: the demo's data (``lofi.train.commands.demo_dataset_config(num_videos=64, num_classes=4)``: the
  ActivityNet-like layout at 16-24 s);
- ``mixed``: the demo's data before it moved to that layout: the mixed layout, 16-24 s videos, 1-8 s middles,
  1-6 s gaps (1-3 instances, up to 3 classes per video at seed 0);
- ``dense``: ``mixed`` with 6 classes, 24-40 s videos, 0.5-3 s middles and 0.5-2 s gaps (many short instances of
  several classes per video);
- ``layout:NAME``: ``SyntheticConfig.for_layout(NAME)`` (``activitynet``, ``thumos``, ``mixed``,
  ``discrepancy``), 64 videos of 4 classes.

``--synth KEY=VALUE`` changes a field of every setting's ``SyntheticConfig`` (``--synth onset_sec=0.5,4``
``--synth num_videos=128``). ``--cue middle`` writes the ideal features of the class cue alone: the same channels computed from each instance's
middle phase (where the class motion is) instead of the whole instance, while the head is still trained and scored
against the whole instances. It is the best a head can do on features that know the class cue perfectly and nothing
of the onset and offset, i.e. on ideal classification features: how well the boundaries can be guessed from the
class cue's extent.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from lofi.config import load_config
from lofi.data.annotations import AnnotationSet, Segment
from lofi.data.formats.activitynet import write_ground_truth
from lofi.data.ideal_features import write_ideal_features
from lofi.data.synthetic import SyntheticConfig
from lofi.data.synthetic.generate import plan_dataset, to_annotations
from lofi.models.registry import list_models
from lofi.runtime.context import make_context
from lofi.train.commands import demo_dataset_config
from lofi.train.head_stage import run_head_stage


#: CPU-sized options per head (the G-TAD widths the ``synthetic`` preset had when G-TAD was its head, the same for
#: BMN), defaults for the rest; the head optimiser is pinned too (``HEAD_OPTIM``), so the table stays reproducible
#: when the demo preset changes.
HEAD_OPTIONS: dict[str, str] = {
    "gtad": "{hidden_dim: 128, align_dim: 256, map_dim: 64, num_samples: 8, video_hidden_dim: 128}",
    "bmn": "{hidden_dim: 128, hidden_dim_3d: 256, hidden_dim_2d: 64, num_samples: 8, video_hidden_dim: 128}",
}
HEAD_OPTIM = ("head.optim={optimizer: adamw, lr: 0.001, weight_decay: 0.0001, epochs: 30, batch_size: 4, "
              "lr_step_epochs: 15}")


def data_setting(name: str, *, seed: int) -> SyntheticConfig:
    """The synthetic config of a named data setting (see the module docstring)."""
    demo = demo_dataset_config(num_videos=64, num_classes=4, seed=seed)
    mixed = SyntheticConfig(num_videos=64, num_classes=4, seed=seed, width_px=96, height_px=96,
                            video_duration_sec=(16.0, 24.0), num_distractors=(1, 2))
    if name == "demo":
        return demo
    if name == "mixed":
        return mixed
    if name == "dense":
        return dataclasses.replace(mixed, num_classes=6, video_duration_sec=(24.0, 40.0), middle_sec=(0.5, 3.0),
                                   gap_sec=(0.5, 2.0))
    if name.startswith("layout:"):
        return SyntheticConfig.for_layout(name.partition(":")[2], num_videos=64, num_classes=4, seed=seed,
                                          width_px=96, height_px=96)
    raise SystemExit(f"unknown data setting {name!r}: demo, mixed, dense or layout:NAME")


def synth_override(text: str) -> tuple[str, object]:
    """``"onset_sec=0.5,4"`` -> ``("onset_sec", (0.5, 4.0))``; ``"num_videos=128"`` -> ``("num_videos", 128)``."""
    key, _, value = text.partition("=")
    numbers = [float(v) if "." in v or "e" in v else int(v) for v in value.split(",")]
    return key, tuple(numbers) if len(numbers) > 1 else numbers[0]


def describe(annotations) -> str:
    """Videos, instances per video and classes per video of an annotation set."""
    videos = list(annotations)
    instances = [len(v.segments) for v in videos]
    classes = [len({s.label for s in v.segments}) for v in videos]
    return (f"{len(videos)} videos, {sum(instances)} instances, {sum(instances) / len(videos):.1f} per video "
            f"(max {max(instances)}), {sum(classes) / len(videos):.1f} classes per video (max {max(classes)})")


def middle_phases(plans, annotations, *, fps: float):
    """``annotations`` with each instance cut to its middle phase (the class cue's extent)."""
    videos = []
    for plan, video in zip(plans, annotations):
        segments = tuple(Segment(start_sec=i.middle_start_frame / fps, end_sec=i.middle_end_frame / fps, label=i.label)
                         for i in plan.instances)
        videos.append(video.with_segments(segments))
    return AnnotationSet.from_videos(videos, source=annotations.source, classes=annotations.classes)


def run_setting(setting: str, heads: list[str], *, out: Path, seed: int, dim: int, noise_std: float,
                overrides: list[str], cue: str = "instance", synth_overrides: dict | None = None) -> list[tuple[str, str, float, float, float, float]]:
    synth = dataclasses.replace(data_setting(setting, seed=seed), **(synth_overrides or {}))
    plans = plan_dataset(synth)
    annotations = to_annotations(plans, synth)
    feature_source = middle_phases(plans, annotations, fps=synth.fps) if cue == "middle" else annotations
    print(f"{setting}: {describe(annotations)}", flush=True)
    data_dir = out / setting.replace(":", "_")
    data_dir.mkdir(parents=True, exist_ok=True)
    write_ground_truth(annotations, data_dir / "annotations.json")
    rows = []
    for head in heads:
        HEAD_OPTIONS.setdefault(head, "{}")
        config = load_config("synthetic", [f"data.annotations={data_dir / 'annotations.json'}",
                                           f"data.videos={data_dir / 'videos'}", f"out_dir={out / 'runs'}",
                                           f"name={data_dir.name}_{head}", "device=cpu", f"seed={seed}",
                                           f"model.head={head}", f"model.head_options={HEAD_OPTIONS[head]}",
                                           HEAD_OPTIM, *overrides])
        features = write_ideal_features(feature_source, data_dir / f"features_{cue}_{dim}", dim=dim, noise_std=noise_std,
                                        num_snippets=config.fidelity.num_snippets, seed=seed)
        context = make_context(config, progress=False)
        started = time.perf_counter()
        result = run_head_stage(context, features_dir=features, out_dir=context.run_dir / "stage3_head",
                                resume=False, eval_every_epochs=10 ** 6).result
        seconds = time.perf_counter() - started
        tiou = [round(float(t), 2) for t in result.tiou_thresholds]
        m50, m75 = float(result.mAP[tiou.index(0.5)]), float(result.mAP[tiou.index(0.75)])
        m90 = float(result.mAP[tiou.index(0.9)]) if 0.9 in tiou else float("nan")
        rows.append((setting, head, 100 * m50, 100 * m75, 100 * result.average_mAP, seconds))
        print(f"  {head:13s} mAP@0.5 {100 * m50:6.2f}  @0.75 {100 * m75:6.2f}  @0.9 {100 * m90:6.2f}  "
              f"average {100 * result.average_mAP:6.2f}"
              f"  {seconds:6.1f} s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", nargs="+", default=[e.name for e in list_models("head")])
    parser.add_argument("--settings", nargs="+", default=["mixed", "dense"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=32, help="feature channels (ideal ones + a fixed random mix)")
    parser.add_argument("--noise-std", type=float, default=0.05)
    parser.add_argument("--synth", action="append", default=[], type=synth_override, metavar="KEY=VALUE",
                        help="a SyntheticConfig field for every setting, e.g. onset_sec=0.5,4")
    parser.add_argument("--cue", choices=["instance", "middle"], default="instance",
                        help="ideal features of the whole instances, or of the class cue (middle phases) only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="keep the data and runs here (default: a temp dir)")
    parser.add_argument("-o", "--override", action="append", default=[], help="config override KEY=VALUE")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"python {sys.version.split()[0]}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        rows = []
        for setting in args.settings:
            rows += run_setting(setting, args.heads, out=out, seed=args.seed, dim=args.dim,
                                noise_std=args.noise_std, overrides=args.override, cue=args.cue,
                                synth_overrides=dict(args.synth))
    print()
    print("| data | head | mAP@0.5 | mAP@0.75 | average mAP | train + eval s |")
    print("|---|---|---:|---:|---:|---:|")
    for setting, head, m50, m75, avg, seconds in rows:
        print(f"| {setting} | {head} | {m50:.1f} | {m75:.1f} | {avg:.1f} | {seconds:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
