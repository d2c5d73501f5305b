"""Recurring error patterns: counts per component and error type over a sliding window.

A pattern is identified by its fingerprint, the component and the error type (the
exception class), never the message: messages carry ids, URLs and timestamps that would
turn every error into a pattern of its own. Each pattern counts its occurrences in a
bucketed time window with a running total, so recording costs O(1) amortised whatever the
error rate. A pattern that occurs more than ``threshold`` times within the window is
escalated; the orchestrator then raises the error's severity one level.

Everything is bounded: at most ``max_patterns`` patterns (the least recently seen one is
evicted to make room), patterns idle longer than ``ttl_seconds`` are removed by
:meth:`PatternTracker.cleanup`, and the history keeps the last ``history_size``
occurrences.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple

from otel_resilience._clock import SYSTEM_CLOCK
from otel_resilience._validation import check_int, check_number
from otel_resilience.breaker._window import TimeWindow
from otel_resilience.orchestrator._severity import ErrorSeverity

if TYPE_CHECKING:
    from otel_resilience._clock import Clock

__all__ = [
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_MAX_PATTERNS",
    "DEFAULT_PATTERN_THRESHOLD",
    "DEFAULT_PATTERN_TTL_SECONDS",
    "DEFAULT_PATTERN_WINDOW_SECONDS",
    "PATTERN_WINDOW_BUCKETS",
    "PatternHistoryEntry",
    "PatternHit",
    "PatternStats",
    "PatternTracker",
    "fingerprint",
]

DEFAULT_PATTERN_WINDOW_SECONDS: Final = 60.0
"""Length of the sliding window over which a pattern's occurrences are counted."""

DEFAULT_PATTERN_THRESHOLD: Final = 5
"""Occurrences within the window a pattern may have before it escalates (more escalate)."""

DEFAULT_PATTERN_TTL_SECONDS: Final = 600.0
"""A pattern not seen for this long is removed by :meth:`PatternTracker.cleanup`."""

DEFAULT_MAX_PATTERNS: Final = 1000
"""Patterns tracked at once; the least recently seen is evicted to make room."""

DEFAULT_HISTORY_SIZE: Final = 1000
"""Recent occurrences kept by :meth:`PatternTracker.history`."""

PATTERN_WINDOW_BUCKETS: Final = 10
"""Buckets of each pattern's window: its granularity is a tenth of the window."""

_OWNER = "PatternTracker"


def fingerprint(component: str, error_type: str) -> str:
    """Return the fingerprint of a pattern: ``"component|error_type"``.

    The fingerprint is the pattern's label in reports and history; the tracker itself
    keys patterns by the ``(component, error_type)`` pair, so a ``|`` inside a name cannot
    merge two patterns.

    Example:
        >>> fingerprint("payments", "ConnectionError")
        'payments|ConnectionError'
    """
    return f"{component}|{error_type}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PatternHit:
    """What :meth:`PatternTracker.record` found for one occurrence.

    Attributes:
        fingerprint: ``"component|error_type"`` (see :func:`fingerprint`).
        count: occurrences of the pattern within the window, this one included.
        escalated: whether ``count`` is above the tracker's threshold.
    """

    fingerprint: str
    count: int
    escalated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PatternStats:
    """One pattern as :meth:`PatternTracker.snapshot` saw it.

    Attributes:
        fingerprint: ``"component|error_type"``.
        component: the component the errors came from.
        error_type: the error type (exception class name).
        count: occurrences within the window at the time of the snapshot.
        total: occurrences since the pattern was first seen (or re-created after eviction
            or clean-up).
        first_seen: clock time of the first occurrence.
        last_seen: clock time of the latest occurrence.
        max_severity: the highest severity recorded for the pattern.
    """

    fingerprint: str
    component: str
    error_type: str
    count: int
    total: int
    first_seen: float
    last_seen: float
    max_severity: ErrorSeverity


class PatternHistoryEntry(NamedTuple):
    """One recorded occurrence: ``(timestamp, fingerprint, severity)``.

    ``timestamp`` is the tracker's clock time (monotonic), not wall-clock time.
    """

    timestamp: float
    fingerprint: str
    severity: ErrorSeverity


class _Pattern:
    """The mutable state of one pattern; guarded by the tracker's lock."""

    __slots__ = (
        "component",
        "error_type",
        "fingerprint",
        "first_seen",
        "last_seen",
        "max_severity",
        "total",
        "window",
    )

    def __init__(
        self,
        component: str,
        error_type: str,
        window_seconds: float,
        now: float,
        severity: ErrorSeverity,
    ) -> None:
        self.component = component
        self.error_type = error_type
        self.fingerprint = fingerprint(component, error_type)
        self.window = TimeWindow(window_seconds, PATTERN_WINDOW_BUCKETS)
        self.first_seen = now
        self.last_seen = now
        self.max_severity = severity
        self.total = 0


