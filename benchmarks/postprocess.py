"""Post-processing and config speed: lofi's NMS and Soft-NMS against a plain-loop NMS, and config loading.

    python benchmarks/postprocess.py [--candidates 2000] [--repeats 5] [--seed 0]

Synthetic input (seeded): ``--candidates`` segments in ``[0, 230]`` s (starts uniform in ``[0, 200]``, lengths
1-31 s), scores rounded to 2 decimals so ties occur, five labels for class-wise NMS. lofi's ``nms`` (class-agnostic
and class-wise) runs against the plain-Python greedy NMS (highest score first, ties by lower index, the reference
of ``tests/postprocess/test_nms.py``); the script asserts that both keep the same candidates and prints both times
and their ratio. ``soft_nms`` (Gaussian, 100 detections) has no reference and is timed alone. Last, the time of
``load_config`` for every preset with every registered head (what the suite once asserted stayed under 5 s).
lofi's cases run once to warm up, then ``--repeats`` times (best and median reported); the reference once.

These numbers were wall-clock assertions in the tests (each call under 2 s); on a shared machine the wall clock
measures the other jobs, so the tests keep only the behaviour and the timing lives here.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Callable

import torch

from lofi.config import list_presets, load_config
from lofi.models import list_models
from lofi.postprocess import nms, soft_nms
from lofi.postprocess.reference import reference_nms


def candidates(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(segments [N, 2], scores [N], labels [N])``, float64 seconds, seeded."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.rand(n, generator=gen, dtype=torch.float64) * 200  # [N]
    segments = torch.stack([start, start + 1 + torch.rand(n, generator=gen, dtype=torch.float64) * 30], dim=1)
    scores = (torch.rand(n, generator=gen, dtype=torch.float64) * 100).round() / 100  # [N], many ties
    labels = torch.randint(0, 5, (n,), generator=gen)  # [N]
    return segments, scores, labels


def timed(function: Callable[[], object], repeats: int) -> tuple[object, list[float]]:
    """The result of ``function`` and the wall time of each of ``repeats`` calls after one untimed warm-up, in
    seconds."""
    times, result = [], function()
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=2000, help="candidates per call (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each lofi case (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.candidates} candidates")
    segments, scores, labels = candidates(args.candidates, args.seed)
    print(f"{'case':<28} {'best s':>9} {'median s':>9} {'reference s':>12} {'ratio':>8}")
    for name, case_labels in (("nms", None), ("nms, class-wise", labels)):
        kept, times = timed(lambda: nms(segments, scores, iou_threshold=0.5, labels=case_labels), args.repeats)
        start = time.perf_counter()
        expected = reference_nms(segments.tolist(), scores.tolist(), 0.5,
                                 None if case_labels is None else case_labels.tolist())
        reference_sec = time.perf_counter() - start
        assert kept.tolist() == expected, f"{name}: lofi and the reference keep different candidates"
        median = statistics.median(times)
        print(f"{name:<28} {min(times):9.4f} {median:9.4f} {reference_sec:12.4f} {reference_sec / median:7.1f}x")
    _, times = timed(lambda: soft_nms(segments.float(), scores.float(), method="gaussian", max_detections=100),
                     args.repeats)
    print(f"{'soft_nms, gaussian, top 100':<28} {min(times):9.4f} {statistics.median(times):9.4f}")
    heads = [entry.name for entry in list_models("head")]
    for preset in list_presets():
        _, times = timed(lambda: [load_config(preset, [f"model.head={head}"]) for head in heads], 1)
        print(f"{'load_config ' + preset:<28} {times[0] / len(heads):9.4f}  (per head, {len(heads)} heads)")


if __name__ == "__main__":
    main()
