"""What one task of the experiment does: resolved into its steps once its dependencies have finished, checked for
reuse (every step finished under the same identity, and its record current), and executed (in its own process,
:mod:`lofi.train.experiment.runner`), writing its record.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from lofi.config import RunConfig
from lofi.data.synthetic import SyntheticConfig
from lofi.runtime.configs import load_run_config
from lofi.runtime.context import RunContext, make_context
from lofi.train import lofi_stage, pretrain
from lofi.train.experiment.cells import (CELLS, SOURCE_DATA, AcpSource, MatchedSteps, Step, Task,
                                         matched_steps, run_folder, task_folder, task_steps)
from lofi.train.experiment.layout import ExperimentLayout
from lofi.train.experiment.levers import PLAN_FILE
from lofi.train.experiment.records import (RECORD_FORMAT, cell_probe, head_metrics, read_record,
                                           step_entry, write_record)
from lofi.train.experiment.source import make_source_dataset, source_ready, source_settings
from lofi.train.experiment.stages import finished_identity, run_step

#: What ``plan.json`` tells each full_levers record.
_PLAN_FACTS = ("budget_bytes", "budget", "headroom", "fits", "levers", "predicted_peak_bytes", "reason")


@dataclass(frozen=True)
class ExperimentSpec:
    """The base config (its file or preset and ``-o`` overrides, each task's config adds its own) and what follows
    from it: the experiment folder, the ACP source, the seeds and the cells."""

    source: str
    overrides: tuple[str, ...]
    config: RunConfig
    layout: ExperimentLayout
    acp: AcpSource
    seeds: tuple[int, ...]
    cells: tuple[str, ...]

    def step_config(self, overrides: tuple[str, ...] | list[str]) -> RunConfig:
        """The base config with ``overrides`` on top, checked as the command line checks it."""
        return load_run_config(self.source, [*self.overrides, *overrides])


@dataclass(frozen=True)
class ResolvedTask:
    """A task ready to run: its folder (``record.json``, ``log.txt``), its steps, facts for its record (the
    matched step counts, the plan's levers), why it is skipped (None: it runs), and the source dataset's settings
    for the data task."""

    task: Task
    folder: Path
    steps: tuple[Step, ...]
    info: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    source_settings: SyntheticConfig | None = None


def resolve(spec: ExperimentSpec, task: Task) -> ResolvedTask:
    """``task``'s steps, now that its dependencies have finished (``full_levers`` reads the plan, ``matched_steps``
    counts the steps of both stages)."""
    folder = task_folder(spec.layout, task)
    if task.name == SOURCE_DATA:
        acp = spec.config.experiment.acp if spec.config.experiment is not None else None
        settings = source_settings(spec.config.data.annotations, seed=acp.seed if acp is not None else None)
        return ResolvedTask(task, folder, (), info={"synthetic": settings.to_dict()}, source_settings=settings)
    info: dict[str, Any] = {}
    matched = lever_overrides = None
    spec_of_cell = CELLS[task.name] if task.cell else None
    if spec_of_cell is not None and spec_of_cell.training == "pretrain":
        assert task.seed is not None
        matched = count_matched_steps(spec, task.seed)
        info["matched_steps"] = matched.to_dict()
    if spec_of_cell is not None and spec_of_cell.levers:
        plan = json.loads((spec.layout.plan_dir / PLAN_FILE).read_text(encoding="utf-8"))
        info["full_levers"] = {key: plan[key] for key in _PLAN_FACTS}
        if not plan["fits"]:
            return ResolvedTask(task, folder, (), info=info, skipped=plan["reason"])
        lever_overrides = plan["overrides"]
    steps = task_steps(task, layout=spec.layout, acp=spec.acp, matched=matched, lever_overrides=lever_overrides)
    return ResolvedTask(task, folder, tuple(steps), info=info)


def count_matched_steps(spec: ExperimentSpec, seed: int, *, overrides: Sequence[str] = ()) -> MatchedSteps:
    """Stage 2's optimiser steps (its sampler's length x epochs, at stage 2's batch) and stage 1's per epoch (at
    stage 1's batch) on the target, for seed ``seed``; ``overrides`` go on top of the stages' configs (the dry run's
    ``data.cache_dir=null``: no cache folder is made)."""
    folder = run_folder(spec.layout.acp_plus_dir(seed), seed=seed)
    stage1 = spec.step_config([*folder, "pretrain.enabled=true", *overrides])
    stage2 = spec.step_config([*folder, "train.enabled=true", "fidelity.mode=full", *overrides])  # same at every mode
    context = make_context(stage1, progress=False)
    return matched_steps(stage2_steps=lofi_stage.optimizer_steps(dataclasses.replace(context, config=stage2)),
                         stage1_steps_per_epoch=pretrain.optimizer_steps_per_epoch(context),
                         base_epochs=stage1.pretrain.optim.epochs,
                         base_warmup_epochs=stage1.pretrain.optim.warmup_epochs)


def _context_for(config: RunConfig, previous: RunContext | None) -> RunContext:
    """A context for ``config``: the previous step's, with this config, when both read the same data."""
    if previous is not None and previous.config.data == config.data and previous.config.device == config.device:
        return dataclasses.replace(previous, config=config, run_dir=config.run_dir)
    return make_context(config, progress=False)


def reused_record(spec: ExperimentSpec, resolved: ResolvedTask) -> dict[str, Any] | None:
    """The task's record when everything it does is there already under the same identities, else None (it runs:
    its finished stages are reused one by one, another identity's results are refused by their guard)."""
    record = read_record(resolved.folder)
    if resolved.source_settings is not None:  # data, not a stage: its synthetic.json says what it holds
        return record if record is not None and source_ready(resolved.folder, resolved.source_settings) else None
    if record is None or record.get("status") != "ok" or len(record.get("steps", ())) != len(resolved.steps):
        return None
    context = None
    for step, entry in zip(resolved.steps, record["steps"]):
        context = _context_for(spec.step_config(step.overrides), context)
        identity = finished_identity(context, step)
        if identity is None or identity.fingerprint != entry.get("fingerprint"):
            return None
    if resolved.task.cell and record.get("boundary_accuracy") is None:
        return None  # finished without its probe: run again (every stage reused) to add its column
    return record


def execute(spec: ExperimentSpec, resolved: ResolvedTask, *, workers: int = 1) -> dict[str, Any]:
    """Run ``resolved``'s steps (each reused when finished under the same identity), write and return its record."""
    task = resolved.task
    record: dict[str, Any] = {"format": RECORD_FORMAT, "task": task.key, "name": task.name, "seed": task.seed,
                              "cell": task.cell, "status": "ok", "info": resolved.info}
    started = time.perf_counter()
    if resolved.source_settings is not None:
        reused = source_ready(resolved.folder, resolved.source_settings)
        make_source_dataset(resolved.folder, resolved.source_settings, workers=workers)
        record.update(steps=[], reused=reused, seconds=round(time.perf_counter() - started, 3))
        write_record(resolved.folder, record)
        return record
    before = read_record(resolved.folder) or {}
    seconds_before = {(e.get("stage"), e.get("fingerprint")): e.get("seconds") for e in before.get("steps", ())}
    context, entries = None, []
    for step in resolved.steps:
        context = _context_for(spec.step_config(step.overrides), context)
        identity = finished_identity(context, step)
        reused = identity is not None
        step_started = time.perf_counter()
        if not reused:
            run_step(context, step)
            identity = finished_identity(context, step)
            if identity is None:
                raise RuntimeError(f"{resolved.folder}: stage {step.stage} ran, but its finished results are not "
                                   f"there under its identity")
        seconds = (seconds_before.get((step.stage, identity.fingerprint)) or 0.0) if reused else \
            time.perf_counter() - step_started
        entries.append(step_entry(step, context, fingerprint=identity.fingerprint, seconds=seconds, reused=reused))
    record.update(steps=entries, reused=all(e["reused"] for e in entries),
                  seconds=round(sum(e["seconds"] for e in entries), 3))
    if task.cell:
        assert context is not None
        record.update(config=entries[0]["config"], metrics=head_metrics(context.run_dir),
                      boundary_accuracy=cell_probe(context))
    write_record(resolved.folder, record)
    return record
