"""A retry budget shared across calls: retries may be at most a ratio of recent calls."""

from __future__ import annotations

import threading

from otel_resilience._clock import SYSTEM_CLOCK, Clock
from otel_resilience._validation import check_int, check_number

__all__ = ["RetryBudget"]

DEFAULT_BUDGET_RATIO = 0.2
"""Retries may add at most 20% to the calls made in the window (Envoy's default budget)."""
DEFAULT_MIN_RETRIES = 10
"""Retries always allowed per window, so a quiet service can still retry."""
DEFAULT_BUDGET_WINDOW_SECONDS = 10.0
"""How far back "recent" reaches."""
_BUCKETS = 10


class RetryBudget:
    """Caps retries at ``ratio`` of recent calls, with ``min_retries`` always allowed.

    Share one budget between the retries (and pipelines) that call one dependency: when
    the dependency fails for everyone, the budget stops a retry storm from multiplying the
    load, as Envoy's and Finagle's retry budgets do. Over the last ``window_seconds``
    (counted in ten buckets, so memory is constant whatever the call rate) a retry is
    allowed while ``retries < max(min_retries, ratio * calls)``.

    Thread-safe; the clock is injected.

    Example:
        >>> from otel_resilience.testing import FakeClock
        >>> budget = RetryBudget(ratio=0.5, min_retries=1, clock=FakeClock())
        >>> for _ in range(4):
        ...     budget.record_call()
        >>> [budget.try_spend() for _ in range(3)]
        [True, True, False]
    """

    __slots__ = (
        "_bucket_seconds",
        "_calls",
        "_clock",
        "_current",
        "_lock",
        "_retries",
        "_total_calls",
        "_total_retries",
        "min_retries",
        "ratio",
        "rejected",
        "window_seconds",
    )

    def __init__(
        self,
        *,
        ratio: float = DEFAULT_BUDGET_RATIO,
        min_retries: int = DEFAULT_MIN_RETRIES,
        window_seconds: float = DEFAULT_BUDGET_WINDOW_SECONDS,
        clock: Clock | None = None,
    ) -> None:
        self.ratio = check_number("RetryBudget", "ratio", ratio, allow_minimum=True)
        self.min_retries = check_int("RetryBudget", "min_retries", min_retries, minimum=0)
        self.window_seconds = check_number("RetryBudget", "window_seconds", window_seconds)
        self._clock = clock if clock is not None else SYSTEM_CLOCK
        self._bucket_seconds = self.window_seconds / _BUCKETS
        self._calls = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS
        self._total_calls = 0
        self._total_retries = 0
        self._current = int(self._clock.monotonic() // self._bucket_seconds)
        self._lock = threading.Lock()
        self.rejected = 0
        """Retries refused so far."""

    def _roll_locked(self) -> int:
        bucket = int(self._clock.monotonic() // self._bucket_seconds)
        if bucket != self._current:
            # Clear every bucket we skipped over (at most all of them).
            for step in range(min(bucket - self._current, _BUCKETS)):
                index = (self._current + 1 + step) % _BUCKETS
                self._total_calls -= self._calls[index]
                self._total_retries -= self._retries[index]
                self._calls[index] = 0
                self._retries[index] = 0
            self._current = bucket
        return bucket % _BUCKETS

    def record_call(self) -> None:
        """Count one call (its first attempt) against the window."""
        with self._lock:
            index = self._roll_locked()
            self._calls[index] += 1
            self._total_calls += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; return ``False`` (and count it) when exhausted."""
        with self._lock:
            index = self._roll_locked()
            allowed = max(self.min_retries, self.ratio * self._total_calls)
            if self._total_retries + 1 > allowed:
                self.rejected += 1
                return False
            self._retries[index] += 1
            self._total_retries += 1
            return True

    @property
    def calls(self) -> int:
        """Calls counted in the current window."""
        with self._lock:
            self._roll_locked()
            return self._total_calls

    @property
    def retries(self) -> int:
        """Retries spent in the current window."""
        with self._lock:
            self._roll_locked()
            return self._total_retries

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio}, min_retries={self.min_retries}, "
            f"window_seconds={self.window_seconds})"
        )
