"""The training loop on a tiny MLP: it learns, accumulation matches one big batch, None batches are skipped."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import _tiny
from lofi.train.engine import StepInfo, Trainer, TrainLoopConfig


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_loss_decreases_and_records_are_written(tmp_path: Path) -> None:
    seen: list[StepInfo] = []

    def on_epoch_end(epoch: int, trainer: Trainer) -> dict[str, float]:
        assert trainer.epoch == epoch
        return {"val_metric": 0.1 * epoch}

    trainer = _tiny.make_trainer(tmp_path, epochs=4, ckpt_every=0, log_every_steps=4,
                                 wrap_loss=lambda f: lambda m, b, i: (seen.append(i), f(m, b, i))[1])
    trainer.on_epoch_end = on_epoch_end
    summary = trainer.fit()
    epochs = _records(tmp_path, "epoch")
    assert [r["epoch"] for r in epochs] == [0, 1, 2, 3]
    losses = [r["train_loss"] for r in epochs]
    assert losses[-1] < 0.5 * losses[0], losses
    assert summary["train_loss"] == losses[-1] and summary["val_metric"] == pytest.approx(0.3)
    assert [r["lr"] for r in epochs] == pytest.approx([1e-2 * 0.7 ** e for e in range(4)])  # per-epoch scheduler
    assert [r["step"] for r in _records(tmp_path, "step")] == list(range(4, 65, 4))
    # the newest keep_epoch_checkpoints (2) epoch files are kept besides latest.pt; the curves are drawn
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["epoch_003.pt", "epoch_004.pt", "latest.pt"]
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert (seen[17].epoch, seen[17].micro_batch, seen[17].global_step) == (1, 1, 17)
    assert seen[0].model is trainer.model
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "mae", "lr", "train_loss", "val_metric"} <= set(header)


def test_grad_accumulation_equals_one_big_batch(tmp_path: Path) -> None:
    big = _tiny.make_trainer(tmp_path / "big", micro_batch=8, accum=1, epochs=2, ckpt_every=0)
    big.fit()
    accumulated = _tiny.make_trainer(tmp_path / "acc", micro_batch=2, accum=4, epochs=2, ckpt_every=0)
    accumulated.fit()
    assert accumulated.global_step == big.global_step == 16
    for (name, a), b in zip(accumulated.model.state_dict().items(), big.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_partial_last_group_and_none_batches_average_over_what_was_used(tmp_path: Path) -> None:
    """7 micro-batches with accumulation 4: groups of 4 and 3; a None batch in the first group leaves 3 used."""
    x, y = _tiny.make_data(num_items=14)
    model = _tiny.make_model()
    reference = _tiny.make_model()
    source = _tiny.BatchSource(x, y, micro_batch=2, none_at=((0, 1, 0),))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(model=model, optimizer=opt, scheduler=None, loss_fn=_tiny.mse_loss, batches=source,
                      steps_per_epoch=7, run_dir=tmp_path, config=TrainLoopConfig(epochs=1, grad_accum_steps=4),
                      device="cpu", progress=False)
    trainer.fit()
    assert trainer.global_step == 2
    perm = torch.randperm(14, generator=torch.Generator().manual_seed(source.seed))
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    for idx in (torch.cat([perm[0:2], perm[4:8]]), perm[8:14]):  # equal micro-batches: mean of means = mean
        ref_opt.zero_grad()
        torch.nn.functional.mse_loss(reference(x[idx]), y[idx]).backward()
        ref_opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_autocast_and_clipping_run(tmp_path: Path, mode: str) -> None:
    trainer = _tiny.make_trainer(tmp_path, epochs=1, ckpt_every=0, autocast=mode, clip_grad_norm=1.0)
    summary = trainer.fit()
    steps = _records(tmp_path, "step")
    assert math.isfinite(summary["train_loss"])
    if mode == "fp16":  # the GradScaler starts too high and skips overflowing steps until it has backed off
        assert steps[-1]["loss_scale"] < steps[0]["loss_scale"]
    else:
        assert "loss_scale" not in steps[0] and all(math.isfinite(r["grad_norm"]) for r in steps)
    assert math.isfinite(steps[-1]["grad_norm"])
    assert (torch.load(tmp_path / "latest.pt", weights_only=True)["grad_scaler"] is not None) == (mode == "fp16")


def test_batch_source_that_draws_from_the_global_rng_is_reported(tmp_path: Path) -> None:
    x, y = _tiny.make_data(num_items=8)

    def batches(epoch: int, start: int):
        order = torch.randperm(8).tolist()  # global RNG at creation: not resumable exactly
        return [{"x": x[order[i:i + 4]], "y": y[order[i:i + 4]]} for i in range(start * 4, 8, 4)]

    trainer = Trainer(model=_tiny.make_model(), optimizer=torch.optim.SGD(_tiny.make_model().parameters(), lr=0.1),
                      scheduler=None, loss_fn=_tiny.mse_loss, batches=batches, steps_per_epoch=2, run_dir=tmp_path,
                      config=TrainLoopConfig(epochs=1), device="cpu", progress=False)
    with pytest.warns(RuntimeWarning, match="global RNG"):
        trainer.fit()


def test_bad_inputs_fail_early(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="grad_accum_steps"):
        TrainLoopConfig(epochs=1, grad_accum_steps=0)
    with pytest.raises(ValueError, match="autocast"):
        TrainLoopConfig(epochs=1, autocast="fp8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown keys"):
        TrainLoopConfig.from_dict({"epochs": 1, "grad_acum_steps": 2})
    assert TrainLoopConfig.from_dict(TrainLoopConfig(epochs=2, seed=3).to_dict()) == TrainLoopConfig(epochs=2, seed=3)
    trainer = _tiny.make_trainer(tmp_path, epochs=1)
    trainer.steps_per_epoch = 20  # the source yields 16
    with pytest.raises(RuntimeError, match="ran out at micro-batch 16"):
        trainer.fit(resume=False)
    bad = _tiny.make_trainer(tmp_path / "b", epochs=1,
                             wrap_loss=lambda f: lambda m, b, i: {"total": f(m, b, i)["loss"]})
    with pytest.raises(TypeError, match="'loss'"):
        bad.fit()
