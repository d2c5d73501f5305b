"""Timeouts: async ones cancel, sync ones publish a deadline and discard late results."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from otel_resilience import (
    Pipeline,
    ResilienceEvent,
    ResilienceTimeoutError,
    RetryConfig,
    Timeout,
    TimeoutExceeded,
    remaining,
)
from otel_resilience.backoff import Constant
from otel_resilience.testing import FakeClock, slow
from otel_resilience.timeout import current_deadline


async def checkpoint() -> None:
    """Let the other ready tasks run once; no time passes."""
    await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop


def retry(attempts: int = 3, delay: float = 0.0) -> RetryConfig:
    return RetryConfig(max_attempts=attempts, backoff=Constant(seconds=delay))


class Events:
    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def start_call(self, pipeline: str) -> None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)

    def timeouts(self) -> list[tuple[str, float]]:
        return [(e.scope, e.timeout) for e in self.events if isinstance(e, TimeoutExceeded)]


class Hang:
    """An async function whose first ``hangs`` calls wait forever (until cancelled)."""

    def __init__(self, hangs: int, result: object = "ok") -> None:
        self.hangs = hangs
        self.result = result
        self.calls = 0
        self.cancelled = 0
        self.started = asyncio.Event()
        self.never = asyncio.Event()

    async def __call__(self) -> object:
        self.calls += 1
        if self.calls > self.hangs:
            return self.result
        self.started.set()
        try:
            await self.never.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("the never-set event was set")


async def advance_when_started(clock: FakeClock, hang: Hang, seconds: float) -> None:
    """Each time an attempt starts hanging, move fake time forward by ``seconds``."""
    while True:
        await hang.started.wait()
        hang.started.clear()
        clock.advance(seconds)


class HangingSleepClock(FakeClock):
    """A fake clock whose async sleep suspends until cancelled; time moves only on advance."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = asyncio.Event()

    async def async_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.sleeping.set()
        await asyncio.Event().wait()


# -- async attempt timeout -------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_attempt_timeout_cancels_the_attempt_and_the_retry_retries(
    clock: FakeClock,
) -> None:
    events = Events()
    hang = Hang(hangs=1)
    pipeline = Pipeline(retry=retry(delay=1.0), attempt_timeout=2.0, clock=clock, listener=events)
    helper = asyncio.create_task(advance_when_started(clock, hang, 2.0))
    try:
        assert await pipeline.acall(hang) == "ok"
    finally:
        helper.cancel()
    assert (hang.calls, hang.cancelled) == (2, 1)
    assert clock.sleeps == [1.0]
    assert events.timeouts() == [("attempt", 2.0)]


@pytest.mark.asyncio
async def test_async_attempt_timeout_raises_a_timeout_error_when_retries_run_out(
    clock: FakeClock,
) -> None:
    hang = Hang(hangs=10)
    pipeline = Pipeline(name="svc", retry=retry(attempts=2), attempt_timeout=1.5, clock=clock)
    helper = asyncio.create_task(advance_when_started(clock, hang, 1.5))
    try:
        with pytest.raises(TimeoutError) as caught:
            await pipeline.acall(hang)
    finally:
        helper.cancel()
    error = caught.value
    assert isinstance(error, ResilienceTimeoutError)
    assert (error.scope, error.timeout) == ("attempt", 1.5)
    assert error.__notes__ == [
        "otel-resilience: pipeline 'svc' gave up after 2 attempts (max attempts)"
    ]
    assert hang.cancelled == 2
    # The timeout is spent: the task is not left with a pending cancellation request.
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


@pytest.mark.asyncio
async def test_an_attempt_that_finishes_in_time_leaves_no_timer_behind(clock: FakeClock) -> None:
    async def quick() -> str:
        await checkpoint()
        return "ok"

    pipeline = Pipeline(timeout=5.0, attempt_timeout=1.0, clock=clock)
    assert await pipeline.acall(quick) == "ok"
    # Time passing afterwards must not cancel whatever this task does next.
    later = asyncio.Event()
    asyncio.get_running_loop().call_soon(later.set)
    clock.advance(100.0)
    await later.wait()
    await checkpoint()
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


@pytest.mark.asyncio
async def test_slow_helper_times_out_before_the_function_starts(clock: FakeClock) -> None:
    calls: list[int] = []

    async def fetch() -> str:
        calls.append(1)
        return "fresh"

    pipeline = Pipeline(retry=retry(attempts=1), attempt_timeout=1.0, clock=clock)
    with pytest.raises(ResilienceTimeoutError):
        await pipeline.acall(slow(clock, 2.0, fetch))
    assert calls == []


