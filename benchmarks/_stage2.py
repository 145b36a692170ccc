"""What benchmarks/memory.py and benchmarks/train_speed.py share: their command-line options (the encoder, head,
full fidelity, batch, optimizer, fidelities and lever combinations of a stage-2 step) and the header line naming
the machine."""

from __future__ import annotations

import argparse
import platform

import torch

from lofi.core.fidelity import Fidelity, lofi_fidelities
from lofi.models.memory_measure import Levers

DEFAULT_LEVERS = ["none", "checkpoint", "bf16", "checkpoint+bf16", "partial30", "checkpoint+bf16+partial30"]


def add_step_arguments(parser: argparse.ArgumentParser, *, repeats: int) -> None:
    parser.add_argument("--encoder", default="tsm_resnet18")
    parser.add_argument("--head", default="gtad")
    parser.add_argument("--num-snippets", type=int, default=100, help="full fidelity's T")
    parser.add_argument("--frame-size", type=int, default=224, help="full fidelity's S (px)")
    parser.add_argument("--frames-per-snippet", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--fidelities", nargs="+", default=["full", "S", "T", "ST"], choices=["full", "S", "T", "ST"])
    parser.add_argument("--levers", nargs="+", default=DEFAULT_LEVERS,
                        help="lever combinations: none, checkpoint, bf16, fp16, partialNN, joined with '+'")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed steps per row (the median is shown)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def resolve(args: argparse.Namespace) -> tuple[torch.device, list[Levers], dict[str, Fidelity]]:
    """The device, the lever combinations (an unknown name stops before anything runs) and the chosen
    fidelities; sets the thread count and prints the header line."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        levers = [Levers.parse(spec) for spec in args.levers]
    except ValueError as error:
        raise SystemExit(str(error)) from None
    every = lofi_fidelities(num_snippets=args.num_snippets, frame_size_px=args.frame_size)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {where}, {torch.get_num_threads()} threads; {args.encoder} + {args.head}, "
          f"batch {args.batch}, {args.frames_per_snippet} frames per snippet, {args.optimizer}", flush=True)
    return device, levers, {name: every[name] for name in args.fidelities}
