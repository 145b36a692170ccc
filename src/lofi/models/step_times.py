"""Measured stage-2 step times: what ``benchmarks/train_speed.py --output FILE`` writes, and what ``lofi experiment
lofi-table CONFIG --dry-run --step-times FILE`` reads to turn a cell's optimiser steps into hours.

One file is one measurement: an encoder + head at a batch per process, frames per snippet and optimizer on one
device, with the median seconds of a real training step (forward, loss, backward, optimizer step) per fidelity
(snippets x frame size) and lever combination::

    {"format": "lofi.step_times/1", "device": "NVIDIA H100 80GB HBM3", "torch": "2.5.1",
     "encoder": "tsm_resnet18", "head": "gtad", "frames_per_snippet": 8, "batch_size": 2, "optimizer": "sgd",
     "rows": [{"num_snippets": 25, "frame_size_px": 224, "levers": "none", "step_sec": 0.412}, ...]}
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from lofi.core.fidelity import Fidelity
from lofi.models.memory_measure import Levers

STEP_TIMES_FORMAT = "lofi.step_times/1"
_SETTINGS = ("encoder", "head", "frames_per_snippet", "batch_size", "optimizer")


@dataclass(frozen=True)
class StepTimes:
    """Median step seconds by ``(num_snippets, frame_size_px, levers name)``, and the settings they were measured
    at (``device`` and ``torch`` say where)."""

    device: str
    torch: str
    encoder: str
    head: str
    frames_per_snippet: int
    batch_size: int
    optimizer: str
    seconds: Mapping[tuple[int, int, str], float]

    def step_sec(self, fidelity: Fidelity, levers: Levers) -> float | None:
        """The measured seconds of a step at ``fidelity`` with ``levers``; None when that row was not measured."""
        return self.seconds.get((fidelity.num_snippets, fidelity.frame_size_px, levers.name))

    def mismatches(self, **settings: Any) -> list[str]:
        """``"batch_size: measured 2, the run's 16"`` for each of ``settings`` (encoder, head, frames_per_snippet,
        batch_size, optimizer) that differs from the measurement's."""
        return [f"{key}: measured {getattr(self, key)!r}, the run's {value!r}" for key, value in settings.items()
                if getattr(self, key) != value]

    def to_dict(self) -> dict[str, Any]:
        rows = [{"num_snippets": t, "frame_size_px": px, "levers": levers, "step_sec": sec}
                for (t, px, levers), sec in self.seconds.items()]
        return {"format": STEP_TIMES_FORMAT, "device": self.device, "torch": self.torch,
                **{key: getattr(self, key) for key in _SETTINGS}, "rows": rows}

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @staticmethod
    def read(path: str | os.PathLike) -> "StepTimes":
        """The measurement in ``path``; a ValueError naming the file and what is wrong with it."""
        path = Path(path)
        hint = "write it with python benchmarks/train_speed.py ... --output FILE"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: step-times file not found; {hint}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a step-times file (not JSON: {exc}); {hint}") from None
        if not isinstance(data, dict) or data.get("format") != STEP_TIMES_FORMAT:
            raise ValueError(f"{path}: not a step-times file (format must be {STEP_TIMES_FORMAT!r}); {hint}")
        try:
            seconds: dict[tuple[int, int, str], float] = {}
            for row in data["rows"]:
                sec = float(row["step_sec"])
                if not (math.isfinite(sec) and sec > 0):
                    raise ValueError(f"step_sec {sec!r} is not a positive number")
                levers = Levers.parse(str(row["levers"])).name
                seconds[(int(row["num_snippets"]), int(row["frame_size_px"]), levers)] = sec
            return StepTimes(device=str(data["device"]), torch=str(data["torch"]), encoder=str(data["encoder"]),
                             head=str(data["head"]), frames_per_snippet=int(data["frames_per_snippet"]),
                             batch_size=int(data["batch_size"]), optimizer=str(data["optimizer"]), seconds=seconds)
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(f"{path}: a step-times file with a bad entry ({what}); {hint}") from None


__all__ = ["STEP_TIMES_FORMAT", "StepTimes"]
