"""Sliding windows: the count and time windows alone, and the rate trips they drive."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_resilience._events import CallObserver, CircuitStateChanged, ResilienceEvent
from otel_resilience.breaker import CircuitBreaker, CircuitBreakerConfig, CircuitState
from otel_resilience.breaker._window import FAILURE, SLOW, CountWindow, TimeWindow
from otel_resilience.testing import FakeClock

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN


class Reasons:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def start_call(self, pipeline: str) -> CallObserver | None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        if isinstance(event, CircuitStateChanged):
            self.reasons.append(event.reason)


def make(**config: Any) -> tuple[CircuitBreaker, FakeClock, Reasons]:
    clock = FakeClock(start=1000.0)
    reasons = Reasons()
    config.setdefault("failure_threshold", 1000)  # keep the streak rule out of the way
    breaker = CircuitBreaker("svc", CircuitBreakerConfig(**config), clock=clock, listener=reasons)
    return breaker, clock, reasons


def report(breaker: CircuitBreaker, pattern: str, duration: float | None = None) -> None:
    """F: failure, S: success, s: slow success (with ``duration``), f: slow failure."""
    for mark in pattern:
        ticket = breaker.acquire()
        if mark == "F":
            breaker.on_error(ticket, OSError())
        elif mark == "S":
            breaker.on_result(ticket, "ok", duration=0.0 if duration is not None else None)
        elif mark == "s":
            breaker.on_result(ticket, "ok", duration=duration)
        else:
            breaker.on_error(ticket, OSError(), duration=duration)


# -- CountWindow ------------------------------------------------------------------------


def test_count_window_evicts_the_oldest() -> None:
    window = CountWindow(3)
    for outcome in (FAILURE | SLOW, FAILURE, 0):
        window.record(outcome, 0.0)
    assert (window.calls, window.failures, window.slow_calls) == (3, 2, 1)
    window.record(0, 0.0)  # evicts FAILURE | SLOW
    assert (window.calls, window.failures, window.slow_calls) == (3, 1, 0)
    window.record(SLOW, 0.0)  # evicts FAILURE
    assert (window.calls, window.failures, window.slow_calls) == (3, 0, 1)
    window.clear()
    assert (window.calls, window.failures, window.slow_calls) == (0, 0, 0)
    window.record(FAILURE, 0.0)
    assert (window.calls, window.failures) == (1, 1)


@given(
    size=st.integers(min_value=1, max_value=12),
    outcomes=st.lists(st.sampled_from([0, FAILURE, SLOW, FAILURE | SLOW]), max_size=60),
)
def test_count_window_matches_the_last_n_outcomes(size: int, outcomes: list[int]) -> None:
    window = CountWindow(size)
    for outcome in outcomes:
        window.record(outcome, 0.0)
    last = outcomes[-size:]
    assert window.calls == len(last)
    assert window.failures == sum(1 for o in last if o & FAILURE)
    assert window.slow_calls == sum(1 for o in last if o & SLOW)


# -- TimeWindow -------------------------------------------------------------------------


def test_time_window_expires_whole_buckets() -> None:
    window = TimeWindow(10.0)  # ten buckets of one second
    window.record(FAILURE, 100.2)
    window.record(SLOW, 100.9)
    window.record(0, 105.0)
    assert (window.calls, window.failures, window.slow_calls) == (3, 1, 1)
    window.expire(109.99)  # bucket [100, 101) is still in [100, 110)
    assert window.calls == 3
    window.expire(110.0)
    assert (window.calls, window.failures, window.slow_calls) == (1, 0, 0)
    window.expire(115.0)
    assert window.calls == 0


def test_time_window_jump_beyond_the_window_clears_everything() -> None:
    window = TimeWindow(10.0)
    for t in range(10):
        window.record(FAILURE, 50.0 + t)
    assert window.calls == 10
    window.record(0, 1e6)
    assert (window.calls, window.failures) == (1, 0)


def test_time_window_clock_stepping_back_counts_in_the_newest_bucket() -> None:
    window = TimeWindow(10.0)
    window.record(0, 20.5)
    window.record(FAILURE, 19.0)
    assert (window.calls, window.failures) == (2, 1)
    window.expire(30.0)
    assert window.calls == 0


def test_time_window_expire_before_any_call_is_harmless() -> None:
    window = TimeWindow(1.0)
    window.expire(5.0)
    assert window.calls == 0
    window.clear()
    assert "TimeWindow(seconds=1" in repr(window)


@given(
    events=st.lists(st.tuples(st.floats(min_value=0.0, max_value=5.0), st.booleans()), max_size=50)
)
def test_time_window_holds_between_nine_and_ten_tenths_of_the_window(
    events: list[tuple[float, bool]],
) -> None:
    seconds = 10.0
    window = TimeWindow(seconds)
    now = 0.0
    seen: list[tuple[float, bool]] = []
    for step, failed in events:
        now += step
        window.record(FAILURE if failed else 0, now)
        seen.append((now, failed))
        # Every call younger than 90% of the window is in it; none older than the window.
        must = [f for t, f in seen if now - t < seconds * 0.9 - 1e-9]
        may = [f for t, f in seen if now - t < seconds + 1e-9]
        assert len(must) <= window.calls <= len(may)
        assert sum(must) <= window.failures <= sum(may)


# -- rate trips over a count window -----------------------------------------------------


def test_failure_rate_trips_once_minimum_calls_are_in_the_count_window() -> None:
    breaker, _, reasons = make(sliding_window_size=10, minimum_calls=4, failure_rate_threshold=0.5)
    report(breaker, "FFF")  # 100% failures, but below minimum_calls
    assert breaker.state is CLOSED
    assert breaker.metrics.failure_rate is None
    report(breaker, "S")  # 3/4 >= 0.5: a success can complete the minimum and trip
    assert breaker.state is OPEN
    assert reasons.reasons == ["failure_rate"]


def test_failure_rate_below_threshold_does_not_trip() -> None:
    breaker, _, _ = make(sliding_window_size=4, minimum_calls=4, failure_rate_threshold=0.75)
    report(breaker, "FSFS" * 5)
    assert breaker.state is CLOSED
    assert breaker.metrics.failure_rate == 0.5


def test_count_window_eviction_forgets_old_failures() -> None:
    breaker, _, _ = make(sliding_window_size=4, minimum_calls=4, failure_rate_threshold=0.5)
    report(breaker, "FSSS")  # 1/4
    report(breaker, "S")  # evicts the failure
    assert breaker.metrics.window_failures == 0
    report(breaker, "FSF")  # window: S F S F -> 2/4 trips
    assert breaker.state is OPEN


def test_slow_call_rate_trips_over_a_count_window() -> None:
    breaker, _, reasons = make(
        sliding_window_size=4,
        minimum_calls=4,
        slow_call_duration_seconds=1.0,
        slow_call_rate_threshold=0.5,
    )
    report(breaker, "sS", duration=1.0)  # exactly the threshold is slow
    report(breaker, "S", duration=0.99)
    assert breaker.state is CLOSED
    report(breaker, "f", duration=3.0)  # slow failures count as slow calls too
    assert breaker.state is OPEN
    assert reasons.reasons == ["slow_call_rate"]
    metrics = breaker.metrics
    assert (metrics.window_calls, metrics.window_slow_calls, metrics.slow_calls) == (4, 2, 2)
    assert metrics.slow_call_rate == 0.5


def test_failure_rate_is_checked_before_slow_call_rate() -> None:
    breaker, _, reasons = make(
        sliding_window_size=2,
        minimum_calls=2,
        failure_rate_threshold=1.0,
        slow_call_duration_seconds=1.0,
        slow_call_rate_threshold=1.0,
    )
    report(breaker, "ff", duration=2.0)
    assert reasons.reasons == ["failure_rate"]


def test_streak_rule_still_applies_with_a_window() -> None:
    breaker, _, reasons = make(
        failure_threshold=3, sliding_window_size=100, minimum_calls=50, failure_rate_threshold=0.9
    )
    report(breaker, "FFF")
    assert reasons.reasons == ["failure_threshold"]


def test_window_without_thresholds_only_feeds_metrics() -> None:
    breaker, _, _ = make(sliding_window_size=5, minimum_calls=2)
    report(breaker, "FFFFF")
    assert breaker.state is CLOSED
    assert breaker.metrics.failure_rate == 1.0
    assert breaker.metrics.slow_call_rate is None


def test_closing_clears_the_window() -> None:
    breaker, clock, _ = make(
        sliding_window_size=4, minimum_calls=2, failure_rate_threshold=0.5, success_threshold=1
    )
    report(breaker, "FF")
    assert breaker.state is OPEN
    clock.advance(60.0)
    report(breaker, "S")
    assert breaker.state is CLOSED
    assert breaker.metrics.window_calls == 0
    report(breaker, "S")  # with the old failures still counted, 2/3 would trip here
    assert breaker.state is CLOSED
    report(breaker, "F")  # 1/2: the fresh window trips on its own counts
    assert breaker.state is OPEN
    assert breaker.metrics.window_calls == 2


def test_half_open_trials_are_not_in_the_window() -> None:
    breaker, clock, _ = make(
        sliding_window_size=4, minimum_calls=2, failure_rate_threshold=1.0, success_threshold=3
    )
    report(breaker, "FF")
    clock.advance(60.0)
    report(breaker, "SS")
    assert breaker.metrics.window_calls == 2  # still the two failures that opened it


# -- rate trips over a time window ------------------------------------------------------


def test_failure_rate_over_a_time_window_with_expiry() -> None:
    breaker, clock, reasons = make(
        sliding_window_seconds=10.0, minimum_calls=4, failure_rate_threshold=0.5
    )
    report(breaker, "FF")
    clock.advance(10.0)  # both failures leave the window
    report(breaker, "FSSS")  # 1/4 here; 3/6 = 0.5 had the old failures stayed
    assert breaker.state is CLOSED
    assert breaker.metrics.window_calls == 4
    report(breaker, "F")  # 2/5
    assert breaker.state is CLOSED
    report(breaker, "F")  # 3/6
    assert breaker.state is OPEN
    assert reasons.reasons == ["failure_rate"]


def test_minimum_calls_over_a_time_window() -> None:
    breaker, clock, _ = make(
        sliding_window_seconds=1.0, minimum_calls=3, failure_rate_threshold=0.5
    )
    for _ in range(10):
        report(breaker, "FF")
        clock.advance(1.0)  # never three calls in one window
    assert breaker.state is CLOSED


def test_slow_call_rate_over_a_time_window() -> None:
    breaker, clock, reasons = make(
        sliding_window_seconds=5.0,
        minimum_calls=2,
        slow_call_duration_seconds=0.5,
        slow_call_rate_threshold=1.0,
    )
    report(breaker, "s", duration=0.6)
    clock.advance(5.0)
    report(breaker, "s", duration=0.6)  # the first slow call has expired: 1 call only
    assert breaker.state is CLOSED
    clock.advance(1.0)
    report(breaker, "s", duration=0.7)
    assert breaker.state is OPEN
    assert reasons.reasons == ["slow_call_rate"]


def test_time_window_metrics_expire_on_read() -> None:
    breaker, clock, _ = make(sliding_window_seconds=10.0, minimum_calls=1)
    report(breaker, "FS")
    assert breaker.metrics.failure_rate == 0.5
    clock.advance(10.0)
    metrics = breaker.metrics
    assert (metrics.window_calls, metrics.failure_rate) == (0, None)
    assert metrics.calls == 2  # lifetime counters stay


@pytest.mark.parametrize("pattern", ["F" * 9, "FS" * 20])
def test_rates_never_trip_below_minimum_calls_in_a_time_window(pattern: str) -> None:
    breaker, _, _ = make(sliding_window_seconds=10.0, minimum_calls=100, failure_rate_threshold=0.1)
    report(breaker, pattern)
    assert breaker.state is CLOSED
