"""resilient(): every kind of callable, metadata preserved, generators, no stray coroutines."""

from __future__ import annotations

import asyncio
import functools
import inspect
import warnings
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from otel_resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    CircuitState,
    Pipeline,
    ResilientFunction,
    RetryConfig,
    resilient,
)
from otel_resilience.backoff import Constant
from otel_resilience.testing import FakeClock, aflaky

NoLeaks = Callable[[], AbstractContextManager[None]]


async def checkpoint() -> None:
    """Let the other ready tasks run once; no time passes."""
    await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop


def retry(attempts: int = 3) -> RetryConfig:
    return RetryConfig(max_attempts=attempts, backoff=Constant(seconds=1.0))


def open_breaker(clock: FakeClock) -> CircuitBreaker:
    breaker = CircuitBreaker("dep", CircuitBreakerConfig(failure_threshold=1), clock=clock)
    breaker.record_failure(breaker.acquire())
    return breaker


class Flaky:
    """Raises ``ConnectionError`` on the first ``failures`` calls of ``hit()``."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def hit(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"failure {self.calls}")


# -- plain functions -------------------------------------------------------------------


def test_a_function_is_retried_and_keeps_its_metadata(clock: FakeClock) -> None:
    flaky = Flaky(2)

    @resilient(retry=retry(), clock=clock)
    def fetch(key: str, *, default: int = 0) -> str:
        """Fetch ``key``."""
        flaky.hit()
        return f"{key}={default}"

    assert fetch("a", default=3) == "a=3"
    assert flaky.calls == 3
    assert clock.sleeps == [1.0, 1.0]
    assert fetch.__name__ == "fetch"
    assert fetch.__qualname__.endswith("<locals>.fetch")
    assert fetch.__doc__ == "Fetch ``key``."
    assert fetch.__module__ == __name__
    assert str(inspect.signature(fetch)) == "(key: 'str', *, default: 'int' = 0) -> 'str'"
    assert not inspect.iscoroutinefunction(fetch)
    assert isinstance(fetch, ResilientFunction)
    assert fetch.__wrapped__.__name__ == "fetch"


def test_the_pipeline_is_named_after_the_function(clock: FakeClock) -> None:
    @resilient(clock=clock)
    def named() -> None: ...

    assert isinstance(named, ResilientFunction)
    assert named.pipeline.name == named.__qualname__

    @resilient(name="explicit", clock=clock)
    def other() -> None: ...

    assert isinstance(other, ResilientFunction)
    assert other.pipeline.name == "explicit"


def test_a_pipeline_object_is_used_as_given(clock: FakeClock) -> None:
    pipeline = Pipeline(name="shared", retry=retry(), clock=clock)

    @resilient(pipeline)
    def first() -> int:
        return 1

    @pipeline
    def second() -> int:
        return 2

    assert (first(), second()) == (1, 2)
    assert isinstance(first, ResilientFunction)
    assert isinstance(second, ResilientFunction)
    assert first.pipeline is pipeline
    assert second.pipeline is pipeline


def test_bare_decorator_is_a_clear_type_error() -> None:
    def fetch() -> None: ...

    with pytest.raises(TypeError, match=r"with parentheses"):
        resilient(fetch)  # type: ignore[arg-type]


def test_pipeline_and_keywords_together_are_refused_at_once(clock: FakeClock) -> None:
    with pytest.raises(TypeError, match="not both"):
        resilient(Pipeline(clock=clock), retry=retry())


def test_bad_keywords_fail_at_decoration(clock: FakeClock) -> None:
    decorate = resilient(timeout=-1.0, clock=clock)
    with pytest.raises(ValueError, match=r"^Pipeline\.timeout must be > 0"):
        decorate(lambda: None)
    with pytest.raises(TypeError, match="unexpected keyword"):
        resilient(retries=3)(lambda: None)


def test_only_callables_are_decorated() -> None:
    not_callable: Any = 42
    with pytest.raises(TypeError, match="only decorate callables"):
        resilient()(not_callable)


def test_a_decorated_function_is_still_a_function_for_inspect(clock: FakeClock) -> None:
    @resilient(clock=clock)
    def plain(x: int) -> int:
        return x

    assert inspect.isfunction(plain)
    assert inspect.unwrap(plain).__name__ == "plain"
    assert functools.partial(plain, 2)() == 2


# -- methods ---------------------------------------------------------------------------


def test_methods_classmethods_and_staticmethods(clock: FakeClock) -> None:
    flaky = Flaky(1)
    policy: dict[str, Any] = {"retry": retry(), "clock": clock}

    class Client:
        def __init__(self, base: int) -> None:
            self.base = base

        @resilient(**policy)
        def add(self, x: int) -> int:
            """Add to the base."""
            flaky.hit()
            return self.base + x

        @resilient(**policy)
        @classmethod
        def make(cls, base: int) -> Client:
            return cls(base)

        @resilient(**policy)
        @staticmethod
        def double(x: int) -> int:
            return 2 * x

    client = Client(10)
    assert client.add(1) == 11
    assert flaky.calls == 2
    assert Client.add(client, 2) == 12
    assert Client.make(5).base == 5
    assert client.make(6).base == 6
    assert Client.double(4) == 8
    assert client.double(5) == 10
    assert Client.add.__qualname__.endswith("Client.add")
    assert Client.add.__doc__ == "Add to the base."
    assert str(inspect.signature(client.add)) == "(x: 'int') -> 'int'"
    assert str(inspect.signature(Client.make)) == "(base: 'int') -> 'Client'"
    assert str(inspect.signature(Client.double)) == "(x: 'int') -> 'int'"


def test_each_instance_is_bound_correctly(clock: FakeClock) -> None:
    class Counter:
        def __init__(self) -> None:
            self.count = 0

        @resilient(clock=clock)
        def bump(self) -> int:
            self.count += 1
            return self.count

    first, second = Counter(), Counter()
    assert (first.bump(), first.bump(), second.bump()) == (1, 2, 1)


@pytest.mark.asyncio
async def test_async_methods(clock: FakeClock) -> None:
    flaky = Flaky(1)

    class Client:
        @resilient(retry=retry(), clock=clock)
        async def get(self, key: str) -> str:
            await checkpoint()
            flaky.hit()
            return key

    client = Client()
    assert inspect.iscoroutinefunction(Client.get)
    assert inspect.iscoroutinefunction(client.get)
    assert await client.get("k") == "k"
    assert flaky.calls == 2


# -- async functions -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_async_function_is_retried_and_keeps_its_metadata(clock: FakeClock) -> None:
    flaky = Flaky(2)

    @resilient(retry=retry(), clock=clock)
    async def fetch(key: str) -> str:
        """Fetch asynchronously."""
        await checkpoint()
        flaky.hit()
        return key.upper()

    assert inspect.iscoroutinefunction(fetch)
    assert (fetch.__name__, fetch.__doc__) == ("fetch", "Fetch asynchronously.")
    assert str(inspect.signature(fetch)) == "(key: 'str') -> 'str'"
    assert await fetch("a") == "A"
    assert flaky.calls == 3
    assert clock.sleeps == [1.0, 1.0]


@pytest.mark.asyncio
async def test_an_open_breaker_creates_no_coroutine(
    clock: FakeClock, no_leaked_coroutines: NoLeaks
) -> None:
    bodies = 0

    @resilient(circuit_breaker=open_breaker(clock), retry=retry(), clock=clock)
    async def fetch() -> str:
        nonlocal bodies
        bodies += 1
        return "never"

    with no_leaked_coroutines():
        for _ in range(3):
            with pytest.raises(CircuitOpenError):
                await fetch()
    assert bodies == 0
    assert clock.sleeps == []


def test_the_leak_detector_detects_a_leak(no_leaked_coroutines: NoLeaks) -> None:
    async def fetch() -> None: ...

    def leak() -> None:
        coroutine = fetch()
        del coroutine

    with pytest.raises(AssertionError, match="never awaited"), no_leaked_coroutines():
        leak()


@pytest.mark.asyncio
async def test_circuit_breaker_acall_rejects_without_creating_a_coroutine(
    clock: FakeClock, no_leaked_coroutines: NoLeaks
) -> None:
    breaker = open_breaker(clock)
    bodies = 0

    async def fetch() -> str:
        nonlocal bodies
        bodies += 1
        return "never"

    decorated = breaker(fetch)
    assert inspect.iscoroutinefunction(decorated)
    with no_leaked_coroutines():
        with pytest.raises(CircuitOpenError):
            await breaker.acall(fetch)
        with pytest.raises(CircuitOpenError):
            await decorated()
    assert bodies == 0


# -- generators ------------------------------------------------------------------------


def test_a_generator_is_retried_only_before_its_first_item(clock: FakeClock) -> None:
    flaky = Flaky(2)
    produced: list[int] = []

    @resilient(retry=retry(), clock=clock)
    def numbers(limit: int) -> Iterator[int]:
        """Count up."""
        flaky.hit()
        for n in range(limit):
            produced.append(n)
            yield n

    assert inspect.isgeneratorfunction(numbers)
    assert (numbers.__name__, numbers.__doc__) == ("numbers", "Count up.")
    assert str(inspect.signature(numbers)) == "(limit: 'int') -> 'Iterator[int]'"
    generator = numbers(3)
    assert flaky.calls == 0  # nothing runs before the first next()
    assert list(generator) == [0, 1, 2]
    assert flaky.calls == 3
    assert produced == [0, 1, 2]


def test_a_generator_failing_after_its_first_item_is_not_retried(clock: FakeClock) -> None:
    breaker = CircuitBreaker("dep", CircuitBreakerConfig(failure_threshold=1), clock=clock)
    calls = 0
    error = ConnectionError("mid-stream")

    @resilient(retry=retry(), circuit_breaker=breaker, clock=clock)
    def stream() -> Iterator[int]:
        nonlocal calls
        calls += 1
        yield 1
        raise error

    generator = stream()
    assert next(generator) == 1
    with pytest.raises(ConnectionError) as caught:
        next(generator)
    assert caught.value is error
    assert calls == 1
    assert clock.sleeps == []
    # The breaker saw one successful attempt (the first item); the later error is not its.
    metrics = breaker.metrics
    assert (metrics.state, metrics.successes, metrics.failures) == (CircuitState.CLOSED, 1, 0)


def test_send_throw_and_close_reach_the_generator(clock: FakeClock) -> None:
    log: list[object] = []

    @resilient(clock=clock)
    def conversation() -> Generator[str, str, None]:
        try:
            received = yield "hello"
            log.append(("sent", received))
            try:
                yield "waiting"
            except ValueError as error:
                log.append(("thrown", error.args[0]))
                yield "recovered"
            yield "last"
        finally:
            log.append("closed")

    generator = conversation()
    assert next(generator) == "hello"
    assert generator.send("hi") == "waiting"
    assert generator.throw(ValueError("oops")) == "recovered"
    generator.close()
    assert log == [("sent", "hi"), ("thrown", "oops"), "closed"]


def test_an_unhandled_throw_propagates_and_the_return_value_survives(clock: FakeClock) -> None:
    @resilient(clock=clock)
    def answer() -> Generator[int, None, int]:
        yield 1
        return 42

    generator = answer()
    assert next(generator) == 1
    with pytest.raises(StopIteration) as stop:
        next(generator)
    assert stop.value.value == 42

    thrown = answer()
    next(thrown)
    error = KeyError("from the consumer")
    with pytest.raises(KeyError) as caught:
        thrown.throw(error)
    assert caught.value is error


def test_an_empty_generator(clock: FakeClock) -> None:
    @resilient(clock=clock)
    def nothing() -> Iterator[int]:
        return
        yield  # pragma: no cover - makes this a generator function

    assert list(nothing()) == []


def test_an_open_breaker_rejects_a_generator_before_it_runs(clock: FakeClock) -> None:
    bodies = 0

    @resilient(circuit_breaker=open_breaker(clock), clock=clock)
    def stream() -> Iterator[int]:
        nonlocal bodies
        bodies += 1
        yield 1

    with pytest.raises(CircuitOpenError):
        next(stream())
    assert bodies == 0


# -- async generators ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_async_generator_is_retried_before_its_first_item(clock: FakeClock) -> None:
    flaky = Flaky(1)

    @resilient(retry=retry(), clock=clock)
    async def numbers(limit: int) -> AsyncIterator[int]:
        """Count up asynchronously."""
        flaky.hit()
        for n in range(limit):
            await checkpoint()
            yield n

    assert inspect.isasyncgenfunction(numbers)
    assert not inspect.iscoroutinefunction(numbers)
    assert (numbers.__name__, numbers.__doc__) == ("numbers", "Count up asynchronously.")
    assert [n async for n in numbers(3)] == [0, 1, 2]
    assert flaky.calls == 2
    assert clock.sleeps == [1.0]


@pytest.mark.asyncio
async def test_async_generator_asend_athrow_aclose(clock: FakeClock) -> None:
    log: list[object] = []

    @resilient(clock=clock)
    async def conversation() -> AsyncIterator[str]:
        try:
            received = yield "hello"
            log.append(("sent", received))
            try:
                yield "waiting"
            except ValueError as error:
                log.append(("thrown", error.args[0]))
                yield "recovered"
            yield "last"
        finally:
            log.append("closed")

    generator: Any = conversation()
    assert await generator.__anext__() == "hello"
    assert await generator.asend("hi") == "waiting"
    assert await generator.athrow(ValueError("oops")) == "recovered"
    await generator.aclose()
    assert log == [("sent", "hi"), ("thrown", "oops"), "closed"]


@pytest.mark.asyncio
async def test_an_async_generator_failing_mid_stream_is_not_retried(clock: FakeClock) -> None:
    calls = 0

    @resilient(retry=retry(), clock=clock)
    async def stream() -> AsyncIterator[int]:
        nonlocal calls
        calls += 1
        yield 1
        raise ConnectionError("mid-stream")

    seen: list[int] = []

    async def consume() -> None:
        async for item in stream():
            seen.append(item)

    with pytest.raises(ConnectionError):
        await consume()
    assert (seen, calls, clock.sleeps) == ([1], 1, [])


@pytest.mark.asyncio
async def test_an_empty_async_generator(clock: FakeClock) -> None:
    @resilient(clock=clock)
    async def nothing() -> AsyncIterator[int]:
        return
        yield  # pragma: no cover - makes this an async generator function

    assert [n async for n in nothing()] == []


# -- the suite runs with warnings as errors --------------------------------------------


def test_warnings_are_errors_in_this_suite() -> None:
    with pytest.raises(RuntimeWarning):
        warnings.warn("checked", RuntimeWarning, stacklevel=1)


@pytest.mark.asyncio
async def test_an_object_with_an_async_call_is_driven_asynchronously(clock: FakeClock) -> None:
    fetch = aflaky(1, result="ok")
    protected = resilient(retry=retry(), clock=clock)(fetch)
    assert await protected() == "ok"
    assert fetch.calls == 2
