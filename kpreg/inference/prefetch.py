"""Run an iterator in a background thread, ahead of its consumer, through a bounded queue.

Decoding (JPEG / video, in OpenCV, which releases the GIL) then overlaps the network's forward pass, and
memory stays bounded: at most ``depth`` items wait in the queue, plus the one being produced and the one
being consumed, however long the stream is.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_POLL_S = 0.05  # how often a blocked producer checks whether the consumer has gone away


@dataclass(frozen=True)
class _End:
    """The producer finished; ``error`` is what it raised, re-raised in the consumer's thread."""

    error: BaseException | None = None


def prefetch(make_items: Callable[[], Iterator[T]], depth: int, name: str = "kpreg-prefetch") -> Iterator[T]:
    """Yield the items of ``make_items()``, produced in a daemon thread at most ``depth`` items ahead.

    ``make_items`` is called in the worker thread, so a resource it opens (a ``cv2.VideoCapture``) lives and
    is released there. An exception in the producer is raised in the consumer when it reaches that point
    of the stream. If the consumer stops early (``break``, an exception, ``close()``), the producer is told
    to stop, its iterator is closed (running its ``finally`` blocks) and the thread is joined.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be at least 1, got {depth}")
    items: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        """Block until there is room; False if the consumer left meanwhile."""
        while not stop.is_set():
            try:
                items.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = make_items()
        end = _End()
        try:
            for item in it:
                if not put(item):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which re-raises it
            end = _End(err)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        put(end)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        worker.join()
