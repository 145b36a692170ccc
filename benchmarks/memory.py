"""Forward + backward memory of an encoder + head at several LoFi fidelities, measured by torch itself.

    python benchmarks/memory.py [--encoder tsm_resnet18] [--head gtad] [--fidelities full S T ST] [--batch 1]
                                 [--frames-per-snippet 1] [--levers none checkpoint bf16 checkpoint+bf16]
                                 [--repeats 1] [--device cpu|cuda]

One training step (forward, loss, backward; no optimizer state) per fidelity, on random uint8 frames and one ground
truth segment, after one warm-up step; the next ``--repeats`` steps are timed (the median is shown), a last one
measured. On CPU, the peak is taken from the PyTorch profiler's own allocation records
(``profile_memory=True``: every allocation and free of every op, in time order), so it counts tensors, not the
allocator's cache or the process; on CUDA it is ``torch.cuda.max_memory_allocated``. Parameters and their gradients
are listed apart; "step peak" is what the step adds on top of the parameters; "vs full" divides it by the first
row's (full fidelity, first lever setting).

Lever ``partialNN`` (e.g. ``partial30``, ``checkpoint+partial30``) is stage 2's ``train.partial_backprop`` with
share NN% (random snippets, one fixed draw): the other snippets' features are computed without gradients
(:mod:`lofi.models.partial_backprop`). The other levers are encoder options.

The fidelities are the paper's mini-batch reductions (``lofi.core.fidelity.lofi_fidelities``), each about a
quarter of the full 100 snippets x 224^2: T keeps the frame size and takes 25 snippets, S keeps 100 snippets at
112^2, ST takes 50 snippets at 158^2.
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import time

import torch

from lofi.core.fidelity import Fidelity, lofi_fidelities
from lofi.core.targets import SegmentTargets
from lofi.models import count_parameters, create_model
from lofi.models.partial_backprop import draw_grad_mask


#: The paper's full fidelity and its quarter-size reductions, as stage 2 uses them (lofi.core.fidelity).
FIDELITIES = lofi_fidelities(num_snippets=100, frame_size_px=224)  # full, S, T, ST


def _step(model, frames: torch.Tensor, targets: SegmentTargets, grad_mask: torch.Tensor | None = None) -> None:
    model.zero_grad(set_to_none=False)
    losses = model.loss(model(frames, grad_mask=grad_mask), targets)
    losses["loss"].backward()


def _cpu_peak_bytes(model, frames: torch.Tensor, targets: SegmentTargets,
                    grad_mask: torch.Tensor | None = None) -> int:
    """Peak of live tensor bytes during one step, from the profiler's allocation records (relative to the start)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _step(model, frames, targets, grad_mask)
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


#: Encoder memory levers by name (options of the encoder); "+" combines them, also with ``partialNN``.
LEVERS = {"none": {}, "checkpoint": {"checkpoint_stages": True}, "bf16": {"autocast": "bf16"},
          "fp16": {"autocast": "fp16"}, "channels_last": {"channels_last": True}}
_PARTIAL = re.compile(r"partial(\d+)")


def lever_options(spec: str) -> dict:
    """The encoder options of ``spec`` (``partialNN`` parts are left to :func:`partial_share`)."""
    options: dict = {}
    for part in spec.split("+"):
        if _PARTIAL.fullmatch(part) is None:
            if part not in LEVERS:
                raise SystemExit(f"unknown lever {part!r} in {spec!r}; known: {', '.join(LEVERS)}, partialNN")
            options.update(LEVERS[part])
    return options


def partial_share(spec: str) -> float | None:
    """The share of snippets that carry gradients (``partialNN`` -> NN / 100), None without that lever."""
    shares = [int(m.group(1)) / 100 for m in map(_PARTIAL.fullmatch, spec.split("+")) if m is not None]
    if len(shares) > 1 or any(not 0 < share <= 1 for share in shares):
        raise SystemExit(f"{spec!r}: at most one partialNN lever, NN in 1..100")
    return shares[0] if shares else None


def measure(*, encoder: str, head: str, fidelity: Fidelity, batch: int, frames_per_snippet: int,
            levers: str, device: torch.device, repeats: int = 1) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model(encoder=encoder, head=head, num_classes=20, num_snippets=fidelity.num_snippets,
                         encoder_options=lever_options(levers)).to(device).train()
    size = fidelity.frame_size_px
    frames = torch.randint(0, 256, (batch, fidelity.num_snippets, frames_per_snippet, 3, size, size),
                           dtype=torch.uint8, device=device)  # [B, T, F, 3, H, W]
    targets = SegmentTargets(segments=[torch.tensor([[0.2, 0.6]], device=device)] * batch,
                             labels=[torch.tensor([3], device=device)] * batch)
    share = partial_share(levers)
    grad_mask = None if share is None else draw_grad_mask(batch_size=batch, num_snippets=fidelity.num_snippets,
                                                          share=share, seed=0).to(device)  # [B, T]
    _step(model, frames, targets, grad_mask)  # warm-up: gradients allocated, lazy buffers built
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    times = []
    for _ in range(repeats):  # timed on their own: the profiler slows the measured step down
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        _step(model, frames, targets, grad_mask)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _step(model, frames, targets, grad_mask)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _cpu_peak_bytes(model, frames, targets, grad_mask)
    return {"params_M": count_parameters(model) / 1e6, "param_MiB": param_bytes / 2**20,
            "step_peak_MiB": peak / 2**20, "seconds": seconds,
            "frames": batch * fidelity.num_snippets * frames_per_snippet}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="tsm_resnet18")
    parser.add_argument("--head", default="gtad")
    parser.add_argument("--fidelities", nargs="+", default=list(FIDELITIES), choices=list(FIDELITIES))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames-per-snippet", type=int, default=1)
    parser.add_argument("--levers", nargs="+", default=["none", "checkpoint"],
                        help=f"memory levers to measure, each a '+'-joined subset of {', '.join(LEVERS)} and "
                             f"partialNN (back-propagate through NN%% of the snippets)")
    parser.add_argument("--repeats", type=int, default=1, help="timed steps per row (the median is shown)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {where}, {torch.get_num_threads()} threads; {args.encoder} + {args.head}, "
          f"batch {args.batch}, {args.frames_per_snippet} frame(s) per snippet")
    for spec in args.levers:
        lever_options(spec), partial_share(spec)  # unknown names fail before anything runs
    print(f"{'fidelity':<15} {'T':>4} {'px':>4} {'frames':>6} {'levers':>20} {'params':>8} {'param+grad':>11} "
          f"{'step peak':>10} {'vs full':>8} {'step s':>7}")
    reference = None  # the first row: full fidelity without levers when it is measured
    for spec in args.levers:
        for name in args.fidelities:
            fidelity = FIDELITIES[name]
            row = measure(encoder=args.encoder, head=args.head, fidelity=fidelity, batch=args.batch,
                          frames_per_snippet=args.frames_per_snippet, levers=spec, device=device,
                          repeats=args.repeats)
            reference = reference or row["step_peak_MiB"]
            print(f"{name:<15} {fidelity.num_snippets:>4} {fidelity.frame_size_px:>4} {row['frames']:>6} "
                  f"{spec:>20} {row['params_M']:>7.2f}M {2 * row['param_MiB']:>9.0f}MiB "
                  f"{row['step_peak_MiB']:>8.0f}MiB {row['step_peak_MiB'] / reference:>8.2f} {row['seconds']:>7.1f}")


if __name__ == "__main__":
    main()
