"""Peak memory and step time of one stage-2 training step for every LoFi fidelity x memory lever, as ratios to
naive fp32 full fidelity, beside the memory model's prediction.

    python benchmarks/memory.py [--encoder tsm_resnet18] [--head gtad] [--num-snippets 100] [--frame-size 224]
                                 [--frames-per-snippet 8] [--batch 1] [--optimizer sgd]
                                 [--levers none checkpoint bf16 checkpoint+bf16 partial30 checkpoint+bf16+partial30]
                                 [--fidelities full S T ST] [--repeats 1] [--threads N] [--device cpu|cuda]

Each row is one real training step (forward, loss, backward, optimizer step) on random uint8 frames and one ground
truth segment, after a warm-up step (gradients and optimizer state allocated): ``--repeats`` timed steps (the median
is shown), then a measured one (:func:`lofi.models.memory.measure_training_step`). On CPU the peak is read from the
PyTorch profiler's allocation records (every allocation and free of every op, in time order: tensors, not the
allocator's cache or the process); on CUDA it is ``torch.cuda.max_memory_allocated``. The peak counts everything
alive: parameters, gradients, optimizer state, input frames and activations.

"predicted" is :class:`lofi.models.memory.MemoryModel`, fitted first at its small probes (encoder per lever
combination, head at each T); "err" is predicted / measured - 1. "x naive" divides by the first row (full
fidelity, first lever setting; ``none`` = fp32 without levers).

Levers: ``checkpoint`` (per-stage activation checkpointing), ``bf16`` (autocast), ``partialNN`` (stage 2's
``train.partial_backprop`` at share NN%: the other snippets' features computed without gradients); join with ``+``.
The fidelities are the paper's quarter-size reductions of the given full fidelity (``lofi_fidelities``): T keeps the
frame size with a quarter of the snippets, S keeps the snippets at half the frame size, ST takes half the snippets
at 1/sqrt(2) of the size.
"""

from __future__ import annotations

import argparse

from _stage2 import add_step_arguments, resolve

from lofi.models.memory import fit_memory_model, measure_training_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_arguments(parser, repeats=1)
    args = parser.parse_args()
    device, levers, fidelities = resolve(args)
    memory = fit_memory_model(encoder=args.encoder, head=args.head, frames_per_snippet=args.frames_per_snippet,
                              levers=levers, device=device)
    print(f"{'fidelity':<8} {'T':>4} {'px':>4} {'levers':<26} {'measured':>10} {'predicted':>10} {'err':>6} "
          f"{'x naive':>7} {'act/video':>10} {'step s':>7} {'x naive':>7}")
    reference = None
    for name, fidelity in fidelities.items():
        for lever in levers:
            step = measure_training_step(memory, fidelity=fidelity, batch_size=args.batch, levers=lever,
                                         optimizer=args.optimizer, repeats=args.repeats)
            predicted = memory.predict(fidelity=fidelity, batch_size=args.batch, levers=lever,
                                       optimizer=args.optimizer).peak_bytes
            reference = reference or (step.peak_bytes, step.seconds)
            per_video = (step.peak_bytes - step.static_bytes) / args.batch
            print(f"{name:<8} {fidelity.num_snippets:>4} {fidelity.frame_size_px:>4} {lever.name:<26} "
                  f"{step.peak_bytes / 2**20:>7.0f}MiB {predicted / 2**20:>7.0f}MiB "
                  f"{100 * (predicted / step.peak_bytes - 1):>+5.1f}% {step.peak_bytes / reference[0]:>7.2f} "
                  f"{per_video / 2**20:>7.0f}MiB {step.seconds:>7.2f} {step.seconds / reference[1]:>7.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
