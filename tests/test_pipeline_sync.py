"""The sync driver: the fixed strategy order, rejections, validation, threads."""

from __future__ import annotations

import inspect
import math
import threading
from typing import Any

import pytest

from otel_resilience import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    CircuitState,
    Fallback,
    FallbackContext,
    Pipeline,
    ResilienceTimeoutError,
    Retry,
    RetryConfig,
    Timeout,
)
from otel_resilience._clock import SYSTEM_CLOCK
from otel_resilience.backoff import Constant
from otel_resilience.testing import FakeClock


class Down:
    """Fails every call with a fresh error, keeping them all; counts calls."""

    def __init__(self, clock: FakeClock | None = None, duration: float = 0.0) -> None:
        self.errors: list[ConnectionError] = []
        self.clock = clock
        self.duration = duration

    @property
    def calls(self) -> int:
        return len(self.errors)

    def __call__(self, *args: object, **kwargs: object) -> None:
        error = ConnectionError(f"down #{len(self.errors) + 1}")
        self.errors.append(error)
        if self.clock is not None and self.duration:
            self.clock.advance(self.duration)
        raise error


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


def state(dep: CircuitBreaker) -> CircuitState:
    """The breaker's state (a call, so type checkers do not narrow it across calls)."""
    return dep.state


def retry(attempts: int = 3, delay: float = 1.0) -> RetryConfig:
    return RetryConfig(max_attempts=attempts, backoff=Constant(seconds=delay))


# -- pass-through ----------------------------------------------------------------------


def test_empty_pipeline_passes_calls_through(clock: FakeClock) -> None:
    pipeline = Pipeline(clock=clock)

    def add(a: int, b: int, *, scale: int = 1) -> int:
        return (a + b) * scale

    assert pipeline.call(add, 1, 2, scale=10) == 30
    error = KeyError("k")

    def fail() -> None:
        raise error

    with pytest.raises(KeyError) as caught:
        pipeline.call(fail)
    assert caught.value is error
    assert not getattr(error, "__notes__", [])


def test_fn_is_positional_only_so_kwargs_may_use_its_name(clock: FakeClock) -> None:
    def echo(**kwargs: object) -> dict[str, object]:
        return kwargs

    assert Pipeline(clock=clock).call(echo, fn=1, self=2) == {"fn": 1, "self": 2}


def test_pipeline_decorates_a_function(clock: FakeClock) -> None:
    pipeline = Pipeline(name="deco", retry=retry(), clock=clock)
    down = Down()

    @pipeline
    def fetch(key: str) -> str:
        """Fetch a key."""
        if down.calls < 2:
            down()
        return key

    assert fetch("k") == "k"
    assert down.calls == 2
    assert (fetch.__name__, fetch.__doc__) == ("fetch", "Fetch a key.")


# -- the order: retry outside the breaker ----------------------------------------------


def test_every_retry_attempt_asks_the_breaker(clock: FakeClock) -> None:
    dep = breaker(clock, failures=2)
    down = Down()
    pipeline = Pipeline(name="svc", retry=retry(attempts=5), circuit_breaker=dep, clock=clock)
    with pytest.raises(CircuitOpenError) as caught:
        pipeline.call(down)
    # Two failures opened the breaker; the third attempt was refused without a call,
    # and a refusal is not retried.
    assert down.calls == 2
    assert clock.sleeps == [1.0, 1.0]
    metrics = dep.metrics
    assert (metrics.failures, metrics.rejections, metrics.state) == (2, 1, CircuitState.OPEN)
    assert caught.value.__notes__ == [
        "otel-resilience: pipeline 'svc' gave up after 3 attempts (not retryable)"
    ]
    assert caught.value.retry_after == 59.0


def test_the_breaker_counts_each_attempt(clock: FakeClock) -> None:
    dep = breaker(clock, failures=10)
    attempts = Down()

    def flaky() -> str:
        if attempts.calls < 2:
            attempts()
        return "ok"

    pipeline = Pipeline(retry=retry(), circuit_breaker=dep, clock=clock)
    assert pipeline.call(flaky) == "ok"
    metrics = dep.metrics
    assert (metrics.calls, metrics.failures, metrics.successes) == (3, 2, 1)


def test_a_rejection_skips_the_call(clock: FakeClock) -> None:
    dep = breaker(clock)
    dep.force_open()
    called: list[int] = []
    pipeline = Pipeline(retry=retry(), circuit_breaker=dep, clock=clock)
    with pytest.raises(CircuitOpenError) as caught:
        pipeline.call(lambda: called.append(1))
    assert called == []
    assert caught.value.retry_after is None
    assert clock.sleeps == []


