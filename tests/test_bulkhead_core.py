"""The sans-IO bulkhead core: admission, FIFO hand-off, abandonment, counts, threads."""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from otel_resilience._errors import BulkheadFullError
from otel_resilience._events import BulkheadRejected, CallObserver, ResilienceEvent
from otel_resilience.bulkhead import (
    DEFAULT_BULKHEAD_NAME,
    DEFAULT_MAX_QUEUE,
    DEFAULT_QUEUE_TIMEOUT,
    Admission,
    Bulkhead,
)

# Real threads block on real events; this bounds a broken test, it is not a timing assertion.
SAFETY_TIMEOUT = 30.0


class EventWaiter:
    """A waiter that parks a thread on a ``threading.Event``, as the sync driver does."""

    def __init__(self, label: object = None, woken: list[object] | None = None) -> None:
        self.label = label
        self.event = threading.Event()
        self.wakes = 0
        self._woken = woken

    def wake(self) -> None:
        self.wakes += 1
        if self._woken is not None:
            self._woken.append(self.label)
        self.event.set()


class RecordingListener:
    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def start_call(self, pipeline: str) -> CallObserver | None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)


# --- basics --------------------------------------------------------------------------------


def test_defaults() -> None:
    bulkhead = Bulkhead(3)
    assert bulkhead.max_concurrent == 3
    assert bulkhead.max_queue == DEFAULT_MAX_QUEUE == 0
    assert bulkhead.queue_timeout is DEFAULT_QUEUE_TIMEOUT is None
    assert bulkhead.name == DEFAULT_BULKHEAD_NAME
    assert (bulkhead.in_flight, bulkhead.queued, bulkhead.rejections) == (0, 0, 0)
    assert "max_concurrent=3" in repr(bulkhead)


def test_try_acquire_takes_free_slots_only() -> None:
    bulkhead = Bulkhead(2)
    assert bulkhead.try_acquire()
    assert bulkhead.try_acquire()
    assert not bulkhead.try_acquire()
    assert bulkhead.in_flight == 2
    # A refused fast path is not a rejection: the driver goes on to acquire_or_enqueue.
    assert bulkhead.rejections == 0
    bulkhead.release()
    assert bulkhead.in_flight == 1
    assert bulkhead.try_acquire()


def test_release_more_than_acquired_raises() -> None:
    bulkhead = Bulkhead(1, name="db")
    with pytest.raises(RuntimeError, match="bulkhead 'db' released more slots than acquired"):
        bulkhead.release()
    assert bulkhead.try_acquire()
    bulkhead.release()
    with pytest.raises(RuntimeError):
        bulkhead.release()
    assert bulkhead.in_flight == 0


def test_grant_queue_and_reject() -> None:
    listener = RecordingListener()
    bulkhead = Bulkhead(1, max_queue=2, name="db", listener=listener)
    assert bulkhead.acquire_or_enqueue(EventWaiter()) is Admission.GRANTED
    assert bulkhead.acquire_or_enqueue(EventWaiter()) is Admission.QUEUED
    assert bulkhead.acquire_or_enqueue(EventWaiter()) is Admission.QUEUED
    assert bulkhead.acquire_or_enqueue(EventWaiter()) is Admission.REJECTED
    assert bulkhead.acquire_or_enqueue(EventWaiter()) is Admission.REJECTED
    assert (bulkhead.in_flight, bulkhead.queued, bulkhead.rejections) == (1, 2, 2)
    assert listener.events == [BulkheadRejected(bulkhead="db", reason="queue_full")] * 2


def test_without_a_queue_a_full_bulkhead_rejects_at_once() -> None:
    bulkhead = Bulkhead(1)
    assert bulkhead.try_acquire()
    assert bulkhead.acquire_or_enqueue(EventWaiter()) is Admission.REJECTED
    assert (bulkhead.queued, bulkhead.rejections) == (0, 1)


def test_rejected_error() -> None:
    bulkhead = Bulkhead(1, name="payments")
    error = bulkhead.rejected_error("queue_timeout")
    assert isinstance(error, BulkheadFullError)
    assert (error.bulkhead_name, error.reason) == ("payments", "queue_timeout")
    with pytest.raises(ValueError, match="reason must be 'queue_full' or 'queue_timeout'"):
        bulkhead.rejected_error("busy")


