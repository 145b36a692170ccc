"""The experiment's outputs from its tasks' outcomes: ``table.md`` (one row per cell: mean ± std over seeds of the
average mAP, the mAP at the thresholds nearest 0.5, 0.7 and 0.9, and the probe's boundary accuracy),
``results.json`` (every number of every cell and seed, with its resolved configs and timings), ``bars.png``
(average mAP per cell with error bars and each seed's value) and ``curves.png`` (mAP against tIoU, one curve per
cell, mean over seeds). Plots use matplotlib's object API on the Agg canvas, as :mod:`lofi.eval.plots` does.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from lofi.config import config_to_dict
from lofi.eval.plots import class_colors, save_figure
from lofi.io import atomic_write
from lofi.train.experiment.cells import CELLS
from lofi.train.experiment.runner import TaskOutcome
from lofi.train.experiment.tasks import ExperimentSpec

RESULTS_FORMAT = "lofi.experiment.results/1"
#: The thresholds the table shows (the nearest the evaluation has, each once).
SHOWN_TIOU = (0.5, 0.7, 0.9)


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (None for one value) over seeds."""

    mean: float
    std: float | None
    n: int

    @staticmethod
    def of(values: Sequence[float]) -> "Stat | None":
        if not values:
            return None
        array = np.asarray(values, dtype=float)
        return Stat(float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else None, len(array))

    def format(self, *, scale: float = 100.0, digits: int = 1) -> str:
        mean = f"{scale * self.mean:.{digits}f}"
        return mean if self.std is None else f"{mean} ± {scale * self.std:.{digits}f}"


@dataclass
class CellSummary:
    """One cell over the seeds: the seeds that finished, their numbers, and why the others have none."""

    cell: str
    seeds: list[int] = field(default_factory=list)
    tiou: list[float] = field(default_factory=list)
    mAP: list[list[float]] = field(default_factory=list)  # [seeds][K]
    average_mAP: list[float] = field(default_factory=list)  # [seeds]
    boundary_accuracy: list[float | None] = field(default_factory=list)  # [seeds]
    notes: list[str] = field(default_factory=list)  # skipped / failed / not run, with the seed

    @property
    def boundary(self) -> Stat | None:
        values = self.boundary_accuracy
        return None if not values or any(v is None for v in values) else Stat.of(values)  # type: ignore[arg-type]


def summarise(cells: Sequence[str], outcomes: dict[str, TaskOutcome]) -> list[CellSummary]:
    """Each cell's numbers over the seeds, in the order of ``cells``."""
    summaries = {cell: CellSummary(cell) for cell in cells}
    for outcome in outcomes.values():
        task = outcome.task
        if not task.cell:
            continue
        summary = summaries[task.name]
        metrics = (outcome.record or {}).get("metrics")
        if outcome.finished and metrics:
            summary.seeds.append(int(task.seed))  # type: ignore[arg-type]
            summary.tiou = [float(t) for t in metrics["tiou"]]
            summary.mAP.append([float(v) for v in metrics["mAP"]])
            summary.average_mAP.append(float(metrics["average_mAP"]))
            summary.boundary_accuracy.append(outcome.record.get("boundary_accuracy"))  # type: ignore[union-attr]
        else:
            summary.notes.append(f"{outcome.status} (seed {task.seed}): {outcome.message}")
    return [summaries[c] for c in cells]


def shown_thresholds(tiou: Sequence[float], wanted: Sequence[float] = SHOWN_TIOU) -> list[int]:
    """Indices of the thresholds nearest each of ``wanted``, each once, in order."""
    indices: list[int] = []
    for target in wanted:
        nearest = min(range(len(tiou)), key=lambda i: (abs(tiou[i] - target), i))
        if nearest not in indices:
            indices.append(nearest)
    return indices


