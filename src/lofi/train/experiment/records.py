"""A task's record (``record.json`` in its folder): what each step was (stage, folder, identity fingerprint, seconds,
whether it was reused, its overrides and resolved config), what it trained (optimiser steps) and, for a cell, its
stage-3 numbers (mAP at each tIoU, average mAP) and the probe's boundary accuracy.

The probe (``lofi.eval.probe``, another engineer's) is optional: while the module is absent :func:`_probe_cell`
returns None and the table shows ``n/a``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from lofi.config import config_to_dict
from lofi.data.annotations import AnnotationSet
from lofi.data.synthetic.generate import METADATA_FILE
from lofi.io import atomic_write
from lofi.runtime.context import RunContext
from lofi.train.experiment.cells import Step
from lofi.train.experiment.layout import FEATURES_DIR, RECORD_FILE, stage_folder

RECORD_FORMAT = "lofi.experiment.record/1"
PROBE_MODULE = "lofi.eval.probe"


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


def probe_available() -> bool:
    """Whether ``lofi.eval.probe`` exists in this lofi (the boundary-accuracy column)."""
    return importlib.util.find_spec(PROBE_MODULE) is not None


def cell_probe(context: RunContext) -> float | None:
    """The boundary accuracy of the cell's features (see :func:`_probe_cell`)."""
    config = context.config
    return _probe_cell(context.run_dir / FEATURES_DIR, context.annotations, train_subset=config.data.train_subset,
                       val_subset=config.data.val_subset, phases=_synthetic_phases(config.data.annotations),
                       seed=config.seed)


def _probe_cell(features_dir: Path, annotations: AnnotationSet, *, train_subset: str, val_subset: str,
                phases: dict | None, seed: int) -> float | None:
    """The linear probe's boundary accuracy on ``features_dir`` (``lofi.eval.probe.probe_boundaries``: fitted on
    ``train_subset``'s snippets, scored on ``val_subset``'s), None while that module does not exist."""
    try:
        from lofi.eval.probe import probe_boundaries
    except ImportError:
        return None
    result = probe_boundaries(features_dir, annotations, train_subset=train_subset, val_subset=val_subset,
                              phases=phases, seed=seed)
    return float(result.boundary_accuracy)


def _synthetic_phases(annotations_path: str) -> dict | None:
    """The exact onset / middle / offset phases of a lofi synthetic dataset (its ``synthetic.json``), else None (the
    probe then takes the first and last share of each instance as its boundary phase)."""
    metadata = Path(annotations_path).parent / METADATA_FILE
    try:
        from lofi.eval.probe import synthetic_phases
    except ImportError:
        return None
    return synthetic_phases(metadata) if metadata.is_file() else None
