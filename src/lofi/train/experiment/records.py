"""A task's record (``record.json`` in its folder): what each step was (stage, folder, identity fingerprint, seconds,
whether it was reused, its overrides and resolved config), what it trained (optimiser steps) and, for a cell, its
stage-3 numbers (mAP at each tIoU, average mAP) and the probe's boundary accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lofi.config import config_to_dict
from lofi.eval.probe import probe_boundaries, synthetic_phases_beside
from lofi.io import atomic_write
from lofi.runtime.context import RunContext
from lofi.train.experiment.cells import Step
from lofi.train.experiment.layout import FEATURES_DIR, RECORD_FILE, stage_folder

RECORD_FORMAT = "lofi.experiment.record/1"


def read_record(folder: Path) -> dict[str, Any] | None:
    """The record in ``folder``, None when there is none (or it is unreadable: the task then runs again, reusing
    its finished stages)."""
    try:
        record = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def write_record(folder: Path, record: dict[str, Any]) -> Path:
    text = json.dumps(record, indent=1, default=str) + "\n"
    return atomic_write(folder / RECORD_FILE, lambda handle: handle.write(text.encode("utf-8")))


def step_entry(step: Step, context: RunContext, *, fingerprint: str, seconds: float, reused: bool) -> dict[str, Any]:
    """One step of a record."""
    folder = stage_folder(context.run_dir, step.stage)
    entry: dict[str, Any] = {"stage": step.stage, "folder": str(folder), "fingerprint": fingerprint,
                             "seconds": round(seconds, 3), "reused": reused, "overrides": list(step.overrides),
                             "config": config_to_dict(context.config)}
    steps = trained_steps(folder) if step.stage in ("pretrain", "lofi") else None
    if steps is not None:
        entry["optimizer_steps"] = steps
    return entry


def trained_steps(stage_dir: Path) -> int | None:
    """The optimiser steps a training stage ran (its last epoch record in ``metrics.jsonl``)."""
    try:
        lines = (stage_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    epochs = [row for row in map(json.loads, lines) if row.get("kind") == "epoch"]
    return int(epochs[-1]["step"]) if epochs else None


def head_metrics(run_dir: Path) -> dict[str, Any]:
    """The head's ``metrics.json`` (``lofi evaluate``'s layout): tIoU thresholds, mAP at each, average mAP."""
    metrics = json.loads((stage_folder(run_dir, "head") / "metrics.json").read_text(encoding="utf-8"))
    return {"tiou": metrics["tiou"], "mAP": metrics["mAP"], "average_mAP": metrics["average_mAP"]}


def cell_probe(context: RunContext) -> float:
    """The linear probe's boundary accuracy on the cell's features (``lofi.eval.probe.probe_boundaries``: fitted
    on the training subset's snippets, scored on the evaluation subset's; exact phases on synthetic data)."""
    config = context.config
    result = probe_boundaries(context.run_dir / FEATURES_DIR, context.annotations,
                              train_subset=config.data.train_subset, val_subset=config.data.val_subset,
                              phases=synthetic_phases_beside(config.data.annotations), seed=config.seed)
    return float(result.boundary_accuracy)
