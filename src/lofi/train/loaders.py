"""Epoch-resumable batch sources for the training engine, over lofi's map-style datasets.

The engine asks for ``batches(epoch, start_batch)``: the epoch's batches from ``start_batch`` on, so that a run
resumed mid-epoch continues with exactly the batches it had not consumed. The order comes from
:class:`~lofi.data.windows.FidelityBatchSampler` (seeded per epoch, sharded across ranks like
``DistributedSampler``); datasets that take plain indices are wrapped by :class:`IndexKeyed`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch.utils.data import DataLoader, Dataset

from lofi.core.fidelity import Fidelity, FidelitySchedule
from lofi.data.windows import FidelityBatchSampler

BatchSource = Callable[[int, int], Iterable[Any]]


class IndexKeyed(Dataset):
    """A dataset indexed by ``(index, fidelity_name)`` keys that only uses the index (clips, features)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, str] | int) -> Any:
        return self.dataset[key[0] if isinstance(key, tuple) else key]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def single_fidelity_sampler(*, num_items: int, batch_size: int, shuffle: bool, seed: int, rank: int = 0,
                            num_replicas: int = 1, drop_last: bool = False, grad_accum_steps: int = 1
                            ) -> FidelityBatchSampler:
    """A sampler with one (dummy) fidelity, for datasets whose items do not depend on it."""
    schedule = FidelitySchedule(mode="full", full=Fidelity("full", 1, 1))
    return FidelityBatchSampler(num_items=num_items, batch_size=batch_size, schedule=schedule, shuffle=shuffle,
                                seed=seed, drop_last=drop_last, grad_accum_steps=grad_accum_steps,
                                num_replicas=num_replicas, rank=rank)


def batch_source(dataset: Dataset, sampler: FidelityBatchSampler, collate: Callable[[list[Any]], Any], *,
                 num_workers: int, device: torch.device, seed: int = 0) -> BatchSource:
    """``batches(epoch, start_batch)`` over ``dataset`` in ``sampler``'s order. Workers are spawned, not forked
    (PyAV and CUDA are not fork-safe everywhere); memory is pinned for a GPU. The DataLoader's own seed comes from
    ``(seed, epoch)``, not from the global RNG, so a resumed run draws the same numbers."""
    def batches(epoch: int, start_batch: int) -> Iterable[Any]:
        sampler.set_epoch(epoch, start_batch=start_batch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                          multiprocessing_context="spawn" if num_workers > 0 else None,
                          pin_memory=device.type == "cuda",
                          generator=torch.Generator().manual_seed(seed * 100_003 + epoch))

    return batches
