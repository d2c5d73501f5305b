"""Pattern tracking: windows, escalation, TTL clean-up, the cap, bounded memory, threads."""

from __future__ import annotations

import math
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_resilience.orchestrator._patterns import (
    DEFAULT_HISTORY_SIZE,
    DEFAULT_MAX_PATTERNS,
    DEFAULT_PATTERN_THRESHOLD,
    DEFAULT_PATTERN_TTL_SECONDS,
    DEFAULT_PATTERN_WINDOW_SECONDS,
    PatternHistoryEntry,
    PatternHit,
    PatternStats,
    PatternTracker,
    fingerprint,
)
from otel_resilience.orchestrator._severity import ErrorSeverity
from otel_resilience.testing import FakeClock

LOW = ErrorSeverity.LOW
MEDIUM = ErrorSeverity.MEDIUM
HIGH = ErrorSeverity.HIGH
CRITICAL = ErrorSeverity.CRITICAL


def make(clock: FakeClock, **kwargs: Any) -> PatternTracker:
    return PatternTracker(clock=clock, **kwargs)


# -- configuration ----------------------------------------------------------------------


def test_defaults() -> None:
    tracker = PatternTracker()
    assert tracker.window_seconds == DEFAULT_PATTERN_WINDOW_SECONDS == 60.0
    assert tracker.threshold == DEFAULT_PATTERN_THRESHOLD == 5
    assert tracker.ttl_seconds == DEFAULT_PATTERN_TTL_SECONDS == 600.0
    assert tracker.max_patterns == DEFAULT_MAX_PATTERNS == 1000
    assert tracker.history_size == DEFAULT_HISTORY_SIZE == 1000
    assert len(tracker) == 0
    assert tracker.evictions == 0


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("window_seconds", 0, ValueError),
        ("window_seconds", -1.0, ValueError),
        ("window_seconds", math.nan, ValueError),
        ("window_seconds", math.inf, ValueError),
        ("window_seconds", True, TypeError),
        ("window_seconds", "60", TypeError),
        ("threshold", 0, ValueError),
        ("threshold", -5, ValueError),
        ("threshold", 5.0, TypeError),
        ("threshold", True, TypeError),
        ("threshold", "5", TypeError),
        ("ttl_seconds", 0.0, ValueError),
        ("ttl_seconds", math.nan, ValueError),
        ("ttl_seconds", math.inf, ValueError),
        ("ttl_seconds", False, TypeError),
        ("max_patterns", 0, ValueError),
        ("max_patterns", 10.0, TypeError),
        ("max_patterns", True, TypeError),
        ("history_size", -1, ValueError),
        ("history_size", 1.5, TypeError),
        ("history_size", False, TypeError),
    ],
)
def test_invalid_parameters_name_the_field(field: str, value: object, error: type) -> None:
    kwargs: dict[str, Any] = {field: value}
    with pytest.raises(error, match=rf"PatternTracker\.{field}"):
        PatternTracker(**kwargs)


def test_ttl_shorter_than_the_window_is_rejected() -> None:
    # A pattern cleaned up while it still counts would never escalate.
    with pytest.raises(ValueError, match=r"PatternTracker\.ttl_seconds must be >= window"):
        PatternTracker(window_seconds=60.0, ttl_seconds=59.0)
    assert PatternTracker(window_seconds=60.0, ttl_seconds=60.0).ttl_seconds == 60.0


def test_history_size_zero_keeps_no_history(clock: FakeClock) -> None:
    tracker = make(clock, history_size=0)
    tracker.record("db", "OSError", MEDIUM)
    assert tracker.history() == []
    assert tracker.history_size == 0


def test_record_rejects_wrong_types(clock: FakeClock) -> None:
    tracker = make(clock)
    with pytest.raises(TypeError, match="component"):
        tracker.record(1, "OSError", MEDIUM)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="error_type"):
        tracker.record("db", OSError, MEDIUM)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="severity"):
        tracker.record("db", "OSError", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"PatternTracker\.now"):
        tracker.record("db", "OSError", MEDIUM, now=math.nan)
    with pytest.raises(TypeError, match=r"PatternTracker\.now"):
        tracker.record("db", "OSError", MEDIUM, now="1.0")  # type: ignore[arg-type]
    assert len(tracker) == 0


