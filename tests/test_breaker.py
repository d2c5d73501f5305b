"""CircuitBreaker behaviour with a FakeClock: transitions, tickets, leases, events."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random  # noqa: TID251 - tests seed their own random source
import threading
from typing import Any

import pytest

from otel_resilience._clock import RandomSource
from otel_resilience._errors import CircuitOpenError
from otel_resilience._events import (
    CallObserver,
    CallRejected,
    CircuitStateChanged,
    ResilienceEvent,
)
from otel_resilience.breaker import (
    DISABLED_TICKET,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerMetrics,
    CircuitState,
)
from otel_resilience.breaker._breaker import MAX_PENDING_EVENTS
from otel_resilience.testing import FakeClock

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN
DISABLED = CircuitState.DISABLED


def make(clock: FakeClock | None = None, **config: Any) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock(start=100.0) if clock is None else clock
    return CircuitBreaker("svc", CircuitBreakerConfig(**config), clock=clock), clock


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.acquire())


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record_success(breaker.acquire())


def open_then_half_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    assert breaker.trip()
    clock.advance(breaker.config.timeout_seconds)
    assert breaker.state is HALF_OPEN


class Recorder:
    """A ResilienceListener that keeps every event."""

    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def start_call(self, pipeline: str) -> CallObserver | None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)

    def transitions(self) -> list[tuple[CircuitState, CircuitState, str]]:
        return [
            (e.previous, e.state, e.reason)
            for e in self.events
            if isinstance(e, CircuitStateChanged)
        ]


# -- CLOSED -------------------------------------------------------------------------------


def test_starts_closed_with_positive_generation_tickets() -> None:
    breaker, clock = make()
    assert breaker.state is CLOSED
    assert breaker.name == "svc"
    assert breaker.clock is clock
    ticket = breaker.acquire()
    assert ticket > 0
    assert breaker.acquire() == ticket  # same generation while nothing changes
    assert not breaker.needs_duration


def test_consecutive_failures_open_and_a_success_resets_the_streak() -> None:
    breaker, _ = make(failure_threshold=3)
    fail(breaker, 2)
    succeed(breaker)
    fail(breaker, 2)
    assert breaker.state is CLOSED
    assert breaker.metrics.consecutive_failures == 2
    fail(breaker)
    assert breaker.state is OPEN
    assert breaker.metrics.consecutive_failures == 3


def test_open_rejects_with_exact_retry_after() -> None:
    breaker, clock = make(failure_threshold=1, timeout_seconds=30.0)
    fail(breaker)
    clock.advance(10.0)
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire()
    assert raised.value.breaker_name == "svc"
    assert raised.value.retry_after == 20.0
    clock.advance(19.5)
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire()
    assert raised.value.retry_after == 0.5
    assert breaker.metrics.rejections == 2


def test_open_turns_half_open_lazily_exactly_at_the_timeout() -> None:
    recorder = Recorder()
    clock = FakeClock(start=100.0)
    breaker = CircuitBreaker(
        "svc",
        CircuitBreakerConfig(failure_threshold=1, timeout_seconds=5.0),
        clock=clock,
        listener=recorder,
    )
    fail(breaker)
    clock.advance(4.999)
    assert breaker.state is OPEN
    clock.advance(10.0)  # noticed late, but stamped when the open period ended
    assert breaker.state is HALF_OPEN
    last = recorder.events[-1]
    assert isinstance(last, CircuitStateChanged)
    assert (last.previous, last.state, last.reason, last.at) == (
        OPEN,
        HALF_OPEN,
        "open_timeout",
        105.0,
    )
    assert breaker.metrics.state_since == 105.0


# -- HALF_OPEN -----------------------------------------------------------------------------


def test_half_open_admits_at_most_half_open_max_calls() -> None:
    breaker, clock = make(half_open_max_calls=2, timeout_seconds=10.0)
    open_then_half_open(breaker, clock)
    first, second = breaker.acquire(), breaker.acquire()
    assert first < 0
    assert second < 0
    assert first != second
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire()
    assert raised.value.retry_after == 0.0
    assert breaker.metrics.trials_in_flight == 2
    breaker.release(first)
    third = breaker.acquire()
    assert third < 0
    assert third not in (first, second)
    assert breaker.metrics.rejections == 1


def test_success_threshold_closes_and_clears_counts() -> None:
    recorder = Recorder()
    clock = FakeClock()
    breaker = CircuitBreaker(
        "svc",
        CircuitBreakerConfig(success_threshold=2, failure_threshold=2, sliding_window_size=10),
        clock=clock,
        listener=recorder,
    )
    fail(breaker, 2)
    clock.advance(60.0)
    succeed(breaker)
    assert breaker.state is HALF_OPEN
    succeed(breaker)
    assert breaker.state is CLOSED
    metrics = breaker.metrics
    assert metrics.consecutive_failures == 0
    assert metrics.window_calls == 0
    assert (metrics.successes, metrics.failures) == (2, 2)
    assert recorder.transitions() == [
        (CLOSED, OPEN, "failure_threshold"),
        (OPEN, HALF_OPEN, "open_timeout"),
        (HALF_OPEN, CLOSED, "trial_success"),
    ]


def test_success_threshold_above_half_open_max_calls_needs_sequential_trials() -> None:
    breaker, clock = make(success_threshold=3, half_open_max_calls=1)
    open_then_half_open(breaker, clock)
    for _ in range(2):
        breaker.record_success(breaker.acquire())
        assert breaker.state is HALF_OPEN
    breaker.record_success(breaker.acquire())
    assert breaker.state is CLOSED


def test_trial_failure_reopens_and_restarts_the_timer() -> None:
    recorder = Recorder()
    clock = FakeClock(start=0.0)
    breaker = CircuitBreaker(
        "svc", CircuitBreakerConfig(timeout_seconds=10.0), clock=clock, listener=recorder
    )
    open_then_half_open(breaker, clock)
    held = breaker.acquire()
    succeed(breaker)
    clock.advance(3.0)
    breaker.record_failure(breaker.acquire())
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire()
    assert raised.value.retry_after == 10.0
    clock.advance(9.9)
    assert breaker.state is OPEN
    clock.advance(0.1)
    assert breaker.state is HALF_OPEN
    assert recorder.transitions()[-2] == (HALF_OPEN, OPEN, "trial_failure")
    # The trial still held from the previous half-open period counts for nothing.
    breaker.record_success(held)
    assert breaker.metrics.stale == 1
    assert breaker.metrics.successes == 1


def test_trip_from_half_open_counts_as_an_opening() -> None:
    breaker, clock = make(timeout_seconds=10.0)
    open_then_half_open(breaker, clock)
    assert breaker.trip("orchestrator")
    assert breaker.state is OPEN


# -- leases -------------------------------------------------------------------------------


def test_hung_trial_lease_is_reclaimed_and_its_late_result_ignored() -> None:
    breaker, clock = make(half_open_max_calls=1, success_threshold=1, probe_lease_seconds=5.0)
    open_then_half_open(breaker, clock)
    hung = breaker.acquire()
    clock.advance(4.9)
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    clock.advance(0.1)  # the lease runs out
    fresh = breaker.acquire()
    assert fresh != hung
    breaker.record_failure(hung)  # late: would reopen the breaker if it counted
    assert breaker.state is HALF_OPEN
    metrics = breaker.metrics
    assert (metrics.failures, metrics.stale, metrics.trials_in_flight) == (0, 1, 1)
    breaker.record_success(fresh)
    assert breaker.state is CLOSED


def test_result_after_the_lease_is_ignored_even_without_reclaim() -> None:
    breaker, clock = make(half_open_max_calls=3, probe_lease_seconds=5.0)
    open_then_half_open(breaker, clock)
    ticket = breaker.acquire()
    clock.advance(5.0)
    breaker.record_failure(ticket)
    assert breaker.state is HALF_OPEN
    assert breaker.metrics.stale == 1
    assert breaker.metrics.trials_in_flight == 0


def test_without_lease_a_hung_trial_keeps_its_slot() -> None:
    breaker, clock = make(half_open_max_calls=1, probe_lease_seconds=None)
    open_then_half_open(breaker, clock)
    ticket = breaker.acquire()
    clock.advance(1e6)
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    breaker.record_success(ticket)
    assert breaker.metrics.successes == 1


# -- generations --------------------------------------------------------------------------


def test_stale_result_from_an_older_generation_changes_nothing() -> None:
    breaker, _ = make(failure_threshold=2)
    old = breaker.acquire()
    fail(breaker, 2)
    assert breaker.state is OPEN
    before = breaker.metrics
    breaker.record_success(old)
    assert breaker.on_result(old, "fine") is False
    assert breaker.on_error(old, ConnectionError()) is False
    breaker.release(old)
    after = breaker.metrics
    assert after.state is OPEN
    assert dataclasses.replace(after, stale=before.stale) == before
    assert after.stale == before.stale + 3


def test_stale_closed_ticket_after_a_full_cycle_is_ignored() -> None:
    breaker, clock = make(failure_threshold=2, success_threshold=1)
    old = breaker.acquire()
    fail(breaker, 2)
    clock.advance(60.0)
    succeed(breaker)
    assert breaker.state is CLOSED
    breaker.record_failure(old)
    breaker.record_failure(old)
    assert breaker.metrics.consecutive_failures == 0
    assert breaker.metrics.stale == 2
    assert breaker.state is CLOSED


def test_old_closed_ticket_in_half_open_does_not_free_a_slot() -> None:
    breaker, clock = make(half_open_max_calls=1)
    old = breaker.acquire()
    open_then_half_open(breaker, clock)
    breaker.acquire()
    breaker.release(old)
    breaker.on_error(old, KeyboardInterrupt())
    with pytest.raises(CircuitOpenError):
        breaker.acquire()


# -- classification -----------------------------------------------------------------------


def test_ignored_exception_releases_the_half_open_permit() -> None:
    breaker, clock = make(half_open_max_calls=1, ignore_exceptions=(KeyError,))
    open_then_half_open(breaker, clock)
    ticket = breaker.acquire()
    assert breaker.on_error(ticket, KeyError("x")) is False
    assert breaker.state is HALF_OPEN
    metrics = breaker.metrics
    assert (metrics.ignored, metrics.successes, metrics.failures) == (1, 0, 0)
    assert metrics.trials_in_flight == 0
    breaker.acquire()


def test_ignore_wins_over_record_and_breaks_no_streak() -> None:
    breaker, _ = make(failure_threshold=2, ignore_exceptions=(ConnectionResetError,))
    breaker.on_error(breaker.acquire(), ConnectionError())
    breaker.on_error(breaker.acquire(), ConnectionResetError())
    assert breaker.metrics.consecutive_failures == 1
    assert breaker.metrics.ignored == 1
    breaker.on_error(breaker.acquire(), ConnectionError())
    assert breaker.state is OPEN


def test_ignore_predicate() -> None:
    breaker, _ = make(ignore_exceptions=lambda error: "ignore me" in str(error))
    assert breaker.on_error(breaker.acquire(), ValueError("please ignore me")) is False
    assert breaker.on_error(breaker.acquire(), ValueError("count me")) is True
    assert (breaker.metrics.ignored, breaker.metrics.failures) == (1, 1)


def test_non_recorded_exception_counts_as_success() -> None:
    breaker, clock = make(
        failure_threshold=2, success_threshold=1, record_exceptions=(ConnectionError,)
    )
    breaker.on_error(breaker.acquire(), ConnectionError())
    assert breaker.on_error(breaker.acquire(), ValueError("caller bug")) is False
    assert breaker.metrics.consecutive_failures == 0
    assert breaker.metrics.successes == 1
    fail(breaker, 2)
    clock.advance(60.0)
    breaker.on_error(breaker.acquire(), LookupError())  # a trial success
    assert breaker.state is CLOSED


def test_record_exceptions_predicate() -> None:
    breaker, _ = make(failure_threshold=1, record_exceptions=lambda error: "503" in str(error))
    assert breaker.on_error(breaker.acquire(), RuntimeError("404")) is False
    assert breaker.state is CLOSED
    assert breaker.on_error(breaker.acquire(), RuntimeError("503")) is True
    assert breaker.state is OPEN


@pytest.mark.parametrize(
    "control",
    [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(1), GeneratorExit()],
)
def test_control_flow_releases_and_is_never_counted(control: BaseException) -> None:
    breaker, clock = make(half_open_max_calls=1, failure_threshold=1)
    assert breaker.on_error(breaker.acquire(), control) is False
    assert breaker.state is CLOSED
    open_then_half_open(breaker, clock)
    assert breaker.on_error(breaker.acquire(), control) is False
    breaker.acquire()  # the slot was given back
    metrics = breaker.metrics
    assert (metrics.calls, metrics.stale) == (0, 0)


def test_record_result_classifies_returned_values() -> None:
    breaker, _ = make(failure_threshold=2, record_result=lambda result: result is None)
    assert breaker.on_result(breaker.acquire(), "data") is False
    assert breaker.on_result(breaker.acquire(), None) is True
    assert breaker.on_result(breaker.acquire(), None) is True
    assert breaker.state is OPEN
    assert (breaker.metrics.successes, breaker.metrics.failures) == (1, 2)


def test_raising_record_result_releases_the_trial_and_propagates() -> None:
    def broken(result: object) -> bool:
        raise ZeroDivisionError

    breaker, clock = make(half_open_max_calls=1, record_result=broken)
    open_then_half_open(breaker, clock)
    with pytest.raises(ZeroDivisionError):
        breaker.on_result(breaker.acquire(), "x")
    breaker.acquire()


def test_raising_exception_predicate_releases_the_trial_and_propagates() -> None:
    def broken(error: BaseException) -> bool:
        raise ZeroDivisionError

    breaker, clock = make(half_open_max_calls=1, record_exceptions=broken)
    open_then_half_open(breaker, clock)
    with pytest.raises(ZeroDivisionError):
        breaker.on_error(breaker.acquire(), ValueError())
    breaker.acquire()


# -- slow calls in HALF_OPEN ----------------------------------------------------------------


def test_slow_trial_counts_as_failure_and_reopens() -> None:
    breaker, clock = make(
        slow_call_duration_seconds=2.0, slow_call_rate_threshold=0.5, sliding_window_size=10
    )
    assert breaker.needs_duration
    open_then_half_open(breaker, clock)
    assert breaker.on_result(breaker.acquire(), "ok", duration=1.9) is False
    assert breaker.state is HALF_OPEN
    assert breaker.on_result(breaker.acquire(), "ok", duration=2.0) is True
    assert breaker.state is OPEN
    metrics = breaker.metrics
    assert (metrics.successes, metrics.failures, metrics.slow_calls) == (1, 1, 1)


def test_missing_duration_is_never_slow() -> None:
    breaker, clock = make(
        slow_call_duration_seconds=2.0, slow_call_rate_threshold=0.5, sliding_window_size=10
    )
    open_then_half_open(breaker, clock)
    breaker.record_success(breaker.acquire())
    assert breaker.state is HALF_OPEN


# -- open backoff ---------------------------------------------------------------------------


class JitteredDoubling:
    """Doubling with full jitter, capped: satisfies the Backoff protocol."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    def delay(self, retry: int, rng: RandomSource, previous: float) -> float:
        self.calls.append((retry, previous))
        return min(100.0, 2.0**retry) * rng.uniform(0.5, 1.0)


