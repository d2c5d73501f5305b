"""Real threads and a real event loop racing one breaker."""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from otel_resilience._errors import CircuitOpenError
from otel_resilience._events import CallObserver, CircuitStateChanged, ResilienceEvent
from otel_resilience.breaker import CircuitBreaker, CircuitBreakerConfig, CircuitState
from otel_resilience.testing import FakeClock

RACERS = 50
TRIALS = 5
JOIN_TIMEOUT = 60.0  # a guard against deadlock, not a timing assertion


@pytest.fixture(autouse=True)
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads far more often than the default 5 ms, so races actually interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "threads deadlocked"
    assert errors == []


def half_open_breaker(listener: Collector | None = None) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "race",
        CircuitBreakerConfig(half_open_max_calls=TRIALS, timeout_seconds=1.0),
        clock=clock,
        listener=listener,
    )
    breaker.trip()
    clock.advance(1.0)  # due for HALF_OPEN; the racers make the lazy move
    return breaker, clock


class Collector:
    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def start_call(self, pipeline: str) -> CallObserver | None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)

    def changes(self) -> list[CircuitStateChanged]:
        return [e for e in self.events if isinstance(e, CircuitStateChanged)]


def test_threads_racing_into_half_open_admit_exactly_max_calls() -> None:
    collector = Collector()
    breaker, _ = half_open_breaker(collector)
    barrier = threading.Barrier(RACERS)
    tickets: list[int] = []
    rejected: list[CircuitOpenError] = []

    def racer(_: int) -> None:
        barrier.wait()
        try:
            tickets.append(breaker.acquire())
        except CircuitOpenError as error:
            rejected.append(error)

    run_threads(RACERS, racer)
    assert len(tickets) == TRIALS
    assert len(set(tickets)) == TRIALS
    assert all(ticket < 0 for ticket in tickets)
    assert len(rejected) == RACERS - TRIALS
    assert all(error.retry_after == 0.0 for error in rejected)
    metrics = breaker.metrics
    assert (metrics.rejections, metrics.trials_in_flight) == (RACERS - TRIALS, TRIALS)
    # Exactly one racer made the lazy OPEN -> HALF_OPEN move.
    assert [(e.previous, e.state) for e in collector.changes()] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
    ]


@pytest.mark.asyncio
async def test_tasks_racing_into_half_open_admit_exactly_max_calls() -> None:
    breaker, clock = half_open_breaker()
    start = asyncio.Event()
    peak = 0

    async def racer() -> bool:
        nonlocal peak
        await start.wait()
        try:
            ticket = breaker.acquire()
        except CircuitOpenError:
            return False
        peak = max(peak, breaker.metrics.trials_in_flight)
        await clock.async_sleep(0)  # hold the permit across a suspension point
        breaker.release(ticket)
        return True

    tasks = [asyncio.create_task(racer()) for _ in range(RACERS)]
    await clock.async_sleep(0)
    start.set()
    admitted = await asyncio.gather(*tasks)
    assert sum(admitted) == TRIALS
    assert peak == TRIALS
    assert breaker.metrics.rejections == RACERS - TRIALS
    assert breaker.metrics.trials_in_flight == 0


def test_hammering_a_closed_breaker_keeps_counts_exact() -> None:
    threads, rounds = 16, 2000
    breaker = CircuitBreaker(
        "hammer",
        CircuitBreakerConfig(
            failure_threshold=10**9,
            ignore_exceptions=(KeyError,),
            sliding_window_size=100,
            minimum_calls=100,
        ),
        clock=FakeClock(),
    )
    barrier = threading.Barrier(threads)

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(rounds):
            ticket = breaker.acquire()
            kind = (index + i) % 3
            if kind == 0:
                breaker.on_result(ticket, i)
            elif kind == 1:
                breaker.on_error(ticket, OSError())
            else:
                breaker.on_error(ticket, KeyError())

    run_threads(threads, worker)
    total = threads * rounds
    metrics = breaker.metrics
    expected = [
        sum(1 for t in range(threads) for i in range(rounds) if (t + i) % 3 == k) for k in range(3)
    ]
    assert (metrics.successes, metrics.failures, metrics.ignored) == tuple(expected)
    assert metrics.calls == total == metrics.successes + metrics.failures + metrics.ignored
    assert metrics.stale == 0
    assert metrics.window_calls == 100


