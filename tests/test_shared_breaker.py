"""SharedCircuitBreaker over the in-memory store: one state for many breaker objects.

Every time is a FakeClock. The store and the breakers usually get different clocks, so
the tests show which clock decides what: the store's for open periods, leases and time
windows; each breaker's for how long its cached view may answer.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from typing import Any

import pytest

from otel_resilience import Fallback, Pipeline, RetryConfig, _events, resilient
from otel_resilience._errors import CircuitOpenError
from otel_resilience._events import CallObserver, CircuitStateChanged, ResilienceEvent
from otel_resilience.backoff import Constant, Exponential
from otel_resilience.breaker import (
    DISABLED_TICKET,
    SHARED_TICKET_BASE,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitState,
    SharedCircuitBreaker,
    StoreStatus,
)
from otel_resilience.stores import (
    Admission,
    Command,
    InMemoryStateStore,
    Outcome,
    Report,
    StoreParams,
    StoreUnavailableError,
    StoreView,
)
from otel_resilience.testing import FakeClock

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN
DISABLED = CircuitState.DISABLED

NAME = "svc"
STALENESS = 0.5


# -- helpers ------------------------------------------------------------------------------


class CountingStore(InMemoryStateStore):
    """The real in-memory store, counting the operations it answers."""

    def __init__(self, *, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.ops: Counter[str] = Counter()

    def total(self) -> int:
        return sum(self.ops.values())

    def acquire(self, name: str, params: StoreParams) -> Admission:
        self.ops["acquire"] += 1
        return super().acquire(name, params)

    def report(
        self,
        name: str,
        params: StoreParams,
        token: int,
        outcome: Outcome,
        open_seconds: float,
        *,
        trial: bool,
    ) -> Report:
        self.ops["report"] += 1
        return super().report(name, params, token, outcome, open_seconds, trial=trial)

    def command(
        self, name: str, params: StoreParams, command: Command, reason: str, open_seconds: float
    ) -> Report:
        self.ops["command"] += 1
        return super().command(name, params, command, reason, open_seconds)

    def read(self, name: str, params: StoreParams) -> StoreView:
        self.ops["read"] += 1
        return super().read(name, params)


class FlakyStore(CountingStore):
    """A counting store with a switch: while ``down``, every operation raises ``error``."""

    def __init__(self, *, clock: FakeClock, error: type[Exception] = StoreUnavailableError) -> None:
        super().__init__(clock=clock)
        self.down = False
        self.error = error
        self.failed = 0

    def _check(self) -> None:
        if self.down:
            self.failed += 1
            raise self.error("the store is down")

    def acquire(self, name: str, params: StoreParams) -> Admission:
        self._check()
        return super().acquire(name, params)

    def report(
        self,
        name: str,
        params: StoreParams,
        token: int,
        outcome: Outcome,
        open_seconds: float,
        *,
        trial: bool,
    ) -> Report:
        self._check()
        return super().report(name, params, token, outcome, open_seconds, trial=trial)

    def command(
        self, name: str, params: StoreParams, command: Command, reason: str, open_seconds: float
    ) -> Report:
        self._check()
        return super().command(name, params, command, reason, open_seconds)

    def read(self, name: str, params: StoreParams) -> StoreView:
        self._check()
        return super().read(name, params)


class Recorder:
    """A ResilienceListener keeping every event it is sent."""

    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def start_call(self, pipeline: str) -> CallObserver | None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)

    def changes(self) -> list[CircuitStateChanged]:
        return [e for e in self.events if isinstance(e, CircuitStateChanged)]


def config(**overrides: Any) -> CircuitBreakerConfig:
    values: dict[str, Any] = {
        "failure_threshold": 3,
        "success_threshold": 1,
        "timeout_seconds": 10.0,
        "half_open_max_calls": 1,
        "probe_lease_seconds": 5.0,
    }
    values.update(overrides)
    return CircuitBreakerConfig(**values)


def shared(
    store: InMemoryStateStore,
    clock: FakeClock,
    *,
    staleness: float = STALENESS,
    listener: Recorder | None = None,
    **overrides: Any,
) -> SharedCircuitBreaker:
    return SharedCircuitBreaker(
        NAME,
        config(**overrides),
        store=store,
        clock=clock,
        max_staleness_seconds=staleness,
        listener=listener,
        telemetry=False,
    )


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.acquire())


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record_success(breaker.acquire())


def shared_view(store: InMemoryStateStore, breaker: SharedCircuitBreaker) -> StoreView:
    """The store's own view of the state (one read; not the breaker's cache)."""
    return InMemoryStateStore.read(store, NAME, breaker.params)


def rejection(breaker: CircuitBreaker) -> CircuitOpenError:
    with pytest.raises(CircuitOpenError) as caught:
        breaker.acquire()
    return caught.value


def changes(events: list[CircuitStateChanged]) -> list[tuple[CircuitState, CircuitState, str]]:
    return [(e.previous, e.state, e.reason) for e in events]


@pytest.fixture(autouse=True)
def _fresh_store_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Store-down/back logs that are not rate-limited, fresh for each test.

    The real ones are process-wide and rate-limited, which would hide a breaker logging
    more than once per outage (or leak one test's log into another's limit).
    """
    monkeypatch.setattr(_events, "STORE_DOWN", _events._RateLimitedLog(0.0, FakeClock()))
    monkeypatch.setattr(_events, "STORE_BACK", _events._RateLimitedLog(0.0, FakeClock()))


@pytest.fixture
def store_clock() -> FakeClock:
    return FakeClock(start=1000.0)


@pytest.fixture
def store(store_clock: FakeClock) -> CountingStore:
    return CountingStore(clock=store_clock)


# -- construction -------------------------------------------------------------------------


def test_a_breaker_given_a_store_is_a_shared_circuit_breaker(store: CountingStore) -> None:
    cfg = config()
    breaker = CircuitBreaker(NAME, cfg, store=store, clock=FakeClock(), telemetry=False)
    assert isinstance(breaker, SharedCircuitBreaker)
    assert isinstance(breaker, CircuitBreaker)
    assert breaker.store is store
    assert breaker.asynchronous is False
    assert breaker.params == StoreParams.from_config(cfg)
    assert breaker.config is cfg
    assert not isinstance(CircuitBreaker(NAME, cfg, telemetry=False), SharedCircuitBreaker)
    assert store.total() == 0  # construction asks the store nothing


def test_the_default_max_staleness_is_half_a_second(store: CountingStore) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(NAME, config(), store=store, clock=clock, telemetry=False)
    succeed(breaker)
    clock.advance(0.49)
    succeed(breaker)
    assert store.ops["acquire"] == 1
    clock.advance(0.01)
    succeed(breaker)
    assert store.ops["acquire"] == 2


