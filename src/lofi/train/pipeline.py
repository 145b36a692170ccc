"""All three LoFi stages in a row, and the comparison the paper makes: frozen stage-1 features vs LoFi features.

``run_all`` trains stage 1, then (optionally) the baseline — a head on features of the frozen stage-1 encoder —
and the LoFi path — stage 2, then a head on features of the tuned encoder — and writes ``comparison.json``,
``comparison.png`` (mAP against tIoU, both paths) and a table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lofi.eval.detection import DetectionResult
from lofi.infer.extract import extract_features
from lofi.runtime.context import RunContext
from lofi.train.head_stage import run_head_stage
from lofi.train.lofi_stage import run_lofi
from lofi.train.pretrain import run_pretrain


@dataclass(frozen=True)
class PathResult:
    """One path through stage 3: which encoder made the features, and the head's evaluation."""

    name: str
    encoder_weights: str | None
    result: DetectionResult


def run_all(context: RunContext, *, resume: bool = True, baseline: bool = True) -> list[PathResult]:
    """Stage 1, the frozen-features baseline (if ``baseline``), stage 2 and stage 3 on its encoder."""
    config = context.config
    acp = run_pretrain(context, resume=resume) if config.pretrain.enabled else config.model.encoder_weights
    results: list[PathResult] = []
    if baseline or not config.train.enabled:
        features = extract_features(context, encoder_weights=acp, features_dir=context.run_dir / "features_frozen",
                                    resume=resume)
        stage = run_head_stage(context, features_dir=features, out_dir=context.run_dir / "stage3_head_frozen",
                               resume=resume)
        results.append(PathResult("frozen stage-1 encoder", str(acp) if acp else None, stage.result))
    if config.train.enabled:
        tuned = run_lofi(context, encoder_weights=acp, resume=resume)
        features = extract_features(context, encoder_weights=tuned, features_dir=context.run_dir / "features_lofi",
                                    resume=resume)
        stage = run_head_stage(context, features_dir=features, out_dir=context.run_dir / "stage3_head_lofi",
                               resume=resume)
        results.append(PathResult(f"LoFi ({config.fidelity.mode}) encoder", str(tuned), stage.result))
    if context.is_main:
        write_comparison(results, context.run_dir)
    return results


def comparison_table(results: list[PathResult]) -> str:
    """mAP at each threshold and the average, one row per path (percent)."""
    if not results:
        return "(no result)"
    thresholds = results[0].result.tiou_thresholds
    shown = [i for i, t in enumerate(thresholds) if i in (0, len(thresholds) // 2, len(thresholds) - 1)]
    width = max(len(r.name) for r in results)
    header = f"{'features from':<{width}} " + " ".join(f"{'mAP@' + format(thresholds[i], '.2f'):>9}"
                                                       for i in shown) + f" {'average':>8}"
    rows = [f"{r.name:<{width}} " + " ".join(f"{100 * r.result.mAP[i]:>9.2f}" for i in shown)
            + f" {100 * r.result.average_mAP:>8.2f}" for r in results]
    return "\n".join([header, *rows])


def write_comparison(results: list[PathResult], run_dir: Path) -> list[Path]:
    """``comparison.json`` and ``comparison.png`` in ``run_dir``."""
    from lofi.eval.plots import plot_map_comparison

    data = [{"name": r.name, "encoder_weights": r.encoder_weights,
             "tiou": [float(t) for t in r.result.tiou_thresholds], "mAP": [float(m) for m in r.result.mAP],
             "average_mAP": float(r.result.average_mAP)} for r in results]
    json_path = run_dir / "comparison.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    png = plot_map_comparison({r.name: r.result for r in results}, run_dir / "comparison.png")
    return [json_path, png]