# --- hand-off ------------------------------------------------------------------------------


def test_release_hands_slots_to_waiters_in_fifo_order() -> None:
    woken: list[object] = []
    bulkhead = Bulkhead(2, max_queue=5)
    assert bulkhead.try_acquire()
    assert bulkhead.try_acquire()
    waiters = [EventWaiter(label, woken) for label in range(5)]
    for waiter in waiters:
        assert bulkhead.acquire_or_enqueue(waiter) is Admission.QUEUED
    for expected in range(5):
        bulkhead.release()
        # The slot changed owner without becoming free.
        assert bulkhead.in_flight == 2
        assert woken == list(range(expected + 1))
        assert bulkhead.queued == 4 - expected
    assert [w.wakes for w in waiters] == [1] * 5
    bulkhead.release()
    bulkhead.release()
    assert bulkhead.in_flight == 0


def test_newcomers_cannot_overtake_the_queue() -> None:
    bulkhead = Bulkhead(1, max_queue=2)
    assert bulkhead.try_acquire()
    first = EventWaiter()
    assert bulkhead.acquire_or_enqueue(first) is Admission.QUEUED
    bulkhead.release()
    assert first.event.is_set()
    assert not bulkhead.try_acquire()
    assert bulkhead.acquire_or_enqueue(EventWaiter()) is Admission.QUEUED


def test_wake_runs_outside_the_lock() -> None:
    bulkhead = Bulkhead(1, max_queue=1)
    observed: list[Any] = []

    class ReentrantWaiter:
        def wake(self) -> None:
            # Under the lock these calls would deadlock (the lock is not re-entrant).
            observed.append(bulkhead.try_acquire())
            observed.append(bulkhead.queued)

    assert bulkhead.try_acquire()
    assert bulkhead.acquire_or_enqueue(ReentrantWaiter()) is Admission.QUEUED
    done = threading.Event()

    def release() -> None:
        bulkhead.release()
        done.set()

    releaser = threading.Thread(target=release, daemon=True)
    releaser.start()
    assert done.wait(SAFETY_TIMEOUT), "release() deadlocked: wake() ran under the lock"
    releaser.join()
    assert observed == [False, 0]


def test_listener_runs_outside_the_lock_and_its_errors_are_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Listener(RecordingListener):
        def on_event(self, event: ResilienceEvent) -> None:
            super().on_event(event)
            assert bulkhead.queued == 0  # would deadlock under the lock
            raise RuntimeError("listener bug")

    listener = Listener()
    bulkhead = Bulkhead(1, listener=listener)
    assert bulkhead.try_acquire()
    with caplog.at_level(logging.ERROR, logger="otel_resilience"):
        assert bulkhead.acquire_or_enqueue(EventWaiter()) is Admission.REJECTED
    assert bulkhead.rejections == 1
    assert listener.events == [BulkheadRejected(bulkhead="bulkhead", reason="queue_full")]


# --- abandonment ---------------------------------------------------------------------------


def test_abandon_a_queued_waiter() -> None:
    listener = RecordingListener()
    bulkhead = Bulkhead(1, max_queue=3, queue_timeout=1.0, name="q", listener=listener)
    assert bulkhead.try_acquire()
    cancelled, timed_out, stays = EventWaiter(), EventWaiter(), EventWaiter()
    for waiter in (cancelled, timed_out, stays):
        assert bulkhead.acquire_or_enqueue(waiter) is Admission.QUEUED
    # A cancellation removes the waiter without counting a rejection.
    assert bulkhead.abandon(cancelled)
    assert (bulkhead.queued, bulkhead.rejections) == (2, 0)
    assert bulkhead.abandon(timed_out, timed_out=True)
    assert (bulkhead.queued, bulkhead.rejections) == (1, 1)
    assert listener.events == [BulkheadRejected(bulkhead="q", reason="queue_timeout")]
    # Abandoning twice finds nothing (and must then not be treated as owning a slot).
    assert not bulkhead.abandon(cancelled)
    bulkhead.release()
    assert stays.event.is_set()
    assert not cancelled.event.is_set()
    assert not timed_out.event.is_set()
    assert bulkhead.in_flight == 1


