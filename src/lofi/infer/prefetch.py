"""Run an iterator ahead in a background thread, so that its work (video decoding) overlaps the consumer's (the
model). Decoding in PyAV and the model's kernels in torch both release the GIL, so a thread is enough."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(items: Iterable[T], *, depth: int = 2, name: str = "lofi-prefetch") -> Iterator[T]:
    """Yield ``items`` in order while a background thread computes up to ``depth`` ahead (memory: ``depth`` items).

    An exception raised by ``items`` is raised here, at its place in the order. Closing the returned generator
    early (``break``, an exception in the consumer) stops the thread after the item it is computing.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth!r}")
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(_Failure(exc))
            return
        put(_DONE)

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)


__all__ = ["prefetch"]