def test_open_backoff_grows_per_opening_with_jitter_and_resets_on_close() -> None:
    backoff = JitteredDoubling()
    clock = FakeClock()
    breaker = CircuitBreaker(
        "svc",
        CircuitBreakerConfig(failure_threshold=1, success_threshold=1, open_backoff=backoff),
        clock=clock,
        rng=random.Random(7),
    )
    expected_rng = random.Random(7)
    draws = [expected_rng.uniform(0.5, 1.0) for _ in range(3)]
    expected = [2.0 * draws[0], 4.0 * draws[1], 2.0 * draws[2]]

    fail(breaker)
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire()
    assert raised.value.retry_after == expected[0]
    clock.advance(expected[0])
    fail(breaker)  # trial failure: second opening without a close
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire()
    assert raised.value.retry_after == pytest.approx(expected[1])
    clock.advance(expected[1])
    succeed(breaker)
    assert breaker.state is CLOSED
    fail(breaker)  # the count starts again after a close
    assert backoff.calls == [(1, 0.0), (2, expected[0]), (1, 0.0)]
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire()
    assert raised.value.retry_after == pytest.approx(expected[2])
    assert expected[2] != pytest.approx(expected[0])  # a fresh draw, not a replay


class Broken:
    def __init__(self, result: object) -> None:
        self.result = result

    def delay(self, retry: int, rng: RandomSource, previous: float) -> float:
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result  # type: ignore[return-value]


