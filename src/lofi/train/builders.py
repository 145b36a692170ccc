"""Optimisers, LR schedules and devices from the config's narrow parts."""

from __future__ import annotations

from typing import Iterable

import torch

from lofi.config import OptimConfig


def build_optimizer(parameters: Iterable[torch.nn.Parameter], config: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay; the paper's) or AdamW, over the parameters that require gradients."""
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ValueError("nothing to optimise: every parameter is frozen")
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; expected sgd or adamw")


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Multiply the LR by ``lr_gamma`` every ``lr_step_epochs`` epochs (stepped once per epoch)."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.lr_step_epochs), gamma=config.lr_gamma)


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; ``"cuda"`` without a GPU is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no GPU; use device: auto or cpu")
    return torch.device(name)