@pytest.mark.asyncio
async def test_remaining_inside_an_async_attempt(clock: FakeClock) -> None:
    seen: list[float | None] = []

    async def work() -> None:
        seen.append(remaining())
        clock.advance(0.25)
        seen.append(remaining())

    await Pipeline(attempt_timeout=2.0, clock=clock).acall(work)
    assert seen == [2.0, 1.75]
    assert remaining() is None


# -- async total timeout ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_total_timeout_ends_a_hanging_attempt(clock: FakeClock) -> None:
    events = Events()
    hang = Hang(hangs=10)
    pipeline = Pipeline(timeout=3.0, retry=retry(attempts=5), clock=clock, listener=events)
    helper = asyncio.create_task(advance_when_started(clock, hang, 3.0))
    try:
        with pytest.raises(ResilienceTimeoutError) as caught:
            await pipeline.acall(hang)
    finally:
        helper.cancel()
    assert (caught.value.scope, caught.value.timeout) == ("total", 3.0)
    assert (hang.calls, hang.cancelled) == (1, 1)
    assert events.timeouts() == [("total", 3.0)]
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


@pytest.mark.asyncio
async def test_async_total_timeout_ends_a_retry_sleep() -> None:
    clock = HangingSleepClock()
    first = ConnectionError("down")
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise first

    pipeline = Pipeline(timeout=4.0, retry=retry(attempts=5, delay=1.0), clock=clock)
    task = asyncio.create_task(pipeline.acall(down))
    await clock.sleeping.wait()
    clock.advance(4.0)
    with pytest.raises(ResilienceTimeoutError) as caught:
        await task
    assert caught.value.scope == "total"
    assert caught.value.__cause__ is first
    assert calls == 1
    assert clock.sleeps == [1.0]


@pytest.mark.asyncio
async def test_async_total_timeout_gives_up_rather_than_sleep_past_it(clock: FakeClock) -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    pipeline = Pipeline(timeout=5.0, retry=retry(attempts=5, delay=3.0), clock=clock)
    with pytest.raises(ResilienceTimeoutError) as caught:
        await pipeline.acall(down)
    assert caught.value.scope == "total"
    assert calls == 2
    assert clock.sleeps == [3.0]


# -- outside cancellation is never a timeout -------------------------------------------


@pytest.mark.asyncio
async def test_outside_cancellation_of_an_attempt_propagates(clock: FakeClock) -> None:
    hang = Hang(hangs=10)
    pipeline = Pipeline(timeout=10.0, retry=retry(), attempt_timeout=5.0, clock=clock)
    task = asyncio.create_task(pipeline.acall(hang))
    await hang.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (hang.calls, hang.cancelled) == (1, 1)
    assert task.cancelled()


@pytest.mark.asyncio
async def test_outside_cancellation_during_a_retry_sleep_propagates() -> None:
    clock = HangingSleepClock()

    async def down() -> None:
        raise ConnectionError("down")

    pipeline = Pipeline(timeout=10.0, retry=retry(delay=1.0), clock=clock)
    task = asyncio.create_task(pipeline.acall(down))
    await clock.sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


@pytest.mark.asyncio
@pytest.mark.parametrize("scope", ["attempt", "total"])
async def test_outside_cancellation_racing_a_timeout_is_not_swallowed(
    clock: FakeClock, scope: str
) -> None:
    hang = Hang(hangs=10)
    arguments: dict[str, Any] = {"attempt_timeout" if scope == "attempt" else "timeout": 1.0}
    pipeline = Pipeline(retry=retry(attempts=3), clock=clock, **arguments)
    task = asyncio.create_task(pipeline.acall(hang))
    await hang.started.wait()
    task.cancel()  # the caller gives up ...
    clock.advance(1.0)  # ... in the same loop iteration as the timeout fires
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hang.calls == 1
    assert task.cancelled()


# -- sync timeouts ---------------------------------------------------------------------


def test_sync_remaining_is_visible_inside_the_call(clock: FakeClock) -> None:
    seen: list[float | None] = []

    def work() -> str:
        seen.append(remaining())
        clock.advance(0.5)
        seen.append(remaining())
        deadline = current_deadline()
        assert deadline is not None
        assert deadline.clock is clock
        return "ok"

    assert remaining() is None
    assert Pipeline(attempt_timeout=2.0, clock=clock).call(work) == "ok"
    assert seen == [2.0, 1.5]
    assert remaining() is None
    assert current_deadline() is None


