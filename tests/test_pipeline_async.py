"""The async driver: the same decisions as the sync one, awaited; real loops and tasks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from otel_resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    CircuitState,
    Fallback,
    FallbackContext,
    Pipeline,
    RetryConfig,
)
from otel_resilience.backoff import Constant
from otel_resilience.testing import FakeClock

NoLeaks = Callable[[], AbstractContextManager[None]]


async def checkpoint() -> None:
    """Let the other ready tasks run once; no time passes."""
    await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop


def breaker(
    clock: FakeClock, *, failures: int = 5, timeout: float = 60.0, trials: int = 1
) -> CircuitBreaker:
    return CircuitBreaker(
        "dep",
        CircuitBreakerConfig(
            failure_threshold=failures,
            success_threshold=1,
            timeout_seconds=timeout,
            half_open_max_calls=trials,
        ),
        clock=clock,
    )


def retry(attempts: int = 3, delay: float = 1.0) -> RetryConfig:
    return RetryConfig(max_attempts=attempts, backoff=Constant(seconds=delay))


class AsyncScript:
    """An async function playing a script; exceptions are raised as the same objects."""

    def __init__(self, clock: FakeClock, *items: object) -> None:
        self.clock = clock
        self.items = list(items)
        self.started: list[float] = []
        self.bodies = 0

    async def __call__(self, *args: object) -> Any:
        self.bodies += 1
        self.started.append(self.clock.monotonic())
        await checkpoint()  # a real suspension point inside every attempt
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


@pytest.mark.asyncio
async def test_acall_passes_arguments_and_returns(clock: FakeClock) -> None:
    async def add(a: int, b: int, *, scale: int = 1) -> int:
        await checkpoint()
        return (a + b) * scale

    assert await Pipeline(clock=clock).acall(add, 2, 3, scale=2) == 10


@pytest.mark.asyncio
async def test_retries_await_the_clock(clock: FakeClock) -> None:
    script = AsyncScript(clock, ConnectionError(), ConnectionError(), "ok")
    assert await Pipeline(retry=retry(), clock=clock).acall(script) == "ok"
    assert script.started == [0.0, 1.0, 2.0]
    assert clock.sleeps == [1.0, 1.0]


@pytest.mark.asyncio
async def test_zero_waits_are_not_awaited(clock: FakeClock) -> None:
    script = AsyncScript(clock, ConnectionError(), ConnectionError(), "ok")
    assert await Pipeline(retry=retry(delay=0.0), clock=clock).acall(script) == "ok"
    assert clock.sleeps == []


@pytest.mark.asyncio
async def test_give_up_reraises_the_same_exception_with_a_note(clock: FakeClock) -> None:
    errors = [ConnectionError(str(n)) for n in range(3)]
    script = AsyncScript(clock, *errors)
    with pytest.raises(ConnectionError) as caught:
        await Pipeline(name="svc", retry=retry(), clock=clock).acall(script)
    assert caught.value is errors[-1]
    assert caught.value.__notes__ == [
        "otel-resilience: pipeline 'svc' gave up after 3 attempts (max attempts)"
    ]


@pytest.mark.asyncio
async def test_retry_on_result_returns_the_last_result(clock: FakeClock) -> None:
    script = AsyncScript(clock, 503, 503, 503)
    pipeline = Pipeline(
        retry=RetryConfig(backoff=Constant(seconds=0.5), retry_on_result=lambda r: r == 503),
        clock=clock,
    )
    assert await pipeline.acall(script) == 503
    assert script.bodies == 3
    assert clock.sleeps == [0.5, 0.5]


@pytest.mark.asyncio
async def test_every_attempt_asks_the_breaker_and_a_rejection_creates_no_coroutine(
    clock: FakeClock, no_leaked_coroutines: NoLeaks
) -> None:
    dep = breaker(clock, failures=2)
    script = AsyncScript(clock, ConnectionError(), ConnectionError(), "never")
    pipeline = Pipeline(retry=retry(attempts=5), circuit_breaker=dep, clock=clock)
    with no_leaked_coroutines():
        with pytest.raises(CircuitOpenError):
            await pipeline.acall(script)
        assert script.bodies == 2
        assert dep.metrics.rejections == 1
        for _ in range(3):
            with pytest.raises(CircuitOpenError):
                await pipeline.acall(script)
        assert script.bodies == 2


@pytest.mark.asyncio
async def test_fallback_gets_the_final_outcome(clock: FakeClock) -> None:
    contexts: list[FallbackContext] = []

    async def handler(context: FallbackContext) -> str:
        contexts.append(context)
        await checkpoint()
        return "cached"

    errors = [ConnectionError("a"), ConnectionError("b")]
    script = AsyncScript(clock, *errors)
    pipeline = Pipeline(
        name="svc", fallback=Fallback(handler=handler), retry=retry(attempts=2), clock=clock
    )
    assert await pipeline.acall(script) == "cached"
    [context] = contexts
    assert (context.error, context.attempts, context.pipeline) == (errors[-1], 2, "svc")


@pytest.mark.asyncio
async def test_many_tasks_share_one_breaker(clock: FakeClock) -> None:
    dep = breaker(clock, failures=10_000)
    running = 0
    peak = 0

    async def work(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await checkpoint()
        running -= 1
        if n % 5 == 0:
            raise ConnectionError(n)
        return n

    pipeline = Pipeline(circuit_breaker=dep, clock=clock)
    results = await asyncio.gather(
        *(pipeline.acall(work, n) for n in range(200)), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, ConnectionError)]
    assert len(failures) == 40
    assert [r for r in results if not isinstance(r, BaseException)] == [
        n for n in range(200) if n % 5
    ]
    assert peak > 1  # the tasks really interleaved
    metrics = dep.metrics
    assert (metrics.successes, metrics.failures) == (160, 40)


def test_two_event_loops_in_two_threads_share_one_pipeline() -> None:
    clock = FakeClock()
    dep = breaker(clock, failures=10_000)
    pipeline = Pipeline(retry=retry(attempts=2, delay=0.0), circuit_breaker=dep, clock=clock)
    errors: list[BaseException] = []

    async def work(n: int) -> int:
        await checkpoint()
        return n

    async def main(offset: int) -> list[int]:
        return list(await asyncio.gather(*(pipeline.acall(work, offset + n) for n in range(100))))

    results: dict[int, list[int]] = {}

    def thread_main(offset: int) -> None:
        try:
            results[offset] = asyncio.run(main(offset))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=thread_main, args=(o,)) for o in (0, 1000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == {0: list(range(100)), 1000: list(range(1000, 1100))}
    assert dep.metrics.successes == 200


@pytest.mark.asyncio
async def test_half_open_trials_are_limited_across_tasks(clock: FakeClock) -> None:
    dep = breaker(clock, failures=1, timeout=10.0, trials=2)
    dep.record_failure(dep.acquire())
    clock.advance(10.0)
    gate = asyncio.Event()
    entered = 0

    async def trial() -> str:
        nonlocal entered
        entered += 1
        await gate.wait()
        return "ok"

    pipeline = Pipeline(circuit_breaker=dep, clock=clock)
    tasks = [asyncio.create_task(pipeline.acall(trial)) for _ in range(5)]
    for _ in range(5):
        await checkpoint()
    # Two trials run; the other three were refused at once, telling them to retry now.
    rejected = [t for t in tasks if t.done()]
    assert len(rejected) == 3
    for task in rejected:
        error = task.exception()
        assert isinstance(error, CircuitOpenError)
        assert error.retry_after == 0.0
    assert entered == 2
    gate.set()
    done = await asyncio.gather(*(t for t in tasks if t not in rejected))
    assert done == ["ok", "ok"]
    assert dep.state is CircuitState.CLOSED
