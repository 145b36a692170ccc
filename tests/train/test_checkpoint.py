"""Checkpoints: weights_only round trips, RNG states, atomic writes that never replace a good file with a bad one."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import _tiny
from lofi.train import checkpoint as ckpt


def _draws() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(3)


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.standard_normal()
    state = ckpt.capture_rng_state()
    expected = _draws()
    ckpt.atomic_save({"rng": state}, tmp_path / "rng.pt")
    _draws()
    ckpt.restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    got = _draws()
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


def test_trainer_checkpoint_restores_optimizer_scheduler_and_position(tmp_path: Path) -> None:
    first = _tiny.make_trainer(tmp_path, epochs=2, ckpt_every=5)
    first.extra["best"] = 0.5
    first.fit()
    state = ckpt.load_checkpoint(ckpt.find_latest(tmp_path))
    assert (state["epoch"], state["batch_in_epoch"], state["global_step"]) == (2, 0, 32)
    assert state["config"]["checkpoint_every_steps"] == 5 and state["extra"] == {"best": 0.5}
    assert set(state["rng"][0]) == {"python", "numpy", "torch", "cuda"}

    again = _tiny.make_trainer(tmp_path, epochs=3, ckpt_every=5)  # one more epoch, from the checkpoint
    again._restore()
    assert again.resumed_from == tmp_path / "latest.pt"
    assert again.global_step == 32 and again.extra == {"best": 0.5}
    assert again.scheduler.last_epoch == first.scheduler.last_epoch == 2
    assert again.lr == pytest.approx(1e-2 * 0.7 ** 2)
    for (k, a), b in zip(first.optimizer.state_dict()["state"].items(), again.optimizer.state_dict()["state"].values()):
        assert all(torch.equal(a[name], b[name]) for name in a), k
    for a, b in zip(first.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)


def test_a_failed_write_never_replaces_the_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt.save_checkpoint(tmp_path, {"value": torch.tensor([1.0])})
    good = (tmp_path / "latest.pt").read_bytes()
    real_save = torch.save

    def crash_halfway(obj, f, *args, **kwargs):  # write part of the file, then die as a kill or full disk would
        real_save(obj, f, *args, **kwargs)
        f.truncate(100)
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crash_halfway)
    with pytest.raises(OSError, match="No space"):
        ckpt.save_checkpoint(tmp_path, {"value": torch.tensor([2.0])}, completed_epochs=1)
    monkeypatch.undo()
    assert (tmp_path / "latest.pt").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]  # no temp file, no epoch file
    assert ckpt.load_checkpoint(tmp_path / "latest.pt")["value"].item() == 1.0


def test_stale_temp_files_and_damaged_latest(tmp_path: Path) -> None:
    trainer = _tiny.make_trainer(tmp_path, epochs=1, ckpt_every=0)
    trainer.fit()
    (tmp_path / ".latest.pt.abc123.tmp").write_bytes(b"PK\x03\x04 half a zip")  # a process killed mid-save
    (tmp_path / "latest.pt").unlink()
    (tmp_path / "latest.pt").write_bytes(b"garbage")  # damaged by something outside our control
    assert ckpt.checkpoint_candidates(tmp_path) == [tmp_path / "latest.pt", tmp_path / "epoch_001.pt"]
    resumed = _tiny.make_trainer(tmp_path, epochs=1, ckpt_every=0)
    with pytest.warns(RuntimeWarning, match="cannot be read"):
        resumed.fit()
    assert resumed.resumed_from == tmp_path / "epoch_001.pt" and resumed.global_step == 16
    assert not (tmp_path / ".latest.pt.abc123.tmp").exists()


def test_find_latest_and_weights_only_check(tmp_path: Path) -> None:
    assert ckpt.find_latest(tmp_path / "missing") is None
    for n in (2, 10, 1):
        ckpt.save_checkpoint(tmp_path, {"n": n}, completed_epochs=n)
    (tmp_path / "latest.pt").unlink()
    assert ckpt.find_latest(tmp_path) == tmp_path / "epoch_010.pt"
    with pytest.raises(TypeError, match=r"checkpoint\['extra'\]\['when'\].*datetime"):
        import datetime

        ckpt.save_checkpoint(tmp_path, {"extra": {"when": datetime.date(2021, 1, 1)}})