class PatternTracker:
    """Counts recurring errors per component and error type, with bounded memory.

    Each pattern's window is cut into :data:`PATTERN_WINDOW_BUCKETS` buckets, so an
    occurrence counts for at least 90% and less than 100% of ``window_seconds``; recording
    touches at most one bucket per bucket width that passed since the pattern's previous
    occurrence. Thread-safe: one lock guards the state, and nothing outside this class runs
    while it is held.

    Times (``now``) are in seconds of the injected clock's :meth:`~Clock.monotonic`. A
    ``now`` older than the newest time already seen (a caller that read the clock just
    before another thread recorded) is taken as that newest time, so the tracker's view
    of time never goes backwards.

    Args:
        window_seconds: length of the sliding window (> 0).
        threshold: occurrences within the window tolerated; one more escalates (>= 1).
        ttl_seconds: patterns idle longer than this are removed by :meth:`cleanup`
            (>= ``window_seconds``, so a pattern is never forgotten while it still counts).
        max_patterns: patterns held at once (>= 1); at the limit, a new pattern evicts the
            least recently seen one.
        history_size: occurrences kept by :meth:`history` (>= 0; 0 keeps none).
        clock: where time comes from when ``now`` is not given; the system clock when
            omitted.

    Example:
        >>> from otel_resilience.testing import FakeClock
        >>> tracker = PatternTracker(threshold=2, clock=FakeClock())
        >>> [tracker.record("db", "TimeoutError", ErrorSeverity.MEDIUM).escalated
        ...  for _ in range(3)]
        [False, False, True]
        >>> tracker.active()
        1
    """

    __slots__ = (
        "_clock",
        "_evictions",
        "_history",
        "_latest",
        "_lock",
        "_max_patterns",
        "_patterns",
        "_threshold",
        "_ttl",
        "_window",
    )

    def __init__(
        self,
        *,
        window_seconds: float = DEFAULT_PATTERN_WINDOW_SECONDS,
        threshold: int = DEFAULT_PATTERN_THRESHOLD,
        ttl_seconds: float = DEFAULT_PATTERN_TTL_SECONDS,
        max_patterns: int = DEFAULT_MAX_PATTERNS,
        history_size: int = DEFAULT_HISTORY_SIZE,
        clock: Clock | None = None,
    ) -> None:
        self._window = check_number(_OWNER, "window_seconds", window_seconds)
        self._threshold = check_int(_OWNER, "threshold", threshold)
        self._ttl = check_number(_OWNER, "ttl_seconds", ttl_seconds)
        if self._ttl < self._window:
            raise ValueError(
                f"{_OWNER}.ttl_seconds must be >= window_seconds ({self._window:g}), "
                f"got {ttl_seconds!r}"
            )
        self._max_patterns = check_int(_OWNER, "max_patterns", max_patterns)
        history_size = check_int(_OWNER, "history_size", history_size, minimum=0)
        self._clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self._lock = threading.Lock()
        # Least recently seen first: eviction and clean-up take from the front.
        self._patterns: OrderedDict[tuple[str, str], _Pattern] = OrderedDict()
        self._history: deque[PatternHistoryEntry] = deque(maxlen=history_size)
        self._latest = float("-inf")
        self._evictions = 0

    @property
    def window_seconds(self) -> float:
        """Length of the sliding window in seconds."""
        return self._window

    @property
    def threshold(self) -> int:
        """Occurrences within the window tolerated before a pattern escalates."""
        return self._threshold

    @property
    def ttl_seconds(self) -> float:
        """Idle time after which :meth:`cleanup` removes a pattern."""
        return self._ttl

    @property
    def max_patterns(self) -> int:
        """Patterns held at once."""
        return self._max_patterns

    @property
    def history_size(self) -> int:
        """Occurrences kept by :meth:`history`."""
        size = self._history.maxlen
        return 0 if size is None else size

    @property
    def evictions(self) -> int:
        """Patterns evicted so far because :attr:`max_patterns` was reached."""
        return self._evictions

    def record(
        self,
        component: str,
        error_type: str,
        severity: ErrorSeverity,
        *,
        now: float | None = None,
    ) -> PatternHit:
        """Count one occurrence of the pattern ``component|error_type``.

        Args:
            component: the component the error came from.
            error_type: the error's type, e.g. the exception class name (never the message).
            severity: the severity the error was classified with (before escalation).
            now: the clock time of the occurrence; the injected clock is read when omitted.

        Returns:
            The pattern's fingerprint, its count within the window (this occurrence
            included) and whether that count is above the threshold.

        Raises:
            TypeError: ``component`` or ``error_type`` is not a string, or ``severity`` is
                not an :class:`ErrorSeverity`.
        """
        if type(component) is not str or type(error_type) is not str:
            _check_name("component", component)
            _check_name("error_type", error_type)
        if not isinstance(severity, ErrorSeverity):
            raise TypeError(
                f"{_OWNER}.record severity must be an ErrorSeverity, "
                f"got {type(severity).__name__} {severity!r}"
            )
        now = self._now(now)
        key = (component, error_type)
        with self._lock:
            if now < self._latest:
                now = self._latest
            else:
                self._latest = now
            patterns = self._patterns
            pattern = patterns.get(key)
            if pattern is None:
                if len(patterns) >= self._max_patterns:
                    patterns.popitem(last=False)
                    self._evictions += 1
                pattern = _Pattern(component, error_type, self._window, now, severity)
                patterns[key] = pattern
            else:
                patterns.move_to_end(key)
                pattern.last_seen = now
                pattern.max_severity = max(pattern.max_severity, severity)
            window = pattern.window
            window.record(0, now)
            pattern.total += 1
            count = window.calls
            name = pattern.fingerprint
            self._history.append(PatternHistoryEntry(now, name, severity))
        return PatternHit(fingerprint=name, count=count, escalated=count > self._threshold)

    def count(self, component: str, error_type: str, *, now: float | None = None) -> int:
        """Return the occurrences of ``component|error_type`` within the window (0 if unknown)."""
        now = self._now(now)
        with self._lock:
            pattern = self._patterns.get((component, error_type))
            if pattern is None:
                return 0
            pattern.window.expire(max(now, self._latest))
            return pattern.window.calls

    def cleanup(self, now: float | None = None) -> int:
        """Remove the patterns not seen for longer than ``ttl_seconds``; return how many.

        Costs O(removed): patterns are kept least recently seen first, so the walk stops at
        the first pattern still in use.
        """
        now = self._now(now)
        removed = 0
        with self._lock:
            patterns = self._patterns
            while patterns:
                key, pattern = next(iter(patterns.items()))
                if now - pattern.last_seen <= self._ttl:
                    break
                del patterns[key]
                removed += 1
        return removed

    def active(self, *, now: float | None = None) -> int:
        """Return the number of patterns with at least one occurrence within the window."""
        now = self._now(now)
        active = 0
        with self._lock:
            now = max(now, self._latest)
            for pattern in self._patterns.values():
                window = pattern.window
                window.expire(now)
                if window.calls:
                    active += 1
        return active

    def snapshot(self, *, now: float | None = None) -> list[PatternStats]:
        """Return every tracked pattern, most recently seen first."""
        now = self._now(now)
        with self._lock:
            now = max(now, self._latest)
            stats: list[PatternStats] = []
            for pattern in reversed(self._patterns.values()):
                window = pattern.window
                window.expire(now)
                stats.append(
                    PatternStats(
                        fingerprint=pattern.fingerprint,
                        component=pattern.component,
                        error_type=pattern.error_type,
                        count=window.calls,
                        total=pattern.total,
                        first_seen=pattern.first_seen,
                        last_seen=pattern.last_seen,
                        max_severity=pattern.max_severity,
                    )
                )
        return stats

    def history(self) -> list[PatternHistoryEntry]:
        """Return the recent occurrences, oldest first (at most ``history_size``)."""
        with self._lock:
            return list(self._history)

    def clear(self) -> None:
        """Forget every pattern and the history (the eviction count is kept)."""
        with self._lock:
            self._patterns.clear()
            self._history.clear()

    def __len__(self) -> int:
        """Return the number of patterns held, active or not."""
        with self._lock:
            return len(self._patterns)

    def __repr__(self) -> str:
        return (
            f"PatternTracker(patterns={len(self)}, window_seconds={self._window:g}, "
            f"threshold={self._threshold}, max_patterns={self._max_patterns})"
        )

    def _now(self, now: float | None) -> float:
        if now is None:
            return self._clock.monotonic()
        return check_number(_OWNER, "now", now, minimum=float("-inf"), allow_minimum=True)


def _check_name(field: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(
            f"{_OWNER}.record {field} must be a str, got {type(value).__name__} {value!r}"
        )