# -- fingerprints and escalation --------------------------------------------------------


def test_fingerprint_is_component_and_error_type() -> None:
    assert fingerprint("payments", "ConnectionError") == "payments|ConnectionError"


def test_hit_reports_fingerprint_and_count(clock: FakeClock) -> None:
    tracker = make(clock)
    hit = tracker.record("payments", "httpx.ConnectError", HIGH)
    assert hit == PatternHit(fingerprint="payments|httpx.ConnectError", count=1, escalated=False)
    assert tracker.record("payments", "httpx.ConnectError", LOW).count == 2
    # Another component or another type is another pattern.
    assert tracker.record("orders", "httpx.ConnectError", HIGH).count == 1
    assert tracker.record("payments", "TimeoutError", HIGH).count == 1
    assert len(tracker) == 3


def test_escalates_strictly_above_the_threshold(clock: FakeClock) -> None:
    tracker = make(clock)
    hits = [tracker.record("db", "OperationalError", MEDIUM) for _ in range(7)]
    assert [hit.count for hit in hits] == [1, 2, 3, 4, 5, 6, 7]
    # Five occurrences are tolerated; the sixth escalates, and so does every later one.
    assert [hit.escalated for hit in hits] == [False] * 5 + [True, True]


@pytest.mark.parametrize("threshold", [1, 2, 10])
def test_custom_threshold(clock: FakeClock, threshold: int) -> None:
    tracker = make(clock, threshold=threshold)
    escalated = [tracker.record("a", "E", LOW).escalated for _ in range(threshold + 1)]
    assert escalated == [False] * threshold + [True]


# -- the sliding window -----------------------------------------------------------------


def test_occurrences_leave_the_window(clock: FakeClock) -> None:
    tracker = make(clock)  # 60 s in ten buckets of 6 s
    for _ in range(6):
        hit = tracker.record("db", "OSError", MEDIUM)
    assert hit.escalated
    clock.advance(59.9)  # bucket 9: the bucket of t=0 is still in the window
    assert tracker.count("db", "OSError") == 6
    assert tracker.active() == 1
    clock.advance(0.1)  # t=60, bucket 10: bucket 0 has left
    assert tracker.count("db", "OSError") == 0
    assert tracker.active() == 0
    hit = tracker.record("db", "OSError", MEDIUM)
    assert hit.count == 1
    assert not hit.escalated


def test_window_slides_bucket_by_bucket(clock: FakeClock) -> None:
    tracker = make(clock)
    for _ in range(3):
        tracker.record("db", "OSError", MEDIUM)
    clock.advance(30.0)
    for _ in range(3):
        tracker.record("db", "OSError", MEDIUM)
    assert tracker.count("db", "OSError") == 6
    clock.advance(30.0)  # the three of t=0 expire, the three of t=30 stay
    hit = tracker.record("db", "OSError", MEDIUM)
    assert hit.count == 4
    assert not hit.escalated
    clock.advance(60.0)
    assert tracker.count("db", "OSError") == 0
    assert tracker.count("never", "seen") == 0


def test_spread_out_errors_never_escalate(clock: FakeClock) -> None:
    tracker = make(clock)
    for _ in range(100):
        assert not tracker.record("db", "OSError", MEDIUM).escalated
        clock.advance(12.0)  # at most five within any window of 60 s


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=20.0), st.integers(1, 3)),
        min_size=1,
        max_size=40,
    ),
    window=st.sampled_from([1.0, 10.0, 60.0]),
)
def test_count_matches_a_bucketed_reference(steps: list[tuple[float, int]], window: float) -> None:
    clock = FakeClock(start=1000.0)
    tracker = PatternTracker(window_seconds=window, ttl_seconds=window * 10, clock=clock)
    width = window / 10
    seen: list[float] = []
    for delay, repeat in steps:
        clock.advance(delay)
        for _ in range(repeat):
            now = clock.monotonic()
            seen.append(now)
            hit = tracker.record("c", "E", LOW)
            current = math.floor(now / width)
            expected = sum(1 for t in seen if math.floor(t / width) > current - 10)
            assert hit.count == expected
            assert hit.escalated == (expected > 5)


