"""Control flow is not failure: propagated unchanged, never retried, counted or replaced."""

from __future__ import annotations

import asyncio

import pytest

from otel_resilience import (
    Bulkhead,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerMetrics,
    CircuitState,
    Fallback,
    FallbackContext,
    Pipeline,
    RetryConfig,
)
from otel_resilience.backoff import Constant
from otel_resilience.testing import FakeClock

CONTROL_FLOW = [
    pytest.param(KeyboardInterrupt, id="KeyboardInterrupt"),
    pytest.param(SystemExit, id="SystemExit"),
    pytest.param(GeneratorExit, id="GeneratorExit"),
    pytest.param(asyncio.CancelledError, id="CancelledError"),
]


def counted(metrics: CircuitBreakerMetrics) -> tuple[int, int, int, int, int, int]:
    return (
        metrics.calls,
        metrics.successes,
        metrics.failures,
        metrics.ignored,
        metrics.consecutive_failures,
        metrics.trials_in_flight,
    )


class Setup:
    """A pipeline with every strategy that could wrongly react to control flow."""

    def __init__(self, clock: FakeClock, *, trials: int = 1) -> None:
        self.clock = clock
        self.breaker = CircuitBreaker(
            "dep",
            CircuitBreakerConfig(
                failure_threshold=1,
                success_threshold=1,
                timeout_seconds=10.0,
                half_open_max_calls=trials,
            ),
            clock=clock,
        )
        self.bulkhead = Bulkhead(1)
        self.fallback_contexts: list[FallbackContext] = []
        self.pipeline = Pipeline(
            fallback=Fallback(handler=self.handle, on=lambda error: True),
            retry=RetryConfig(
                max_attempts=5, backoff=Constant(seconds=1.0), retry_on=lambda error: True
            ),
            circuit_breaker=self.breaker,
            bulkhead=self.bulkhead,
            clock=clock,
        )

    def handle(self, context: FallbackContext) -> str:
        self.fallback_contexts.append(context)
        return "fallback"

    def half_open(self) -> None:
        self.breaker.record_failure(self.breaker.acquire())
        self.clock.advance(10.0)
        assert self.breaker.state is CircuitState.HALF_OPEN

    def state(self) -> CircuitState:
        return self.breaker.state

    def assert_untouched(self, before: CircuitBreakerMetrics) -> None:
        assert counted(self.breaker.metrics) == counted(before)
        assert self.bulkhead.in_flight == 0
        assert self.fallback_contexts == []
        assert self.clock.sleeps == []


@pytest.mark.parametrize("kind", CONTROL_FLOW)
def test_sync_control_flow_propagates_unchanged(
    clock: FakeClock, kind: type[BaseException]
) -> None:
    setup = Setup(clock)
    control = kind()
    calls = 0

    def interrupted() -> None:
        nonlocal calls
        calls += 1
        raise control

    before = setup.breaker.metrics
    with pytest.raises(kind) as caught:
        setup.pipeline.call(interrupted)
    assert caught.value is control
    assert calls == 1
    assert not getattr(control, "__notes__", [])
    setup.assert_untouched(before)
    assert setup.breaker.state is CircuitState.CLOSED


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", CONTROL_FLOW)
async def test_async_control_flow_propagates_unchanged(
    clock: FakeClock, kind: type[BaseException]
) -> None:
    setup = Setup(clock)
    control = kind()
    calls = 0

    async def interrupted() -> None:
        nonlocal calls
        calls += 1
        raise control

    before = setup.breaker.metrics
    with pytest.raises(kind) as caught:
        await setup.pipeline.acall(interrupted)
    assert caught.value is control
    assert calls == 1
    assert not getattr(control, "__notes__", [])
    setup.assert_untouched(before)


@pytest.mark.parametrize("kind", CONTROL_FLOW)
def test_sync_control_flow_releases_a_half_open_permit(
    clock: FakeClock, kind: type[BaseException]
) -> None:
    setup = Setup(clock, trials=1)
    setup.half_open()
    before = setup.breaker.metrics

    def interrupted() -> None:
        raise kind

    with pytest.raises(kind):
        setup.pipeline.call(interrupted)
    setup.assert_untouched(before)
    assert setup.state() is CircuitState.HALF_OPEN
    # The only trial slot is free again: another trial is admitted, and closes the breaker.
    assert setup.pipeline.call(lambda: "trial") == "trial"
    assert setup.state() is CircuitState.CLOSED


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", CONTROL_FLOW)
async def test_async_control_flow_releases_a_half_open_permit(
    clock: FakeClock, kind: type[BaseException]
) -> None:
    setup = Setup(clock, trials=1)
    setup.half_open()
    before = setup.breaker.metrics

    async def interrupted() -> None:
        raise kind

    async def trial() -> str:
        return "trial"

    with pytest.raises(kind):
        await setup.pipeline.acall(interrupted)
    setup.assert_untouched(before)
    assert await setup.pipeline.acall(trial) == "trial"
    assert setup.breaker.state is CircuitState.CLOSED


@pytest.mark.asyncio
async def test_cancelling_a_half_open_trial_releases_its_permit(clock: FakeClock) -> None:
    setup = Setup(clock, trials=1)
    setup.half_open()
    before = setup.breaker.metrics
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(setup.pipeline.acall(hang))
    await started.wait()
    assert setup.breaker.metrics.trials_in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    setup.assert_untouched(before)

    async def trial() -> str:
        return "trial"

    assert await setup.pipeline.acall(trial) == "trial"
    assert setup.breaker.state is CircuitState.CLOSED


@pytest.mark.asyncio
async def test_a_cancelled_error_raised_by_the_function_is_not_a_timeout(
    clock: FakeClock,
) -> None:
    control = asyncio.CancelledError()

    async def cancelled() -> None:
        raise control

    pipeline = Pipeline(
        timeout=5.0,
        retry=RetryConfig(max_attempts=3, retry_on=lambda error: True),
        attempt_timeout=1.0,
        clock=clock,
    )
    with pytest.raises(asyncio.CancelledError) as caught:
        await pipeline.acall(cancelled)
    assert caught.value is control


def test_control_flow_during_many_calls_leaves_no_permit_behind(clock: FakeClock) -> None:
    setup = Setup(clock, trials=2)
    setup.half_open()
    for _ in range(50):
        with pytest.raises(KeyboardInterrupt):
            setup.pipeline.call(_interrupt)
    assert setup.breaker.metrics.trials_in_flight == 0
    assert setup.bulkhead.in_flight == 0


def _interrupt() -> None:
    raise KeyboardInterrupt
