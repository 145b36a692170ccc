"""Head seeds on fixed features: does any initialisation leave a stage-3 head stuck?

    python benchmarks/head_seeds.py RUN_DIR [--features features_frozen] [--heads actionformer gtad bmn]
                                    [--seeds 1-40] [--jobs 2] [--out DIR] [-o KEY=VALUE ...]

``RUN_DIR`` is a finished run (e.g. ``lofi demo --seed 4245``'s ``lofi-demo/runs/synthetic``); its resolved config
(``stage1_pretrain/config.yaml``) and its feature folder are used as they are. For each head and each seed, stage 3
(:func:`lofi.train.head_stage.run_head_stage`) trains a fresh head with ``seed=<seed>`` (initial weights and data
order) on those features and evaluates it. A row per run: the first and last epochs' training loss terms, whether
:class:`lofi.train.stall.StallWatch` found a stalled term, the average mAP and mAP@0.5; then, per head, the spread
of average mAP and the runs that stalled or fell below half the head's median. ``--out`` keeps the runs and writes
``head_seeds.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch


def parse_seeds(text: str) -> list[int]:
    """``"1-40"`` or ``"1,2,7"`` or a mix -> the seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high) + 1) if high else [int(low)])
    return seeds


def run_one(run_dir: str, features: str, head: str, seed: int, out: str, overrides: list[str]) -> dict:
    """Train and evaluate one head; the record of the run (in a worker process, one torch thread)."""
    torch.set_num_threads(1)
    from lofi.runtime.configs import load_run_config
    from lofi.runtime.context import make_context
    from lofi.train.head_stage import run_head_stage
    from lofi.train.stall import StallWatch

    config = load_run_config(str(Path(run_dir) / "stage1_pretrain" / "config.yaml"),
                             [f"seed={seed}", f"model.head={head}", f"out_dir={out}", f"name={head}_seed{seed}",
                              "device=cpu", *overrides])
    context = make_context(config, progress=False)
    started = time.perf_counter()
    result = run_head_stage(context, features_dir=Path(run_dir) / features, out_dir=context.run_dir / "head",
                            resume=False, eval_every_epochs=10 ** 6).result
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in (context.run_dir / "head" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    watch = StallWatch(stage=str(context.run_dir / "head"))
    for end in range(1, len(records) + 1):
        watch.check(records[:end])
    terms = sorted(k[len("train_"):] for k in epochs[-1] if k.startswith("train_") and k != "train_num_positives")
    return {"head": head, "seed": seed, "seconds": seconds, "average_mAP": float(result.average_mAP),
            "mAP@0.5": float(result.mAP[0]), "first": {t: epochs[0][f"train_{t}"] for t in terms},
            "last": {t: epochs[-1][f"train_{t}"] for t in terms}, "stalled": [s.term for s in watch.stalls]}


def summarise(rows: list[dict]) -> list[str]:
    """Per head: runs, average mAP median / min / max, and the runs that stalled or fell below half the median."""
    lines = ["| head | runs | average mAP median (min-max) | stalled (StallWatch) | below half the median |",
             "|---|---:|---|---|---|"]
    for head in dict.fromkeys(r["head"] for r in rows):
        mine = [r for r in rows if r["head"] == head]
        maps = [100 * r["average_mAP"] for r in mine]
        median = statistics.median(maps)
        stalled = [f"{r['seed']} ({', '.join(r['stalled'])})" for r in mine if r["stalled"]]
        low = [str(r["seed"]) for r in mine if 100 * r["average_mAP"] < median / 2]
        lines.append(f"| {head} | {len(mine)} | {median:.1f} ({min(maps):.1f}-{max(maps):.1f}) | "
                     f"{', '.join(stalled) or 'none'} | {', '.join(low) or 'none'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--features", default="features_frozen", help="feature folder inside RUN_DIR")
    parser.add_argument("--heads", nargs="+", default=["actionformer", "gtad", "bmn"])
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1-40"))
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1)))
    parser.add_argument("--out", type=Path, default=None, help="keep the runs and head_seeds.json here")
    parser.add_argument("-o", "--override", action="append", default=[], help="config override KEY=VALUE")
    args = parser.parse_args(argv)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.jobs} process(es) of "
          f"1 thread, python {sys.version.split()[0]}; {args.run_dir / args.features}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        jobs = [(str(args.run_dir), args.features, head, seed, str(out), args.override)
                for head in args.heads for seed in args.seeds]
        rows = []
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for row in pool.map(run_one, *zip(*jobs)):
                rows.append(row)
                terms = " ".join(f"{t} {row['first'][t]:.3f}->{row['last'][t]:.3f}" for t in row["last"])
                print(f"{row['head']:13s} seed {row['seed']:3d}  average mAP {100 * row['average_mAP']:5.1f}  "
                      f"mAP@0.5 {100 * row['mAP@0.5']:5.1f}  {terms}  {row['seconds']:.0f} s"
                      f"{'  STALLED: ' + ', '.join(row['stalled']) if row['stalled'] else ''}", flush=True)
        if args.out:
            (args.out / "head_seeds.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print()
    print("\n".join(summarise(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