@pytest.mark.parametrize("result", [float("nan"), float("inf"), -1.0, "soon"])
def test_out_of_contract_open_backoff_falls_back_to_timeout(result: object) -> None:
    breaker, _ = make(failure_threshold=1, timeout_seconds=7.0, open_backoff=Broken(result))
    fail(breaker)
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire()
    assert raised.value.retry_after == 7.0


def test_raising_open_backoff_is_logged_outside_the_lock(caplog: pytest.LogCaptureFixture) -> None:
    breaker, _ = make(failure_threshold=1, timeout_seconds=7.0, open_backoff=Broken(OSError("x")))
    with caplog.at_level(logging.ERROR, logger="otel_resilience"):
        fail(breaker)
    assert breaker.state is OPEN
    assert "open_backoff.delay raised" in caplog.text


# -- operator controls ----------------------------------------------------------------------


def test_force_open_rejects_everything_until_reset() -> None:
    recorder = Recorder()
    clock = FakeClock()
    breaker = CircuitBreaker("svc", clock=clock, listener=recorder)
    breaker.force_open()
    clock.advance(1e9)
    assert breaker.state is FORCED_OPEN
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire()
    assert raised.value.retry_after is None
    assert not breaker.trip()
    breaker.force_open()  # no-op, no event
    breaker.reset()
    assert breaker.state is CLOSED
    assert recorder.transitions() == [
        (CLOSED, FORCED_OPEN, "manual"),
        (FORCED_OPEN, CLOSED, "manual"),
    ]