class _HalfStore:
    def acquire(self, name: str, params: StoreParams) -> Admission:
        raise AssertionError("never called")

    def read(self, name: str, params: StoreParams) -> StoreView:
        raise AssertionError("never called")

    report = None  # not callable


@pytest.mark.parametrize(
    ("store", "type_name", "missing"),
    [
        (object(), "object", "acquire, report, command, read"),
        (_HalfStore(), "_HalfStore", "report, command"),
        ("redis://localhost", "str", "acquire, report, command, read"),
    ],
)
def test_a_store_without_the_operations_is_a_type_error_naming_it(
    store: Any, type_name: str, missing: str
) -> None:
    with pytest.raises(TypeError, match=r"SharedCircuitBreaker\.store") as caught:
        CircuitBreaker(NAME, config(), store=store, telemetry=False)
    message = str(caught.value)
    assert f"{type_name} has no {missing}" in message


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-0.1, ValueError),
        (-1, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (True, TypeError),
        (False, TypeError),
        ("0.5", TypeError),
        (None, TypeError),
    ],
)
def test_max_staleness_seconds_is_validated(
    store: CountingStore, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=r"SharedCircuitBreaker\.max_staleness_seconds"):
        SharedCircuitBreaker(NAME, store=store, max_staleness_seconds=value, telemetry=False)


def test_zero_max_staleness_is_allowed(store: CountingStore) -> None:
    breaker = shared(store, FakeClock(), staleness=0)
    succeed(breaker)
    assert breaker.state is CLOSED


@pytest.mark.parametrize("ttl", [5.0, 10.0, 1])
def test_key_ttl_must_exceed_the_open_duration(store: CountingStore, ttl: float) -> None:
    with pytest.raises(ValueError, match="key_ttl_seconds") as caught:
        SharedCircuitBreaker(
            NAME, config(timeout_seconds=10.0), store=store, key_ttl_seconds=ttl, telemetry=False
        )
    assert "timeout_seconds" in str(caught.value)


@pytest.mark.parametrize(
    ("ttl", "error"),
    [(True, TypeError), ("100", TypeError), (math.inf, ValueError), (math.nan, ValueError)],
)
def test_key_ttl_must_be_a_finite_number(
    store: CountingStore, ttl: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="key_ttl_seconds"):
        SharedCircuitBreaker(NAME, config(), store=store, key_ttl_seconds=ttl, telemetry=False)


def test_a_key_ttl_just_above_the_open_duration_is_accepted(store: CountingStore) -> None:
    breaker = SharedCircuitBreaker(
        NAME, config(timeout_seconds=10.0), store=store, key_ttl_seconds=10.5, telemetry=False
    )
    assert breaker.params.key_ttl_seconds == 10.5


def test_a_user_subclass_given_a_store_is_a_type_error(store: CountingStore) -> None:
    class Mine(CircuitBreaker):
        __slots__ = ()

    with pytest.raises(TypeError, match="Mine keeps its state locally"):
        Mine(NAME, config(), store=store, telemetry=False)
    assert type(Mine(NAME, config(), telemetry=False)) is Mine  # fine without a store


# -- one state, one event per transition ------------------------------------------------