def markdown_table(spec: ExperimentSpec, summaries: Sequence[CellSummary]) -> str:
    """``table.md``: a heading, what the numbers are, and one row per cell."""
    tiou = next((s.tiou for s in summaries if s.tiou), [])
    shown = shown_thresholds(tiou) if tiou else []
    seeds = ", ".join(map(str, spec.seeds))
    lines = [f"# lofi experiment lofi-table: {spec.config.name}", "",
             f"Average mAP over the tIoU thresholds {_thresholds_text(tiou)} (eval.tiou: {spec.config.eval.tiou}) and "
             f"mAP at single thresholds, in %; the probe's boundary accuracy (the linear probe's recall of the "
             f"boundary phase on the cell's features) as a fraction. Each: mean ± sample "
             f"standard deviation over the seeds that finished (seeds {seeds}); the same stage 3 after every "
             f"cell's encoder.", "",
             "| cell | encoder | seeds | average mAP | " + " | ".join(f"mAP@{tiou[i]:g}" for i in shown)
             + " | boundary acc. (probe) |",
             "|---|---|---:|---:|" + "---:|" * len(shown) + "---:|"]
    for summary in summaries:
        what = CELLS[summary.cell].what
        if not summary.seeds:
            note = "; ".join(summary.notes) or "no result"
            lines.append(f"| {summary.cell} | {what} | 0 | {_escape(note)} |" + " |" * len(shown) + " |")
            continue
        average = Stat.of(summary.average_mAP)
        at = [Stat.of([row[i] for row in summary.mAP]) for i in shown]
        boundary = summary.boundary
        cells = [summary.cell, what, str(len(summary.seeds)), average.format()]  # type: ignore[union-attr]
        cells += [stat.format() for stat in at]  # type: ignore[union-attr]
        cells.append(boundary.format(scale=1.0, digits=2) if boundary else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {s.cell}: {note}" for s in summaries if s.seeds for note in s.notes]
    if notes:
        lines += ["", "Seeds without a result:", *map(_escape, notes)]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _thresholds_text(tiou: Sequence[float]) -> str:
    if len(tiou) > 2 and np.allclose(np.diff(tiou), tiou[1] - tiou[0]):
        return f"{tiou[0]:.2f}:{tiou[-1]:.2f} ({len(tiou)} thresholds)"
    return ", ".join(f"{t:g}" for t in tiou)


def results_json(spec: ExperimentSpec, outcomes: dict[str, TaskOutcome],
                 summaries: Sequence[CellSummary]) -> dict[str, Any]:
    """Everything: the base config, each cell's summary and every task's record (resolved configs, timings)."""
    def entry(outcome: TaskOutcome) -> dict[str, Any]:
        task = outcome.task
        return {"task": task.key, "name": task.name, "seed": task.seed, "status": outcome.status,
                "message": outcome.message, "seconds": outcome.seconds, "info": outcome.info,
                "record": outcome.record}

    summary = {}
    for s in summaries:
        average, boundary = Stat.of(s.average_mAP), s.boundary
        mAP = [Stat.of([row[i] for row in s.mAP]) for i in range(len(s.tiou))]
        summary[s.cell] = {"what": CELLS[s.cell].what, "seeds": s.seeds, "tiou": s.tiou,
                           "average_mAP": dataclasses.asdict(average) if average else None,
                           "mAP": [dataclasses.asdict(m) for m in mAP if m is not None],
                           "boundary_accuracy": dataclasses.asdict(boundary) if boundary else None,
                           "per_seed": {str(seed): {"average_mAP": a, "mAP": m, "boundary_accuracy": b}
                                        for seed, a, m, b in zip(s.seeds, s.average_mAP, s.mAP,
                                                                 s.boundary_accuracy)},
                           "notes": s.notes, **_training(s.cell, outcomes)}
    cells = [o for o in outcomes.values() if o.task.cell]
    shared = [o for o in outcomes.values() if not o.task.cell]
    return {"format": RESULTS_FORMAT, "experiment": "lofi-table", "folder": str(spec.layout.root),
            "config_source": spec.source, "overrides": list(spec.overrides), "config": config_to_dict(spec.config),
            "seeds": list(spec.seeds), "cells": list(spec.cells), "acp": dataclasses.asdict(spec.acp),
            "summary": summary, "runs": [entry(o) for o in cells], "shared": [entry(o) for o in shared]}


def _training(cell: str, outcomes: dict[str, TaskOutcome]) -> dict[str, Any]:
    """The optimiser steps and seconds of the cell's own training stage (stage 1 or 2) per seed, what its tasks
    were told (matched_steps' step counts, full_levers' plan), and for matched_steps the stage-2 cells' steps and
    seconds beside its own."""
    steps, facts = _trained(cell, outcomes), {}
    for outcome in outcomes.values():
        if outcome.task.cell and outcome.task.name == cell:
            facts.update(outcome.info)
    training = {"training_optimizer_steps": {s: n for s, (n, _) in steps.items()},
                "training_seconds": {s: t for s, (_, t) in steps.items()}} if steps else {}
    if CELLS[cell].training == "pretrain":
        stage2 = {name: _trained(name, outcomes) for name, spec in CELLS.items() if spec.training == "lofi"}
        training["stage2_cells"] = {name: {"optimizer_steps": {s: n for s, (n, _) in runs.items()},
                                           "seconds": {s: t for s, (_, t) in runs.items()}}
                                    for name, runs in stage2.items() if runs}
    return {**training, **facts}


def _trained(cell: str, outcomes: dict[str, TaskOutcome]) -> dict[str, tuple[int | None, float | None]]:
    """``{seed: (optimiser steps, seconds)}`` of the cell's training stage, for the seeds it ran."""
    runs = {}
    for outcome in outcomes.values():
        if outcome.task.cell and outcome.task.name == cell:
            first = ((outcome.record or {}).get("steps") or [{}])[0]
            if first.get("stage") in ("pretrain", "lofi"):
                runs[str(outcome.task.seed)] = (first.get("optimizer_steps"), first.get("seconds"))
    return runs


def plot_bars(summaries: Sequence[CellSummary], path: Path, *, title: str) -> Path:
    """Average mAP (%) per cell: the mean over seeds as a bar, the standard deviation as an error bar, each seed
    as a dot; a cell without a result is marked so at its place."""
    names = [s.cell for s in summaries]
    colors = class_colors(names)
    fig = Figure(figsize=(max(6.4, 0.9 * len(names) + 2.0), 4.6), layout="constrained")
    ax = fig.add_subplot()
    highest = 0.0
    for x, s in enumerate(summaries):
        if not s.seeds:
            ax.text(x, 0.5, "no result", rotation=90, ha="center", va="bottom", fontsize=8, color="0.4")
            continue
        stat = Stat.of(s.average_mAP)
        assert stat is not None
        values = 100.0 * np.asarray(s.average_mAP)
        ax.bar(x, 100.0 * stat.mean, color=colors[s.cell], alpha=0.85, width=0.7,
               yerr=None if stat.std is None else 100.0 * stat.std, capsize=4, ecolor="0.2")
        ax.scatter(np.full(len(values), x), values, s=14, color="black", zorder=3)
        ax.annotate(f"{100.0 * stat.mean:.1f}", (x, 100.0 * stat.mean), textcoords="offset points", xytext=(8, 2),
                    fontsize=8)
        highest = max(highest, float(values.max()), 100.0 * (stat.mean + (stat.std or 0.0)))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center")
    ax.set_ylabel("average mAP (%)")
    ax.set_ylim(0, min(100.0, max(5.0, 1.2 * highest)))
    ax.grid(True, axis="y", alpha=0.4)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def plot_curves(summaries: Sequence[CellSummary], path: Path, *, title: str) -> Path:
    """mAP (%) against tIoU, one curve per cell with a result (the mean over its seeds); the legend gives each
    cell's average mAP."""
    fig = Figure(figsize=(7.2, 4.6), layout="constrained")
    ax = fig.add_subplot()
    colors = class_colors([s.cell for s in summaries])
    markers = "osD^v<>PXh*"
    highest = 0.0
    for i, s in enumerate(x for x in summaries if x.seeds):
        curve = 100.0 * np.mean(np.asarray(s.mAP, dtype=float), axis=0)  # [K]
        ax.plot(s.tiou, curve, marker=markers[i % len(markers)], color=colors[s.cell], markersize=4,
                label=f"{s.cell} ({100.0 * float(np.mean(s.average_mAP)):.1f}%)")
        highest = max(highest, float(curve.max()))
    tiou = next((s.tiou for s in summaries if s.seeds), [])
    if tiou:
        ax.set_xticks(tiou)
        ax.set_xticklabels([f"{t:.2f}" for t in tiou], rotation=45 if len(tiou) > 6 else 0)
    ax.set_xlabel("tIoU threshold")
    ax.set_ylabel("mAP (%)")
    ax.set_ylim(0, min(100.0, max(5.0, 1.2 * highest)))
    ax.grid(True, alpha=0.4)
    if ax.lines:
        ax.legend(loc="upper right", fontsize=8, title="cell (average mAP)", title_fontsize=8)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def write_report(spec: ExperimentSpec, outcomes: dict[str, TaskOutcome]) -> list[Path]:
    """``table.md``, ``results.json``, ``bars.png`` and ``curves.png`` in the experiment folder."""
    layout = spec.layout
    summaries = summarise(spec.cells, outcomes)
    table = markdown_table(spec, summaries)
    atomic_write(layout.table_md, lambda handle: handle.write(table.encode("utf-8")))
    text = json.dumps(results_json(spec, outcomes, summaries), indent=1, default=str) + "\n"
    atomic_write(layout.results_json, lambda handle: handle.write(text.encode("utf-8")))
    seeds = f"seeds {', '.join(map(str, spec.seeds))}"
    return [layout.table_md, layout.results_json,
            plot_bars(summaries, layout.bars_png, title=f"{spec.config.name}: average mAP per cell "
                                                         f"(mean ± std over {seeds}; dots: each seed)"),
            plot_curves(summaries, layout.curves_png, title=f"{spec.config.name}: mAP vs tIoU, mean over {seeds}")]