def test_disable_admits_everything_and_records_nothing() -> None:
    breaker, _ = make(failure_threshold=1, record_result=lambda result: True)
    breaker.disable()
    for _ in range(5):
        ticket = breaker.acquire()
        assert ticket == DISABLED_TICKET
        assert breaker.on_error(ticket, ConnectionError()) is False
        assert breaker.on_result(ticket, None) is False
        breaker.record_failure(ticket)
        breaker.record_success(ticket)
        breaker.release(ticket)
    metrics = breaker.metrics
    assert metrics.state is DISABLED
    assert (metrics.calls, metrics.stale, metrics.rejections) == (0, 0, 0)
    assert not breaker.trip()
    breaker.reset()
    fail(breaker)
    assert breaker.state is OPEN


def test_disabled_ticket_after_reset_records_nothing() -> None:
    breaker, _ = make(failure_threshold=1)
    breaker.disable()
    ticket = breaker.acquire()
    breaker.reset()
    breaker.record_failure(ticket)
    assert breaker.state is CLOSED
    assert breaker.metrics.calls == 0


def test_reset_from_open_closes_and_clears_the_window() -> None:
    breaker, _ = make(failure_threshold=2, sliding_window_size=10)
    fail(breaker, 2)
    breaker.reset()
    metrics = breaker.metrics
    assert metrics.state is CLOSED
    assert (metrics.window_calls, metrics.consecutive_failures) == (0, 0)
    assert metrics.failures == 2  # lifetime counters are never reset


