"""``lofi plan`` and ``fidelity.mode=auto``: fit the memory model for a run's encoder and head, plan for a budget,
and apply the recommendation to the stage-2 config.

The recommendation becomes ``fidelity.mode`` (full, S, T, ST, C-long or C-short), the encoder options
``checkpoint_stages`` / ``autocast`` (set or removed) and ``train.partial_backprop`` (share 0.3, the configured
``mode`` and ``chunk_snippets`` kept; or off). The resolved config is what stage 2 trains and records, so its run
identity holds the choice.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

import torch

from lofi.config import PartialBackpropConfig, RunConfig, parse_memory_bytes
from lofi.models.memory import MemoryModel, fit_memory_model
from lofi.models.memory_measure import Levers, lever_combinations
from lofi.models.memory_plan import CycleMode, MemoryPlan, plan_memory
from lofi.models.options import encoder_kwargs, head_kwargs

#: The partial back-prop share the plan tries.
PARTIAL_SHARE = 0.3
#: The share of the budget kept free by default (see :mod:`lofi.models.memory_plan`).
DEFAULT_HEADROOM = 0.1
#: Encoder options the plan sets itself (removed from the configured ones before probing).
PLANNED_OPTIONS = ("checkpoint_stages", "autocast")


def make_plan(*, memory: str | int, encoder: str, head: str, batch_size: int, num_snippets: int, frame_size_px: int,
              frames_per_snippet: int, optimizer: str = "sgd", device: torch.device | str = "cpu",
              encoder_options: Mapping[str, Any] | None = None, head_options: Mapping[str, Any] | None = None,
              cycle: CycleMode = "C-long", headroom: float = DEFAULT_HEADROOM) -> MemoryPlan:
    """Probe the encoder (every combination of checkpointing, bf16 and partial back-prop at 0.3) and the head,
    then plan for ``memory`` (``"24GB"``, ``"24GiB"`` or bytes) with its ``headroom`` share kept free."""
    budget = memory if isinstance(memory, int) else parse_memory_bytes(memory)
    base = {k: v for k, v in dict(encoder_options or {}).items() if k not in PLANNED_OPTIONS}
    model = _fitted(encoder=encoder, head=head, frames_per_snippet=frames_per_snippet, encoder_options=base,
                    head_options=dict(head_options or {}), device=str(torch.device(device)))
    return plan_memory(model, budget_bytes=budget, batch_size=batch_size, num_snippets=num_snippets,
                       frame_size_px=frame_size_px, optimizer=optimizer, cycle=cycle, headroom=headroom)


#: Memory models fitted in this process, by what their probes ran: planning again (``lofi plan`` then a run, a
#: resumed ``fidelity.mode=auto`` stage) reuses the probes instead of measuring the same steps again.
_FITTED: dict[str, MemoryModel] = {}


def _fitted(*, encoder: str, head: str, frames_per_snippet: int, encoder_options: dict[str, Any],
            head_options: dict[str, Any], device: str) -> MemoryModel:
    key = json.dumps([encoder, head, frames_per_snippet, encoder_options, head_options, device,
                      torch.get_num_threads(), torch.__version__], sort_keys=True, default=str)
    if key not in _FITTED:
        _FITTED[key] = fit_memory_model(encoder=encoder, head=head, frames_per_snippet=frames_per_snippet,
                                        levers=lever_combinations(autocast="bf16", partial_share=PARTIAL_SHARE),
                                        encoder_options=encoder_options, head_options=head_options, device=device)
    return _FITTED[key]


def run_encoder_options(config: RunConfig, *, stage: str = "lofi") -> dict[str, Any]:
    """The encoder options ``stage`` (``pretrain`` or ``lofi``) builds its encoder with: the configured ones, and
    ``frozen_bn`` for stage 2 under ``train.frozen_bn``."""
    options = encoder_kwargs(config.model)
    if stage == "lofi" and config.train.frozen_bn:
        options["frozen_bn"] = True
    return options


def memory_model_for_run(config: RunConfig, *, device: torch.device | str, stage: str = "lofi") -> MemoryModel:
    """The memory model that :func:`plan_for_run` plans ``config``'s stage 2 with (its encoder and head with their
    options, frames per snippet; every lever combination), or with ``stage="pretrain"`` stage 1's encoder (no
    ``train.frozen_bn``); fitted once per process and reused."""
    base = {k: v for k, v in run_encoder_options(config, stage=stage).items() if k not in PLANNED_OPTIONS}
    return _fitted(encoder=config.model.encoder, head=config.model.head,
                   frames_per_snippet=config.data.frames_per_snippet, encoder_options=base,
                   head_options=dict(head_kwargs(config.model)), device=str(torch.device(device)))


def run_levers(config: RunConfig, *, stage: str = "lofi") -> Levers:
    """The memory levers ``stage`` runs with: checkpointing and autocast from the encoder options, and for stage 2
    ``train.partial_backprop``'s share."""
    options = encoder_kwargs(config.model)
    partial = config.train.partial_backprop if stage == "lofi" else None
    return Levers(checkpoint=bool(options.get("checkpoint_stages", False)), autocast=options.get("autocast"),
                  partial_share=None if partial is None else partial.share)


def plan_for_run(config: RunConfig, *, batch_per_rank: int, device: torch.device | str,
                 cycle: CycleMode = "C-long") -> MemoryPlan:
    """The plan for stage 2 of ``config`` (``fidelity.mode=auto``): its encoder and head with their options
    (``train.frozen_bn`` included), batch per process, full fidelity, frames per snippet and optimizer."""
    if config.fidelity.memory is None:
        raise ValueError("fidelity.mode 'auto' needs fidelity.memory, e.g. 24GB")
    options = run_encoder_options(config)
    return make_plan(memory=config.fidelity.memory, encoder=config.model.encoder, head=config.model.head,
                     batch_size=batch_per_rank, num_snippets=config.fidelity.num_snippets,
                     frame_size_px=config.fidelity.frame_size_px, frames_per_snippet=config.data.frames_per_snippet,
                     optimizer=config.train.optim.optimizer, device=device, encoder_options=options,
                     head_options=head_kwargs(config.model), headroom=config.fidelity.memory_headroom,
                     cycle=cycle)


def apply_plan(config: RunConfig, plan: MemoryPlan) -> RunConfig:
    """``config`` with the plan's recommendation as its stage-2 settings (``fidelity.memory`` kept, as a record)."""
    choice = plan.recommendation
    options = {k: v for k, v in encoder_kwargs(config.model).items() if k not in PLANNED_OPTIONS}
    options.update(choice.levers.encoder_options())
    partial = None
    if choice.levers.partial_share is not None:
        configured = config.train.partial_backprop or PartialBackpropConfig()
        partial = dataclasses.replace(configured, share=choice.levers.partial_share)
    return dataclasses.replace(
        config, fidelity=dataclasses.replace(config.fidelity, mode=choice.mode),
        model=dataclasses.replace(config.model, encoder_options=options),
        train=dataclasses.replace(config.train, partial_backprop=partial))
