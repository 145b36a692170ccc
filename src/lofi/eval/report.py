"""Metrics as JSON, in the layout other tools read from ``lofi evaluate --output``."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lofi.eval.detection import DetectionResult


def detection_metrics_json(result: DetectionResult) -> dict[str, Any]:
    """``{tiou: [K], mAP: [K], average_mAP, per_class: {label: [K]}, counts: {...}}`` with plain floats."""
    return {
        "tiou": [round(float(t), 10) for t in result.tiou_thresholds],
        "mAP": [float(v) for v in result.mAP],
        "average_mAP": float(result.average_mAP),
        "per_class": {label: [float(v) for v in ap] for label, ap in result.ap.items()},
        "counts": {k: int(v) for k, v in asdict(result.counts).items()},
    }


def write_metrics_json(metrics: dict[str, Any], path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(metrics, indent=2) + "\n")