def test_reset_while_closed_clears_the_streak_and_stales_in_flight_calls() -> None:
    recorder = Recorder()
    breaker = CircuitBreaker(
        "svc", CircuitBreakerConfig(failure_threshold=2), clock=FakeClock(), listener=recorder
    )
    in_flight = breaker.acquire()
    fail(breaker)
    breaker.reset()
    breaker.record_failure(in_flight)
    assert breaker.metrics.consecutive_failures == 0
    assert breaker.metrics.stale == 1
    fail(breaker)
    assert breaker.state is CLOSED
    assert recorder.events == []  # no state change, no event


def test_trip_opens_like_a_threshold_with_the_given_reason() -> None:
    recorder = Recorder()
    clock = FakeClock()
    breaker = CircuitBreaker(
        "svc", CircuitBreakerConfig(timeout_seconds=20.0), clock=clock, listener=recorder
    )
    assert breaker.trip("severity_high") is True
    assert breaker.trip() is False  # already open: the timer is kept
    clock.advance(5.0)
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire()
    assert raised.value.retry_after == 15.0
    assert recorder.transitions() == [(CLOSED, OPEN, "severity_high")]


@pytest.mark.parametrize(("reason", "error"), [("", ValueError), (None, TypeError), (3, TypeError)])
def test_trip_rejects_bad_reasons(reason: object, error: type[Exception]) -> None:
    breaker, _ = make()
    with pytest.raises(error, match="reason"):
        breaker.trip(reason)  # type: ignore[arg-type]
    assert breaker.state is CLOSED