def test_stale_now_is_taken_as_the_newest_time(clock: FakeClock) -> None:
    tracker = make(clock)
    tracker.record("db", "OSError", MEDIUM, now=100.0)
    # A caller that read the clock before another thread recorded: not a step back in time.
    tracker.record("db", "OSError", MEDIUM, now=40.0)
    (stats,) = tracker.snapshot(now=100.0)
    assert stats.first_seen == 100.0
    assert stats.last_seen == 100.0
    assert stats.count == 2
    assert [entry.timestamp for entry in tracker.history()] == [100.0, 100.0]


# -- snapshot and history ---------------------------------------------------------------


def test_snapshot_reports_each_pattern(clock: FakeClock) -> None:
    tracker = make(clock)
    clock.advance(10.0)
    tracker.record("db", "OSError", LOW)
    clock.advance(5.0)
    tracker.record("db", "OSError", CRITICAL)
    tracker.record("api", "ValueError", MEDIUM)
    clock.advance(5.0)
    tracker.record("db", "OSError", HIGH)
    snapshot = tracker.snapshot()
    assert all(isinstance(stats, PatternStats) for stats in snapshot)
    # Most recently seen first.
    assert snapshot == [
        PatternStats(
            fingerprint="db|OSError",
            component="db",
            error_type="OSError",
            count=3,
            total=3,
            first_seen=10.0,
            last_seen=20.0,
            max_severity=CRITICAL,
        ),
        PatternStats(
            fingerprint="api|ValueError",
            component="api",
            error_type="ValueError",
            count=1,
            total=1,
            first_seen=15.0,
            last_seen=15.0,
            max_severity=MEDIUM,
        ),
    ]
    clock.advance(120.0)  # out of the window, but not idle past the TTL
    db, api = tracker.snapshot()
    assert (db.count, db.total) == (0, 3)
    assert (api.count, api.total) == (0, 1)


def test_history_is_bounded_and_oldest_first(clock: FakeClock) -> None:
    tracker = make(clock, history_size=3)
    for index in range(5):
        clock.advance(1.0)
        tracker.record("db", f"E{index}", MEDIUM if index % 2 else LOW)
    history = tracker.history()
    assert history == [
        PatternHistoryEntry(3.0, "db|E2", LOW),
        PatternHistoryEntry(4.0, "db|E3", MEDIUM),
        PatternHistoryEntry(5.0, "db|E4", LOW),
    ]
    timestamp, name, severity = history[0]  # a plain (timestamp, fingerprint, severity)
    assert (timestamp, name, severity) == (3.0, "db|E2", LOW)


def test_clear_forgets_patterns_and_history(clock: FakeClock) -> None:
    tracker = make(clock)
    tracker.record("db", "OSError", MEDIUM)
    tracker.clear()
    assert len(tracker) == 0
    assert tracker.history() == []
    assert tracker.record("db", "OSError", MEDIUM).count == 1


# -- TTL clean-up and the cap -----------------------------------------------------------


def test_cleanup_removes_idle_patterns(clock: FakeClock) -> None:
    tracker = make(clock, ttl_seconds=600.0)
    tracker.record("old", "E", LOW)
    clock.advance(300.0)
    tracker.record("recent", "E", LOW)
    clock.advance(300.0)  # "old" idle exactly the TTL: kept
    assert tracker.cleanup() == 0
    assert len(tracker) == 2
    clock.advance(0.5)
    assert tracker.cleanup() == 1
    assert [stats.fingerprint for stats in tracker.snapshot()] == ["recent|E"]
    assert tracker.cleanup(now=clock.monotonic() + 301.0) == 1
    assert len(tracker) == 0
    assert tracker.cleanup() == 0


def test_cleanup_keeps_a_pattern_seen_again(clock: FakeClock) -> None:
    tracker = make(clock)
    tracker.record("a", "E", LOW)
    tracker.record("b", "E", LOW)
    clock.advance(500.0)
    tracker.record("a", "E", LOW)  # "a" is the most recently seen now
    clock.advance(200.0)
    assert tracker.cleanup() == 1
    (stats,) = tracker.snapshot()
    assert stats.fingerprint == "a|E"
    assert stats.total == 2


