"""Step time of one stage-2 training step for every LoFi fidelity x memory lever, as ratios to naive fp32 full
fidelity, measured side by side; and each C-LoFi cycle's mean step.

    python benchmarks/train_speed.py [--encoder tsm_resnet18] [--head gtad] [--num-snippets 100] [--frame-size 224]
                                     [--frames-per-snippet 8] [--batch 1] [--optimizer sgd]
                                     [--levers none checkpoint bf16 checkpoint+bf16 partial30 ...]
                                     [--fidelities full S T ST] [--repeats 3] [--threads N] [--device cpu|cuda]
                                     [--output STEP_TIMES.json]

Each row is a real training step (forward, loss, backward, optimizer step: :class:`lofi.models.memory_measure.
TrainingStep`) on random uint8 frames and one ground-truth segment per video. Every row is built first and
warmed up once (gradients and optimizer state allocated); then the rows are timed in rounds, one step of each row
per round, ``--repeats`` rounds, so that a change in the machine's load falls on every row alike. The median is
shown, and "x naive" divides it by the first row's (full fidelity, first lever setting; ``none`` = fp32 without
levers). "videos/s" is the batch over the median. No memory is traced here (that is benchmarks/memory.py): the
profiler would slow the steps.

A C-LoFi cycle runs S, T and ST for equal numbers of steps (C-short alternates them each step, C-long each
epoch), so its mean step is the mean of the three; it is shown per lever combination when all three are run.

Absolute seconds mean something only on a GPU; on a CPU compare the ratios. ``--output`` also writes the medians
as a step-times file (:mod:`lofi.models.step_times`), which ``lofi experiment lofi-table CONFIG --dry-run
--step-times FILE`` turns into each cell's predicted hours: measure at the run's batch per process, frames per
snippet and optimizer (``--batch 2 --fidelities S T ST --levers none`` for a batch of 16 over 8 GPUs).
"""

from __future__ import annotations

import argparse
import platform
import statistics
from pathlib import Path

import torch
from _stage2 import add_step_arguments, resolve

from lofi.core.fidelity import CYCLE
from lofi.models.memory_measure import build_training_step
from lofi.models.step_times import StepTimes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_arguments(parser, repeats=3)
    parser.add_argument("--output", type=Path, metavar="STEP_TIMES.json",
                        help="also write the medians as a step-times file (lofi experiment ... --step-times)")
    args = parser.parse_args()
    device, levers, fidelities = resolve(args)
    rows = [(name, fidelity, lever) for name, fidelity in fidelities.items() for lever in levers]
    steps = [build_training_step(encoder=args.encoder, head=args.head, fidelity=fidelity, batch_size=args.batch,
                                 frames_per_snippet=args.frames_per_snippet, levers=lever, optimizer=args.optimizer,
                                 device=device) for _, fidelity, lever in rows]
    for step in steps:
        step()  # warm-up: gradients and optimizer state allocated
    times: list[list[float]] = [[] for _ in rows]
    for round_index in range(args.repeats):
        for i, step in enumerate(steps):
            times[i] += step.seconds(1)
        print(f"round {round_index + 1}/{args.repeats} done", flush=True)
    medians = [statistics.median(t) for t in times]
    reference = medians[0]
    print(f"{'fidelity':<8} {'T':>4} {'px':>4} {'levers':<26} {'step s':>8} {'x naive':>7} {'videos/s':>8}")
    for (name, fidelity, lever), seconds in zip(rows, medians):
        print(f"{name:<8} {fidelity.num_snippets:>4} {fidelity.frame_size_px:>4} {lever.name:<26} {seconds:>8.3f} "
              f"{seconds / reference:>7.2f} {args.batch / seconds:>8.2f}")
    if all(name in fidelities for name in CYCLE):
        by_row = {(name, lever): seconds for (name, _, lever), seconds in zip(rows, medians)}
        for lever in levers:
            mean = statistics.fmean(by_row[name, lever] for name in CYCLE)
            print(f"{'cycle':<8} {'':>4} {'':>4} {lever.name:<26} {mean:>8.3f} {mean / reference:>7.2f} "
                  f"{args.batch / mean:>8.2f}   (mean of {', '.join(CYCLE)})")
    if args.output is not None:
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
        times = StepTimes(device=where, torch=torch.__version__, encoder=args.encoder, head=args.head,
                          frames_per_snippet=args.frames_per_snippet, batch_size=args.batch, optimizer=args.optimizer,
                          seconds={(f.num_snippets, f.frame_size_px, lever.name): seconds
                                   for (_, f, lever), seconds in zip(rows, medians)})
        print(f"step times: {times.write(args.output)}")


if __name__ == "__main__":
    main()