# -- metrics --------------------------------------------------------------------------------


def test_metrics_snapshot() -> None:
    breaker, clock = make(
        failure_threshold=3,
        ignore_exceptions=(KeyError,),
        sliding_window_size=4,
        minimum_calls=3,
        slow_call_duration_seconds=1.0,
        slow_call_rate_threshold=1.0,
    )
    breaker.on_result(breaker.acquire(), "a", duration=1.5)
    breaker.on_error(breaker.acquire(), OSError(), duration=0.1)
    breaker.on_error(breaker.acquire(), KeyError())
    metrics = breaker.metrics
    assert metrics == CircuitBreakerMetrics(
        state=CLOSED,
        state_since=100.0,
        calls=3,
        successes=1,
        failures=1,
        ignored=1,
        rejections=0,
        slow_calls=1,
        stale=0,
        consecutive_failures=1,
        window_calls=2,
        window_failures=1,
        window_slow_calls=1,
        failure_rate=None,  # below minimum_calls
        slow_call_rate=None,
        trials_in_flight=0,
        dropped_events=0,
    )
    breaker.on_result(breaker.acquire(), "b", duration=0.1)
    metrics = breaker.metrics
    assert metrics.failure_rate == pytest.approx(1 / 3)
    assert metrics.slow_call_rate == pytest.approx(1 / 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        metrics.calls = 0  # type: ignore[misc]
    clock.advance(1.0)
    assert breaker.metrics.state_since == 100.0


def test_metrics_rates_are_none_without_a_window() -> None:
    breaker, _ = make()
    fail(breaker, 3)
    metrics = breaker.metrics
    assert metrics.failure_rate is None
    assert metrics.slow_call_rate is None
    assert metrics.window_calls == 0


# -- listeners ------------------------------------------------------------------------------


def test_listener_and_callbacks_get_events_in_order() -> None:
    recorder = Recorder()
    clock = FakeClock()
    breaker = CircuitBreaker(
        "svc",
        CircuitBreakerConfig(failure_threshold=1, success_threshold=1, timeout_seconds=1.0),
        clock=clock,
        listener=recorder,
    )
    seen: list[CircuitStateChanged] = []
    breaker.add_listener(seen.append)
    fail(breaker)
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    clock.advance(1.0)
    succeed(breaker)
    assert [type(event) for event in recorder.events] == [
        CircuitStateChanged,
        CallRejected,
        CircuitStateChanged,
        CircuitStateChanged,
    ]
    rejected = recorder.events[1]
    assert rejected == CallRejected(breaker="svc", state=OPEN, retry_after=1.0)
    # Callbacks get state changes only, the same objects in the same order.
    assert seen == [e for e in recorder.events if isinstance(e, CircuitStateChanged)]
    assert [event.at for event in seen] == [0.0, 1.0, 1.0]
    breaker.remove_listener(seen.append)
    breaker.remove_listener(seen.append)  # absent: nothing happens
    fail(breaker)
    assert len(seen) == 3
    assert len(recorder.events) == 5


def test_listeners_run_outside_the_lock_and_may_read_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "svc", CircuitBreakerConfig(failure_threshold=1, timeout_seconds=1.0), clock=clock
    )
    observed: list[tuple[bool, CircuitState, CircuitState, int]] = []

    def inspect(event: CircuitStateChanged) -> None:
        observed.append(
            (breaker._lock.locked(), event.state, breaker.state, breaker.metrics.failures)
        )
        # A listener may even drive the breaker; its own event is delivered after this one.
        if event.state is OPEN:
            clock.advance(1.0)
            assert breaker.state is HALF_OPEN

    breaker.add_listener(inspect)

    def scenario() -> None:
        fail(breaker)

    worker = threading.Thread(target=scenario)
    worker.start()
    worker.join(timeout=30.0)
    assert not worker.is_alive(), "a listener reading the breaker deadlocked"
    assert observed == [(False, OPEN, OPEN, 1), (False, HALF_OPEN, HALF_OPEN, 1)]


