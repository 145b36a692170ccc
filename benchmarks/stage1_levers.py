"""Stage 1's levers, one at a time: the demo's stage 1 with each choice of the preset undone, side by side.

    python benchmarks/stage1_levers.py [--data DIR] [--seed 7] [--variants preset no-balance ...]
                                       [-o KEY=VALUE ...] [--out DIR] [--threads 2]

Each variant runs the real stage-1 code path (``lofi.train.pretrain.run_pretrain``) with the ``synthetic`` preset
plus the variant's overrides, on the demo's dataset (``--data``, or generated with
``lofi.train.commands.demo_dataset_config`` at ``--seed``), and reports the final training accuracy, the
validation clip accuracy (``val_clip_accuracy``: centre crops, at most 2 evenly spaced clips per action or
background range of the validation videos) and the time. Use a seed you will not report results on.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from lofi.config import load_config
from lofi.data.synthetic import generate_dataset
from lofi.runtime.context import make_context
from lofi.train.commands import demo_dataset_config
from lofi.train.pretrain import run_pretrain

#: Each variant undoes one choice of the synthetic preset's stage 1 (``preset`` is the preset itself).
VARIANTS: dict[str, list[str]] = {
    "preset": [],
    "no-balance": ["pretrain.balance_classes=false"],
    "one-background-range": ["pretrain.background_per_video=1"],
    "no-augmentation": ["pretrain.crop_scale_min=1.0", "pretrain.color_jitter=0.0", "pretrain.channel_shuffle=false"],
    "whole-ranges": ["pretrain.clip_sec=null", "pretrain.clips_per_range=1"],
    "flips": ["pretrain.flip=true"],
    "64px": ["pretrain.frame_size_px=64"],
    "no-stem-pool": ["model.encoder_options={stem_pool: false}"],
}


def final_epoch(stage_dir: Path) -> dict:
    rows = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if row.get("kind") == "epoch"][-1]


def run_variant(name: str, *, data: Path, out: Path, seed: int, overrides: list[str]) -> tuple[float, float, float]:
    config = load_config("synthetic", [f"data.annotations={data / 'annotations.json'}",
                                       f"data.videos={data / 'videos'}", f"out_dir={out}", f"name={name}",
                                       f"seed={seed}", "data.cache_dir=null", *VARIANTS[name], *overrides])
    context = make_context(config, progress=False)
    started = time.perf_counter()
    encoder = run_pretrain(context, resume=False)
    seconds = time.perf_counter() - started
    last = final_epoch(encoder.parent)
    return float(last["train_accuracy"]), float(last["val_clip_accuracy"]), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="a demo dataset (default: generate one)")
    parser.add_argument("--seed", type=int, default=7, help="dataset and training seed (a tuning seed)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    parser.add_argument("-o", "--override", action="append", default=[], help="config override for every variant")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"python {sys.version.split()[0]}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        data = args.data
        if data is None:
            data = out / "synthetic"
            if not (data / "annotations.json").is_file():
                generate_dataset(data, demo_dataset_config(num_videos=64, num_classes=4, seed=args.seed),
                                 progress=False)
        rows = []
        for name in args.variants:
            train_acc, val_acc, seconds = run_variant(name, data=data, out=out / "runs", seed=args.seed,
                                                      overrides=args.override)
            rows.append((name, train_acc, val_acc, seconds))
            print(f"  {name:22s} train {train_acc:.3f}  val {val_acc:.3f}  {seconds:6.0f} s", flush=True)
    print()
    print("| variant | overrides | train accuracy | val clip accuracy | seconds |")
    print("|---|---|---:|---:|---:|")
    for name, train_acc, val_acc, seconds in rows:
        print(f"| {name} | {', '.join(VARIANTS[name]) or '(the preset)'} | {train_acc:.3f} | {val_acc:.3f} | "
              f"{seconds:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
