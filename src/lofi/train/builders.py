"""Optimisers, LR schedules and the engine's loop settings from the config's narrow parts."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch

from lofi.config import OptimConfig
from lofi.train.engine import TrainLoopConfig


def parameter_groups(parameters: Iterable[torch.nn.Parameter] | torch.nn.Module,
                     weight_decay: float) -> list[dict]:
    """The trainable parameters in two groups: those with ``dim >= 2`` (conv and linear weights, embeddings)
    decay by ``weight_decay``; those with ``dim <= 1`` (norm weights and biases) do not (nanoGPT, ActionFormer).
    Empty groups are left out; every trainable parameter is in exactly one group (a parameter given twice, e.g.
    tied weights, counts once)."""
    if isinstance(parameters, torch.nn.Module):
        parameters = parameters.parameters()
    unique: dict[int, torch.nn.Parameter] = {}
    for p in parameters:
        if p.requires_grad:
            unique.setdefault(id(p), p)
    decay = [p for p in unique.values() if p.dim() >= 2]
    no_decay = [p for p in unique.values() if p.dim() <= 1]
    grouped = [id(p) for p in decay] + [id(p) for p in no_decay]
    assert len(grouped) == len(set(grouped)) == len(unique), "a trainable parameter is in no group or in two"
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(parameters: Iterable[torch.nn.Parameter] | torch.nn.Module, config: OptimConfig, *,
                    lr_scales: Sequence[tuple[torch.nn.Module, float]] = ()) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay; the paper's) or AdamW, over the parameters that require gradients.

    Weight decay applies to parameters with ``dim >= 2`` only; norm weights and biases are in a second group
    without it (see :func:`parameter_groups`). ``parameters`` is e.g. ``model.parameters()`` or the model.
    ``lr_scales``: ``(submodule, scale)`` pairs whose parameters learn at ``scale * config.lr`` (e.g. a pre-trained
    encoder at 0.1x beside a fresh head); schedules then scale every group alike."""
    groups = parameter_groups(parameters, config.weight_decay)
    for module, scale in lr_scales:
        if not scale > 0:
            raise ValueError(f"an lr scale must be > 0, got {scale!r}")
        members = {id(p) for p in module.parameters()}
        split = []
        for group in groups:
            inside = [p for p in group["params"] if id(p) in members]
            outside = [p for p in group["params"] if id(p) not in members]
            split += [g for g in ({**group, "params": outside},
                                  {**group, "params": inside, "lr": group.get("lr", config.lr) * scale}) if g["params"]]
        groups = split
    if not groups:
        raise ValueError("nothing to optimise: every parameter is frozen")
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; expected sgd or adamw")


class PerStepLambdaLR(torch.optim.lr_scheduler.LambdaLR):
    """A LambdaLR over optimiser steps: ``step_interval = "step"`` tells the :class:`~lofi.train.engine.Trainer`
    to step it after every optimiser step (not once per epoch); ``optimizer_steps_per_epoch`` is what the
    schedule was built for, which the trainer checks."""

    step_interval = "step"

    def __init__(self, optimizer: torch.optim.Optimizer, lr_lambda, *, optimizer_steps_per_epoch: int) -> None:
        self.optimizer_steps_per_epoch = optimizer_steps_per_epoch
        super().__init__(optimizer, lr_lambda)


def lr_factor(step: int, config: OptimConfig, optimizer_steps_per_epoch: int) -> float:
    """The LR multiplier of optimiser step ``step`` (0-based over the run) under ``config``'s schedule.

    Warm-up: ``(step + 1) / W`` for the first ``W = round(warmup_epochs * steps per epoch)`` steps (the first
    step at ``lr / W``, step ``W - 1`` at ``lr``). Then "step": ``lr_gamma ** (epoch // lr_step_epochs)``, as
    StepLR; "cosine": ``(1 + cos(pi * t)) / 2`` with ``t`` going from 0 after the warm-up to 1 at the run's
    end (``epochs * steps per epoch`` steps), i.e. from ``lr`` to 0."""
    spe = max(1, optimizer_steps_per_epoch)
    warmup = max(1, round(config.warmup_epochs * spe)) if config.warmup_epochs > 0 else 0
    warm = (step + 1) / warmup if step < warmup else 1.0
    if config.lr_schedule == "step":
        return warm * config.lr_gamma ** ((step // spe) // config.lr_step_epochs)
    if config.lr_schedule == "cosine":
        decay_steps = config.epochs * spe - warmup
        t = min(1.0, max(0, step - warmup) / decay_steps) if decay_steps > 0 else 0.0
        return warm * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; expected step or cosine")


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig, *,
                    steps_per_epoch: int | None = None) -> torch.optim.lr_scheduler.LRScheduler:
    """The LR schedule of ``config`` (see :func:`lr_factor`).

    "step" without warm-up is a StepLR stepped once per epoch (as always). A warm-up or "cosine" is a
    :class:`PerStepLambdaLR` that the trainer steps after every optimiser step; it needs ``steps_per_epoch``,
    the micro-batches per epoch (what the Trainer gets, e.g. ``len(sampler)``): the optimiser steps per epoch
    are ``ceil(steps_per_epoch / grad_accum_steps)``."""
    if config.lr_schedule == "step" and config.warmup_epochs == 0:
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs,
                                               gamma=config.lr_gamma)
    if config.lr_schedule not in ("step", "cosine"):
        raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; expected step or cosine")
    if steps_per_epoch is None or steps_per_epoch < 1:
        raise ValueError(f"lr_schedule {config.lr_schedule!r} with warmup_epochs={config.warmup_epochs} is stepped "
                         f"per optimiser step: build_scheduler needs steps_per_epoch (micro-batches per epoch, "
                         f">= 1), got {steps_per_epoch}")
    per_epoch = math.ceil(steps_per_epoch / config.grad_accum_steps)
    return PerStepLambdaLR(optimizer, lambda step: lr_factor(step, config, per_epoch),
                           optimizer_steps_per_epoch=per_epoch)


def loop_config(optim, *, seed: int) -> TrainLoopConfig:
    """The engine's loop settings from a stage's optimiser config."""
    return TrainLoopConfig(epochs=optim.epochs, grad_accum_steps=optim.grad_accum_steps,
                           checkpoint_every_steps=optim.checkpoint_every_steps, autocast=optim.autocast,
                           clip_grad_norm=optim.clip_grad_norm, seed=seed,
                           keep_epoch_checkpoints=optim.keep_epoch_checkpoints)