def test_a_half_open_breaker_admits_one_trial_per_attempt(clock: FakeClock) -> None:
    dep = breaker(clock, failures=1, timeout=10.0)
    with pytest.raises(ConnectionError):
        Pipeline(circuit_breaker=dep, clock=clock).call(Down())
    clock.advance(10.0)
    assert state(dep) is CircuitState.HALF_OPEN
    assert Pipeline(retry=retry(), circuit_breaker=dep, clock=clock).call(lambda: 5) == 5
    assert state(dep) is CircuitState.CLOSED


# -- the order: fallback outermost -----------------------------------------------------


def test_fallback_sees_the_final_outcome_after_every_retry(clock: FakeClock) -> None:
    contexts: list[FallbackContext] = []

    def handler(context: FallbackContext) -> str:
        contexts.append(context)
        return "cached"

    down = Down()
    pipeline = Pipeline(
        name="svc", fallback=Fallback(handler=handler), retry=retry(attempts=3), clock=clock
    )
    assert pipeline.call(down) == "cached"
    assert down.calls == 3
    [context] = contexts
    assert context.error is down.errors[-1]
    assert (context.attempts, context.result, context.pipeline) == (3, None, "svc")


def test_fallback_replaces_a_rejection(clock: FakeClock) -> None:
    dep = breaker(clock)
    dep.force_open()
    contexts: list[FallbackContext] = []

    def handler(context: FallbackContext) -> str:
        contexts.append(context)
        return "stale"

    pipeline = Pipeline(
        fallback=Fallback(handler=handler),
        retry=retry(),
        circuit_breaker=dep,
        clock=clock,
    )
    assert pipeline.call(lambda: "fresh") == "stale"
    [context] = contexts
    assert isinstance(context.error, CircuitOpenError)
    assert context.attempts == 1


def test_fallback_covers_the_total_timeout(clock: FakeClock) -> None:
    contexts: list[FallbackContext] = []

    def handler(context: FallbackContext) -> str:
        contexts.append(context)
        return "late"

    pipeline = Pipeline(
        fallback=Fallback(handler=handler),
        timeout=5.0,
        retry=retry(attempts=10, delay=2.0),
        clock=clock,
    )
    down = Down()
    assert pipeline.call(down) == "late"
    [context] = contexts
    assert isinstance(context.error, ResilienceTimeoutError)
    assert context.error.scope == "total"
    assert context.error.__cause__ is down.errors[-1]


# -- the order: total timeout outside the retry ----------------------------------------


def test_total_timeout_bounds_retries_and_their_waits(clock: FakeClock) -> None:
    down = Down(clock, duration=0.5)
    pipeline = Pipeline(timeout=5.0, retry=retry(attempts=100, delay=1.5), clock=clock)
    with pytest.raises(ResilienceTimeoutError) as caught:
        pipeline.call(down)
    # Attempts at 0, 2.0 and 4.0, each 0.5 s long; the next wait would end at 6.0.
    assert down.calls == 3
    assert clock.sleeps == [1.5, 1.5]
    assert clock.monotonic() == 4.5
    assert (caught.value.scope, caught.value.timeout) == ("total", 5.0)
    assert caught.value.__cause__ is down.errors[-1]
    assert "(total timeout)" in down.errors[-1].__notes__[0]


# -- the order: attempt timeout inside the breaker -------------------------------------


def test_attempt_timeout_counts_as_a_breaker_failure(clock: FakeClock) -> None:
    dep = breaker(clock, failures=2)

    def slow() -> str:
        clock.advance(3.0)
        return "late"

    pipeline = Pipeline(
        retry=retry(attempts=2), circuit_breaker=dep, attempt_timeout=2.0, clock=clock
    )
    with pytest.raises(ResilienceTimeoutError) as caught:
        pipeline.call(slow)
    assert caught.value.scope == "attempt"
    assert dep.metrics.failures == 2
    assert dep.state is CircuitState.OPEN


# -- the order: bulkhead innermost -----------------------------------------------------


class WatchingClock(FakeClock):
    """Records how many bulkhead slots are taken whenever the driver sleeps."""

    def __init__(self) -> None:
        super().__init__()
        self.bulkhead: Bulkhead | None = None
        self.in_flight_while_sleeping: list[int] = []

    def sleep(self, seconds: float) -> None:
        assert self.bulkhead is not None
        self.in_flight_while_sleeping.append(self.bulkhead.in_flight)
        super().sleep(seconds)


