"""What a training run writes for people: ``metrics.jsonl`` and ``metrics.csv``, a progress bar, loss curves.

Each logged optimiser step and each epoch is one record: a flat dict with ``kind`` (``"step"`` or
``"epoch"``), ``epoch``, ``step`` and scalar values (``loss`` and its parts, ``lr``, ``grad_norm``, validation
metrics such as ``mAP`` returned by the stage's epoch callback, ...). ``metrics.jsonl`` gets one JSON line per
record; ``metrics.csv`` has one row per record and a column per key seen so far (rewritten when a new key
appears). Only rank 0 writes (the engine passes ``enabled=False`` elsewhere).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from lofi.io import atomic_write

__all__ = ["MetricsLog", "Progress", "read_metrics", "plot_curves"]

JSONL_NAME = "metrics.jsonl"
CSV_NAME = "metrics.csv"


def _plain(key: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"metric {key!r}: expected a number or a string, got {type(value).__name__}")


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; a last line cut short by a crash is ignored."""
    records = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # the final (possibly unterminated) line
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON: {line[:80]!r}") from None
    return records


class MetricsLog:
    """Appends records to ``run_dir/metrics.jsonl`` and ``run_dir/metrics.csv``.

    ``keep_records``: how many records already in ``metrics.jsonl`` to keep (a resumed run passes the count
    stored in its checkpoint, which drops what was logged after that checkpoint); None keeps them all, 0 starts
    afresh. With ``enabled=False`` (ranks other than 0) nothing is read or written.
    """

    def __init__(self, run_dir: str | os.PathLike, *, keep_records: int | None = None, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.jsonl_path = self.run_dir / JSONL_NAME
        self.csv_path = self.run_dir / CSV_NAME
        self._rows: list[dict[str, Any]] = []
        self._columns: list[str] = []
        self._jsonl = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if keep_records != 0 and self.jsonl_path.is_file():
            self._rows = read_metrics(self.jsonl_path)
            if keep_records is not None:
                self._rows = self._rows[:keep_records]
        for row in self._rows:
            self._add_columns(row)
        self._rewrite_jsonl()
        self._rewrite_csv()
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")

    @property
    def num_records(self) -> int:
        """Records in the log (0 when disabled)."""
        return len(self._rows)

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one record (a flat mapping of scalars; tensors and numpy scalars become numbers)."""
        if not self.enabled:
            return
        row = {str(k): _plain(str(k), v) for k, v in record.items()}
        self._rows.append(row)
        assert self._jsonl is not None
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        if self._add_columns(row):
            self._rewrite_csv()
        else:
            with open(self.csv_path, "a", encoding="utf-8", newline="") as f:
                csv.DictWriter(f, fieldnames=self._columns, restval="").writerow(row)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def _add_columns(self, row: Mapping[str, Any]) -> bool:
        new = [k for k in row if k not in self._columns]
        self._columns.extend(new)
        return bool(new)

    def _rewrite_jsonl(self) -> None:
        text = "".join(json.dumps(row) + "\n" for row in self._rows)
        atomic_write(self.jsonl_path, lambda f: f.write(text.encode("utf-8")))

    def _rewrite_csv(self) -> None:
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=self._columns, restval="")
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write(self.csv_path, lambda f: f.write(buffer.getvalue().encode("utf-8")))


class Progress:
    """A tqdm bar over optimiser steps with an ETA; shown only when ``enabled`` and stderr is a terminal."""

    def __init__(self, *, total: int, initial: int = 0, enabled: bool = True, desc: str = "train") -> None:
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def update(self, n: int = 1, **postfix: Any) -> None:
        if self._bar is None:
            return
        if postfix:
            self._bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()},
                                  refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


_NOT_EPOCH_METRICS = {"kind", "epoch", "step", "lr", "epoch_sec", "sec_per_step"}


def _ema(values: Sequence[float], smoothing: float) -> np.ndarray:
    """Exponential moving average, debiased like TensorBoard's (the first points are not pulled to 0)."""
    out = np.empty(len(values))
    avg, weight = 0.0, 0.0
    for i, v in enumerate(values):
        avg = smoothing * avg + (1 - smoothing) * v
        weight = smoothing * weight + (1 - smoothing)
        out[i] = avg / weight
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def plot_curves(metrics_jsonl: str | os.PathLike, out_png: str | os.PathLike, *, smoothing: float = 0.9) -> Path:
    """PNG of a run's curves: training loss per step (raw and smoothed, with the per-epoch mean), the learning
    rate per step, and every other per-epoch metric (e.g. validation mAP) against the epoch; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    records = read_metrics(metrics_jsonl)
    steps = [r for r in records if r.get("kind") == "step" and _is_number(r.get("loss"))]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    epoch_keys: list[str] = []
    for r in epochs:
        epoch_keys += [k for k, v in r.items() if k not in _NOT_EPOCH_METRICS and not k.startswith("train_")
                       and _is_number(v) and k not in epoch_keys]
    has_lr = any(_is_number(r.get("lr")) for r in steps)
    panels = 1 + has_lr + bool(epoch_keys)
    fig = Figure(figsize=(7.5, 2.9 * panels + 0.4), layout="constrained")
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]

    ax = axes[0]
    if steps:
        x = np.array([r["step"] for r in steps])
        y = np.array([r["loss"] for r in steps], dtype=float)
        ax.plot(x, y, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss (raw)")
        ax.plot(x, _ema(y, smoothing), color="tab:blue", linewidth=1.8, label=f"loss (EMA {smoothing:g})")
    mean = [(r["step"], r["train_loss"]) for r in epochs if _is_number(r.get("train_loss"))]
    if mean:
        ax.plot(*zip(*mean), marker="o", linestyle="--", color="tab:orange", label="epoch mean")
    if not steps and not mean:
        ax.text(0.5, 0.5, "no loss logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss")
    ax.grid(True, alpha=0.3)
    if steps or mean:
        ax.legend(fontsize=8)
    ax.set_title(f"Training loss ({len(steps)} logged steps, {len(epochs)} epochs)", fontsize=10)

    row = 1
    if has_lr:
        ax = axes[row]
        row += 1
        lr = [(r["step"], r["lr"]) for r in steps if _is_number(r.get("lr"))]
        ax.plot(*zip(*lr), color="tab:green", drawstyle="steps-post")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("learning rate")
        ax.grid(True, alpha=0.3)
    if epoch_keys:
        ax = axes[row]
        for key in epoch_keys:
            pts = [(r["epoch"] + 1, r[key]) for r in epochs if _is_number(r.get(key))]
            ax.plot(*zip(*pts), marker="o", label=key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (completed)")
        ax.set_ylabel("per-epoch metric")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Per-epoch metrics", fontsize=10)

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out_png, dpi=120, format="png")
    return out_png
