"""Kill a training process mid-epoch with SIGKILL, resume it, and get exactly the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lofi.train.checkpoint import load_checkpoint

SCRIPT = Path(__file__).with_name("_train_script.py")
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def _command(run_dir: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), str(run_dir), str(out), "--noisy", "--epochs", "3", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path: Path) -> None:
    reference = subprocess.Popen(_command(tmp_path / "ref", tmp_path / "ref.pt", "--no-resume"), env=_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(_command(tmp_path / "run", tmp_path / "killed.pt", "--sleep", "0.1"), env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in victim.stdout:  # type: ignore[union-attr]
            if line.strip() == "micro 1 3":  # epoch 1, a few steps in (16 micro-batches per epoch)
                break
        else:
            stderr = victim.stderr.read()  # type: ignore[union-attr]
            pytest.fail(f"the training process ended early ({victim.wait()}): {stderr}")
        assert victim.poll() is None
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.stdout.close()  # type: ignore[union-attr]
        victim.stderr.close()  # type: ignore[union-attr]
    assert not (tmp_path / "killed.pt").exists()
    saved = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert saved["epoch"] == 1 and 3 <= saved["batch_in_epoch"] < 16, (saved["epoch"], saved["batch_in_epoch"])
    assert sorted(p.name for p in (tmp_path / "run").glob("epoch_*.pt")) == ["epoch_001.pt"]

    resumed = subprocess.run(_command(tmp_path / "run", tmp_path / "resumed.pt"), env=_env(), capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    micro = [line.split()[1:] for line in resumed.stdout.splitlines() if line.startswith("micro")]
    assert micro[0] == ["1", str(saved["batch_in_epoch"])]  # continued where the checkpoint was, no replay
    assert "resumed latest.pt" in resumed.stdout
    assert reference.wait(timeout=120) == 0, reference.stderr.read()  # type: ignore[union-attr]
    reference.stderr.close()  # type: ignore[union-attr]

    expected = torch.load(tmp_path / "ref.pt", weights_only=True)
    got = torch.load(tmp_path / "resumed.pt", weights_only=True)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    steps = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"step"' in line]
    assert len([s for s in steps if '"kind": "step"' in s]) == 48  # records logged after the checkpoint dropped
