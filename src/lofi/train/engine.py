"""The training loop shared by the three LoFi stages: accumulation, autocast, clipping, DDP, exact resume.

A stage builds the parts and hands them over::

    trainer = Trainer(model=model, optimizer=opt, scheduler=sched, loss_fn=loss_fn, batches=batches,
                      steps_per_epoch=len(loader), run_dir=run_dir, config=TrainLoopConfig(epochs=10),
                      device=device, on_epoch_end=validate)
    summary = trainer.fit()

``loss_fn(model, batch, info)`` runs the forward pass through ``model`` (the DDP wrapper when distributed, so
gradients are synchronised) and returns a dict of scalar tensors whose ``"loss"`` is the total; ``info.model``
is the unwrapped model, e.g. for ``info.model.loss(outputs, targets)``. ``batches(epoch, start_batch)`` returns
that epoch's micro-batches from index ``start_batch`` on (see :class:`Trainer` for what an exact resume needs).

Steps: an optimiser step consumes ``grad_accum_steps`` micro-batches (fewer for an epoch's last step when
``steps_per_epoch`` is not a multiple); ``global_step`` counts optimiser steps over the run, epochs included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import random
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lofi.runtime import distributed as D
from lofi.train import checkpoint as ckpt
from lofi.train.records import MetricsLog, Progress, plot_curves
from lofi.train.stall import StallWatch

__all__ = ["TrainLoopConfig", "StepInfo", "Trainer", "seed_everything", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "lofi.train.engine/1"
AutocastMode = Literal["bf16", "fp16"]
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainLoopConfig:
    """How the loop runs (what it optimises is the stage's business).

    ``grad_accum_steps`` micro-batches per optimiser step; ``checkpoint_every_steps`` optimiser steps between
    mid-epoch checkpoints (0: only at epoch ends); a step record every ``log_every_steps`` optimiser steps;
    ``autocast`` None (fp32), ``"bf16"`` or ``"fp16"`` (with a GradScaler); ``clip_grad_norm`` the max total
    gradient norm (None: no clipping); ``seed`` seeds python, numpy and torch at the start of a fresh run (plus
    the rank); ``find_unused_parameters`` is passed to DistributedDataParallel.
    """

    epochs: int
    grad_accum_steps: int = 1
    checkpoint_every_steps: int = 0
    log_every_steps: int = 10
    autocast: AutocastMode | None = None
    clip_grad_norm: float | None = None
    seed: int = 0
    find_unused_parameters: bool = False
    keep_epoch_checkpoints: int = 2  # epoch_XXX.pt files kept (newest); 0 keeps every epoch

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.checkpoint_every_steps < 0:
            raise ValueError(f"checkpoint_every_steps must be >= 0 (0: epoch ends only), got "
                             f"{self.checkpoint_every_steps}")
        if self.log_every_steps < 1:
            raise ValueError(f"log_every_steps must be >= 1, got {self.log_every_steps}")
        if self.keep_epoch_checkpoints < 0:
            raise ValueError(f"keep_epoch_checkpoints must be >= 0 (0: keep all), got {self.keep_epoch_checkpoints}")
        if self.autocast not in (None, *_AUTOCAST_DTYPES):
            raise ValueError(f"autocast must be None, 'bf16' or 'fp16', got {self.autocast!r}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be > 0 or None, got {self.clip_grad_norm}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainLoopConfig":
        """Build from a plain dict; unknown keys are rejected."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"TrainLoopConfig: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**dict(values))


@dataclass(frozen=True)
class StepInfo:
    """Where a micro-batch sits in the run, passed to ``loss_fn``."""

    epoch: int  # 0-based
    global_step: int  # the optimiser step this micro-batch contributes to, 0-based over the run
    micro_batch: int  # index of the micro-batch in the epoch, 0-based
    accum_index: int  # index in its optimiser step's group of micro-batches
    accum_steps: int  # micro-batches in that group (grad_accum_steps, fewer for an epoch's last step)
    model: nn.Module  # the unwrapped model (the loss_fn's ``model`` argument may be a DDP wrapper)