def test_raising_listener_changes_nothing() -> None:
    class Exploding(Recorder):
        def on_event(self, event: ResilienceEvent) -> None:
            super().on_event(event)
            raise RuntimeError("listener bug")

    def explode(event: CircuitStateChanged) -> None:
        raise RuntimeError("callback bug")

    seen: list[CircuitStateChanged] = []
    listener = Exploding()
    breaker = CircuitBreaker(
        "svc", CircuitBreakerConfig(failure_threshold=1), clock=FakeClock(), listener=listener
    )
    breaker.add_listener(explode)
    breaker.add_listener(seen.append)
    fail(breaker)
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    assert breaker.state is OPEN
    assert len(listener.events) == 2
    assert len(seen) == 1


def test_add_listener_rejects_non_callables() -> None:
    breaker, _ = make()
    with pytest.raises(TypeError, match="callable"):
        breaker.add_listener(3)  # type: ignore[arg-type]


# -- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "error"), [("", ValueError), (None, TypeError), (3, TypeError)])
def test_bad_names_are_rejected(name: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="name"):
        CircuitBreaker(name)  # type: ignore[arg-type]


def test_bad_config_type_is_rejected() -> None:
    with pytest.raises(TypeError, match="CircuitBreakerConfig"):
        CircuitBreaker("svc", {"failure_threshold": 1})  # type: ignore[arg-type]


def test_default_config_and_system_clock() -> None:
    breaker = CircuitBreaker("svc")
    assert breaker.config == CircuitBreakerConfig()
    assert breaker.acquire() > 0
    assert repr(breaker) == "CircuitBreaker(name='svc', state=closed)"


def test_rejection_events_beyond_the_queue_bound_are_dropped_and_counted() -> None:
    flood = MAX_PENDING_EVENTS + 3

    class Flooding(Recorder):
        def on_event(self, event: ResilienceEvent) -> None:
            super().on_event(event)
            if isinstance(event, CircuitStateChanged) and event.state is FORCED_OPEN:
                # Delivery is in progress in this thread, so these all queue up behind it.
                for _ in range(flood):
                    with pytest.raises(CircuitOpenError):
                        breaker.acquire()
                breaker.reset()  # a state change is never dropped

    listener = Flooding()
    breaker = CircuitBreaker("svc", clock=FakeClock(), listener=listener)
    breaker.force_open()
    metrics = breaker.metrics
    assert (metrics.rejections, metrics.dropped_events) == (flood, 3)
    assert sum(isinstance(e, CallRejected) for e in listener.events) == MAX_PENDING_EVENTS
    assert listener.transitions() == [
        (CLOSED, FORCED_OPEN, "manual"),
        (FORCED_OPEN, CLOSED, "manual"),
    ]


def test_try_acquire_returns_the_refusal_that_acquire_raises() -> None:
    breaker, clock = make(failure_threshold=1, timeout_seconds=10.0)
    ticket = breaker.try_acquire()
    assert isinstance(ticket, int)
    breaker.record_failure(ticket)
    clock.advance(4.0)
    refusal = breaker.try_acquire()
    assert isinstance(refusal, CircuitOpenError)
    assert refusal.breaker_name == breaker.name
    assert refusal.retry_after == pytest.approx(6.0)
    assert refusal.__traceback__ is None  # returned, never raised
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire()
    assert raised.value.retry_after == pytest.approx(6.0)
    # Both refusals were counted.
    assert breaker.metrics.rejections == 2
    breaker.force_open()
    forced = breaker.try_acquire()
    assert isinstance(forced, CircuitOpenError)
    assert forced.retry_after is None
    clock.advance(10.0)
    breaker.reset()
    assert isinstance(breaker.try_acquire(), int)
