"""Failure paths leave no reference cycles, and a given-up error keeps its own context.

An exception's traceback holds every frame it passed through. A driver frame that still
refers to the exception (a local, or the call's run) when it ends closes a cycle: the
error, its traceback, the frames, and everything they hold (arguments, results) then wait
for the cyclic garbage collector instead of being freed at once. Under a failure storm
that is most calls. Each test counts what ``gc.collect()`` finds unreachable after many
calls of one shape, with automatic collection off: it must be nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    ErrorRecoveryOrchestrator,
    Fallback,
    FallbackContext,
    Pipeline,
    RetryConfig,
    SharedCircuitBreaker,
    resilient,
)
from otel_resilience.backoff import Constant
from otel_resilience.stores import AsyncInMemoryStateStore, InMemoryStateStore
from otel_resilience.testing import FakeClock, slow

CALLS = 20


@pytest.fixture(autouse=True)
def _no_automatic_collection() -> Iterator[None]:
    """Cycles must be left for the explicit count, not collected along the way."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


ROUNDS = 3
"""Each count is the least of a few rounds: a thread left running by another test (an
exporter's timer, say) may make garbage now and then; a cycle per call shows every time."""


def _leftover_sync(call: Callable[[], object]) -> int:
    """Unreachable objects ``gc.collect()`` finds after :data:`CALLS` calls of ``call``."""
    call_swallowing(call)  # warm up: first-call caches are not garbage
    found = []
    for _ in range(ROUNDS):
        gc.collect()
        for _ in range(CALLS):
            call_swallowing(call)
        found.append(gc.collect())
    return min(found)


def call_swallowing(call: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):  # every outcome is fine here; garbage is judged
        call()


def _leftover_async(call: Callable[[], Awaitable[object]]) -> int:
    async def main() -> int:
        async def once() -> None:
            with contextlib.suppress(Exception):
                await call()

        await once()
        found = []
        for _ in range(ROUNDS):
            gc.collect()
            for _ in range(CALLS):
                await once()
            found.append(gc.collect())
        return min(found)

    return asyncio.run(main())