LossFn = Callable[[nn.Module, Any, StepInfo], Mapping[str, torch.Tensor]]
BatchSource = Callable[[int, int], Iterable[Any]]
EpochEndFn = Callable[[int, "Trainer"], "Mapping[str, Any] | None"]


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(obj: Any, device: torch.device) -> Any:
    """Tensors in (nested dicts, lists, tuples, objects with ``.to``) ``obj`` moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return type(obj)({k: _to_device(v, device) for k, v in obj.items()})  # type: ignore[call-arg]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(_to_device(v, device) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    if hasattr(obj, "to") and callable(obj.to) and not isinstance(obj, nn.Module):
        return obj.to(device)
    return obj


def _rng_fingerprint() -> tuple[torch.Tensor, Any, Any]:
    np_state = np.random.get_state(legacy=True)
    return torch.get_rng_state(), random.getstate(), (np_state[2], np_state[1][:4].tolist())


def _same_fingerprint(a: tuple[torch.Tensor, Any, Any], b: tuple[torch.Tensor, Any, Any]) -> bool:
    return torch.equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]


class Trainer:
    """Runs :class:`TrainLoopConfig` epochs of ``loss_fn`` over ``batches`` and writes ``run_dir``.

    ``model`` is moved to ``device`` and, inside an initialised process group, wrapped in
    DistributedDataParallel (``trainer.model`` stays the unwrapped module, ``trainer.wrapped_model`` is what
    forward passes go through). ``optimizer`` must hold ``model``'s parameters; ``scheduler`` (or None) is
    stepped once per epoch, without arguments, or after every optimiser step (also one whose micro-batches were
    all skipped, so its count is ``global_step``) when it has ``step_interval = "step"`` (warm-up and cosine
    schedules, :func:`lofi.train.builders.build_scheduler`). ``steps_per_epoch`` is the number of micro-batches
    per epoch on this rank, the same on every rank. ``on_epoch_end(epoch, trainer)`` runs on every rank after
    each epoch; the mapping of scalars it returns (e.g. ``{"mAP": 0.31}``) goes into the epoch record rank 0 logs.
    ``trainer.extra`` is a dict the stage may fill (plain values only); it is checkpointed and restored.

    For an exact (bit-identical on CPU) mid-epoch resume, ``batches(epoch, start_batch)`` must return the same
    micro-batches an uninterrupted run would see from index ``start_batch`` on, without replaying the first
    ones: its order and augmentation must derive from (seed, epoch, index) through its own generators (e.g. a
    sampler seeded with ``seed + epoch``, a DataLoader with its own ``generator``), not from the global RNGs
    when the iterable is created (the trainer warns once if that happens). Draws from the global RNGs while
    batches are produced, and in ``loss_fn`` (dropout), are fine: those states are checkpointed. A batch may be
    None (every item skipped): it is skipped on every rank (when any rank's is None) and the step's gradient is
    rescaled to the micro-batches used.
    """

    def __init__(self, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None, loss_fn: LossFn, batches: BatchSource,
                 steps_per_epoch: int, run_dir: str | Path, config: TrainLoopConfig, device: torch.device | str,
                 progress: bool = True, on_epoch_end: EpochEndFn | None = None) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch (micro-batches per epoch) must be >= 1, got {steps_per_epoch}")
        self.config = config
        self.device = torch.device(device)
        self.model = D.unwrap_model(model).to(self.device)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.step_scheduler_per_step = getattr(scheduler, "step_interval", "epoch") == "step"
        self.loss_fn = loss_fn
        self.batches = batches
        self.steps_per_epoch = steps_per_epoch
        built_for = getattr(scheduler, "optimizer_steps_per_epoch", None)
        if self.step_scheduler_per_step and built_for is not None and built_for != self.optimizer_steps_per_epoch:
            raise ValueError(f"the scheduler was built for {built_for} optimiser steps per epoch, this run has "
                             f"{self.optimizer_steps_per_epoch} (steps_per_epoch={steps_per_epoch}, "
                             f"grad_accum_steps={config.grad_accum_steps}): build it with the same steps_per_epoch")
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.on_epoch_end = on_epoch_end
        self.distributed = D.is_distributed()
        self.is_main = D.is_main_process()
        self._flag_group = None
        if self.distributed:
            device_ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
                if self.device.type == "cuda" else None
            self.wrapped_model: nn.Module = DistributedDataParallel(
                self.model, device_ids=device_ids, find_unused_parameters=config.find_unused_parameters)
            if dist.get_backend() != "gloo":  # skip flags are agreed on the CPU, without a GPU sync
                self._flag_group = dist.new_group(backend="gloo")
        else:
            self.wrapped_model = self.model
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.autocast == "fp16")
        self.epoch = 0
        self.batch_in_epoch = 0
        self.global_step = 0
        self.extra: dict[str, Any] = {}
        self.last_epoch_record: dict[str, Any] = {}
        self.resumed_from: Path | None = None
        self.log: MetricsLog | None = None
        self._epoch_sums: dict[str, torch.Tensor] = {}
        self._epoch_steps = 0
        self._warned_rng = False
        self.stall_watch = StallWatch(stage=str(self.run_dir))  # warns when a loss term stops learning

    @property
    def optimizer_steps_per_epoch(self) -> int:
        """Optimiser steps per epoch: ``ceil(steps_per_epoch / grad_accum_steps)``."""
        return math.ceil(self.steps_per_epoch / self.config.grad_accum_steps)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ---------------------------------------------------------------------------------------------- the run
    def fit(self, *, resume: bool = True) -> dict[str, Any]:
        """Train to ``config.epochs`` and return the last epoch record (train losses, callback metrics, ...).

        With ``resume`` and a checkpoint in ``run_dir``, continue from it exactly; otherwise start afresh
        (seeding with ``config.seed + rank``).
        """
        self._check_same_steps_on_all_ranks()
        if self.is_main:
            ckpt.remove_stale_temp_files(self.run_dir)
        state = self._restore() if resume else None
        if state is None:
            seed_everything(self.config.seed + D.rank())
        elif self.is_main:
            print(self._resume_message(), file=sys.stderr, flush=True)
        self.log = MetricsLog(self.run_dir, keep_records=0 if state is None else state["metrics_records"],
                              enabled=self.is_main)
        total = self.config.epochs * self.optimizer_steps_per_epoch
        bar = Progress(total=total, initial=min(self.global_step, total), enabled=self.progress and self.is_main,
                       desc=self.run_dir.name or "train")
        try:
            while self.epoch < self.config.epochs:
                self._run_epoch(bar)
        finally:
            bar.close()
            self.log.close()
        if self.is_main and (self.run_dir / "metrics.jsonl").is_file():
            plot_curves(self.run_dir / "metrics.jsonl", self.run_dir / "curves.png")
        self._release_ddp()
        return dict(self.last_epoch_record)

    def _resume_message(self) -> str:
        total = self.config.epochs * self.optimizer_steps_per_epoch
        if self.epoch >= self.config.epochs:
            return (f"{self.run_dir}: already trained ({self.config.epochs} epochs, {self.global_step} steps, "
                    f"{self.resumed_from.name}); reusing it (--no-resume: train again)")
        where = f"epoch {self.epoch + 1} of {self.config.epochs}" + (
            f", batch {self.batch_in_epoch}" if self.batch_in_epoch else "")
        return f"{self.run_dir}: resuming from {self.resumed_from.name} at step {self.global_step} of {total} ({where})"

    def _release_ddp(self) -> None:
        """Drop the DDP wrapper once training is over: its reducer must be destroyed before the process group,
        or the process may abort at exit (``terminate called without an active exception``)."""
        if self.wrapped_model is not self.model:
            self.wrapped_model = self.model
            gc.collect()

    def _run_epoch(self, bar: Progress) -> None:
        cfg, epoch, spe = self.config, self.epoch, self.steps_per_epoch
        epoch_start = time.perf_counter()
        self.wrapped_model.train()
        batches = self._open_batches(epoch, self.batch_in_epoch)
        lr_used = self.lr
        last_log_time, last_log_step = time.perf_counter(), self.global_step
        while self.batch_in_epoch < spe:
            group_size = min(cfg.grad_accum_steps, spe - self.batch_in_epoch)
            step_sums, n_used, synced = self._accumulate(batches, group_size)
            grad_norm = self._optimizer_step(group_size, n_used, synced)
            self.global_step += 1
            step_lr = self.lr
            if self.scheduler is not None and self.step_scheduler_per_step:
                self.scheduler.step()
            means = self._reduce_step_means(step_sums, n_used)
            for key, value in means.items():
                self._epoch_sums[key] = self._epoch_sums.get(key, 0.0) + value.double()
            self._epoch_steps += 1 if means else 0
            if self.global_step % cfg.log_every_steps == 0:
                now = time.perf_counter()
                record = {"kind": "step", "epoch": epoch, "step": self.global_step, "lr": step_lr,
                          **self._to_floats(means)}
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                if self.scaler.is_enabled():
                    record["loss_scale"] = float(self.scaler.get_scale())
                record["sec_per_step"] = (now - last_log_time) / max(self.global_step - last_log_step, 1)
                last_log_time, last_log_step = now, self.global_step
                self.log.log(record)  # type: ignore[union-attr]
                bar.update(1, loss=record.get("loss", float("nan")))
            else:
                bar.update(1)
            if cfg.checkpoint_every_steps and self.global_step % cfg.checkpoint_every_steps == 0 \
                    and self.batch_in_epoch < spe:
                self.save_checkpoint()
        del batches
        record = {"kind": "epoch", "epoch": epoch, "step": self.global_step, "lr": lr_used}
        if self._epoch_steps:
            record.update({f"train_{k}": float(v) / self._epoch_steps for k, v in self._epoch_sums.items()})
        metrics = self.on_epoch_end(epoch, self) if self.on_epoch_end is not None else None
        if metrics:
            record.update({str(k): v for k, v in metrics.items()})
        record["epoch_sec"] = time.perf_counter() - epoch_start
        if self.scheduler is not None and not self.step_scheduler_per_step:
            self.scheduler.step()
        self.log.log(record)  # type: ignore[union-attr]
        if self.is_main:
            self.stall_watch.check(self.log.records)  # type: ignore[union-attr]
        self.last_epoch_record = {k: v for k, v in self.log.records[-1].items()} if self.is_main \
            else {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in record.items()}
        self.epoch, self.batch_in_epoch = epoch + 1, 0
        self._epoch_sums, self._epoch_steps = {}, 0
        self.save_checkpoint(epoch_end=True)

    def _open_batches(self, epoch: int, start: int) -> Iterator[Any]:
        before = _rng_fingerprint()
        iterator = iter(self.batches(epoch, start))
        if not self._warned_rng and not _same_fingerprint(before, _rng_fingerprint()):
            self._warned_rng = True
            warnings.warn(f"batches({epoch}, {start}) drew from a global RNG (python, numpy or torch) when it was "
                          f"created: a mid-epoch resume will not be exact. Give the sampler / DataLoader its own "
                          f"generator seeded from (seed, epoch).", RuntimeWarning, stacklevel=3)
        return iterator

    def _next_batch(self, batches: Iterator[Any]) -> Any:
        try:
            return next(batches)
        except StopIteration:
            raise RuntimeError(f"batches(epoch={self.epoch}, ...) ran out at micro-batch {self.batch_in_epoch}: it "
                               f"must yield steps_per_epoch={self.steps_per_epoch} micro-batches per epoch (from "
                               f"start_batch on)") from None

    def _skip(self, batch: Any) -> bool:
        """Whether to skip this micro-batch: its batch is None on this rank or (distributed) on any rank."""
        if not self.distributed:
            return batch is None
        flag = torch.tensor([1.0 if batch is None else 0.0],
                            device=self.device if self._flag_group is None else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._flag_group)
        return bool(flag.item() > 0)

    def _accumulate(self, batches: Iterator[Any], group_size: int) -> tuple[dict[str, torch.Tensor], int, bool]:
        """Forward and backward ``group_size`` micro-batches; returns the summed loss values, how many were used
        and whether DDP synchronised the gradients (the last one was used)."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        n_used, synced = 0, False
        for i in range(group_size):
            batch = self._next_batch(batches)
            last = i == group_size - 1
            if self._skip(batch):
                self.batch_in_epoch += 1
                continue
            info = StepInfo(epoch=self.epoch, global_step=self.global_step, micro_batch=self.batch_in_epoch,
                            accum_index=i, accum_steps=group_size, model=self.model)
            no_sync = self.distributed and not last
            with self.wrapped_model.no_sync() if no_sync else contextlib.nullcontext():  # type: ignore[operator]
                autocast = (torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[cfg.autocast])
                            if cfg.autocast else contextlib.nullcontext())
                with autocast:
                    losses = self.loss_fn(self.wrapped_model, _to_device(batch, self.device), info)
                total = self._check_losses(losses)
                self.scaler.scale(total / group_size).backward()
            for key, value in losses.items():
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    sums[key] = sums.get(key, 0.0) + value.detach().float().reshape(())
                elif isinstance(value, (int, float)):
                    sums[key] = sums.get(key, 0.0) + torch.tensor(float(value), device=self.device)
            n_used += 1
            synced = last
            self.batch_in_epoch += 1
        return sums, n_used, synced

    def _check_losses(self, losses: Mapping[str, Any]) -> torch.Tensor:
        if not isinstance(losses, Mapping) or "loss" not in losses:
            got = f"keys {sorted(losses)}" if isinstance(losses, Mapping) else f"a {type(losses).__name__}"
            raise TypeError(f"loss_fn must return a dict with the total under 'loss', got {got}")
        total = losses["loss"]
        if not isinstance(total, torch.Tensor) or total.numel() != 1 or not total.requires_grad:
            raise TypeError("loss_fn's 'loss' must be a scalar tensor that requires grad")
        return total.reshape(())

    def _optimizer_step(self, group_size: int, n_used: int, synced: bool) -> torch.Tensor | None:
        """Unscale, average, clip and step; returns the gradient norm when clipping."""
        if n_used == 0:
            return None
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.distributed and not synced:  # the step's last micro-batch was skipped: DDP never synchronised
            world = D.world_size()
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= world
        rescale = n_used < group_size
        grad_norm = None
        if rescale or self.config.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
        if rescale:
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(group_size / n_used)
        if self.config.clip_grad_norm is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return grad_norm

    def _reduce_step_means(self, sums: dict[str, torch.Tensor], n_used: int) -> dict[str, torch.Tensor]:
        """The step's loss values: the mean over its micro-batches and over the ranks."""
        if n_used == 0 or not sums:
            return {}
        keys = sorted(sums)
        stacked = torch.stack([sums[k] for k in keys]) / n_used  # [K]
        stacked = D.all_reduce_mean(stacked)
        return dict(zip(keys, stacked.unbind()))

    def _to_floats(self, means: dict[str, torch.Tensor]) -> dict[str, float]:
        values = {k: float(v) for k, v in means.items()}
        total = values.get("loss")
        if total is not None and not math.isfinite(total) and self.config.autocast != "fp16":
            raise FloatingPointError(f"{self.run_dir}: training loss is {total} at epoch {self.epoch}, step "
                                     f"{self.global_step}: lower the learning rate, clip gradients, or check the "
                                     f"data")
        return values

    def _check_same_steps_on_all_ranks(self) -> None:
        if not self.distributed:
            return
        spe = torch.tensor([self.steps_per_epoch, -self.steps_per_epoch], dtype=torch.float64,
                           device=self.device if self._flag_group is None else "cpu")
        dist.all_reduce(spe, op=dist.ReduceOp.MAX, group=self._flag_group)
        if int(spe[0]) != self.steps_per_epoch or int(-spe[1]) != self.steps_per_epoch:
            raise ValueError(f"rank {D.rank()}: steps_per_epoch={self.steps_per_epoch} but it ranges over "
                             f"[{int(-spe[1])}, {int(spe[0])}] across ranks: every rank must run the same number "
                             f"of micro-batches (pad or drop the last shard's remainder)")

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        """The checkpoint dict (see :mod:`lofi.train.checkpoint`); ``rng`` holds one RNG state per rank."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "grad_scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": rng,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "steps_per_epoch": self.steps_per_epoch,
            "world_size": D.world_size(),
            "config": self.config.to_dict(),
            "extra": dict(self.extra),
            "metrics_records": self.log.num_records if self.log is not None else 0,
            "epoch_sums": {k: v.detach().double().cpu() for k, v in self._epoch_sums.items()},
            "epoch_steps": self._epoch_steps,
            "last_epoch_record": dict(self.last_epoch_record),
        }

    def save_checkpoint(self, *, epoch_end: bool = False) -> None:
        """Write ``latest.pt`` (and ``epoch_XXX.pt`` at an epoch end) on rank 0; every rank must call it."""
        rng = [ckpt.capture_rng_state()]
        if self.distributed:
            gathered: list[Any] = [None] * D.world_size()
            dist.all_gather_object(gathered, rng[0], group=self._flag_group)
            rng = gathered
        if self.is_main:
            ckpt.save_checkpoint(self.run_dir, self.state_dict(rng),
                                 completed_epochs=self.epoch if epoch_end else None,
                                 keep_epochs=self.config.keep_epoch_checkpoints)
        D.barrier()

    def _restore(self) -> dict[str, Any] | None:
        """Load the newest readable checkpoint in ``run_dir`` into everything; None when there is none."""
        state = None
        for path in ckpt.checkpoint_candidates(self.run_dir):
            try:
                state = ckpt.load_checkpoint(path, map_location="cpu")
            except Exception as error:  # a damaged file: fall back to an older checkpoint, loudly
                warnings.warn(f"{path}: cannot be read ({type(error).__name__}: {error}); trying an older "
                              f"checkpoint", RuntimeWarning, stacklevel=3)
                continue
            self.resumed_from = path
            break
        if state is None:
            return None
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.resumed_from}: not a {CHECKPOINT_FORMAT} checkpoint (format "
                             f"{state.get('format')!r})")
        if state["batch_in_epoch"] and (state["steps_per_epoch"] != self.steps_per_epoch
                                        or state["config"]["grad_accum_steps"] != self.config.grad_accum_steps
                                        or state["world_size"] != D.world_size()):
            raise ValueError(f"{self.resumed_from}: saved mid-epoch with steps_per_epoch="
                             f"{state['steps_per_epoch']}, grad_accum_steps={state['config']['grad_accum_steps']}, "
                             f"world_size={state['world_size']}; this run has {self.steps_per_epoch}, "
                             f"{self.config.grad_accum_steps}, {D.world_size()}: resume with the same settings, "
                             f"or from an epoch_XXX.pt")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state["grad_scaler"] is not None:
            self.scaler.load_state_dict(state["grad_scaler"])
        rngs = state["rng"]
        if len(rngs) == D.world_size():
            ckpt.restore_rng_state(rngs[D.rank()])
        else:
            warnings.warn(f"{self.resumed_from}: saved by {len(rngs)} processes, resumed by {D.world_size()}: "
                          f"RNG streams are reseeded, the run is not an exact continuation", RuntimeWarning,
                          stacklevel=3)
            seed_everything(self.config.seed + D.rank() + 1000003 * state["global_step"])
        self.epoch = state["epoch"]
        self.batch_in_epoch = state["batch_in_epoch"]
        self.global_step = state["global_step"]
        self.extra = dict(state["extra"])
        self.last_epoch_record = dict(state["last_epoch_record"])
        self._epoch_sums = {k: v.to(self.device) for k, v in state["epoch_sums"].items()}
        self._epoch_steps = state["epoch_steps"]
        return state
