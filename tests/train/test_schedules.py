"""LR schedules (step, warm-up, cosine; stepped per optimiser step), weight-decay groups, their config keys."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import _tiny
from lofi.config import ConfigError, OptimConfig, load_config
from lofi.train.builders import build_optimizer, build_scheduler, lr_factor
from lofi.train.engine import Trainer, TrainLoopConfig
from lofi.train.records import read_metrics


def _lrs(config: OptimConfig, *, steps_per_epoch: int, num_steps: int) -> list[float]:
    """The LR of optimiser steps 0 .. num_steps - 1 (and the one after), stepping the scheduler after each."""
    param = nn.Parameter(torch.zeros(2, 2))
    opt = build_optimizer([param], config)
    sched = build_scheduler(opt, config, steps_per_epoch=steps_per_epoch)
    assert getattr(sched, "step_interval", "epoch") == "step"
    lrs = []
    for _ in range(num_steps + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_warmup_then_cosine_values() -> None:
    config = OptimConfig(lr=0.1, epochs=4, lr_schedule="cosine", warmup_epochs=1.0)
    lrs = _lrs(config, steps_per_epoch=10, num_steps=40)  # 10 warm-up steps, then 30 of cosine decay
    assert lrs[0] == pytest.approx(0.1 / 10)  # ~0 at the first step, not 0
    assert lrs[4] == pytest.approx(0.1 * 5 / 10)
    assert lrs[9] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.1)  # warm-up reaches lr, cosine starts
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))  # a linear ramp
    assert lrs[25] == pytest.approx(0.1 / 2)  # midway through the decay: lr / 2
    assert lrs[39] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 29 / 30))) and lrs[39] < 0.001
    assert lrs[40] == pytest.approx(0.0, abs=1e-12)  # after the run's last step
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_cosine_without_warmup_and_fractional_warmup() -> None:
    lrs = _lrs(OptimConfig(lr=1.0, epochs=2, lr_schedule="cosine"), steps_per_epoch=5, num_steps=10)
    assert lrs[0] == pytest.approx(1.0) and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(0.0)
    # 0.25 epochs of 8 optimiser steps: a 2-step warm-up
    assert lr_factor(0, OptimConfig(warmup_epochs=0.25, lr_schedule="cosine"), 8) == pytest.approx(0.5)
    assert lr_factor(1, OptimConfig(warmup_epochs=0.25, lr_schedule="cosine"), 8) == pytest.approx(1.0)


def test_step_schedule_without_warmup_is_the_per_epoch_step_lr() -> None:
    config = OptimConfig(lr=0.1, lr_step_epochs=2, lr_gamma=0.5)
    opt = build_optimizer([nn.Parameter(torch.zeros(2))], config)
    sched = build_scheduler(opt, config)  # no steps_per_epoch needed: stepped once per epoch, as before
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR)
    assert getattr(sched, "step_interval", "epoch") == "epoch"
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_step_schedule_with_warmup_ramps_then_steps_per_epoch() -> None:
    config = OptimConfig(lr=0.1, lr_step_epochs=1, lr_gamma=0.5, warmup_epochs=0.5, epochs=3)
    lrs = _lrs(config, steps_per_epoch=4, num_steps=12)  # 2 warm-up steps
    assert lrs[:12] == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025])


def test_per_step_schedule_needs_steps_per_epoch() -> None:
    config = OptimConfig(lr_schedule="cosine")
    opt = build_optimizer([nn.Parameter(torch.zeros(2, 2))], config)
    with pytest.raises(ValueError, match="needs steps_per_epoch"):
        build_scheduler(opt, config)


def _trainer(run_dir: Path, config: OptimConfig, *, micro_batch: int = 4, epochs: int = 2,
             wrap_loss: Any = None, scheduler_steps: int | None = None) -> Trainer:
    model = _tiny.make_model()
    x, y = _tiny.make_data()
    source = _tiny.BatchSource(x, y, micro_batch=micro_batch)
    opt = build_optimizer(model.parameters(), config)
    sched = build_scheduler(opt, config, steps_per_epoch=scheduler_steps or source.steps_per_epoch)
    loss_fn = wrap_loss(_tiny.mse_loss) if wrap_loss else _tiny.mse_loss
    return Trainer(model=model, optimizer=opt, scheduler=sched, loss_fn=loss_fn, batches=source,
                   steps_per_epoch=source.steps_per_epoch, run_dir=run_dir, device="cpu", progress=False,
                   config=TrainLoopConfig(epochs=epochs, grad_accum_steps=config.grad_accum_steps,
                                          checkpoint_every_steps=1, log_every_steps=1, seed=11))


def test_trainer_steps_the_schedule_per_optimiser_step_with_grad_accumulation(tmp_path: Path) -> None:
    # 16 micro-batches per epoch in groups of 3: 6 optimiser steps per epoch (the last of 1 micro-batch)
    config = OptimConfig(optimizer="adamw", lr=1e-2, epochs=2, grad_accum_steps=3, lr_schedule="cosine",
                         warmup_epochs=0.5)
    trainer = _trainer(tmp_path, config)
    assert trainer.optimizer_steps_per_epoch == 6
    trainer.fit()
    assert trainer.global_step == 12 and trainer.scheduler.last_epoch == 12
    steps = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 13))
    expected = [1e-2 * lr_factor(s, config, 6) for s in range(12)]  # the LR each optimiser step used
    assert [r["lr"] for r in steps] == pytest.approx(expected)
    assert expected[0] == pytest.approx(1e-2 / 3) and expected[2] == pytest.approx(1e-2)  # a 3-step warm-up
    epochs = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "epoch"]
    assert [r["lr"] for r in epochs] == pytest.approx([expected[0], expected[6]])  # the LR at each epoch's start


def test_trainer_rejects_a_schedule_built_for_other_steps_per_epoch(tmp_path: Path) -> None:
    config = OptimConfig(optimizer="adamw", lr=1e-2, epochs=2, grad_accum_steps=3, lr_schedule="cosine")
    with pytest.raises(ValueError, match="built for 2 optimiser steps per epoch, this run has 6"):
        _trainer(tmp_path, config, scheduler_steps=6)  # optimiser steps given where micro-batches are expected


class _Stop(Exception):
    pass


def test_cosine_schedule_resumes_exactly_mid_epoch(tmp_path: Path) -> None:
    config = OptimConfig(optimizer="sgd", lr=5e-2, epochs=3, grad_accum_steps=2, lr_schedule="cosine",
                         warmup_epochs=0.5)
    reference = _trainer(tmp_path / "ref", config, epochs=3)
    reference.fit(resume=False)

    def crash_at_epoch_1(loss_fn):
        def wrapped(model, batch, info):
            if (info.epoch, info.micro_batch) == (1, 5):
                raise _Stop
            return loss_fn(model, batch, info)
        return wrapped

    with pytest.raises(_Stop):
        _trainer(tmp_path / "run", config, epochs=3, wrap_loss=crash_at_epoch_1).fit()
    resumed = _trainer(tmp_path / "run", config, epochs=3)
    resumed.fit()
    assert resumed.resumed_from is not None and resumed.global_step == reference.global_step == 24
    assert resumed.scheduler.last_epoch == 24 and resumed.lr == reference.lr
    for a, b in zip(reference.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    lr_of = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "step"}
    assert lr_of == {r["step"]: r["lr"] for r in read_metrics(tmp_path / "ref" / "metrics.jsonl")
                     if r["kind"] == "step"}


class _ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=True)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_weight_decay_only_on_conv_and_linear_weights(optimizer: str) -> None:
    model = _ConvBN()
    opt = build_optimizer(model.parameters(), OptimConfig(optimizer=optimizer, weight_decay=0.05))
    decay_of = {}
    for group in opt.param_groups:
        for p in group["params"]:
            assert id(p) not in decay_of, "a parameter in two groups"
            decay_of[id(p)] = group["weight_decay"]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(decay_of) == sorted(id(p) for p in trainable)  # each trainable parameter in exactly one group
    assert decay_of[id(model.conv.weight)] == decay_of[id(model.fc.weight)] == 0.05
    assert decay_of[id(model.bn.weight)] == decay_of[id(model.bn.bias)] == 0.0
    assert decay_of[id(model.conv.bias)] == decay_of[id(model.fc.bias)] == 0.0
    assert id(model.frozen.weight) not in decay_of

    same = build_optimizer(model, OptimConfig(optimizer=optimizer, weight_decay=0.05))  # a module works too
    assert [[id(p) for p in g["params"]] for g in same.param_groups] == \
        [[id(p) for p in g["params"]] for g in opt.param_groups]
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="every parameter is frozen"):
        build_optimizer(model.parameters(), OptimConfig(optimizer=optimizer))


def test_norm_parameters_do_not_decay_in_a_step() -> None:
    bn = nn.BatchNorm1d(3)
    opt = build_optimizer(bn.parameters(), OptimConfig(optimizer="sgd", lr=1.0, momentum=0.0, weight_decay=0.5))
    for p in bn.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(bn.weight, torch.ones(3)) and torch.equal(bn.bias, torch.zeros(3))


def test_schedule_keys_are_validated() -> None:
    config = load_config(None, ["train.optim.lr_schedule=cosine", "train.optim.warmup_epochs=0.5"])
    assert (config.train.optim.lr_schedule, config.train.optim.warmup_epochs) == ("cosine", 0.5)
    assert load_config(None, ["head.optim.warmup_epochs=2"]).head.optim.warmup_epochs == 2.0  # an int is a float
    assert OptimConfig().lr_schedule == "step" and OptimConfig().warmup_epochs == 0.0
    with pytest.raises(ConfigError, match=r"train\.optim\.lr_schedule: 'linear' is not one of 'step', 'cosine'"):
        load_config(None, ["train.optim.lr_schedule=linear"])
    with pytest.raises(ConfigError, match=r"override 'pretrain\.optim\.warmup_epochs=-1': pretrain\.optim\."
                                          r"warmup_epochs: must be >= 0"):
        load_config(None, ["pretrain.optim.warmup_epochs=-1"])
    with pytest.raises(ConfigError, match="warmup_epochs: expected a number"):
        load_config(None, ["train.optim.warmup_epochs=one"])
    with pytest.raises(ValueError, match="lr_schedule: 'exp' is not one of 'step', 'cosine'"):
        OptimConfig(lr_schedule="exp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="warmup_epochs"):
        OptimConfig(warmup_epochs=float("nan"))


def test_lr_scales_put_a_submodule_in_its_own_groups() -> None:
    from lofi.config import OptimConfig
    from lofi.train.builders import build_optimizer

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    optimizer = build_optimizer(model, OptimConfig(optimizer="adamw", lr=1e-3, weight_decay=0.1),
                                lr_scales=[(model[0], 0.1)])
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert len(by_param) == sum(1 for _ in model.parameters())  # every parameter once
    assert by_param[id(model[0].weight)]["lr"] == pytest.approx(1e-4)
    assert by_param[id(model[0].weight)]["weight_decay"] == 0.1 and by_param[id(model[0].bias)]["weight_decay"] == 0
    assert by_param[id(model[2].weight)]["lr"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="lr scale"):
        build_optimizer(model, OptimConfig(), lr_scales=[(model[0], 0.0)])
