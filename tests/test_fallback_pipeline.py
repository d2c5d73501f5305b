"""The fallback through both drivers: values, handlers, filters, context, async handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from otel_resilience import (
    CircuitBreaker,
    CircuitOpenError,
    Fallback,
    FallbackContext,
    Pipeline,
    ResilienceTimeoutError,
    RetryConfig,
)
from otel_resilience.backoff import Constant
from otel_resilience.testing import FakeClock

NoLeaks = Callable[[], AbstractContextManager[None]]


def retry(attempts: int = 3) -> RetryConfig:
    return RetryConfig(max_attempts=attempts, backoff=Constant(seconds=0.0))


class Handler:
    """A sync fallback handler that records every context it gets."""

    def __init__(self, answer: object = "fallback") -> None:
        self.answer = answer
        self.contexts: list[FallbackContext] = []

    def __call__(self, context: FallbackContext) -> object:
        self.contexts.append(context)
        return self.answer


def raising(error: BaseException) -> Callable[[], object]:
    def fail() -> object:
        raise error

    return fail


async def araising_coroutine(error: BaseException) -> object:
    raise error


# -- values and handlers ---------------------------------------------------------------


def test_a_value_replaces_a_failure(clock: FakeClock) -> None:
    shared: list[int] = []
    pipeline = Pipeline(fallback=Fallback(value=shared), clock=clock)
    assert pipeline.call(raising(ConnectionError())) is shared
    assert pipeline.call(lambda: [1]) == [1]


def test_none_is_a_valid_fallback_value(clock: FakeClock) -> None:
    pipeline = Pipeline(fallback=Fallback(value=None), clock=clock)
    assert pipeline.call(raising(ConnectionError())) is None


def test_a_handler_gets_the_context(clock: FakeClock) -> None:
    handler = Handler()
    error = ConnectionError("down")
    pipeline = Pipeline(name="svc", fallback=Fallback(handler=handler), clock=clock)
    assert pipeline.call(raising(error)) == "fallback"
    assert handler.contexts == [
        FallbackContext(error=error, result=None, attempts=1, pipeline="svc")
    ]


def test_the_handler_runs_once_after_all_retries(clock: FakeClock) -> None:
    handler = Handler()
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError(calls)

    pipeline = Pipeline(fallback=Fallback(handler=handler), retry=retry(4), clock=clock)
    assert pipeline.call(down) == "fallback"
    assert calls == 4
    [context] = handler.contexts
    assert context.attempts == 4
    assert isinstance(context.error, ConnectionError)
    assert context.error.args == (4,)


def test_a_handler_error_propagates(clock: FakeClock) -> None:
    handler_error = LookupError("no cached copy either")

    def handler(context: FallbackContext) -> object:
        raise handler_error

    original = ConnectionError("down")
    pipeline = Pipeline(fallback=Fallback(handler=handler), clock=clock)
    with pytest.raises(LookupError) as caught:
        pipeline.call(raising(original))
    assert caught.value is handler_error
    assert caught.value.__context__ is original


# -- filters ---------------------------------------------------------------------------


def test_filtered_by_exception_type(clock: FakeClock) -> None:
    pipeline = Pipeline(fallback=Fallback(value="cached", on=(ConnectionError,)), clock=clock)
    assert pipeline.call(raising(ConnectionResetError())) == "cached"
    other = KeyError("k")
    with pytest.raises(KeyError) as caught:
        pipeline.call(raising(other))
    assert caught.value is other


def test_filtered_by_predicate(clock: FakeClock) -> None:
    pipeline = Pipeline(
        fallback=Fallback(value="cached", on=lambda error: "soft" in str(error)), clock=clock
    )
    assert pipeline.call(raising(RuntimeError("soft failure"))) == "cached"
    with pytest.raises(RuntimeError, match="hard"):
        pipeline.call(raising(RuntimeError("hard failure")))


def test_filtered_by_result(clock: FakeClock) -> None:
    handler = Handler(answer="default")
    pipeline = Pipeline(
        name="svc",
        fallback=Fallback(handler=handler, on=(), on_result=lambda result: result is None),
        clock=clock,
    )
    assert pipeline.call(lambda: "real") == "real"
    assert pipeline.call(lambda: None) == "default"
    assert handler.contexts == [
        FallbackContext(error=None, result=None, attempts=1, pipeline="svc")
    ]
    # on=() handles no exception at all.
    with pytest.raises(ConnectionError):
        pipeline.call(raising(ConnectionError()))


def test_result_fallback_after_retrying_the_result(clock: FakeClock) -> None:
    handler = Handler(answer="default")
    results: Iterator[object] = iter([0, 0, 0])
    pipeline = Pipeline(
        fallback=Fallback(handler=handler, on_result=lambda r: r == 0),
        retry=RetryConfig(
            max_attempts=3, backoff=Constant(seconds=0.0), retry_on_result=lambda r: r == 0
        ),
        clock=clock,
    )
    assert pipeline.call(lambda: next(results)) == "default"
    [context] = handler.contexts
    assert (context.error, context.result, context.attempts) == (None, 0, 3)


@pytest.mark.parametrize(
    "control",
    [KeyboardInterrupt(), SystemExit(0), GeneratorExit(), asyncio.CancelledError()],
    ids=type,
)
def test_control_flow_is_never_replaced(clock: FakeClock, control: BaseException) -> None:
    handler = Handler()
    pipeline = Pipeline(fallback=Fallback(handler=handler, on=lambda e: True), clock=clock)
    with pytest.raises(type(control)) as caught:
        pipeline.call(raising(control))
    assert caught.value is control
    assert handler.contexts == []


def test_fallback_replaces_the_toolkit_errors(clock: FakeClock) -> None:
    dep = CircuitBreaker("dep", clock=clock)
    dep.force_open()
    handler = Handler()
    pipeline = Pipeline(fallback=Fallback(handler=handler), circuit_breaker=dep, clock=clock)
    assert pipeline.call(lambda: "never") == "fallback"
    assert isinstance(handler.contexts[0].error, CircuitOpenError)

    def late() -> str:
        clock.advance(2.0)
        return "late"

    timed = Pipeline(fallback=Fallback(handler=handler), attempt_timeout=1.0, clock=clock)
    assert timed.call(late) == "fallback"
    assert isinstance(handler.contexts[1].error, ResilienceTimeoutError)


# -- async -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_handler_in_an_async_pipeline(clock: FakeClock) -> None:
    contexts: list[FallbackContext] = []

    async def handler(context: FallbackContext) -> str:
        contexts.append(context)
        await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop
        return "async fallback"

    error = ConnectionError("down")
    pipeline = Pipeline(name="svc", fallback=Fallback(handler=handler), clock=clock)
    assert await pipeline.acall(araising_coroutine, error) == "async fallback"
    assert contexts == [FallbackContext(error=error, result=None, attempts=1, pipeline="svc")]


@pytest.mark.asyncio
async def test_sync_handler_and_value_in_an_async_pipeline(clock: FakeClock) -> None:
    handler = Handler(answer="sync fallback")
    pipeline = Pipeline(fallback=Fallback(handler=handler), clock=clock)
    assert await pipeline.acall(araising_coroutine, ConnectionError()) == "sync fallback"
    valued = Pipeline(fallback=Fallback(value=7), clock=clock)
    assert await valued.acall(araising_coroutine, ConnectionError()) == 7


@pytest.mark.asyncio
async def test_async_result_filter(clock: FakeClock) -> None:
    async def empty() -> list[int]:
        return []

    pipeline = Pipeline(fallback=Fallback(value=[0], on_result=lambda r: r == []), clock=clock)
    assert await pipeline.acall(empty) == [0]


@pytest.mark.asyncio
async def test_async_handler_error_propagates(clock: FakeClock) -> None:
    handler_error = LookupError("nothing cached")

    async def handler(context: FallbackContext) -> str:
        raise handler_error

    pipeline = Pipeline(fallback=Fallback(handler=handler), clock=clock)
    with pytest.raises(LookupError) as caught:
        await pipeline.acall(araising_coroutine, ConnectionError())
    assert caught.value is handler_error


def test_async_handler_in_a_sync_pipeline_names_the_fallback(
    clock: FakeClock, no_leaked_coroutines: NoLeaks
) -> None:
    calls = 0

    async def handler(context: FallbackContext) -> str:
        nonlocal calls
        calls += 1
        return "never"

    original = ConnectionError("down")
    pipeline = Pipeline(fallback=Fallback(handler=handler, name="cache"), clock=clock)
    with no_leaked_coroutines(), pytest.raises(TypeError, match="'cache'") as caught:
        pipeline.call(raising(original))
    assert "async" in str(caught.value)
    assert caught.value.__cause__ is original
    assert calls == 0


def test_async_handler_not_needed_in_a_sync_pipeline_is_harmless(clock: FakeClock) -> None:
    async def handler(context: FallbackContext) -> str:
        return "never"

    pipeline = Pipeline(fallback=Fallback(handler=handler), clock=clock)
    assert pipeline.call(lambda: "fine") == "fine"