def test_sync_remaining_is_the_tighter_of_attempt_and_total(clock: FakeClock) -> None:
    seen: list[float | None] = []
    failures = 0

    def work() -> str:
        nonlocal failures
        seen.append(remaining())
        if failures < 2:
            failures += 1
            raise ConnectionError
        return "ok"

    pipeline = Pipeline(timeout=5.0, retry=retry(delay=1.5), attempt_timeout=2.0, clock=clock)
    assert pipeline.call(work) == "ok"
    # Attempts at 0, 1.5, 3.0: the attempt limit (2 s) until the total (t = 5) is closer.
    assert seen == [2.0, 2.0, 2.0]
    seen.clear()
    failures = 0
    clock.advance(10.0)
    pipeline = Pipeline(timeout=4.0, retry=retry(delay=1.5), attempt_timeout=2.0, clock=clock)
    assert pipeline.call(work) == "ok"
    assert seen == [2.0, 2.0, 1.0]


def test_sync_total_timeout_alone_publishes_its_deadline(clock: FakeClock) -> None:
    seen: list[float | None] = []
    Pipeline(timeout=7.0, clock=clock).call(lambda: seen.append(remaining()))
    assert seen == [7.0]


def test_sync_late_result_is_discarded_and_the_attempt_retried(clock: FakeClock) -> None:
    events = Events()
    side_effects: list[str] = []

    def work() -> str:
        side_effects.append("ran")
        if len(side_effects) == 1:
            clock.advance(3.0)  # overruns the 2 s attempt timeout
            return "late"
        return "fresh"

    pipeline = Pipeline(retry=retry(), attempt_timeout=2.0, clock=clock, listener=events)
    assert pipeline.call(work) == "fresh"
    # The late call ran to completion (its side effect happened); its result was dropped.
    assert side_effects == ["ran", "ran"]
    assert events.timeouts() == [("attempt", 2.0)]


def test_sync_late_result_raises_when_retries_run_out(clock: FakeClock) -> None:
    def work() -> str:
        clock.advance(2.5)
        return "late"

    with pytest.raises(ResilienceTimeoutError) as caught:
        Pipeline(retry=retry(attempts=2), attempt_timeout=Timeout(2.0), clock=clock).call(work)
    assert (caught.value.scope, caught.value.timeout) == ("attempt", 2.0)
    assert isinstance(caught.value, TimeoutError)


def test_sync_total_timeout_discards_a_late_result(clock: FakeClock) -> None:
    events = Events()

    def work() -> str:
        clock.advance(6.0)
        return "late"

    pipeline = Pipeline(timeout=5.0, retry=retry(), clock=clock, listener=events)
    with pytest.raises(ResilienceTimeoutError) as caught:
        pipeline.call(work)
    assert (caught.value.scope, caught.value.timeout) == ("total", 5.0)
    assert events.timeouts() == [("total", 5.0)]


def test_sync_result_exactly_at_the_limit_is_kept(clock: FakeClock) -> None:
    def work() -> str:
        clock.advance(2.0)
        return "just in time"

    assert Pipeline(attempt_timeout=2.0, clock=clock).call(work) == "just in time"
    assert Pipeline(timeout=2.0, clock=clock).call(work) == "just in time"


def test_sync_no_attempt_starts_after_the_total_deadline(clock: FakeClock) -> None:
    starts: list[float] = []

    def work() -> None:
        starts.append(clock.monotonic())
        clock.advance(1.0)
        raise ConnectionError("down")

    pipeline = Pipeline(timeout=4.0, retry=retry(attempts=10, delay=1.0), clock=clock)
    with pytest.raises(ResilienceTimeoutError) as caught:
        pipeline.call(work)
    # Attempts at 0 and 2; one at 4 would start on the deadline.
    assert starts == [0.0, 2.0]
    assert clock.sleeps == [1.0]
    assert isinstance(caught.value.__cause__, ConnectionError)


def test_sync_attempt_ending_on_the_deadline_is_not_retried(clock: FakeClock) -> None:
    calls = 0

    def work() -> None:
        nonlocal calls
        calls += 1
        clock.advance(3.0)
        raise ConnectionError("down")

    pipeline = Pipeline(timeout=3.0, retry=retry(attempts=5), clock=clock)
    with pytest.raises(ResilienceTimeoutError):
        pipeline.call(work)
    assert calls == 1
    assert clock.sleeps == []


class OversleepingClock(FakeClock):
    """Sleeps longer than asked, as a loaded machine does."""

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds + 2.0)


def test_sync_no_attempt_starts_after_the_deadline_even_after_an_oversleep() -> None:
    clock = OversleepingClock()
    starts: list[float] = []

    def work() -> str:
        starts.append(clock.monotonic())
        if len(starts) == 1:
            raise ConnectionError("down")
        return "too late to start"

    pipeline = Pipeline(timeout=2.0, retry=retry(attempts=5, delay=0.5), clock=clock)
    with pytest.raises(ResilienceTimeoutError) as caught:
        pipeline.call(work)
    # The wait was meant to end at 0.5 but ended at 2.5: past the deadline, so no retry.
    assert starts == [0.0]
    assert caught.value.scope == "total"
    assert clock.monotonic() == 2.5
