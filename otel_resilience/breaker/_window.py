"""Sliding windows over recent call outcomes: by count, or by time in fixed buckets.

Both keep running totals, so recording a call and reading the rates cost O(1) (the time
window touches at most one bucket per bucket width that passed), and both use bounded
memory whatever the call rate. Neither is thread-safe: the breaker calls them with its
lock held. ``now`` comes from the breaker's injected clock; the count window ignores it.
"""

from __future__ import annotations

import math
from typing import Protocol

__all__ = ["FAILURE", "SLOW", "TIME_WINDOW_BUCKETS", "CountWindow", "SlidingWindow", "TimeWindow"]

TIME_WINDOW_BUCKETS = 10
"""Buckets of a time window: its granularity is a tenth of the window."""

FAILURE = 1
"""Outcome flag: the call failed."""

SLOW = 2
"""Outcome flag: the call was slow (it may also have failed)."""


class SlidingWindow(Protocol):
    """What the breaker needs from a window: totals over the calls it still holds."""

    @property
    def calls(self) -> int:
        """Calls in the window."""

    @property
    def failures(self) -> int:
        """Failed calls in the window."""

    @property
    def slow_calls(self) -> int:
        """Slow calls (successful or not) in the window."""

    def record(self, outcome: int, now: float) -> None:
        """Add one outcome (:data:`FAILURE` | :data:`SLOW` flags) seen at clock time ``now``."""

    def expire(self, now: float) -> None:
        """Drop what has left the window by clock time ``now``."""

    def clear(self) -> None:
        """Forget every call."""


class CountWindow:
    """The outcomes of the last ``size`` calls, in a ring of one byte per call.

    Example:
        >>> window = CountWindow(3)
        >>> for outcome in (FAILURE, 0, FAILURE, FAILURE | SLOW):
        ...     window.record(outcome, 0.0)
        >>> window.calls, window.failures, window.slow_calls
        (3, 2, 1)
    """

    __slots__ = ("_next", "_ring", "_size", "calls", "failures", "slow_calls")

    def __init__(self, size: int) -> None:
        self._size = size
        self._ring = bytearray(size)
        self._next = 0
        self.calls = 0
        self.failures = 0
        self.slow_calls = 0

    def record(self, outcome: int, now: float) -> None:
        """Add one outcome, evicting the oldest once the ring is full."""
        index = self._next
        if self.calls == self._size:
            evicted = self._ring[index]
            self.failures -= evicted & FAILURE
            self.slow_calls -= evicted >> 1
        else:
            self.calls += 1
        self._ring[index] = outcome
        self.failures += outcome & FAILURE
        self.slow_calls += outcome >> 1
        index += 1
        self._next = 0 if index == self._size else index

    def expire(self, now: float) -> None:
        """Nothing to do: calls leave a count window only when newer ones arrive."""

    def clear(self) -> None:
        """Forget every call."""
        self._next = 0
        self.calls = 0
        self.failures = 0
        self.slow_calls = 0

    def __repr__(self) -> str:
        return (
            f"CountWindow(size={self._size}, calls={self.calls}, failures={self.failures}, "
            f"slow_calls={self.slow_calls})"
        )


class TimeWindow:
    """The outcomes of the last ``seconds`` seconds, in :data:`TIME_WINDOW_BUCKETS` buckets.

    Time is cut into buckets of ``seconds / buckets``; a call lands in the bucket of the
    moment it is recorded. The window holds the current bucket and the ``buckets - 1``
    before it, so a call stays in it for at least ``seconds * (buckets - 1) / buckets`` and
    less than ``seconds``: with ten buckets, between 90% and 100% of the window.
    Memory is three integers per bucket, whatever the call rate.

    Example:
        >>> window = TimeWindow(10.0)
        >>> window.record(FAILURE, 0.5)
        >>> window.record(0, 9.5)
        >>> window.calls
        2
        >>> window.expire(10.0)  # the bucket [0, 1) has left the window
        >>> window.calls, window.failures
        (1, 0)
    """

    __slots__ = (
        "_bucket_calls",
        "_bucket_failures",
        "_bucket_slow",
        "_buckets",
        "_head",
        "_width",
        "calls",
        "failures",
        "slow_calls",
    )

    def __init__(self, seconds: float, buckets: int = TIME_WINDOW_BUCKETS) -> None:
        self._buckets = buckets
        self._width = seconds / buckets
        self._bucket_calls = [0] * buckets
        self._bucket_failures = [0] * buckets
        self._bucket_slow = [0] * buckets
        # Bucket number (time // width) of the newest bucket; None before the first call.
        self._head: int | None = None
        self.calls = 0
        self.failures = 0
        self.slow_calls = 0

    def _advance(self, now: float) -> int:
        """Move the head to ``now``'s bucket, emptying the buckets left behind; return its slot."""
        epoch = math.floor(now / self._width)
        head = self._head
        if head is None or epoch - head >= self._buckets:
            self.clear()
            self._head = epoch
        elif epoch > head:
            calls, failures, slow = self._bucket_calls, self._bucket_failures, self._bucket_slow
            for number in range(head + 1, epoch + 1):
                slot = number % self._buckets
                self.calls -= calls[slot]
                self.failures -= failures[slot]
                self.slow_calls -= slow[slot]
                calls[slot] = failures[slot] = slow[slot] = 0
            self._head = epoch
        else:
            # Same bucket, or a clock that stepped back: keep counting in the newest bucket.
            epoch = head
        return epoch % self._buckets

    def record(self, outcome: int, now: float) -> None:
        """Add one outcome observed at ``now``, after expiring old buckets."""
        slot = self._advance(now)
        self._bucket_calls[slot] += 1
        self.calls += 1
        if outcome & FAILURE:
            self._bucket_failures[slot] += 1
            self.failures += 1
        if outcome & SLOW:
            self._bucket_slow[slot] += 1
            self.slow_calls += 1

    def expire(self, now: float) -> None:
        """Drop the buckets that have left the window by ``now``."""
        if self._head is not None:
            self._advance(now)

    def clear(self) -> None:
        """Forget every call."""
        for slot in range(self._buckets):
            self._bucket_calls[slot] = self._bucket_failures[slot] = self._bucket_slow[slot] = 0
        self._head = None
        self.calls = 0
        self.failures = 0
        self.slow_calls = 0

    def __repr__(self) -> str:
        return (
            f"TimeWindow(seconds={self._width * self._buckets:g}, calls={self.calls}, "
            f"failures={self.failures}, slow_calls={self.slow_calls})"
        )