def test_the_bulkhead_slot_is_held_only_while_the_function_runs() -> None:
    clock = WatchingClock()
    bulkhead = Bulkhead(1)
    clock.bulkhead = bulkhead
    seen: list[int] = []
    down = Down()

    def work() -> str:
        seen.append(bulkhead.in_flight)
        if down.calls < 2:
            down()
        return "done"

    pipeline = Pipeline(retry=retry(), bulkhead=bulkhead, clock=clock)
    assert pipeline.call(work) == "done"
    assert seen == [1, 1, 1]
    assert clock.in_flight_while_sleeping == [0, 0]
    assert bulkhead.in_flight == 0


def test_bulkhead_rejection_does_not_count_as_a_breaker_failure(clock: FakeClock) -> None:
    dep = breaker(clock, failures=1)
    bulkhead = Bulkhead(1, name="pool")
    assert bulkhead.try_acquire()
    pipeline = Pipeline(circuit_breaker=dep, bulkhead=bulkhead, clock=clock)
    for _ in range(3):
        with pytest.raises(BulkheadFullError) as caught:
            pipeline.call(lambda: "never")
        assert (caught.value.bulkhead_name, caught.value.reason) == ("pool", "queue_full")
    metrics = dep.metrics
    assert (metrics.state, metrics.failures, metrics.calls) == (CircuitState.CLOSED, 0, 0)


def test_bulkhead_rejection_gives_a_half_open_permit_back(clock: FakeClock) -> None:
    dep = breaker(clock, failures=1, timeout=10.0, trials=1)
    dep.record_failure(dep.acquire())
    clock.advance(10.0)
    bulkhead = Bulkhead(1)
    assert bulkhead.try_acquire()
    pipeline = Pipeline(circuit_breaker=dep, bulkhead=bulkhead, clock=clock)
    with pytest.raises(BulkheadFullError):
        pipeline.call(lambda: "never")
    assert dep.metrics.trials_in_flight == 0
    bulkhead.release()
    # The single trial slot is free again: the next call is admitted and closes it.
    assert pipeline.call(lambda: "ok") == "ok"
    assert dep.state is CircuitState.CLOSED


def test_function_errors_release_the_bulkhead(clock: FakeClock) -> None:
    bulkhead = Bulkhead(2)
    pipeline = Pipeline(retry=retry(attempts=3), bulkhead=bulkhead, clock=clock)
    with pytest.raises(ConnectionError):
        pipeline.call(Down())
    assert bulkhead.in_flight == 0


# -- results ---------------------------------------------------------------------------


def test_breaker_record_result_counts_bad_results(clock: FakeClock) -> None:
    dep = CircuitBreaker(
        "dep",
        CircuitBreakerConfig(failure_threshold=2, record_result=lambda r: r is None),
        clock=clock,
    )
    pipeline = Pipeline(circuit_breaker=dep, clock=clock)
    assert pipeline.call(lambda: None) is None
    assert pipeline.call(lambda: None) is None
    assert dep.state is CircuitState.OPEN


# -- threads ---------------------------------------------------------------------------


def test_one_pipeline_serves_many_threads(clock: FakeClock) -> None:
    dep = breaker(clock, failures=1000)
    counter = 0
    lock = threading.Lock()

    def work(n: int) -> int:
        nonlocal counter
        with lock:
            counter += 1
        if n % 7 == 0:
            raise ConnectionError(n)
        return n

    pipeline = Pipeline(retry=retry(attempts=1), circuit_breaker=dep, clock=clock)
    start = threading.Barrier(8)
    results: list[int] = []
    failures: list[int] = []

    def worker(offset: int) -> None:
        start.wait()
        for n in range(offset, 800, 8):
            try:
                value = pipeline.call(work, n)
            except ConnectionError:
                with lock:
                    failures.append(n)
            else:
                with lock:
                    results.append(value)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter == 800
    assert sorted(results + failures) == list(range(800))
    assert len(failures) == len([n for n in range(800) if n % 7 == 0])
    metrics = dep.metrics
    assert (metrics.successes, metrics.failures) == (len(results), len(failures))


# -- configuration ---------------------------------------------------------------------