def test_two_breakers_open_together_and_each_transition_is_one_event(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock_a, clock_b = FakeClock(start=0.0), FakeClock(start=50.0)
    rec_a, rec_b = Recorder(), Recorder()
    a = shared(store, clock_a, listener=rec_a, failure_threshold=2)
    b = shared(store, clock_b, listener=rec_b, failure_threshold=2)
    seen_a: list[CircuitStateChanged] = []
    seen_b: list[CircuitStateChanged] = []
    a.add_listener(seen_a.append)
    b.add_listener(seen_b.append)

    fail(a)
    fail(b)  # the second failure of the shared streak: B's operation opens it
    assert changes(seen_b) == [(CLOSED, OPEN, "failure_threshold")]
    assert seen_b[0].at == clock_b.monotonic()
    assert seen_a == []
    assert b.state is OPEN
    clock_a.advance(STALENESS)  # A's cached CLOSED view has aged out
    assert a.state is OPEN

    store_clock.advance(12.0)  # the open period ended 2 s ago, in store time
    clock_a.advance(1.0)
    ticket = a.acquire()  # A's operation makes the lazy move to HALF_OPEN
    assert ticket < 0
    a.record_success(ticket)  # and its trial closes the breaker

    assert changes(seen_a) == [
        (OPEN, HALF_OPEN, "open_timeout"),
        (HALF_OPEN, CLOSED, "trial_success"),
    ]
    # Stamped when the open period ended (2 s before A's operation), on A's clock.
    assert seen_a[0].at == clock_a.monotonic() - 2.0
    assert seen_a[1].at == clock_a.monotonic()
    assert len(seen_b) == 1  # B made none of them, so B delivers none
    # The listener of each object got exactly what its callbacks got.
    assert rec_a.changes() == seen_a
    assert rec_b.changes() == seen_b
    all_changes = changes(seen_a + seen_b)
    assert len(all_changes) == len(set(all_changes)) == 3
    clock_b.advance(STALENESS)
    assert b.state is CLOSED


def test_each_object_delivers_only_its_own_transitions_under_interleaving(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clocks = [FakeClock(), FakeClock()]
    recorders = [Recorder(), Recorder()]
    breakers = [
        shared(store, clocks[i], listener=recorders[i], staleness=0, failure_threshold=1)
        for i in range(2)
    ]
    # Alternate which object makes each transition, through several cycles.
    for cycle in range(4):
        opener, prober = breakers[cycle % 2], breakers[(cycle + 1) % 2]
        fail(opener)
        store_clock.advance(10.0)
        prober.record_success(prober.acquire())
    opened = [(CLOSED, OPEN, "failure_threshold")]
    probed = [(OPEN, HALF_OPEN, "open_timeout"), (HALF_OPEN, CLOSED, "trial_success")]
    transitions = [changes(r.changes()) for r in recorders]
    assert transitions[0] == opened + probed + opened + probed
    assert transitions[1] == probed + opened + probed + opened
    assert sum(len(t) for t in transitions) == 12  # 4 cycles x 3 transitions, once each


# -- round trips --------------------------------------------------------------------------


def test_the_closed_success_path_asks_nothing_while_the_view_is_fresh(
    store: CountingStore,
) -> None:
    breaker = shared(store, FakeClock())
    for _ in range(100):
        ticket = breaker.acquire()
        assert ticket >= SHARED_TICKET_BASE
        assert breaker.on_result(ticket, "ok") is False
    for _ in range(100):
        succeed(breaker)
    assert store.ops == Counter(acquire=1)  # the first acquire fetched the view
    assert breaker.metrics.successes == 200
    assert breaker.metrics.calls == 200


def test_one_acquire_per_max_staleness_seconds(store: CountingStore) -> None:
    clock = FakeClock()
    breaker = shared(store, clock, staleness=0.5)
    for _ in range(10):  # t = 0.0, 0.25, ... 2.25
        succeed(breaker, 5)
        clock.advance(0.25)
    assert store.ops == Counter(acquire=5)  # at t = 0.0, 0.5, 1.0, 1.5, 2.0


def test_a_success_on_an_aged_view_is_reported(store: CountingStore) -> None:
    clock = FakeClock()
    breaker = shared(store, clock)
    ticket = breaker.acquire()
    clock.advance(STALENESS)  # the call took longer than the view may be trusted
    breaker.record_success(ticket)
    assert store.ops == Counter(acquire=1, report=1)


def test_every_failure_is_reported_and_the_success_that_ends_a_streak(
    store: CountingStore,
) -> None:
    breaker = shared(store, FakeClock(), failure_threshold=10)
    fail(breaker, 3)
    assert store.ops == Counter(acquire=1, report=3)
    assert shared_view(store, breaker).consecutive_failures == 3
    succeed(breaker)  # ends the shared streak: must be reported
    assert store.ops["report"] == 4
    assert shared_view(store, breaker).consecutive_failures == 0
    succeed(breaker, 5)  # nothing left to change in the store
    assert store.ops["report"] == 4
    assert breaker.metrics.successes == 6
    assert breaker.metrics.failures == 3


def test_a_success_is_reported_while_another_object_has_a_streak(
    store: CountingStore,
) -> None:
    a = shared(store, FakeClock(), failure_threshold=3)
    b = shared(store, FakeClock(), failure_threshold=3)
    fail(b, 2)
    succeed(a)  # A's fresh view says streak 2 (its first acquire saw it): report it
    assert shared_view(store, a).consecutive_failures == 0
    fail(b, 2)
    assert shared_view(store, a).state is CLOSED  # 2 < 3: the streak really was reset


def test_with_a_sliding_window_every_success_is_reported(store: CountingStore) -> None:
    breaker = shared(
        store, FakeClock(), sliding_window_size=10, minimum_calls=10, failure_rate_threshold=0.5
    )
    succeed(breaker, 7)
    assert store.ops == Counter(acquire=1, report=7)


# -- staleness ----------------------------------------------------------------------------


def test_a_trip_elsewhere_is_seen_within_max_staleness(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock_a = FakeClock()
    a = shared(store, clock_a, staleness=0.5)
    b = shared(store, FakeClock())
    succeed(a)  # A caches a CLOSED view at t = 0
    assert b.trip()
    clock_a.advance(0.49)
    succeed(a)  # still answered from the cache: the bound is not reached
    assert a.state is CLOSED
    assert store.ops["acquire"] == 1
    clock_a.advance(0.01)
    error = rejection(a)  # the view is 0.5 s old: A asks and sees OPEN
    assert store.ops["acquire"] == 2
    assert error.retry_after == 10.0  # the store's clock has not moved
    assert error.breaker_name == NAME
    assert a.state is OPEN


def test_any_store_answer_refreshes_the_view_at_once(store: CountingStore) -> None:
    a = shared(store, FakeClock(), staleness=60.0)
    b = shared(store, FakeClock())
    ticket = a.acquire()  # cached CLOSED, trusted for a minute
    assert b.trip()
    assert a.state is CLOSED  # the cache says so, and no time passed
    a.record_failure(ticket)  # the report's answer carries the OPEN state
    assert store.ops["report"] == 1
    before = store.total()
    assert a.state is OPEN
    assert rejection(a).retry_after == 10.0
    assert store.total() == before  # both answered from the refreshed view
    assert a.metrics.stale == 1  # the ticket was from the generation before the trip


def test_zero_max_staleness_asks_the_store_every_time(store: CountingStore) -> None:
    a = shared(store, FakeClock(), staleness=0)
    b = shared(store, FakeClock(), staleness=0)
    succeed(a, 5)
    assert store.ops == Counter(acquire=5, report=5)  # no view is fresh: successes too
    for _ in range(3):
        assert a.state is CLOSED
    assert store.ops["read"] == 3
    assert b.trip()
    assert a.state is OPEN  # at once: no cache to trust
    rejection(a)
    assert store.ops["acquire"] == 6


# -- OPEN, FORCED_OPEN, DISABLED ----------------------------------------------------------


def test_open_rejections_come_from_the_cached_view_with_a_shrinking_retry_after(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    breaker = shared(store, clock, staleness=5.0, failure_threshold=1)
    fail(breaker)  # opens for 10 s; the report's answer is cached
    before = store.total()
    waits = []
    for _ in range(4):
        waits.append(rejection(breaker).retry_after)
        clock.advance(1.0)
        store_clock.advance(1.0)
    assert waits == [10.0, 9.0, 8.0, 7.0]
    assert store.total() == before  # no round trip for any of them
    assert breaker.metrics.rejections == 4
    clock.advance(1.0)
    store_clock.advance(1.0)  # 5 s: the view is too old; the store answers (5 s left)
    assert rejection(breaker).retry_after == 5.0
    assert store.ops["acquire"] == 2


def test_only_the_store_clock_ends_the_open_period(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    breaker = shared(store, clock, staleness=0, failure_threshold=1)
    fail(breaker)
    clock.advance(1000.0)  # the breaker's clock races ahead: the store's decides
    assert breaker.state is OPEN
    assert rejection(breaker).retry_after == 10.0
    store_clock.advance(9.5)
    assert rejection(breaker).retry_after == 0.5
    store_clock.advance(0.5)
    assert breaker.acquire() < 0  # a trial
    assert breaker.state is HALF_OPEN


def test_forced_open_rejects_with_no_retry_after(
    store: CountingStore, store_clock: FakeClock
) -> None:
    a = shared(store, FakeClock(), staleness=60.0)
    b = shared(store, FakeClock(), staleness=0)
    a.force_open()
    assert rejection(a).retry_after is None  # from A's cached view
    store_clock.advance(3600.0)
    error = rejection(b)  # from the store
    assert error.retry_after is None
    assert "no automatic recovery" in str(error)
    assert b.state is FORCED_OPEN
    acquires = store.ops["acquire"]
    rejection(a)
    assert store.ops["acquire"] == acquires  # A never needed the store


def test_disabled_admits_with_the_disabled_ticket_and_records_nothing(
    store: CountingStore,
) -> None:
    a = shared(store, FakeClock(), staleness=0, failure_threshold=1)
    b = shared(store, FakeClock())
    b.disable()
    before = a.metrics
    for _ in range(5):
        ticket = a.acquire()
        assert ticket == DISABLED_TICKET
        a.record_failure(ticket)
        assert a.on_error(ticket, RuntimeError("boom")) is False
        assert a.on_result(ticket, None) is False
        a.record_success(ticket)
    assert store.ops["report"] == 0
    assert a.state is DISABLED
    after = a.metrics
    assert (after.successes, after.failures, after.ignored, after.stale) == (
        before.successes,
        before.failures,
        before.ignored,
        before.stale,
    )


# -- HALF_OPEN ----------------------------------------------------------------------------


def half_open(opener: SharedCircuitBreaker, store_clock: FakeClock, *clocks: FakeClock) -> None:
    """Trip the shared breaker and let its open period (and the given caches) run out."""
    assert opener.trip()
    store_clock.advance(opener.config.timeout_seconds)
    for clock in clocks:
        clock.advance(1000.0)


def test_half_open_max_calls_holds_fleet_wide(store: CountingStore, store_clock: FakeClock) -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    a = shared(store, clock_a, half_open_max_calls=2)
    b = shared(store, clock_b, half_open_max_calls=2)
    half_open(a, store_clock, clock_a)
    first = a.acquire()
    second = b.acquire()
    assert first < 0
    assert second < 0
    assert first != second
    for breaker in (a, b):
        error = rejection(breaker)
        assert error.retry_after == 0.0  # a slot may free up at any moment
    assert shared_view(store, a).trials == 2
    assert a.metrics.trials_in_flight == 2
    assert a.metrics.state is HALF_OPEN


def test_a_trial_lease_expires_in_store_time_and_its_late_outcome_is_stale(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    a = shared(store, clock_a, probe_lease_seconds=5.0)
    b = shared(store, clock_b, probe_lease_seconds=5.0)
    half_open(a, store_clock, clock_a)
    late = a.acquire()
    rejection(b)
    clock_a.advance(1000.0)  # the breakers' clocks do not expire a shared lease
    clock_b.advance(1000.0)
    rejection(b)
    store_clock.advance(4.5)
    rejection(b)
    store_clock.advance(0.5)  # the lease ran out in store time: the slot is free
    fresh = b.acquire()
    assert fresh < 0
    a.record_success(late)  # would have closed it (success_threshold=1); too late
    assert a.metrics.stale == 1
    assert a.metrics.successes == 0
    assert shared_view(store, a).state is HALF_OPEN
    b.record_success(fresh)
    assert shared_view(store, a).state is CLOSED


def test_a_late_failure_of_an_expired_trial_does_not_reopen(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    a = shared(store, clock)
    half_open(a, store_clock, clock)
    ticket = a.acquire()
    store_clock.advance(5.0)
    a.record_failure(ticket)
    assert a.metrics.stale == 1
    assert a.metrics.failures == 0
    assert shared_view(store, a).state is HALF_OPEN


def test_release_gives_the_trial_lease_back(store: CountingStore, store_clock: FakeClock) -> None:
    clock = FakeClock()
    a = shared(store, clock)
    b = shared(store, clock)
    half_open(a, store_clock, clock)
    ticket = a.acquire()
    rejection(b)
    a.release(ticket)
    assert shared_view(store, a).trials == 0
    assert b.acquire() < 0
    assert a.metrics.stale == 0
    assert shared_view(store, a).state is HALF_OPEN  # a release decides nothing


@pytest.mark.parametrize("control_flow", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
def test_control_flow_gives_the_trial_lease_back(
    store: CountingStore, store_clock: FakeClock, control_flow: BaseException
) -> None:
    clock = FakeClock()
    a = shared(store, clock)
    b = shared(store, clock)
    half_open(a, store_clock, clock)
    ticket = a.acquire()
    assert a.on_error(ticket, control_flow) is False
    assert b.acquire() < 0
    assert a.metrics.failures == 0


def test_an_ignored_exception_gives_the_trial_lease_back(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    a = shared(store, clock, ignore_exceptions=(KeyError,))
    b = shared(store, clock, ignore_exceptions=(KeyError,))
    half_open(a, store_clock, clock)
    ticket = a.acquire()
    assert a.on_error(ticket, KeyError("x")) is False
    assert a.metrics.ignored == 1
    assert shared_view(store, a).state is HALF_OPEN
    assert b.acquire() < 0


def test_a_slow_trial_is_a_failure(store: CountingStore, store_clock: FakeClock) -> None:
    clock = FakeClock()

    slow: dict[str, Any] = {
        "slow_call_duration_seconds": 1.0,
        "slow_call_rate_threshold": 1.0,
        "sliding_window_size": 10,
        "minimum_calls": 10,
    }
    rec = Recorder()
    a = shared(store, clock, listener=rec, **slow)
    half_open(a, store_clock, clock)
    ticket = a.acquire()
    assert a.on_result(ticket, "ok", 1.5) is True  # counted as a failure
    assert changes(rec.changes())[-1] == (HALF_OPEN, OPEN, "trial_failure")
    assert shared_view(store, a).state is OPEN
    metrics = a.metrics
    assert (metrics.failures, metrics.slow_calls, metrics.successes) == (1, 1, 0)
    # A fast trial in the next half-open period closes it.
    store_clock.advance(10.0)
    clock.advance(10.0)
    ticket = a.acquire()
    assert a.on_result(ticket, "ok", 0.5) is False
    assert shared_view(store, a).state is CLOSED


def test_success_threshold_trial_successes_close_it(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    recs = [Recorder(), Recorder()]
    a, b = (
        shared(store, clock, listener=r, success_threshold=3, half_open_max_calls=3) for r in recs
    )
    half_open(a, store_clock, clock)
    tickets = [(a, a.acquire()), (b, b.acquire()), (a, a.acquire())]
    b.record_success(tickets[1][1])
    a.record_success(tickets[0][1])
    assert shared_view(store, a).state is HALF_OPEN
    a.record_success(tickets[2][1])  # the third success closes it: A's operation
    assert shared_view(store, a).state is CLOSED
    assert changes(recs[0].changes())[-1] == (HALF_OPEN, CLOSED, "trial_success")
    assert all(e.state is not CLOSED for e in recs[1].changes())


def test_a_trial_failure_reopens_with_the_timer_restarted(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    a = shared(store, clock, staleness=0, half_open_max_calls=2)
    b = shared(store, clock, staleness=0, half_open_max_calls=2)
    half_open(a, store_clock)
    first = a.acquire()
    second = b.acquire()
    store_clock.advance(3.0)
    b.record_failure(second)  # reopens 13 s after the trip: open until 23
    assert shared_view(store, a).open_remaining == 10.0
    assert rejection(a).retry_after == 10.0
    a.record_success(first)  # its half-open period is over: stale
    assert a.metrics.stale == 1
    store_clock.advance(9.5)
    assert rejection(a).retry_after == 0.5
    store_clock.advance(0.5)
    assert a.state is HALF_OPEN


# -- generations --------------------------------------------------------------------------


def test_a_ticket_from_before_a_reset_counts_for_nothing(store: CountingStore) -> None:
    a = shared(store, FakeClock(), failure_threshold=2)
    b = shared(store, FakeClock())
    fail(a)
    ticket = a.acquire()
    b.reset()
    a.record_failure(ticket)
    assert a.metrics.stale == 1
    assert shared_view(store, a).consecutive_failures == 0
    fail(a)  # the report refreshed A's view: the next ticket is current
    assert shared_view(store, a).consecutive_failures == 1


def test_a_ticket_from_before_a_transition_counts_for_nothing(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    a = shared(store, clock, failure_threshold=1)
    b = shared(store, clock, failure_threshold=1, staleness=0)
    old = a.acquire()  # CLOSED, generation g
    half_open(b, store_clock)
    b.record_success(b.acquire())  # closed again, a later generation
    a.record_failure(old)  # would open it (failure_threshold=1) if it counted
    assert a.metrics.stale == 1
    assert shared_view(store, a).state is CLOSED


# -- operator commands --------------------------------------------------------------------


def test_operator_commands_from_one_object_are_seen_by_the_other(
    store: CountingStore,
) -> None:
    rec_a, rec_b = Recorder(), Recorder()
    a = shared(store, FakeClock(), staleness=0, listener=rec_a)
    b = shared(store, FakeClock(), staleness=0, listener=rec_b)
    a.force_open()
    assert b.state is FORCED_OPEN
    assert rejection(b).retry_after is None
    a.reset()
    assert b.state is CLOSED
    assert b.acquire() >= SHARED_TICKET_BASE
    b.disable()
    assert a.state is DISABLED
    assert a.acquire() == DISABLED_TICKET
    b.reset()
    assert a.state is CLOSED
    assert changes(rec_a.changes()) == [
        (CLOSED, FORCED_OPEN, "manual"),
        (FORCED_OPEN, CLOSED, "manual"),
    ]
    assert changes(rec_b.changes()) == [
        (CLOSED, DISABLED, "manual"),
        (DISABLED, CLOSED, "manual"),
    ]


def test_trip_returns_true_only_for_the_call_that_opened_it(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    rec_a, rec_b = Recorder(), Recorder()
    a = shared(store, clock, listener=rec_a, staleness=0)
    b = shared(store, clock, listener=rec_b, staleness=0)
    assert a.trip("maintenance") is True
    assert b.trip() is False  # already OPEN: the timer is kept
    assert a.trip() is False
    store_clock.advance(10.0)
    assert b.trip("again") is True  # from HALF_OPEN (after the lazy move)
    b.force_open()
    assert a.trip() is False  # FORCED_OPEN is left alone
    assert a.state is FORCED_OPEN
    b.disable()
    assert a.trip() is False
    assert a.state is DISABLED
    assert changes(rec_a.changes()) == [(CLOSED, OPEN, "maintenance")]
    assert changes(rec_b.changes()) == [
        (OPEN, HALF_OPEN, "open_timeout"),
        (HALF_OPEN, OPEN, "again"),
        (OPEN, FORCED_OPEN, "manual"),
        (FORCED_OPEN, DISABLED, "manual"),
    ]


def test_trip_keeps_the_timer_of_an_open_breaker(
    store: CountingStore, store_clock: FakeClock
) -> None:
    a = shared(store, FakeClock(), staleness=0)
    assert a.trip()
    store_clock.advance(4.0)
    assert a.trip() is False
    assert rejection(a).retry_after == 6.0


@pytest.mark.parametrize(("reason", "error"), [(1, TypeError), (None, TypeError), ("", ValueError)])
def test_trip_validates_its_reason(
    store: CountingStore, reason: Any, error: type[Exception]
) -> None:
    a = shared(store, FakeClock())
    with pytest.raises(error, match="reason"):
        a.trip(reason)
    assert store.total() == 0


def test_reset_makes_a_new_generation_even_when_closed(store: CountingStore) -> None:
    a = shared(store, FakeClock())
    ticket = a.acquire()
    generation = shared_view(store, a).generation
    a.reset()
    assert shared_view(store, a).generation > generation
    a.record_failure(ticket)
    assert a.metrics.stale == 1


def test_idle_shared_state_expires_after_key_ttl_seconds(
    store: CountingStore, store_clock: FakeClock
) -> None:
    a = SharedCircuitBreaker(
        NAME,
        config(failure_threshold=1),
        store=store,
        clock=FakeClock(),
        max_staleness_seconds=0,
        key_ttl_seconds=100.0,
        telemetry=False,
    )
    old = a.acquire()
    a.force_open()
    store_clock.advance(99.5)
    assert a.state is FORCED_OPEN  # the read kept the key alive
    store_clock.advance(99.5)
    assert a.state is FORCED_OPEN
    store_clock.advance(100.0)  # a hundred idle seconds: the state is gone
    assert a.state is CLOSED
    a.record_failure(old)  # a fresh generation, never used before under this name
    assert a.metrics.stale == 1
    assert a.state is CLOSED


# -- windows ------------------------------------------------------------------------------


def test_a_count_window_combines_the_outcomes_of_both_breakers(
    store: CountingStore,
) -> None:

    window: dict[str, Any] = {
        "failure_threshold": 100,
        "sliding_window_size": 4,
        "minimum_calls": 4,
        "failure_rate_threshold": 0.5,
    }
    rec_a, rec_b = Recorder(), Recorder()
    a = shared(store, FakeClock(), listener=rec_a, **window)
    b = shared(store, FakeClock(), listener=rec_b, **window)
    succeed(a)
    fail(b)
    succeed(a)
    assert shared_view(store, a).state is CLOSED  # 3 calls < minimum_calls
    fail(b)  # 2 failures in 4 calls: 0.5
    assert shared_view(store, a).state is OPEN
    assert changes(rec_b.changes()) == [(CLOSED, OPEN, "failure_rate")]
    assert rec_a.changes() == []
    # Neither breaker alone saw a failure rate of 0.5 over 4 calls.
    assert a.metrics.failures == 0
    assert b.metrics.failures == 2


def test_a_time_window_uses_store_time_and_combines_both_breakers(
    store: CountingStore, store_clock: FakeClock
) -> None:

    window: dict[str, Any] = {
        "failure_threshold": 100,
        "sliding_window_seconds": 10.0,
        "minimum_calls": 3,
        "failure_rate_threshold": 0.6,
    }
    clock_a, clock_b = FakeClock(), FakeClock()
    a = shared(store, clock_a, **window)
    b = shared(store, clock_b, **window)
    fail(a)
    fail(b)  # 2 failures, below minimum_calls
    store_clock.advance(11.0)  # in store time, both left the window
    succeed(a)
    succeed(b)
    fail(a)  # 1 of 3 (it would be 3 of 5 had the old ones stayed)
    assert shared_view(store, a).state is CLOSED
    fail(b)  # 2 of 4
    assert shared_view(store, a).state is CLOSED
    fail(a)  # 3 of 5
    assert shared_view(store, a).state is OPEN


def test_a_slow_call_rate_opens_from_both_breakers(store: CountingStore) -> None:

    window: dict[str, Any] = {
        "failure_threshold": 100,
        "sliding_window_size": 10,
        "minimum_calls": 2,
        "slow_call_duration_seconds": 1.0,
        "slow_call_rate_threshold": 0.5,
    }
    rec_b = Recorder()
    a = shared(store, FakeClock(), **window)
    b = shared(store, FakeClock(), listener=rec_b, **window)
    assert a.needs_duration
    assert a.on_result(a.acquire(), "ok", 2.0) is False  # slow, still a success
    assert shared_view(store, a).state is CLOSED  # 1 call < minimum_calls
    assert b.on_result(b.acquire(), "ok", 0.1) is False
    assert shared_view(store, a).state is OPEN  # 1 slow of 2
    assert changes(rec_b.changes()) == [(CLOSED, OPEN, "slow_call_rate")]
    assert a.metrics.slow_calls == 1
    assert b.metrics.slow_calls == 0


def test_rates_wait_for_minimum_calls(store: CountingStore) -> None:

    window: dict[str, Any] = {
        "failure_threshold": 100,
        "sliding_window_size": 10,
        "minimum_calls": 5,
        "failure_rate_threshold": 0.2,
    }
    a = shared(store, FakeClock(), **window)
    b = shared(store, FakeClock(), **window)
    for breaker in (a, b, a, b):
        fail(breaker)
    assert shared_view(store, a).state is CLOSED  # 100% failures, but only 4 calls
    succeed(a)  # the fifth call: 4 of 5 failed
    assert shared_view(store, a).state is OPEN


# -- open backoff ---------------------------------------------------------------------------


def test_open_backoff_grows_with_the_shared_open_count(
    store: CountingStore, store_clock: FakeClock
) -> None:
    backoff = Exponential(initial=10.0, multiplier=2.0, max_delay=100.0)
    clock = FakeClock()
    a = shared(store, clock, staleness=0, failure_threshold=1, open_backoff=backoff)
    b = shared(store, clock, staleness=0, failure_threshold=1, open_backoff=backoff)
    durations = []
    fail(a)  # first opening: 10 s
    durations.append(shared_view(store, a).open_remaining)
    for prober in (b, a, b, a):  # each trial failure is one more opening, by either object
        store_clock.advance(durations[-1])
        prober.record_failure(prober.acquire())
        durations.append(shared_view(store, a).open_remaining)
    assert durations == [10.0, 20.0, 40.0, 80.0, 100.0]
    assert shared_view(store, a).open_count == 5
    store_clock.advance(100.0)
    b.record_success(b.acquire())  # closing resets the count
    assert a.state is CLOSED  # A's view catches up (trip uses the cached open count)
    assert a.trip()
    assert shared_view(store, a).open_remaining == 10.0


# -- classification ---------------------------------------------------------------------------


def test_record_result_classifies_a_returned_value_as_a_failure(
    store: CountingStore,
) -> None:
    a = shared(store, FakeClock(), failure_threshold=2, record_result=lambda r: r is None)
    assert a.call(lambda: None) is None  # the value still reaches the caller
    assert shared_view(store, a).consecutive_failures == 1
    assert a.call(lambda: "ok") == "ok"
    assert shared_view(store, a).consecutive_failures == 0
    a.call(lambda: None)
    a.call(lambda: None)
    assert shared_view(store, a).state is OPEN


def test_ignored_exceptions_count_nothing_and_ask_nothing(store: CountingStore) -> None:
    a = shared(store, FakeClock(), failure_threshold=1, ignore_exceptions=(KeyError,))
    error = KeyError("k")

    def raise_key_error() -> None:
        raise error

    with pytest.raises(KeyError) as caught:
        a.call(raise_key_error)
    assert caught.value is error
    assert shared_view(store, a).state is CLOSED
    assert store.ops["report"] == 0
    assert a.metrics.ignored == 1
    assert a.metrics.failures == 0


def test_only_record_exceptions_are_failures(store: CountingStore) -> None:
    a = shared(store, FakeClock(), failure_threshold=2, record_exceptions=(ConnectionError,))

    def raises(error: Exception) -> None:
        raise error

    with pytest.raises(ConnectionError):
        a.call(raises, ConnectionError("down"))
    assert shared_view(store, a).consecutive_failures == 1
    with pytest.raises(ValueError, match="bad input"):
        a.call(raises, ValueError("bad input"))  # not a failure: a success, ends the streak
    assert shared_view(store, a).consecutive_failures == 0
    for _ in range(2):
        with pytest.raises(ConnectionError):
            a.call(raises, ConnectionError("down"))
    assert shared_view(store, a).state is OPEN
    assert a.metrics.successes == 1


# -- degraded mode ------------------------------------------------------------------------------


@pytest.fixture(params=[StoreUnavailableError, RuntimeError])
def flaky(request: pytest.FixtureRequest, store_clock: FakeClock) -> FlakyStore:
    error: type[Exception] = request.param
    return FlakyStore(clock=store_clock, error=error)


def store_logs(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "otel_resilience" and r.levelno == level and "state store" in r.getMessage()
    ]


def test_calls_go_on_from_local_state_while_the_store_is_down(
    flaky: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otel_resilience")
    b = shared(flaky, FakeClock(), staleness=0)
    rec = Recorder()
    a = shared(flaky, FakeClock(), staleness=0, listener=rec, failure_threshold=2)
    assert a.call(lambda: "up") == "up"
    flaky.down = True

    assert a.call(lambda: 42) == 42
    status = a.store_status()
    assert status.degraded is True
    assert status.fallbacks == flaky.failed == 1
    error = ConnectionError("dependency down")

    def broken() -> None:
        raise error

    for _ in range(2):
        with pytest.raises(ConnectionError) as caught:
            a.call(broken)
        assert caught.value is error  # the store's failure never reaches the caller
    assert a.state is OPEN  # the local breaker opened
    assert rejection(a).retry_after == 10.0
    assert changes(rec.changes()) == [(CLOSED, OPEN, "failure_threshold")]
    assert a.store_status().fallbacks == flaky.failed
    assert a.metrics.state is OPEN
    assert a.metrics.failures == 2

    warnings = store_logs(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert f"circuit breaker {NAME!r}" in warnings[0]
    assert flaky.error.__name__ in warnings[0]
    assert "deciding from local state" in warnings[0]
    assert store_logs(caplog, logging.INFO) == []

    flaky.down = False
    assert a.state is CLOSED  # the shared state decides again
    assert a.store_status().degraded is False
    assert a.call(lambda: "back") == "back"
    infos = store_logs(caplog, logging.INFO)
    assert len(infos) == 1
    assert "answers again" in infos[0]
    assert len(store_logs(caplog, logging.WARNING)) == 1
    assert b.state is CLOSED  # nothing local ever reached the shared state


def test_local_failures_open_the_local_breaker_even_with_a_fresh_cached_view(
    flaky: FlakyStore,
) -> None:
    a = shared(flaky, FakeClock(), staleness=60.0, failure_threshold=2)
    tickets = [a.acquire(), a.acquire()]  # both from the store's CLOSED view
    assert all(t >= SHARED_TICKET_BASE for t in tickets)
    flaky.down = True
    for ticket in tickets:
        a.record_failure(ticket)  # the report fails: counted against the local state
    assert a.store_status().degraded is True
    assert a.state is OPEN
    error = rejection(a)  # the cached CLOSED view must not admit past the local OPEN
    assert error.retry_after == 10.0


def test_a_success_while_degraded_ends_the_local_failure_streak(flaky: FlakyStore) -> None:
    a = shared(flaky, FakeClock(), staleness=60.0, failure_threshold=2)
    tickets = [a.acquire() for _ in range(3)]  # from the store's fresh CLOSED view
    flaky.down = True
    a.record_failure(tickets[0])
    a.record_success(tickets[1])  # must reach the local state, though the view is fresh
    a.record_failure(tickets[2])
    assert a.state is CLOSED  # two failures, but not in a row
    assert a.metrics.consecutive_failures == 1


def test_a_failed_report_of_a_failure_counts_against_the_local_state(
    flaky: FlakyStore,
) -> None:
    a = shared(flaky, FakeClock(), staleness=60.0, failure_threshold=3)
    ticket = a.acquire()
    flaky.down = True
    assert a.on_error(ticket, ConnectionError()) is True
    metrics = a.metrics  # degraded: the local state's numbers
    assert metrics.consecutive_failures == 1
    assert metrics.failures == 1
    assert a.store_status().fallbacks == 1
    flaky.down = False
    assert shared_view(flaky, a).consecutive_failures == 0  # the store never heard of it


def test_fallbacks_count_every_failed_operation_and_one_warning_is_logged(
    flaky: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otel_resilience")
    a = shared(flaky, FakeClock(), staleness=0, failure_threshold=100)
    flaky.down = True
    for _ in range(10):
        a.record_failure(a.acquire())
    assert a.state is CLOSED  # a read
    a.force_open()  # a command, applied locally
    assert a.state is FORCED_OPEN  # another read
    # Ten acquires, two reads and the command; the local tickets' outcomes stay local.
    assert flaky.failed == 13
    assert a.store_status() == StoreStatus(degraded=True, fallbacks=13, view=None)
    assert len(store_logs(caplog, logging.WARNING)) == 1


def test_a_trip_while_degraded_opens_the_local_breaker_and_says_so(
    flaky: FlakyStore,
) -> None:
    a = shared(flaky, FakeClock(), staleness=0)
    flaky.down = True
    assert a.trip("maintenance") is True
    assert a.trip() is False
    assert a.state is OPEN
    assert rejection(a).retry_after == 10.0


def test_operator_commands_apply_locally_while_degraded(flaky: FlakyStore) -> None:
    a = shared(flaky, FakeClock(), staleness=0)
    flaky.down = True
    a.disable()
    assert a.acquire() == DISABLED_TICKET
    a.force_open()
    assert rejection(a).retry_after is None
    a.reset()
    assert a.acquire() > 0
    flaky.down = False
    assert shared_view(flaky, a).state is CLOSED  # none of it reached the store


def test_a_store_that_comes_back_serves_its_shared_state_again(
    flaky: FlakyStore, store_clock: FakeClock
) -> None:
    a = shared(flaky, FakeClock(), staleness=0, failure_threshold=1)
    b = shared(flaky, FakeClock(), staleness=0, failure_threshold=1)
    flaky.down = True
    fail(a)  # opens A's local breaker only
    assert rejection(a).retry_after == 10.0
    flaky.down = False
    ticket = a.acquire()  # the shared state is CLOSED: admitted by the store
    assert ticket >= SHARED_TICKET_BASE
    a.record_failure(ticket)  # and now the shared breaker opens, seen by B
    assert b.state is OPEN
    assert a.store_status().degraded is False


# -- pipelines ------------------------------------------------------------------------------


class Flaky:
    """A function failing ``failures`` times, then returning ``value``."""

    def __init__(self, failures: int, value: str = "ok") -> None:
        self.failures = failures
        self.value = value
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"failure {self.calls}")
        return self.value


def test_a_pipeline_fast_path_reports_to_the_store(store: CountingStore) -> None:
    clock = FakeClock()
    a = shared(store, clock, failure_threshold=5)
    pipeline = Pipeline(
        circuit_breaker=a,
        retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=1.0)),
        clock=clock,
        telemetry=False,
    )
    assert pipeline.fast
    assert not pipeline.awaits_breaker
    fn = Flaky(2)
    assert pipeline.call(fn) == "ok"
    assert fn.calls == 3
    assert clock.sleeps == [1.0, 1.0]
    assert store.ops["report"] == 3  # two failures, and the success ending the streak
    assert shared_view(store, a).consecutive_failures == 0


def test_a_pipeline_general_path_opens_the_shared_breaker(store: CountingStore) -> None:
    clock = FakeClock()
    a = shared(store, clock, failure_threshold=2)
    b = shared(store, FakeClock(), staleness=0, failure_threshold=2)
    pipeline = Pipeline(
        circuit_breaker=a,
        retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=1.0), deadline_seconds=100.0),
        clock=clock,
        telemetry=False,
    )
    assert not pipeline.fast
    fn = Flaky(10)
    with pytest.raises(CircuitOpenError) as caught:
        pipeline.call(fn)  # the shared breaker refuses the third attempt
    assert fn.calls == 2
    assert caught.value.retry_after == 10.0
    assert any("gave up after 3 attempts" in note for note in caught.value.__notes__)
    assert b.state is OPEN


def test_resilient_with_a_shared_breaker_falls_back_on_rejection(
    store: CountingStore,
) -> None:
    a = shared(store, FakeClock(), staleness=0)
    b = shared(store, FakeClock())
    calls: list[str] = []

    @resilient(
        circuit_breaker=a,
        fallback=Fallback(value="cached", on=CircuitOpenError),
        telemetry=False,
    )
    def fetch(key: str) -> str:
        calls.append(key)
        return key.upper()

    assert fetch("a") == "A"
    assert b.trip()
    assert fetch("b") == "cached"
    assert calls == ["a"]  # not called while rejected
    b.reset()
    assert fetch("c") == "C"


def test_a_pipeline_fallback_on_a_forced_open_shared_breaker(store: CountingStore) -> None:
    a = shared(store, FakeClock(), staleness=0)
    pipeline = Pipeline(
        circuit_breaker=a, fallback=Fallback(value=-1, on=CircuitOpenError), telemetry=False
    )
    shared(store, FakeClock()).force_open()
    assert pipeline.call(lambda: 1) == -1
    assert a.metrics.rejections == 1


def test_call_and_decorator_use_of_the_breaker_itself(store: CountingStore) -> None:
    a = shared(store, FakeClock(), staleness=0, failure_threshold=1)

    @a
    def double(x: int) -> int:
        return 2 * x

    assert double(4) == 8
    with pytest.raises(ConnectionError):
        a.call(Flaky(1))
    with pytest.raises(CircuitOpenError):
        double(1)


# -- threads ------------------------------------------------------------------------------


def test_threads_racing_into_half_open_get_exactly_one_trial(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    rec_a, rec_b = Recorder(), Recorder()
    a = shared(store, clock, listener=rec_a)
    b = shared(store, clock, listener=rec_b)
    half_open(a, store_clock, clock)
    threads_count = 50
    barrier = threading.Barrier(threads_count)
    tickets: list[int] = []
    rejections: list[float | None] = []
    lock = threading.Lock()

    def race(breaker: SharedCircuitBreaker) -> None:
        barrier.wait()
        try:
            ticket = breaker.acquire()
        except CircuitOpenError as error:
            with lock:
                rejections.append(error.retry_after)
        else:
            with lock:
                tickets.append(ticket)

    threads = [
        threading.Thread(target=race, args=(a if i % 2 else b,)) for i in range(threads_count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tickets) == 1
    assert tickets[0] < 0
    assert rejections == [0.0] * (threads_count - 1)
    assert shared_view(store, a).trials == 1
    half_opened = [e for r in (rec_a, rec_b) for e in r.changes() if e.state is HALF_OPEN]
    assert len(half_opened) == 1  # one lazy move, one event, fleet-wide


# -- inspection ---------------------------------------------------------------------------


def test_metrics_show_the_shared_state_and_this_process_counters(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    a = shared(store, clock, staleness=0, failure_threshold=5, half_open_max_calls=3)
    b = shared(store, FakeClock(), staleness=0, failure_threshold=5, half_open_max_calls=3)
    fail(a)
    fail(b, 2)
    assert a.state is CLOSED  # refreshes A's view
    metrics = a.metrics
    assert metrics.consecutive_failures == 3  # the shared streak
    assert metrics.failures == 1  # this object's own count
    assert b.metrics.failures == 2
    assert a.trip()
    store_clock.advance(10.0)
    b.acquire()
    b.acquire()
    a.acquire()
    metrics = a.metrics
    assert metrics.state is HALF_OPEN
    assert metrics.trials_in_flight == 3


def test_observed_state_asks_the_store_nothing(
    store: CountingStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    a = shared(store, clock, staleness=0, failure_threshold=1)
    assert a.observed_state() is CLOSED  # nothing cached yet: the local state
    fail(a)
    before = store.total()
    assert a.observed_state() is OPEN
    clock.advance(10.0)  # the cached OPEN view's period has passed on this clock
    assert a.observed_state() is HALF_OPEN
    assert store.total() == before
    shared(store, FakeClock()).reset()
    before = store.total()
    assert a.observed_state() is HALF_OPEN  # the reset elsewhere is unseen: nothing asked
    assert store.total() == before
    assert store.ops["read"] == 0


def test_repr_and_store_status(flaky: FlakyStore) -> None:
    a = shared(flaky, FakeClock(), staleness=0, failure_threshold=1)
    assert repr(a) == "SharedCircuitBreaker(name='svc', state=unknown)"
    assert a.store_status() == StoreStatus(degraded=False, fallbacks=0, view=None)
    fail(a)
    assert repr(a) == "SharedCircuitBreaker(name='svc', state=open)"
    view = a.store_status().view
    assert view is not None
    assert view.state is OPEN
    assert view == shared_view(flaky, a)
    flaky.down = True
    assert a.acquire() < SHARED_TICKET_BASE  # a local ticket: the local state is CLOSED
    assert repr(a) == "SharedCircuitBreaker(name='svc', state=open, degraded)"
    assert a.store_status().view == view  # the last view the store sent is kept


def test_a_disabled_shared_breaker_counts_nothing_even_on_the_hot_path() -> None:
    clock = FakeClock()
    store = InMemoryStateStore(clock=clock)
    breaker = CircuitBreaker(
        "hot", CircuitBreakerConfig(), store=store, clock=clock, telemetry=False
    )
    assert breaker.call(lambda: "ok") == "ok"  # a fresh CLOSED view: the hot path is on
    breaker.disable()
    for _ in range(3):
        assert breaker.call(lambda: "ok") == "ok"
    assert breaker.metrics.successes == 1
    breaker.reset()
    for _ in range(3):
        assert breaker.call(lambda: "ok") == "ok"
    assert breaker.metrics.successes == 4


def test_a_reset_after_an_outage_is_one_event_and_clears_the_local_state(
    flaky: FlakyStore,
) -> None:
    rec = Recorder()
    breaker = shared(flaky, FakeClock(), staleness=0, listener=rec, failure_threshold=1)
    assert breaker.call(lambda: "up") == "up"
    flaky.down = True
    with pytest.raises(ConnectionError):
        breaker.call(_down)  # counted locally: the local breaker opens
    assert changes(rec.changes()) == [(CLOSED, OPEN, "failure_threshold")]
    flaky.down = False
    breaker.trip()  # the shared state opens too (one event, from the store)
    breaker.reset()
    assert changes(rec.changes())[1:] == [
        (CLOSED, OPEN, "manual"),
        (OPEN, CLOSED, "manual"),  # one CLOSED, the shared one; the local reset is quiet
    ]
    flaky.down = True  # the local state, used again, was reset too
    assert breaker.call(lambda: "local") == "local"


def _down() -> str:
    raise ConnectionError("dependency down")
