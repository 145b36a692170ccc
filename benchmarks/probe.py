"""The task discrepancy at the feature level: the three-phase linear probe on a run's encoders, at each fidelity.

    python benchmarks/probe.py RUN_DIR [--encoders random frozen lofi] [--fidelities full S T ST]
                               [--out probe.json] [-o KEY=VALUE ...]

``RUN_DIR`` is a finished run (``lofi run`` or ``lofi demo``'s ``lofi-demo/runs/synthetic``); its resolved config
(``stage1_pretrain/config.yaml``) is used as it is. For each encoder (``random``: the encoder as initialised with
the run's seed, never trained; ``frozen``: stage 1's ``stage1_pretrain/encoder.pt``; ``lofi``: stage 2's
``stage2_lofi/encoder.pt``) and each fidelity (``full`` and the LoFi modes' ``S``, ``T``, ``ST`` of the run's full
fidelity, :func:`lofi.core.fidelity.lofi_fidelities`), the features of the training and evaluation subsets are
extracted (full fidelity reuses the run's ``features_frozen`` / ``features_lofi`` when their identity matches) and
:func:`lofi.eval.probe.probe_boundaries` is fitted on the training subset's snippets and scored on the evaluation
subset's (also: inside an instance vs background, the mean of the two recalls, and the share of boundary
snippets taken for background, from the same probe). On lofi's synthetic data the phases are exact (``synthetic.json``); elsewhere the boundary phase is the
first and last 15% of each instance.

What it answers: does a snippet's own feature tell an onset or offset from the middle of an action and from the
background (``boundary``: the recall of the boundary phase, chance 1/3), and does what it tells survive the
fidelities stage 2 trains at? Features extracted at other fidelities go to ``RUN_DIR/probe/<encoder>_<fidelity>``.
A table on stdout; ``--out`` writes every number as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ENCODER_FILES = {"random": None, "frozen": Path("stage1_pretrain") / "encoder.pt",
                 "lofi": Path("stage2_lofi") / "encoder.pt"}
RUN_FEATURES = {"frozen": "features_frozen", "lofi": "features_lofi"}  # the run's own full-fidelity features


def probe_encoder(run_dir: Path, encoder: str, fidelity: str, overrides: list[str]) -> dict:
    """Extract (or reuse) one encoder's features at one fidelity and probe them; the row as a dict."""
    from lofi.core.fidelity import lofi_fidelities
    from lofi.eval.probe import probe_boundaries, synthetic_phases_beside
    from lofi.infer.extract import extract_features
    from lofi.runtime.configs import load_run_config
    from lofi.runtime.context import make_context

    base = load_run_config(str(run_dir / "stage1_pretrain" / "config.yaml"), ["device=cpu", *overrides])
    chosen = lofi_fidelities(num_snippets=base.fidelity.num_snippets,
                             frame_size_px=base.fidelity.frame_size_px)[fidelity]
    config = load_run_config(str(run_dir / "stage1_pretrain" / "config.yaml"),
                             ["device=cpu", *overrides, f"fidelity.num_snippets={chosen.num_snippets}",
                              f"fidelity.frame_size_px={chosen.frame_size_px}"])
    weights = ENCODER_FILES[encoder]
    if weights is not None:
        weights = run_dir / weights
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: the {encoder} encoder's weights are missing (has the run finished?)")
    if fidelity == "full" and encoder in RUN_FEATURES:
        features_dir = run_dir / RUN_FEATURES[encoder]
    else:
        features_dir = run_dir / "probe" / f"{encoder}_{fidelity}"
    context = make_context(config, progress=False)
    started = time.perf_counter()
    extract_features(context, encoder_weights=weights, features_dir=features_dir)
    result = probe_boundaries(features_dir, context.annotations, train_subset=config.data.train_subset,
                              val_subset=config.data.val_subset,
                              phases=synthetic_phases_beside(config.data.annotations), seed=config.seed)
    return {"encoder": encoder, "fidelity": fidelity, "num_snippets": chosen.num_snippets,
            "frame_size_px": chosen.frame_size_px, "features_dir": str(features_dir),
            "seconds": round(time.perf_counter() - started, 1), **result.to_dict()}


def table(rows: list[dict]) -> str:
    lines = ["| encoder | fidelity | snippets x px | boundary | middle | background | balanced | inside vs background "
             "| boundary taken for background | train balanced |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['encoder']} | {r['fidelity']} | {r['num_snippets']} x {r['frame_size_px']} | "
                     f"{r['boundary_accuracy']:.2f} | {r['middle_accuracy']:.2f} | {r['background_accuracy']:.2f} | "
                     f"{r['balanced_accuracy']:.2f} | {r['inside_accuracy']:.2f} | {r['confusion'][1][0]:.2f} | "
                     f"{r['train_balanced_accuracy']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--encoders", nargs="+", choices=list(ENCODER_FILES), default=list(ENCODER_FILES))
    parser.add_argument("--fidelities", nargs="+", choices=["full", "S", "T", "ST"], default=["full"])
    parser.add_argument("--out", type=Path, help="write every number as JSON")
    parser.add_argument("-o", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the extractions (e.g. head.extract_batch_size=4)")
    args = parser.parse_args(argv)
    if not (args.run_dir / "stage1_pretrain" / "config.yaml").is_file():
        print(f"{args.run_dir}: not a run directory (no stage1_pretrain/config.yaml)", file=sys.stderr)
        return 2
    rows = []
    for encoder in args.encoders:
        for fidelity in args.fidelities:
            rows.append(probe_encoder(args.run_dir, encoder, fidelity, args.overrides))
            print(f"{encoder} at {fidelity}: boundary {rows[-1]['boundary_accuracy']:.2f} "
                  f"({rows[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
    print(table(rows))
    if args.out:
        record = {"run_dir": str(args.run_dir), "machine": platform.processor() or platform.machine(),
                  "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}
        args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