def test_abandon_after_wake_returns_false_and_the_caller_owns_the_slot() -> None:
    bulkhead = Bulkhead(1, max_queue=1)
    assert bulkhead.try_acquire()
    waiter = EventWaiter()
    assert bulkhead.acquire_or_enqueue(waiter) is Admission.QUEUED
    bulkhead.release()
    assert waiter.event.is_set()
    assert not bulkhead.abandon(waiter, timed_out=True)
    assert bulkhead.rejections == 0
    assert bulkhead.in_flight == 1
    bulkhead.release()  # the waiter's slot, given back
    assert bulkhead.in_flight == 0


def test_abandon_matches_by_identity() -> None:
    class EqualWaiter(EventWaiter):
        def __eq__(self, other: object) -> bool:
            return isinstance(other, EqualWaiter)

        __hash__ = None  # type: ignore[assignment]

    bulkhead = Bulkhead(1, max_queue=2)
    assert bulkhead.try_acquire()
    first, second = EqualWaiter(), EqualWaiter()
    bulkhead.acquire_or_enqueue(first)
    bulkhead.acquire_or_enqueue(second)
    assert bulkhead.abandon(second)
    bulkhead.release()
    assert first.event.is_set()
    assert not second.event.is_set()


# --- real threads --------------------------------------------------------------------------


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as possible, so a missing lock shows up as a broken count."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("fast_switching")
def test_exact_counts_under_fifty_threads() -> None:
    max_concurrent, max_queue, threads_count = 5, 20, 50
    bulkhead = Bulkhead(max_concurrent, max_queue=max_queue)
    start = threading.Barrier(threads_count)
    hold = threading.Event()
    admitted = threading.Condition()
    admissions: list[Admission] = []
    state_lock = threading.Lock()
    running = 0
    peak = 0
    completed = 0

    def work() -> None:
        nonlocal running, peak, completed
        with state_lock:
            running += 1
            peak = max(peak, running)
        hold.wait(SAFETY_TIMEOUT)
        with state_lock:
            running -= 1
            completed += 1
        bulkhead.release()

    def worker() -> None:
        waiter = EventWaiter()
        start.wait(SAFETY_TIMEOUT)
        admission = bulkhead.acquire_or_enqueue(waiter)
        with admitted:
            admissions.append(admission)
            admitted.notify_all()
        if admission is Admission.GRANTED:
            work()
        elif admission is Admission.QUEUED:
            assert waiter.event.wait(SAFETY_TIMEOUT)
            work()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    with admitted:
        assert admitted.wait_for(lambda: len(admissions) == threads_count, SAFETY_TIMEOUT)
    # Everyone has an answer and every granted call is still running: exact counts.
    assert admissions.count(Admission.GRANTED) == max_concurrent
    assert admissions.count(Admission.QUEUED) == max_queue
    assert admissions.count(Admission.REJECTED) == threads_count - max_concurrent - max_queue
    assert bulkhead.in_flight == max_concurrent
    assert bulkhead.queued == max_queue
    assert bulkhead.rejections == threads_count - max_concurrent - max_queue
    hold.set()
    for thread in threads:
        thread.join(SAFETY_TIMEOUT)
        assert not thread.is_alive()
    assert completed == max_concurrent + max_queue
    assert peak <= max_concurrent
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_try_acquire_never_oversubscribes() -> None:
    bulkhead = Bulkhead(7)
    threads_count, rounds = 50, 200
    start = threading.Barrier(threads_count)
    lock = threading.Lock()
    running = 0
    peak = 0
    granted = 0

    def worker() -> None:
        nonlocal running, peak, granted
        start.wait(SAFETY_TIMEOUT)
        for _ in range(rounds):
            if not bulkhead.try_acquire():
                continue
            with lock:
                running += 1
                peak = max(peak, running)
                granted += 1
            with lock:
                running -= 1
            bulkhead.release()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY_TIMEOUT)
    assert 0 < granted <= threads_count * rounds
    assert peak <= 7
    assert bulkhead.in_flight == 0


