"""A one-slot, latest-value-wins mailbox between a subscription callback and a worker.

A perception node must never queue camera frames behind a slow model: a queue turns a slow
engine into unbounded latency and memory. The subscription callback ``put``s every message
here (O(1), never blocks); the worker ``get``s the newest one; anything overwritten before
the worker took it is counted as dropped, so the drop rate shows up in the diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass
import threading
import time
from typing import Generic, TypeVar

T = TypeVar('T')


@dataclass(frozen=True)
class SlotCounts:
    """Snapshot of a slot's counters (totals since construction or ``reset_counts``)."""

    received: int
    dropped: int
    taken: int
    processed: int
    pending: bool


class LatestSlot(Generic[T]):
    """Thread-safe single-item buffer that keeps only the newest item.

    ``received == dropped + taken + pending`` always holds; ``processed`` is whatever the
    consumer confirms with ``mark_processed`` (taken items may still be rejected later, e.g.
    as too old or malformed).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self._received = self._dropped = self._taken = self._processed = 0

    def put(self, item: T) -> bool:
        """Store ``item``, replacing any unconsumed one; return True if one was dropped."""
        if item is None:
            raise ValueError('item: None cannot be stored (it means "empty")')
        with self._cond:
            dropped = self._item is not None
            if dropped:
                self._dropped += 1
            self._item = item
            self._received += 1
            self._cond.notify()
        return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """Take the newest item, waiting up to ``timeout`` s; None on timeout or when closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._item is None and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._take_locked()

    def get_nowait(self) -> T | None:
        """Take the newest item if there is one, else None."""
        with self._cond:
            return self._take_locked()

    def _take_locked(self) -> T | None:
        item, self._item = self._item, None
        if item is not None:
            self._taken += 1
        return item

    def mark_processed(self) -> None:
        """Count one taken item as fully processed (e.g. published)."""
        with self._cond:
            self._processed += 1

    def clear(self) -> None:
        """Discard a pending item (counted as dropped), e.g. when a node is deactivated."""
        with self._cond:
            if self._item is not None:
                self._item = None
                self._dropped += 1

    def close(self) -> None:
        """Wake every waiting ``get`` (which then returns None) and refuse to block again."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def open(self) -> None:
        """Undo ``close`` so a restarted worker can wait again."""
        with self._cond:
            self._closed = False

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (and not undone)."""
        return self._closed

    def counts(self) -> SlotCounts:
        """Consistent snapshot of the counters."""
        with self._cond:
            return SlotCounts(self._received, self._dropped, self._taken, self._processed,
                              self._item is not None)

    def reset_counts(self) -> None:
        """Zero the counters (a pending item stays pending)."""
        with self._cond:
            pending = int(self._item is not None)
            self._received, self._dropped = pending, 0
            self._taken = self._processed = 0