class Dependency:
    """Fails ``failures`` times per call of the pipeline, then returns 1 (never: -1)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def reset(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.failures < 0 or self.calls <= self.failures:
            raise ConnectionError(self.calls)
        return 1

    async def acall(self) -> int:
        return self()


def _retry(attempts: int = 3) -> RetryConfig:
    return RetryConfig(max_attempts=attempts, backoff=Constant(seconds=0))


def _forced_open() -> CircuitBreaker:
    breaker = CircuitBreaker("forced")
    breaker.force_open()
    return breaker


def _fallback() -> Fallback:
    return Fallback(value=0)


def _never_opens() -> CircuitBreaker:
    return CircuitBreaker("closed", CircuitBreakerConfig(failure_threshold=10**6))


def _fallback_raising(context: FallbackContext) -> object:
    raise LookupError("no cached copy either")


@dataclass(frozen=True)
class Shape:
    """A pipeline and a dependency behaviour whose calls are counted."""

    name: str
    failures: int
    build: Callable[[FakeClock], dict[str, Any]]
    slow_seconds: float = 0.0


SHAPES = [
    Shape("success", 0, lambda _: {"retry": _retry()}),
    Shape("two failures then success", 2, lambda _: {"retry": _retry()}),
    Shape("retries give up", -1, lambda _: {"retry": _retry()}),
    Shape(
        "breaker only, failing",
        -1,
        lambda _: {"circuit_breaker": _never_opens()},
    ),
    Shape("rejection", 0, lambda _: {"circuit_breaker": _forced_open()}),
    Shape(
        "rejection, retried",
        0,
        lambda _: {
            "circuit_breaker": _forced_open(),
            "retry": RetryConfig(
                max_attempts=2, backoff=Constant(seconds=0), retry_rejections=True
            ),
        },
    ),
    Shape("fallback after give-up", -1, lambda _: {"retry": _retry(), "fallback": _fallback()}),
    Shape(
        "fallback on rejection",
        0,
        lambda _: {"circuit_breaker": _forced_open(), "fallback": Fallback(value=0)},
    ),
    Shape(
        "fallback handler raises",
        -1,
        lambda _: {"fallback": Fallback(handler=_fallback_raising)},
    ),
    Shape(
        "attempt timeouts, then give-up",
        0,
        lambda _: {"retry": _retry(), "attempt_timeout": 1.0, "timeout": 10.0},
        slow_seconds=2.0,
    ),
    Shape(
        "orchestrator consulted",
        -1,
        lambda clock: {"retry": _retry(), "orchestrator": ErrorRecoveryOrchestrator(clock=clock)},
    ),
]


def _telemetry(observed: bool) -> dict[str, Any]:
    if not observed:
        return {"telemetry": False}
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return {"tracer_provider": tracer_provider, "meter_provider": meter_provider}


def _pipeline(shape: Shape, clock: FakeClock, *, observed: bool) -> Pipeline:
    return Pipeline(name="cycles", clock=clock, **shape.build(clock), **_telemetry(observed))


@pytest.mark.parametrize("observed", [False, True], ids=["no-telemetry", "sdk"])
@pytest.mark.parametrize("shape", SHAPES, ids=[shape.name for shape in SHAPES])
def test_sync_calls_leave_no_cycles(shape: Shape, observed: bool, clock: FakeClock) -> None:
    pipeline = _pipeline(shape, clock, observed=observed)
    dependency = Dependency(shape.failures)
    target: Callable[[], int] = slow(clock, shape.slow_seconds, dependency)

    def call() -> int:
        dependency.reset()
        return pipeline.call(target)

    assert _leftover_sync(call) == 0


@pytest.mark.parametrize("observed", [False, True], ids=["no-telemetry", "sdk"])
@pytest.mark.parametrize("shape", SHAPES, ids=[shape.name for shape in SHAPES])
def test_async_calls_leave_no_cycles(shape: Shape, observed: bool, clock: FakeClock) -> None:
    pipeline = _pipeline(shape, clock, observed=observed)
    dependency = Dependency(shape.failures)
    target = slow(clock, shape.slow_seconds, dependency.acall)

    async def call() -> int:
        dependency.reset()
        return await pipeline.acall(target)

    assert _leftover_async(call) == 0


class Interrupted(BaseException):
    """Control flow (as KeyboardInterrupt or CancelledError are): never retried or counted."""


class InterruptedAfterFailures(Dependency):
    """Fails twice, then control flow ends the call on the third attempt."""

    def __init__(self) -> None:
        super().__init__(2)

    def __call__(self) -> int:
        if self.calls == 2:
            self.calls += 1
            raise Interrupted
        return super().__call__()


@pytest.mark.parametrize("breaker", [False, True], ids=["retry", "retry+breaker"])
@pytest.mark.parametrize("observed", [False, True], ids=["no-telemetry", "sdk"])
def test_control_flow_ending_a_retried_call_leaves_no_cycles(
    breaker: bool,
    observed: bool,
    clock: FakeClock,
) -> None:
    """The errors of the failed attempts are let go when control flow ends the call."""
    strategies: dict[str, Any] = {"retry": _retry(4)}
    if breaker:
        strategies["circuit_breaker"] = _never_opens()
    pipeline = Pipeline(name="interrupted", clock=clock, **strategies, **_telemetry(observed))
    dependency = InterruptedAfterFailures()

    def call() -> object:
        dependency.reset()
        try:
            return pipeline.call(dependency)
        except Interrupted:
            return None

    async def acall() -> object:
        dependency.reset()
        try:
            return await pipeline.acall(dependency.acall)
        except Interrupted:
            return None

    assert _leftover_sync(call) == 0
    assert _leftover_async(acall) == 0
    assert dependency.calls == 3


def test_the_counting_sees_a_cycle() -> None:
    """The check can fail: an error kept by the frame it was raised through is counted."""

    def keeps_its_error() -> None:
        error = ConnectionError("kept")
        raise error

    assert _leftover_sync(keeps_its_error) > 0


def test_breaker_acquire_rejections_leave_no_cycles() -> None:
    breaker = _forced_open()
    assert _leftover_sync(breaker.acquire) == 0


def test_shared_breaker_rejections_leave_no_cycles(clock: FakeClock) -> None:
    shared = CircuitBreaker("shared", clock=clock, store=InMemoryStateStore(clock=clock))
    assert isinstance(shared, SharedCircuitBreaker)
    shared.force_open()
    assert _leftover_sync(shared.acquire) == 0

    remote = CircuitBreaker("remote", clock=clock, store=AsyncInMemoryStateStore(clock=clock))
    assert isinstance(remote, SharedCircuitBreaker)

    async def force_open() -> None:
        remote.force_open()  # queued for the asyncio store
        await remote.aflush()

    asyncio.run(force_open())
    assert _leftover_async(remote.aacquire) == 0


def test_generators_leave_no_cycles(clock: FakeClock) -> None:
    dependency = Dependency(-1)

    @resilient(retry=_retry(), clock=clock, telemetry=False)
    def items() -> Iterator[int]:
        yield dependency()

    @resilient(retry=_retry(), clock=clock, telemetry=False)
    async def aitems() -> AsyncIterator[int]:
        yield dependency()

    async def first_async_item() -> int:
        return await anext(aitems())

    assert _leftover_sync(lambda: next(items())) == 0
    assert _leftover_async(first_async_item) == 0


# -- what a given-up error carries --------------------------------------------------------


@pytest.mark.parametrize("observed", [False, True], ids=["fast-path", "general-path"])
def test_a_given_up_error_has_no_context_from_earlier_attempts(
    observed: bool,
    clock: FakeClock,
) -> None:
    """Attempts 2 and 3 do not run 'during handling' of attempt 1: no implicit chaining."""
    pipeline = Pipeline(name="context", retry=_retry(), clock=clock, **_telemetry(observed))
    dependency = Dependency(-1)
    with pytest.raises(ConnectionError) as sync_caught:
        pipeline.call(dependency)
    assert sync_caught.value.args == (3,)
    assert sync_caught.value.__context__ is None

    dependency.reset()
    with pytest.raises(ConnectionError) as async_caught:
        asyncio.run(pipeline.acall(dependency.acall))
    assert async_caught.value.args == (3,)
    assert async_caught.value.__context__ is None


@pytest.mark.parametrize("observed", [False, True], ids=["fast-path", "general-path"])
def test_a_fallback_handler_error_is_chained_to_the_failure_it_handled(
    observed: bool,
    clock: FakeClock,
) -> None:
    """As if raised in an ``except`` block for it, on every path, sync and async."""
    pipeline = Pipeline(
        name="chained",
        fallback=Fallback(handler=_fallback_raising),
        clock=clock,
        **_telemetry(observed),
    )
    with pytest.raises(LookupError) as sync_caught:
        pipeline.call(Dependency(-1))
    assert isinstance(sync_caught.value.__context__, ConnectionError)

    with pytest.raises(LookupError) as async_caught:
        asyncio.run(pipeline.acall(Dependency(-1).acall))
    assert isinstance(async_caught.value.__context__, ConnectionError)