@pytest.mark.usefixtures("fast_switching")
def test_abandon_racing_release_conserves_slots() -> None:
    threads_count = 50
    bulkhead = Bulkhead(1, max_queue=threads_count)
    assert bulkhead.try_acquire()
    waiters = [EventWaiter(index) for index in range(threads_count)]
    for waiter in waiters:
        assert bulkhead.acquire_or_enqueue(waiter) is Admission.QUEUED
    go = threading.Barrier(threads_count + 1)
    lock = threading.Lock()
    abandoned: list[EventWaiter] = []
    owned: list[EventWaiter] = []

    def queued_caller(waiter: EventWaiter) -> None:
        go.wait(SAFETY_TIMEOUT)
        if bulkhead.abandon(waiter, timed_out=True):
            with lock:
                abandoned.append(waiter)
            return
        # Too late to give up: a slot was handed over, so wake() has run or is running.
        assert waiter.event.wait(SAFETY_TIMEOUT)
        with lock:
            owned.append(waiter)
        bulkhead.release()

    def releaser() -> None:
        go.wait(SAFETY_TIMEOUT)
        bulkhead.release()

    threads = [threading.Thread(target=queued_caller, args=(w,), daemon=True) for w in waiters]
    threads.append(threading.Thread(target=releaser, daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY_TIMEOUT)
        assert not thread.is_alive()
    assert len(abandoned) + len(owned) == threads_count
    assert bulkhead.rejections == len(abandoned)
    assert all(w.wakes == 1 for w in owned)
    assert all(w.wakes == 0 for w in abandoned)
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_concurrent": 0}, ValueError, r"^Bulkhead\.max_concurrent must be >= 1"),
        ({"max_concurrent": -3}, ValueError, r"^Bulkhead\.max_concurrent must be >= 1"),
        ({"max_concurrent": True}, TypeError, r"^Bulkhead\.max_concurrent must be an int"),
        ({"max_concurrent": 2.0}, TypeError, r"^Bulkhead\.max_concurrent must be an int"),
        ({"max_concurrent": "2"}, TypeError, r"^Bulkhead\.max_concurrent must be an int"),
        ({"max_queue": -1}, ValueError, r"^Bulkhead\.max_queue must be >= 0"),
        ({"max_queue": False}, TypeError, r"^Bulkhead\.max_queue must be an int"),
        ({"max_queue": 1, "queue_timeout": 0}, ValueError, r"^Bulkhead\.queue_timeout must be >"),
        ({"max_queue": 1, "queue_timeout": -1.0}, ValueError, r"^Bulkhead\.queue_timeout must"),
        ({"max_queue": 1, "queue_timeout": math.nan}, ValueError, r"^Bulkhead\.queue_timeout"),
        ({"max_queue": 1, "queue_timeout": math.inf}, ValueError, r"^Bulkhead\.queue_timeout"),
        ({"max_queue": 1, "queue_timeout": "1"}, TypeError, r"^Bulkhead\.queue_timeout must be"),
        ({"queue_timeout": 1.0}, ValueError, r"^Bulkhead\.queue_timeout needs Bulkhead\.max_q"),
        ({"name": ""}, ValueError, r"^Bulkhead\.name must not be empty"),
        ({"name": None}, TypeError, r"^Bulkhead\.name must be a str"),
        ({"listener": object()}, TypeError, r"^Bulkhead\.listener must have an on_event"),
    ],
)
def test_invalid_configuration_names_the_field(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"max_concurrent": 2, **kwargs}
    with pytest.raises(error, match=message):
        Bulkhead(**arguments)


def test_queue_timeout_is_stored_as_float() -> None:
    bulkhead = Bulkhead(1, max_queue=1, queue_timeout=2)
    assert bulkhead.queue_timeout == 2.0
    assert isinstance(bulkhead.queue_timeout, float)


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Bulkhead(1, 2)  # type: ignore[call-arg]
