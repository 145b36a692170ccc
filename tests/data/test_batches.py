"""iter_batches: the one batching loop of evaluation, prediction and extraction."""

from __future__ import annotations

import pytest

from lofi.data.batches import iter_batches


def _collate(items: list[int]) -> list[int] | None:
    kept = [i for i in items if i % 3]  # items divisible by 3 are "skipped"
    return kept or None


def test_batches_follow_the_index_order_and_drop_empty_chunks():
    dataset = list(range(10))
    assert list(iter_batches(dataset, batch_size=4, collate=_collate)) == [[1, 2], [4, 5, 7], [8]]
    assert list(iter_batches(dataset, batch_size=1, collate=_collate, indices=[3, 1, 9])) == [[1]]


def test_every_chunk_is_counted_after_its_batch_is_used():
    events: list[object] = []
    for batch in iter_batches(list(range(7)), batch_size=3, collate=_collate, indices=[0, 3, 6, 1, 2, 4, 5],
                              on_chunk=lambda n: events.append(n)):
        events.append(batch)
    assert events == [3, [1, 2, 4], 3, [5], 1]  # the all-skipped first chunk counts too


@pytest.mark.parametrize("batch_size", [0, -1, True, 2.0])
def test_a_bad_batch_size_is_named(batch_size):
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        list(iter_batches([1, 2], batch_size=batch_size, collate=_collate))
