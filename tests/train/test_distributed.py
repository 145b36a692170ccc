"""2 processes with Gloo (torchrun) train to the same weights as 1 process on the same global batches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import _tiny
from lofi.runtime import distributed as D

SCRIPT = Path(__file__).with_name("_train_script.py")


def test_single_process_helpers() -> None:
    assert not D.is_distributed() and D.rank() == 0 and D.world_size() == 1 and D.is_main_process()
    assert not D.init_distributed()  # no WORLD_SIZE: a plain single process
    t = torch.tensor([1.0, 3.0])
    assert torch.equal(D.all_reduce_mean(t), t)
    D.barrier()
    D.cleanup()
    model = torch.nn.Linear(2, 2)
    assert D.unwrap_model(model) is model


def test_init_distributed_explains_missing_torchrun_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        D.init_distributed()


def _torchrun(run_dir: Path, out: Path, *args: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
               str(run_dir), str(out), "--epochs", "2", "--ckpt-every", "5", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("done") == 2


def _assert_same_weights(ddp_out: Path, single: torch.nn.Module) -> None:
    got = torch.load(ddp_out, weights_only=True)
    for name, tensor in single.state_dict().items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    # 2 ranks x 2 items, disjoint shards of each global batch of 4; vs 1 process with batches of 4.
    _torchrun(tmp_path / "ddp", tmp_path / "ddp.pt", "--micro-batch", "2")
    single = _tiny.make_trainer(tmp_path / "single", micro_batch=4, epochs=2, ckpt_every=5)
    single.fit()
    _assert_same_weights(tmp_path / "ddp.pt", single.model)
    assert sorted(p.name for p in (tmp_path / "ddp").glob("*.pt")) == ["epoch_001.pt", "epoch_002.pt", "latest.pt"]
    assert torch.load(tmp_path / "ddp" / "latest.pt", weights_only=True)["world_size"] == 2


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_processes_with_accumulation_and_skipped_batches(tmp_path: Path) -> None:
    """1 item per rank per micro-batch, 2 micro-batches per step (no_sync on the first); rank 1's batch 3 (a step's
    last) and rank 0's batch 20 (a step's first) are None, so every rank skips them. Same as 1 process with
    micro-batches of 2 skipping the same global micro-batches."""
    _torchrun(tmp_path / "ddp", tmp_path / "ddp.pt", "--micro-batch", "1", "--accum", "2",
              "--none-at", "0,3,1", "--none-at", "1,20,0")
    single = _tiny.make_trainer(tmp_path / "single", micro_batch=2, accum=2, epochs=2, ckpt_every=5,
                                none_at=((0, 3, 0), (1, 20, 0)))
    single.fit()
    _assert_same_weights(tmp_path / "ddp.pt", single.model)
