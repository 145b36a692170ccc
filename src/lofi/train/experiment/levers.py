"""``full_levers``: which memory levers let full-fidelity stage 2 fit where ST-LoFi fits without any.

The budget is the predicted peak of stage 2 at ST without levers (``lofi plan``'s memory model for the run's
encoder, head, batch, full fidelity and optimizer: :func:`lofi.train.plan.plan_for_run`), with no headroom, so that
ST itself fits exactly. The planner's recommendation for that budget gives the levers when it is full fidelity; when
no full-fidelity lever set fits, the cell is skipped with the reason. ``plan.json`` keeps the budget, the choice,
its predicted peak and the whole plan; it runs as stage ``plan`` inside the run-identity guard, so a rerun reuses
it and another encoder, head or batch is refused rather than mixed.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch

from lofi.config import RunConfig
from lofi.io import atomic_write
from lofi.models.memory_measure import Levers
from lofi.models.memory_plan import format_bytes
from lofi.models.options import encoder_kwargs
from lofi.runtime.context import RunContext
from lofi.train.plan import apply_plan, plan_for_run

PLAN_FILE = "plan.json"
#: A budget every candidate fits, to read every candidate's predicted peak.
_UNBOUNDED_BYTES = 2 ** 62


def plan_inputs(context: RunContext) -> dict[str, str]:
    """What the plan's identity holds besides its config keys: the device kind its probes ran on."""
    return {"device": context.device.type}


def plan_full_levers(context: RunContext) -> dict[str, Any]:
    """The full-levers plan of ``context``'s stage 2 (see the module docstring), written to
    ``run_dir/plan.json``; a finished plan of the same identity there is read back instead."""
    path = context.run_dir / PLAN_FILE
    with context.guard(context.run_dir, "plan", inputs=plan_inputs(context), resume=True) as start:
        if start.reusing and path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        record = _plan(context)
        text = json.dumps(record, indent=2) + "\n"
        atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
        return record


def _with_budget(config: RunConfig, budget_bytes: int) -> RunConfig:
    return dataclasses.replace(config, fidelity=dataclasses.replace(config.fidelity, memory=f"{budget_bytes}B",
                                                                    memory_headroom=0.0))


def _plan(context: RunContext) -> dict[str, Any]:
    return full_levers_record(context.config, batch_per_rank=context.batch_per_rank(context.config.train.optim),
                              device=context.device)


def full_levers_record(config: RunConfig, *, batch_per_rank: int, device: torch.device | str) -> dict[str, Any]:
    """What ``plan.json`` holds for ``config``'s stage 2 at ``batch_per_rank`` videos per process (the module
    docstring says how it is chosen); ``lofi experiment lofi-table --dry-run`` shows the same choice."""
    every = plan_for_run(_with_budget(config, _UNBOUNDED_BYTES), batch_per_rank=batch_per_rank, device=device)
    st = [c for c in every.candidates if c.fidelity.name == "ST" and c.levers == Levers()]
    if not st:
        raise ValueError("the memory plan has no ST candidate without levers; lofi.models.memory_plan changed?")
    budget = st[0].peak_bytes
    plan = plan_for_run(_with_budget(config, budget), batch_per_rank=batch_per_rank, device=device)
    choice = plan.recommendation
    record: dict[str, Any] = {"budget_bytes": budget, "budget": "predicted peak of ST without levers",
                              "headroom": 0.0, "batch_per_process": batch_per_rank, "fits": choice.mode == "full",
                              "plan": plan.to_dict()}
    if choice.mode != "full":
        full = min((c for c in plan.candidates if c.fidelity.name == "full"), key=lambda c: c.peak_bytes)
        record.update(levers=None, predicted_peak_bytes=None, overrides=[],
                      reason=f"no full-fidelity lever set fits {format_bytes(budget)} (the predicted peak of ST "
                             f"without levers); the smallest full-fidelity peak is {format_bytes(full.peak_bytes)} "
                             f"(levers {full.levers.name})")
        return record
    resolved = apply_plan(config, plan)
    partial = resolved.train.partial_backprop
    record.update(levers=choice.levers.name, predicted_peak_bytes=choice.peak_bytes, reason=None, overrides=[
        "fidelity.mode=full", f"model.encoder_options={json.dumps(encoder_kwargs(resolved.model), sort_keys=True)}",
        f"train.partial_backprop={json.dumps(None if partial is None else dataclasses.asdict(partial))}"])
    return record
