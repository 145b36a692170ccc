"""Training checkpoints: atomic writes, RNG states as plain tensors, and finding the newest one to resume from.

A run folder holds ``latest.pt`` (rewritten every ``checkpoint_every_steps`` optimiser steps and at each epoch
end) and ``epoch_XXX.pt`` (the state after XXX completed epochs, kept). Every file is written to a temporary
file in the same folder, fsynced, then renamed over the old one (``os.replace``), so a crash or a kill mid-write
leaves the previous checkpoint intact. Everything stored reads back with ``torch.load(path, weights_only=True)``:
tensors, numbers, strings, lists, tuples and dicts only (checked before writing).

The training engine's checkpoint dict (:mod:`lofi.train.engine`) holds ``format``, ``model`` (the unwrapped
state_dict), ``optimizer``, ``scheduler``, ``grad_scaler``, ``rng`` (one :func:`capture_rng_state` per rank),
``epoch``, ``batch_in_epoch``, ``global_step``, ``steps_per_epoch``, ``world_size``, ``config``, ``extra`` and
the bookkeeping of the metrics log.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from lofi.io import TMP_PREFIX, TMP_SUFFIX, atomic_torch_save, fsync_dir, temp_path

__all__ = ["LATEST", "epoch_checkpoint_name", "atomic_save", "save_checkpoint", "load_checkpoint",
           "find_latest", "checkpoint_candidates", "remove_stale_temp_files", "capture_rng_state",
           "restore_rng_state", "check_weights_only_safe"]

LATEST = "latest.pt"
_EPOCH_RE = re.compile(r"^epoch_(\d+)\.pt$")
_PLAIN_LEAVES = (str, bytes, int, float, bool, complex, type(None), torch.Tensor, torch.Size, torch.dtype,
                 torch.device)


def epoch_checkpoint_name(completed_epochs: int) -> str:
    """``epoch_003.pt``: the file holding the state after ``completed_epochs`` epochs."""
    return f"epoch_{completed_epochs:03d}.pt"


def check_weights_only_safe(obj: Any, where: str = "checkpoint") -> None:
    """Raise TypeError naming the first value ``torch.load(..., weights_only=True)`` could not read back."""
    if isinstance(obj, _PLAIN_LEAVES):
        return
    if isinstance(obj, (dict, OrderedDict)):
        for key, value in obj.items():
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise TypeError(f"{where}: key {key!r} of type {type(key).__name__} cannot be stored")
            check_weights_only_safe(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, (list, tuple, set)) and type(obj) in (list, tuple, set):
        for i, value in enumerate(obj):
            check_weights_only_safe(value, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be stored in a "
                    f"weights_only checkpoint: convert it to tensors, numbers, strings, lists or dicts")


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` that never leaves a partial file at ``path``: temp file, fsync, ``os.replace``."""
    return atomic_torch_save(obj, path)


def _atomic_link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of the complete file ``src`` (a hard link where possible), atomically."""
    tmp = temp_path(dst)
    try:
        try:
            tmp.unlink()
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)


def save_checkpoint(run_dir: str | os.PathLike, state: Mapping[str, Any], *,
                    completed_epochs: int | None = None, keep_epochs: int = 0) -> Path:
    """Write ``state`` to ``run_dir/latest.pt`` (and ``epoch_XXX.pt`` when ``completed_epochs`` is given).

    ``keep_epochs`` > 0 removes all but the newest that many ``epoch_XXX.pt`` files afterwards (0 keeps them
    all). Checked with :func:`check_weights_only_safe` first. Returns the path of ``latest.pt``.
    """
    run_dir = Path(run_dir)
    check_weights_only_safe(dict(state))
    latest = run_dir / LATEST
    if completed_epochs is None:
        return atomic_save(dict(state), latest)
    epoch_file = atomic_save(dict(state), run_dir / epoch_checkpoint_name(completed_epochs))
    _atomic_link_or_copy(epoch_file, latest)
    if keep_epochs > 0:
        for old in checkpoint_candidates(run_dir)[1 + keep_epochs:]:  # [0] is latest.pt
            old.unlink(missing_ok=True)
    return latest


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary objects are unpickled)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def checkpoint_candidates(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``run_dir``, newest first: ``latest.pt``, then ``epoch_XXX.pt`` by decreasing XXX."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    epochs = []
    for entry in run_dir.iterdir():
        match = _EPOCH_RE.match(entry.name)
        if match and entry.is_file():
            epochs.append((int(match.group(1)), entry))
    found = [run_dir / LATEST] if (run_dir / LATEST).is_file() else []
    return found + [p for _, p in sorted(epochs, reverse=True)]


def find_latest(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint to resume from: ``latest.pt``, else the highest ``epoch_XXX.pt``, else None."""
    candidates = checkpoint_candidates(run_dir)
    return candidates[0] if candidates else None


def remove_stale_temp_files(run_dir: str | os.PathLike) -> list[Path]:
    """Delete temp files left by a process killed mid-save (never a complete checkpoint); returns them."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    stale = [p for p in run_dir.iterdir()
             if p.name.startswith(TMP_PREFIX) and p.name.endswith(TMP_SUFFIX) and ".pt." in p.name]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def capture_rng_state() -> dict[str, Any]:
    """Python ``random``, numpy's global RNG, torch's CPU generator and the current CUDA device's, as tensors and
    plain numbers (readable with ``weights_only=True``)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss_next": py_gauss},
        "numpy": {"bit_generator": str(np_name), "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Undo :func:`capture_rng_state`: set every global RNG back to the captured state."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state((npy["bit_generator"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
