"""Tiny inputs for the training tests: a deterministic regression problem for the engine (an MLP, random tensors, a
seeded batch source) and the tiny synthetic video dataset the stage tests train on."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from lofi.data.synthetic import SyntheticConfig
from lofi.runtime import distributed as D
from lofi.train.engine import StepInfo, Trainer, TrainLoopConfig

IN_DIM = 8

#: 6 videos of 2 classes at 64x64, 8-10 s: what the stage and experiment tests train on (seconds per stage).
TINY_SYNTHETIC = SyntheticConfig(num_videos=6, num_classes=2, seed=3, width_px=64, height_px=64,
                                 video_duration_sec=(8.0, 10.0), validation_fraction=0.34, middle_sec=(1.5, 3.0),
                                 gap_sec=(1.0, 2.0), num_distractors=(1, 2))


def write_tiny_synthetic(out: Path) -> Path:
    """Render :data:`TINY_SYNTHETIC` into ``out`` (one worker) and return ``out``."""
    from lofi.data.synthetic import generate_dataset

    generate_dataset(out, TINY_SYNTHETIC, workers=1, progress=False)
    return out


def make_model(*, dropout: float = 0.0, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN_DIM, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))


def make_data(num_items: int = 64, seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(num_items, IN_DIM, generator=g)  # [N, D]
    w = torch.randn(IN_DIM, 1, generator=g)
    y = x @ w + 0.1 * torch.randn(num_items, 1, generator=g)  # [N, 1]
    return x, y


class BatchSource:
    """Epoch ``e``'s order is a permutation seeded with ``seed + e``; micro-batch ``b`` of rank ``r`` holds items
    ``perm[b * global_batch + r * micro_batch : ... + micro_batch]`` (disjoint shards over ranks)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, micro_batch: int, rank: int = 0, world: int = 1,
                 seed: int = 7, none_at: tuple[tuple[int, int, int], ...] = ()) -> None:
        self.x, self.y = x, y
        self.micro_batch, self.rank, self.world, self.seed = micro_batch, rank, world, seed
        self.none_at = set(none_at)  # (epoch, micro-batch index, rank) that yield None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.x) // (self.micro_batch * self.world)

    def __call__(self, epoch: int, start_batch: int) -> Iterator[Any]:
        perm = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.seed + epoch))
        for b in range(start_batch, self.steps_per_epoch):
            if (epoch, b, self.rank) in self.none_at:
                yield None
                continue
            lo = b * self.micro_batch * self.world + self.rank * self.micro_batch
            idx = perm[lo:lo + self.micro_batch]
            yield {"x": self.x[idx], "y": self.y[idx]}


def mse_loss(model: nn.Module, batch: dict[str, torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
    pred = model(batch["x"])  # [B, 1]
    loss = nn.functional.mse_loss(pred, batch["y"])
    return {"loss": loss, "mae": (pred - batch["y"]).abs().mean().detach()}


def noisy_mse_loss(model: nn.Module, batch: dict[str, torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
    """Draws from numpy and python ``random`` too, so a resume must restore every global RNG to match."""
    noise = torch.from_numpy(np.random.normal(0.0, 0.05, size=tuple(batch["x"].shape))).float()
    scale = 1.0 + 0.1 * random.random()
    return mse_loss(model, {"x": batch["x"] * scale + noise, "y": batch["y"]}, info)


def make_trainer(run_dir: str | Path, *, micro_batch: int = 4, accum: int = 1, epochs: int = 3, ckpt_every: int = 1,
                 noisy: bool = False, none_at: tuple[tuple[int, int, int], ...] = (),
                 wrap_loss: Callable[[Callable], Callable] | None = None, **config: Any) -> Trainer:
    """The tiny problem's trainer: AdamW, a per-epoch StepLR, this process's rank and world size."""
    model = make_model(dropout=0.2 if noisy else 0.0)
    x, y = make_data()
    source = BatchSource(x, y, micro_batch=micro_batch, rank=D.rank(), world=D.world_size(), none_at=none_at)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    loss_fn = noisy_mse_loss if noisy else mse_loss
    cfg = TrainLoopConfig(epochs=epochs, grad_accum_steps=accum, checkpoint_every_steps=ckpt_every,
                          log_every_steps=config.pop("log_every_steps", 1), seed=11, **config)
    return Trainer(model=model, optimizer=opt, scheduler=sched,
                   loss_fn=wrap_loss(loss_fn) if wrap_loss else loss_fn, batches=source,
                   steps_per_epoch=source.steps_per_epoch, run_dir=run_dir, config=cfg, device="cpu",
                   progress=False)