def test_hammering_through_transitions_accounts_for_every_outcome() -> None:
    threads, rounds = 12, 1500
    collector = Collector()
    clock = FakeClock()
    breaker = CircuitBreaker(
        "churn",
        CircuitBreakerConfig(
            failure_threshold=3,
            success_threshold=2,
            half_open_max_calls=3,
            timeout_seconds=0.5,
            ignore_exceptions=(KeyError,),
        ),
        clock=clock,
        listener=collector,
    )
    barrier = threading.Barrier(threads)
    reported = [0] * threads
    rejections = [0] * threads

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(rounds):
            if index == 0 and i % 10 == 0:
                clock.advance(0.25)
            try:
                ticket = breaker.acquire()
            except CircuitOpenError:
                rejections[index] += 1
                continue
            # Runs of failures trip it; runs of successes close it again.
            block = (i // 6 + index) % 3
            if block == 0:
                breaker.record_failure(ticket)
            elif i % 5 == 0:
                breaker.on_error(ticket, KeyError())
            else:
                breaker.record_success(ticket)
            reported[index] += 1

    run_threads(threads, worker)
    metrics = breaker.metrics
    # Every reported outcome was counted exactly once, or exactly once found stale.
    assert metrics.calls + metrics.stale == sum(reported)
    assert metrics.rejections == sum(rejections)
    assert metrics.trials_in_flight == 0
    # Events arrive in the order the transitions happened: each starts where the last ended.
    changes = collector.changes()
    assert len(changes) > 10, "the scenario should churn through many transitions"
    assert changes[0].previous is CircuitState.CLOSED
    for earlier, later in itertools.pairwise(changes):
        assert later.previous is earlier.state
        assert later.at >= earlier.at
    assert changes[-1].state is breaker.state


@pytest.mark.parametrize("how", ["forced", "tripped"])
def test_lock_free_rejections_are_counted_exactly_while_read(how: str) -> None:
    """OPEN and FORCED_OPEN refuse without the lock; no count is lost or read twice."""
    threads, rounds, readers = 12, 3000, 3
    clock = FakeClock()
    breaker = CircuitBreaker("refusing", CircuitBreakerConfig(timeout_seconds=60.0), clock=clock)
    if how == "forced":
        breaker.force_open()
    else:
        breaker.trip()
    barrier = threading.Barrier(threads + readers)
    seen: list[list[int]] = [[] for _ in range(readers)]
    done = threading.Event()

    def worker(index: int) -> None:
        barrier.wait()
        if index >= threads:  # a reader: counts only ever grow
            while not done.is_set():
                seen[index - threads].append(breaker.metrics.rejections)
                seen[index - threads].append(breaker.observed_counts().rejections)
            return
        for _ in range(rounds):
            error = breaker.try_acquire()
            assert isinstance(error, CircuitOpenError)
        if index == 0:
            done.set()

    def until_all_done(index: int) -> None:
        try:
            worker(index)
        finally:
            if index < threads:
                finished.append(index)
                if len(finished) == threads:
                    done.set()

    finished: list[int] = []
    run_threads(threads + readers, until_all_done)
    assert breaker.metrics.rejections == threads * rounds
    assert breaker.observed_counts().rejections == threads * rounds
    for counts in seen:
        assert counts == sorted(counts)
        assert all(0 <= count <= threads * rounds for count in counts)


def test_lock_free_and_locked_rejections_add_up_through_transitions() -> None:
    """Without a listener, refusals take the lock-free path or the locked one; all count."""
    threads, rounds = 12, 1500
    clock = FakeClock()
    breaker = CircuitBreaker(
        "churn-quiet",
        CircuitBreakerConfig(
            failure_threshold=3, success_threshold=2, half_open_max_calls=2, timeout_seconds=0.5
        ),
        clock=clock,
    )
    barrier = threading.Barrier(threads)
    rejections = [0] * threads
    retry_afters: list[float | None] = []

    def worker(index: int) -> None:
        barrier.wait()
        for i in range(rounds):
            if index == 0 and i % 10 == 0:
                clock.advance(0.25)
            if index == 1 and i % 500 == 250:
                breaker.force_open()
            if index == 1 and i % 500 == 300:
                breaker.reset()
            ticket = breaker.try_acquire()
            if isinstance(ticket, CircuitOpenError):
                rejections[index] += 1
                retry_afters.append(ticket.retry_after)
                continue
            if (i // 6 + index) % 3 == 0:
                breaker.record_failure(ticket)
            else:
                breaker.record_success(ticket)

    run_threads(threads, worker)
    assert breaker.metrics.rejections == sum(rejections) > 0
    # An OPEN refusal's retry_after is the time left, never more than the open period.
    assert [a for a in retry_afters if a is not None and not 0.0 <= a <= 0.5] == []


def test_listeners_that_read_the_breaker_do_not_deadlock_under_contention() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "readers",
        CircuitBreakerConfig(failure_threshold=1, success_threshold=1, timeout_seconds=0.1),
        clock=clock,
    )
    reads: list[CircuitState] = []

    def reader(event: CircuitStateChanged) -> None:
        reads.append(breaker.state)
        breaker.metrics  # noqa: B018 - the read is the test

    breaker.add_listener(reader)

    def worker(index: int) -> None:
        for i in range(300):
            if index == 0:
                clock.advance(0.05)
            try:
                ticket = breaker.acquire()
            except CircuitOpenError:
                continue
            if (index + i) % 2:
                breaker.record_failure(ticket)
            else:
                breaker.record_success(ticket)

    run_threads(8, worker)
    assert reads
