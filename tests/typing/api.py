"""Typical uses of the public API, checked by ``mypy --strict`` (tests/test_typing.py).

This file is type-checked and never run. Every annotated assignment below states a type
the API must keep: a decorator that lost the function's type, or a driver returning
``Any``, would make mypy reject one of them (see the negative checks in the test).
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterator

from otel_resilience import (
    AttemptOutcome,
    Bulkhead,
    BulkheadFullError,
    CallObserver,
    CallOutcome,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerMetrics,
    CircuitOpenError,
    CircuitState,
    Fallback,
    FallbackContext,
    Pipeline,
    ResilienceEvent,
    ResilienceListener,
    ResilienceTimeoutError,
    ResilientFunction,
    Retry,
    RetryBudget,
    RetryConfig,
    RetryScheduled,
    SharedCircuitBreaker,
    Timeout,
    backoff,
    remaining,
    resilient,
    unwrap,
    wrap,
)
from otel_resilience.stores import (
    AsyncBreakerStateStore,
    AsyncInMemoryStateStore,
    BreakerStateStore,
    InMemoryStateStore,
    StoreView,
)
from otel_resilience.stores.redis import AsyncRedisStateStore, RedisStateStore
from otel_resilience.testing import FakeClock, set_testing

clock = FakeClock()

# -- configuration ---------------------------------------------------------------------

breaker = CircuitBreaker(
    "inventory",
    CircuitBreakerConfig(failure_threshold=5, success_threshold=3, timeout_seconds=60.0),
    clock=clock,
)
budget = RetryBudget(ratio=0.1, min_retries=3, clock=clock)
retry_config = RetryConfig(
    max_attempts=4,
    backoff=backoff.Exponential(initial=0.1, multiplier=2.0, max_delay=5.0),
    retry_on=(ConnectionError, TimeoutError),
    retry_on_result=lambda status: status == 503,
    deadline_seconds=30.0,
    max_retry_after=10.0,
    budget=budget,
)
pipeline = Pipeline(
    name="inventory",
    fallback=Fallback(value=None),
    timeout=Timeout(10.0),
    retry=retry_config,
    circuit_breaker=breaker,
    attempt_timeout=2.0,
    bulkhead=Bulkhead(10, max_queue=20, queue_timeout=1.0),
    clock=clock,
)


# -- decorated functions keep their types ----------------------------------------------


@resilient(retry=RetryConfig(max_attempts=2), clock=clock)
def fetch(key: str, *, page: int = 1) -> int:
    return len(key) * page


@resilient(pipeline)
async def afetch(key: str) -> bytes:
    return key.encode()


@resilient(clock=clock)
def numbers(limit: int) -> Iterator[int]:
    yield from range(limit)


@resilient(clock=clock)
async def anumbers(limit: int) -> AsyncIterator[int]:
    for n in range(limit):
        yield n


class Client:
    @resilient(retry=RetryConfig(), clock=clock)
    def get(self, key: str) -> str:
        return key

    @resilient(retry=RetryConfig(), clock=clock)
    async def aget(self, key: str) -> str:
        return key

    @resilient(clock=clock)
    @classmethod
    def create(cls) -> Client:
        return cls()

    @resilient(clock=clock)
    @staticmethod
    def version() -> tuple[int, int]:
        return (1, 0)


count: int = fetch("a", page=2)
item: str = Client().get("k")
created: Client = Client.create()
version: tuple[int, int] = Client.version()
first: int = next(numbers(3))


async def use_async() -> None:
    data: bytes = await afetch("k")
    text: str = await Client().aget("k")
    async for number in anumbers(2):
        doubled: int = number * 2
    awaited: bytes = await pipeline.acall(afetch, "k")
    del data, text, doubled, awaited


# -- drivers keep the function's types -------------------------------------------------


def add(a: int, b: int) -> int:
    return a + b


total: int = pipeline.call(add, 1, 2)
named: int = Pipeline(clock=clock).call(fetch, "k", page=3)


@pipeline
def decorated_by_pipeline(flag: bool) -> list[str]:
    return ["yes"] if flag else []


listed: list[str] = decorated_by_pipeline(True)


# -- strategies used alone -------------------------------------------------------------

retry = Retry(RetryConfig(max_attempts=3), clock=clock)
retried: int = retry.call(add, 2, 3)


@retry
def retried_function(x: float) -> float:
    return x / 2


halved: float = retried_function(3.0)


@breaker
async def guarded() -> dict[str, int]:
    return {}


async def use_breaker() -> None:
    mapping: dict[str, int] = await guarded()
    value: int = await breaker.acall(fetch_async_int, 1)
    del mapping, value


async def fetch_async_int(x: int) -> int:
    return x


state: CircuitState = breaker.state
metrics: CircuitBreakerMetrics = breaker.metrics
opened_count: int = metrics.failures


# -- fallbacks -------------------------------------------------------------------------


def from_cache(context: FallbackContext) -> int:
    attempts: int = context.attempts
    error: BaseException | None = context.error
    del error
    return attempts


async def from_cache_async(context: FallbackContext) -> int:
    return context.attempts


handlers = [
    Fallback(handler=from_cache, on=(ConnectionError,)),
    Fallback(handler=from_cache_async, name="async-cache"),
    Fallback(value=0, on_result=lambda result: result is None),
]


# -- errors ----------------------------------------------------------------------------


def classify(error: Exception) -> str:
    if isinstance(error, CircuitOpenError):
        after: float | None = error.retry_after
        return f"{error.breaker_name} {after}"
    if isinstance(error, BulkheadFullError):
        return f"{error.bulkhead_name} {error.reason}"
    if isinstance(error, ResilienceTimeoutError):
        seconds: float = error.timeout
        timeout_error: TimeoutError = error
        del timeout_error
        return f"{error.scope} {seconds}"
    return type(error).__name__


# -- the listener seam -----------------------------------------------------------------


class Observer:
    def attempt_started(self, attempt: int) -> None:
        pass

    def attempt_ended(
        self, attempt: int, outcome: AttemptOutcome, error: BaseException | None, duration: float
    ) -> None:
        pass

    def call_ended(
        self, outcome: CallOutcome, error: BaseException | None, duration: float
    ) -> None:
        pass


class Listener:
    def start_call(self, pipeline: str) -> CallObserver | None:
        return Observer()

    def on_event(self, event: ResilienceEvent) -> None:
        if isinstance(event, RetryScheduled):
            delay: float = event.delay
            del delay


listener: ResilienceListener = Listener()
observed = Pipeline(name="observed", listener=listener, clock=clock)


# -- patching, deadlines, testing ------------------------------------------------------

wrapper: ResilientFunction = wrap("json:dumps", retry=RetryConfig())
wrapped_pipeline: Pipeline = wrapper.pipeline
unwrap("json:dumps")

left: float | None = remaining()
set_testing(True, attempts=1)
with set_testing(True, attempts=2):
    pass

server_delay = datetime.timedelta(seconds=3)
slept: list[float] = clock.sleeps
clock.advance(1.5)


# -- shared breaker state -----------------------------------------------------------------


def shared_breakers() -> None:
    memory: BreakerStateStore = InMemoryStateStore(clock=clock)
    redis_store: BreakerStateStore = RedisStateStore.from_url("redis://127.0.0.1:6379/0")
    async_store: AsyncBreakerStateStore = AsyncInMemoryStateStore()
    async_redis: AsyncBreakerStateStore = AsyncRedisStateStore.from_url("redis://127.0.0.1/0")
    generic: CircuitBreaker = CircuitBreaker("shared", store=memory, clock=clock)
    shared = SharedCircuitBreaker(
        "shared", CircuitBreakerConfig(), store=redis_store, max_staleness_seconds=0.25
    )
    view: StoreView | None = shared.store_status().view
    degraded: bool = shared.store_status().degraded
    del generic, view, degraded, async_store, async_redis