def test_defaults_and_repr(clock: FakeClock) -> None:
    pipeline = Pipeline()
    assert pipeline.name == "pipeline"
    assert pipeline.clock is SYSTEM_CLOCK
    assert (pipeline.fallback, pipeline.timeout, pipeline.retry) == (None, None, None)
    assert (pipeline.circuit_breaker, pipeline.attempt_timeout, pipeline.bulkhead) == (
        None,
        None,
        None,
    )
    assert repr(pipeline) == "Pipeline(name='pipeline')"
    full = Pipeline(name="p", timeout=Timeout(3.0), attempt_timeout=1, clock=clock)
    assert (full.timeout, full.attempt_timeout) == (3.0, 1.0)
    assert repr(full) == "Pipeline(name='p', timeout=3.0, attempt_timeout=1.0)"


def test_clock_defaults_to_the_retry_then_the_breaker(clock: FakeClock) -> None:
    other = FakeClock()
    assert Pipeline(retry=Retry(clock=clock)).clock is clock
    assert Pipeline(circuit_breaker=breaker(clock)).clock is clock
    assert Pipeline(retry=Retry(clock=clock), circuit_breaker=breaker(other)).clock is clock
    assert Pipeline(retry=Retry(clock=clock), clock=other).clock is other
    config_pipeline = Pipeline(retry=RetryConfig(), clock=clock)
    assert config_pipeline.retry is not None
    assert config_pipeline.retry.clock is clock


def test_a_retry_object_is_used_as_given(clock: FakeClock) -> None:
    policy = Retry(retry(), clock=clock)
    assert Pipeline(retry=policy).retry is policy


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"name": ""}, ValueError, r"^Pipeline\.name must"),
        ({"fallback": "value"}, TypeError, r"^Pipeline\.fallback must be a Fallback"),
        ({"fallback": lambda: 1}, TypeError, r"^Pipeline\.fallback must be a Fallback"),
        ({"timeout": 0}, ValueError, r"^Pipeline\.timeout must be > 0"),
        ({"timeout": -1.0}, ValueError, r"^Pipeline\.timeout must be > 0"),
        ({"timeout": math.nan}, ValueError, r"^Pipeline\.timeout must be finite"),
        ({"timeout": math.inf}, ValueError, r"^Pipeline\.timeout must be finite"),
        ({"timeout": True}, TypeError, r"^Pipeline\.timeout must be a number"),
        ({"timeout": "5"}, TypeError, r"^Pipeline\.timeout must be a number"),
        ({"retry": 3}, TypeError, r"^Pipeline\.retry must be a Retry or RetryConfig"),
        ({"retry": {"max_attempts": 3}}, TypeError, r"^Pipeline\.retry must be"),
        ({"circuit_breaker": "dep"}, TypeError, r"^Pipeline\.circuit_breaker must be"),
        ({"attempt_timeout": 0.0}, ValueError, r"^Pipeline\.attempt_timeout must be > 0"),
        ({"attempt_timeout": math.nan}, ValueError, r"^Pipeline\.attempt_timeout must be"),
        ({"attempt_timeout": False}, TypeError, r"^Pipeline\.attempt_timeout must be a"),
        ({"bulkhead": 5}, TypeError, r"^Pipeline\.bulkhead must be a Bulkhead"),
    ],
)
def test_argument_validation_names_the_argument(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Pipeline(**arguments)


def test_timeout_objects_are_validated_when_built() -> None:
    with pytest.raises(ValueError, match=r"^Timeout\.seconds must be > 0"):
        Timeout(0)
    with pytest.raises(TypeError, match=r"^Timeout\.seconds must be a number"):
        Timeout("1")  # type: ignore[arg-type]


def test_pipeline_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Pipeline("name")  # type: ignore[call-arg]


def test_a_name_of_the_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"^Pipeline\.name must be a str"):
        Pipeline(name=1)  # type: ignore[arg-type]


def test_a_clock_that_is_not_a_clock_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"^Pipeline\.clock must"):
        Pipeline(clock=3)  # type: ignore[arg-type]


def test_a_listener_without_the_protocol_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"^Pipeline\.listener must"):
        Pipeline(listener=3)  # type: ignore[arg-type]


def test_the_sync_driver_refuses_a_coroutine_function(clock: FakeClock) -> None:
    async def fetch() -> int:
        return 1

    pipeline = Pipeline(clock=clock)

    def call() -> None:
        leaked: Any = pipeline.call(fetch)
        if inspect.iscoroutine(leaked):
            leaked.close()  # keep the suite free of "never awaited" warnings

    with pytest.raises(TypeError, match="acall"):
        call()
