"""Batches of a map-style dataset in index order, in the calling process: evaluation, prediction and extraction.

Training goes through a ``DataLoader`` with its samplers (``lofi.train.loaders``); the passes that read every item
once, in order, without workers, use :func:`iter_batches`.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence, TypeVar

Item = TypeVar("Item")
Batch = TypeVar("Batch")
_Item_co = TypeVar("_Item_co", covariant=True)


class _Indexable(Protocol[_Item_co]):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> _Item_co: ...


def iter_batches(dataset: _Indexable[Item], *, batch_size: int, collate: Callable[[list[Item]], Batch | None],
                 indices: Sequence[int] | None = None,
                 on_chunk: Callable[[int], None] | None = None) -> Iterator[Batch]:
    """``collate`` of ``dataset``'s items, ``batch_size`` at a time, in the order of ``indices`` (default: all).

    A chunk that ``collate`` turns into None (every item of it skipped) yields nothing. ``on_chunk`` is called
    with the number of indices of each chunk once the caller is done with its batch (or at once for an empty
    one): a progress bar counts items read, skipped or not.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"iter_batches: batch_size must be an int >= 1, got {batch_size!r}")
    order = range(len(dataset)) if indices is None else indices
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = collate([dataset[i] for i in chunk])
        if batch is not None:
            yield batch
        if on_chunk is not None:
            on_chunk(len(chunk))


__all__ = ["iter_batches"]
