"""Metrics as JSON, in the layout other tools read from ``lofi evaluate --output``."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lofi.eval.detection import DetectionResult
from lofi.eval.proposals import ProposalResult


def detection_metrics_json(result: DetectionResult) -> dict[str, Any]:
    """``{tiou: [K], mAP: [K], average_mAP, per_class: {label: [K]}, counts: {...}}`` with plain floats."""
    return {
        "tiou": [round(float(t), 10) for t in result.tiou_thresholds],
        "mAP": [float(v) for v in result.mAP],
        "average_mAP": float(result.average_mAP),
        "per_class": {label: [float(v) for v in ap] for label, ap in result.ap.items()},
        "counts": {k: int(v) for k, v in asdict(result.counts).items()},
    }


def proposal_metrics_json(result: ProposalResult) -> dict[str, Any]:
    """``{tiou: [K], AN: [100], AR: [100], recall: [[100] per tIoU], AUC, AR@AN: {an: ar}, counts: {...}}``."""
    return {
        "tiou": [round(float(t), 10) for t in result.tiou_thresholds],
        "AN": [float(v) for v in result.proposals_per_video],
        "AR": [float(v) for v in result.average_recall],
        "recall": [[float(v) for v in row] for row in result.recall],
        "AUC": float(result.auc),
        "AR@AN": {str(an): float(ar) for an, ar in result.ar_at.items()},
        "counts": {k: int(v) for k, v in asdict(result.counts).items()},
    }


def write_metrics_json(metrics: dict[str, Any], path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(metrics, indent=2) + "\n")