def test_cleaned_pattern_starts_over(clock: FakeClock) -> None:
    tracker = make(clock, window_seconds=10.0, ttl_seconds=10.0)
    for _ in range(3):
        tracker.record("a", "E", HIGH)
    clock.advance(11.0)
    assert tracker.cleanup() == 1
    tracker.record("a", "E", LOW)
    (stats,) = tracker.snapshot()
    assert (stats.total, stats.max_severity, stats.first_seen) == (1, LOW, 11.0)


def test_cap_evicts_the_least_recently_seen(clock: FakeClock) -> None:
    tracker = make(clock, max_patterns=3)
    for name in ("a", "b", "c"):
        clock.advance(1.0)
        tracker.record(name, "E", LOW)
    clock.advance(1.0)
    tracker.record("a", "E", LOW)  # "b" is now the least recently seen
    tracker.record("d", "E", LOW)
    assert len(tracker) == 3
    assert tracker.evictions == 1
    assert sorted(stats.component for stats in tracker.snapshot()) == ["a", "c", "d"]
    # Seeing a tracked pattern again evicts nothing, and moves it to the back.
    tracker.record("c", "E", LOW)
    assert tracker.evictions == 1
    tracker.record("e", "E", LOW)  # order was a, d, c: "a" goes
    assert tracker.evictions == 2
    assert [stats.component for stats in tracker.snapshot()] == ["e", "c", "d"]


def test_memory_stays_bounded_with_100000_error_types(clock: FakeClock) -> None:
    tracker = make(clock, max_patterns=1000, history_size=1000)
    tracemalloc.start()
    try:
        for index in range(20_000):
            tracker.record("svc", f"Error{index}", MEDIUM)
        warm, _ = tracemalloc.get_traced_memory()
        for index in range(20_000, 100_000):
            hit = tracker.record("svc", f"Error{index}", MEDIUM)
            assert hit.count == 1
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(tracker) == 1000
    assert len(tracker._patterns) <= tracker.max_patterns
    assert len(tracker.history()) == 1000
    assert tracker.evictions == 99_000
    # Five times as many errors again, and the tracker holds what it held before.
    assert after - warm < 64 * 1024, (warm, after)
    assert tracker.snapshot()[0].error_type == "Error99999"


# -- threads ----------------------------------------------------------------------------


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads far more often than usual, so that a missing lock shows up."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("fast_switching")
def test_threads_recording_at_once_give_exact_counts(clock: FakeClock) -> None:
    tracker = make(clock, threshold=1_000_000, history_size=100)
    threads_count, per_thread = 8, 2_000
    components = ["a", "b", "c", "d"]
    start = threading.Barrier(threads_count)
    failures: list[BaseException] = []

    def hammer(index: int) -> None:
        try:
            start.wait()
            for step in range(per_thread):
                tracker.record(components[(index + step) % 4], "E", LOW)
                if step % 100 == 0:
                    tracker.snapshot()
                    tracker.active()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    per_pattern = threads_count * per_thread // len(components)
    snapshot = {stats.component: stats for stats in tracker.snapshot()}
    assert {name: stats.count for name, stats in snapshot.items()} == dict.fromkeys(
        components, per_pattern
    )
    assert {name: stats.total for name, stats in snapshot.items()} == dict.fromkeys(
        components, per_pattern
    )
    assert len(tracker.history()) == 100
    # Every count handed out is unique per pattern: no two records saw the same total.
    hits = [tracker.record("a", "E", LOW).count for _ in range(3)]
    assert hits == [per_pattern + 1, per_pattern + 2, per_pattern + 3]


@pytest.mark.usefixtures("fast_switching")
def test_threads_over_the_cap_keep_it(clock: FakeClock) -> None:
    tracker = make(clock, max_patterns=50, history_size=10)
    threads_count, per_thread = 8, 1_000

    def hammer(index: int) -> None:
        for step in range(per_thread):
            tracker.record("svc", f"E{index}-{step}", MEDIUM)
            if step % 50 == 0:
                tracker.cleanup()

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tracker) == 50
    assert tracker.evictions == threads_count * per_thread - 50
    assert len(tracker.history()) == 10
