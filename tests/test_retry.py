"""Retry: attempts, filters, backoff reaching the driver, deadlines, server delays, give-up."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import math
import random  # noqa: TID251 - tests seed their own random source
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_resilience import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    Pipeline,
    ResilienceEvent,
    Retry,
    RetryConfig,
    RetryExhausted,
)
from otel_resilience._testmode import TEST_MODE
from otel_resilience.backoff import (
    Adaptive,
    Constant,
    DecorrelatedJitter,
    Exponential,
    Fibonacci,
    FullJitter,
    Linear,
)
from otel_resilience.retry import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RETRY_AFTER,
    RetryBudget,
    RetryState,
    read_retry_after,
)
from otel_resilience.testing import FakeClock, is_testing, set_testing

DOC = Path(__file__).resolve().parent.parent / "docs" / "retry.md"


class Transient(Exception):
    """A retryable failure, optionally carrying a server-directed delay."""

    def __init__(self, message: str = "transient", retry_after: object = None) -> None:
        super().__init__(message)
        if retry_after is not None:
            self.retry_after = retry_after


class Response:
    """A returned value that may ask for a retry, as an HTTP 503 with Retry-After would."""

    def __init__(self, status: int, retry_after: object = None) -> None:
        self.status = status
        if retry_after is not None:
            self.retry_after = retry_after


class Events:
    """A listener that keeps every strategy event (no per-call observer)."""

    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def start_call(self, pipeline: str) -> None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


class Script:
    """Plays a script of exceptions (raised as the very same objects) and values."""

    def __init__(self, clock: FakeClock, *items: object, duration: float = 0.0) -> None:
        self.items = list(items)
        self.clock = clock
        self.duration = duration
        self.started: list[float] = []

    def __call__(self) -> Any:
        self.started.append(self.clock.monotonic())
        if self.duration:
            self.clock.advance(self.duration)
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    @property
    def calls(self) -> int:
        return len(self.started)


def pipeline(clock: FakeClock, listener: Events | None = None, **config: Any) -> Pipeline:
    config.setdefault("backoff", Constant(seconds=1.0))
    return Pipeline(name="svc", retry=RetryConfig(**config), clock=clock, listener=listener)


# -- attempts --------------------------------------------------------------------------


@pytest.mark.parametrize("attempts", [1, 2, 3, 7])
def test_max_attempts_counts_the_first_call(clock: FakeClock, attempts: int) -> None:
    errors = [Transient(f"#{n}") for n in range(attempts)]
    script = Script(clock, *errors)
    with pytest.raises(Transient) as caught:
        pipeline(clock, max_attempts=attempts).call(script)
    assert script.calls == attempts
    assert caught.value is errors[-1]
    assert clock.sleeps == [1.0] * (attempts - 1)


def test_default_max_attempts_is_three(clock: FakeClock) -> None:
    assert RetryConfig().max_attempts == DEFAULT_MAX_ATTEMPTS == 3
    script = Script(clock, Transient(), Transient(), Transient())
    with pytest.raises(Transient):
        Pipeline(retry=RetryConfig(backoff=Constant(seconds=0.0)), clock=clock).call(script)
    assert script.calls == 3


def test_success_after_failures_returns_the_value(clock: FakeClock) -> None:
    script = Script(clock, Transient(), Transient(), "ok")
    assert pipeline(clock, max_attempts=3).call(script) == "ok"
    assert script.calls == 3
    assert script.started == [0.0, 1.0, 2.0]


def test_arguments_reach_every_attempt(clock: FakeClock) -> None:
    seen: list[tuple[object, ...]] = []

    def fetch(key: str, *, page: int) -> str:
        seen.append((key, page))
        if len(seen) < 2:
            raise Transient
        return f"{key}:{page}"

    assert pipeline(clock).call(fetch, "k", page=2) == "k:2"
    assert seen == [("k", 2), ("k", 2)]


# -- what is retried -------------------------------------------------------------------


def test_retry_on_types_filters_exceptions(clock: FakeClock) -> None:
    retried = Script(clock, ConnectionError("a"), TimeoutError("b"), "ok")
    policy = pipeline(clock, retry_on=(ConnectionError, TimeoutError))
    assert policy.call(retried) == "ok"
    assert retried.calls == 3

    wrong = ValueError("not transient")
    other = Script(clock, wrong, "never")
    with pytest.raises(ValueError) as caught:
        policy.call(other)
    assert caught.value is wrong
    assert other.calls == 1
    # Not retried on the first attempt: nothing to say about attempts.
    assert not getattr(wrong, "__notes__", [])


def test_retry_on_accepts_a_single_class_and_a_list(clock: FakeClock) -> None:
    assert RetryConfig(retry_on=KeyError).retry_on == (KeyError,)
    as_list: Any = [KeyError, OSError]
    assert RetryConfig(retry_on=as_list).retry_on == (KeyError, OSError)
    script = Script(clock, KeyError("k"), "ok")
    assert pipeline(clock, retry_on=KeyError).call(script) == "ok"


def test_retry_on_predicate(clock: FakeClock) -> None:
    seen: list[BaseException] = []

    def transient(error: BaseException) -> bool:
        seen.append(error)
        return "retry me" in str(error)

    first = RuntimeError("retry me")
    script = Script(clock, first, RuntimeError("fatal"), "never")
    with pytest.raises(RuntimeError, match="fatal") as caught:
        pipeline(clock, retry_on=transient).call(script)
    assert script.calls == 2
    assert seen == [first, caught.value]
    assert "(not retryable)" in caught.value.__notes__[-1]


def test_non_retryable_error_after_a_retry_gets_a_note(clock: FakeClock) -> None:
    fatal = KeyError("gone")
    script = Script(clock, ConnectionError(), fatal)
    with pytest.raises(KeyError) as caught:
        pipeline(clock, retry_on=ConnectionError).call(script)
    assert caught.value is fatal
    assert caught.value.__notes__ == [
        "otel-resilience: pipeline 'svc' gave up after 2 attempts (not retryable)"
    ]


def test_giving_up_on_a_non_retryable_error_reports_retry_exhausted(clock: FakeClock) -> None:
    events = Events()
    script = Script(clock, ConnectionError(), KeyError("gone"))
    with pytest.raises(KeyError):
        pipeline(clock, events, retry_on=ConnectionError).call(script)
    assert [e.reason for e in events.of(RetryExhausted)] == ["not_retryable"]


@pytest.mark.parametrize(
    "control",
    [KeyboardInterrupt(), SystemExit(3), GeneratorExit(), asyncio.CancelledError()],
    ids=type,
)
@pytest.mark.parametrize(
    "retry_on",
    [(BaseException,), lambda error: True],
    ids=["BaseException", "always-true-predicate"],
)
def test_control_flow_is_never_retried(
    clock: FakeClock, control: BaseException, retry_on: Any
) -> None:
    script = Script(clock, control, "never")
    with pytest.raises(type(control)) as caught:
        pipeline(clock, retry_on=retry_on, max_attempts=5).call(script)
    assert caught.value is control
    assert script.calls == 1
    assert clock.sleeps == []
    assert not getattr(control, "__notes__", [])


def test_retry_on_result_retries_and_returns_the_last_result(clock: FakeClock) -> None:
    busy = [Response(503), Response(503), Response(503)]
    script = Script(clock, *busy)
    policy = pipeline(clock, retry_on_result=lambda r: r.status == 503)
    assert policy.call(script) is busy[-1]
    assert script.calls == 3
    assert clock.sleeps == [1.0, 1.0]


def test_retry_on_result_stops_at_an_acceptable_result(clock: FakeClock) -> None:
    good = Response(200)
    script = Script(clock, Response(503), good)
    policy = pipeline(clock, retry_on_result=lambda r: r.status == 503)
    assert policy.call(script) is good
    assert script.calls == 2


def test_retry_on_result_with_a_deadline_returns_the_last_result(clock: FakeClock) -> None:
    last = Response(503)
    script = Script(clock, Response(503), last, Response(503))
    policy = pipeline(
        clock,
        max_attempts=10,
        deadline_seconds=1.5,
        retry_on_result=lambda r: r.status == 503,
    )
    assert policy.call(script) is last
    assert script.calls == 2


# -- backoff reaches the driver --------------------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        (Constant(seconds=0.5), [0.5, 0.5, 0.5, 0.5]),
        (Linear(initial=1.0, step=2.0, max_delay=6.0), [1.0, 3.0, 5.0, 6.0]),
        (Exponential(initial=1.0, multiplier=3.0, max_delay=20.0), [1.0, 3.0, 9.0, 20.0]),
        (Fibonacci(initial=1.0, max_delay=100.0), [1.0, 1.0, 2.0, 3.0]),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, list) else "",
)
def test_every_backoff_delay_reaches_the_driver(
    clock: FakeClock, backoff: Any, expected: list[float]
) -> None:
    script = Script(clock, *(Transient() for _ in range(5)))
    with pytest.raises(Transient):
        pipeline(clock, backoff=backoff, max_attempts=5).call(script)
    assert clock.sleeps == expected
    assert script.started == [sum(expected[:n]) for n in range(5)]


@pytest.mark.parametrize(
    "backoff",
    [
        FullJitter(initial=1.0, multiplier=2.0, max_delay=30.0),
        DecorrelatedJitter(initial=1.0, max_delay=30.0),
    ],
    ids=lambda value: type(value).__name__,
)
def test_jittered_backoff_uses_the_injected_random_source_and_previous_delay(
    clock: FakeClock, backoff: Any
) -> None:
    expected: list[float] = []
    reference = random.Random(1234)
    previous = 0.0
    for retry in range(1, 6):
        previous = backoff.delay(retry, reference, previous)
        expected.append(previous)

    retry_policy = Retry(
        RetryConfig(max_attempts=6, backoff=backoff), clock=clock, rng=random.Random(1234)
    )
    script = Script(clock, *(Transient() for _ in range(6)))
    with pytest.raises(Transient):
        Pipeline(retry=retry_policy).call(script)
    assert clock.sleeps == expected


def test_adaptive_backoff_is_fed_every_attempt_outcome(clock: FakeClock) -> None:
    backoff = Adaptive(initial=1.0, max_delay=8.0, smoothing=0.5)
    script = Script(clock, Transient(), Transient(), "ok")
    assert pipeline(clock, backoff=backoff).call(script) == "ok"
    # failure, failure, success: 0 -> 0.5 -> 0.75 -> 0.375
    assert backoff.failure_ratio == pytest.approx(0.375)
    # The waits used the ratio as it stood after each failure.
    assert clock.sleeps == pytest.approx([0.5 * 1.0, 0.75 * 2.0])


def test_default_backoff_is_bounded_full_jitter(clock: FakeClock) -> None:
    config = RetryConfig()
    assert isinstance(config.backoff, FullJitter)
    assert (config.backoff.initial, config.backoff.multiplier, config.backoff.max_delay) == (
        0.1,
        2.0,
        10.0,
    )
    script = Script(clock, Transient(), Transient(), "ok")
    Pipeline(retry=Retry(config, clock=clock, rng=random.Random(5))).call(script)
    assert len(clock.sleeps) == 2
    assert 0.0 <= clock.sleeps[0] <= 0.1
    assert 0.0 <= clock.sleeps[1] <= 0.2


# -- zero waits ------------------------------------------------------------------------


def test_a_zero_wait_does_not_sleep(clock: FakeClock) -> None:
    script = Script(clock, Transient(), Transient(), "ok")
    assert pipeline(clock, backoff=Constant(seconds=0.0)).call(script) == "ok"
    assert script.calls == 3
    assert clock.sleeps == []


def test_a_zero_server_delay_does_not_sleep(clock: FakeClock) -> None:
    script = Script(clock, Transient(retry_after=0), "ok")
    assert pipeline(clock, backoff=Constant(seconds=5.0)).call(script) == "ok"
    assert clock.sleeps == []


# -- deadline --------------------------------------------------------------------------


def test_deadline_stops_before_a_sleep_would_pass_it(clock: FakeClock) -> None:
    events = Events()
    errors = [Transient(str(n)) for n in range(100)]
    script = Script(clock, *errors)
    policy = pipeline(
        clock, events, max_attempts=100, backoff=Constant(seconds=3.0), deadline_seconds=10.0
    )
    with pytest.raises(Transient) as caught:
        policy.call(script)
    # Attempts at 0, 3, 6, 9; a fifth would start at 12.
    assert script.started == [0.0, 3.0, 6.0, 9.0]
    assert clock.sleeps == [3.0, 3.0, 3.0]
    assert clock.monotonic() == 9.0
    assert caught.value is errors[3]
    assert caught.value.__notes__ == [
        "otel-resilience: pipeline 'svc' gave up after 4 attempts (deadline)"
    ]
    [exhausted] = events.of(RetryExhausted)
    assert (exhausted.reason, exhausted.attempts, exhausted.error_type) == (
        "deadline",
        4,
        "Transient",
    )


def test_deadline_counts_the_time_attempts_take(clock: FakeClock) -> None:
    script = Script(clock, *(Transient() for _ in range(10)), duration=2.0)
    policy = pipeline(clock, max_attempts=10, backoff=Constant(seconds=3.0), deadline_seconds=10.0)
    with pytest.raises(Transient):
        policy.call(script)
    # 0-2 fails, sleep to 5, 5-7 fails; 7 + 3 reaches the deadline.
    assert script.started == [0.0, 5.0]


def test_deadline_is_measured_from_the_start_of_each_call(clock: FakeClock) -> None:
    policy = pipeline(clock, max_attempts=10, backoff=Constant(seconds=4.0), deadline_seconds=5.0)
    for _ in range(3):
        script = Script(clock, Transient(), Transient(), "ok")
        with pytest.raises(Transient):
            policy.call(script)
        assert script.calls == 2
        clock.advance(100.0)


@settings(max_examples=60, deadline=None)
@given(
    delay=st.floats(min_value=0.0, max_value=5.0),
    duration=st.floats(min_value=0.0, max_value=3.0),
    deadline=st.floats(min_value=0.01, max_value=20.0),
)
def test_no_sleep_extends_past_and_no_attempt_starts_after_the_deadline(
    delay: float, duration: float, deadline: float
) -> None:
    clock = FakeClock(start=1000.0)
    script = Script(clock, *(Transient() for _ in range(60)), duration=duration)
    policy = Pipeline(
        retry=RetryConfig(
            max_attempts=50, backoff=Constant(seconds=delay), deadline_seconds=deadline
        ),
        clock=clock,
    )
    with pytest.raises(Transient):
        policy.call(script)
    limit = 1000.0 + deadline
    assert script.started[0] == 1000.0
    # Every attempt, and so every sleep before one, began and ended before the deadline.
    assert all(start < limit for start in script.started)
    assert len(clock.sleeps) == script.calls - 1 or delay == 0.0
    if delay == 0.0:
        assert clock.sleeps == []


# -- server-directed delays ------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (2.5, 2.5),
        (3, 3.0),
        (datetime.timedelta(seconds=4, milliseconds=500), 4.5),
        (1000.0, 60.0),  # capped by the default max_retry_after
    ],
)
def test_retry_after_on_the_exception_replaces_the_backoff(
    clock: FakeClock, retry_after: object, expected: float
) -> None:
    script = Script(clock, Transient(retry_after=retry_after), "ok")
    assert pipeline(clock, backoff=Constant(seconds=7.0)).call(script) == "ok"
    assert clock.sleeps == [expected]


@pytest.mark.parametrize("junk", [-1.0, math.nan, True, "5", object()], ids=repr)
def test_unusable_retry_after_falls_back_to_the_backoff(clock: FakeClock, junk: object) -> None:
    script = Script(clock, Transient(retry_after=junk), "ok")
    assert pipeline(clock, backoff=Constant(seconds=7.0)).call(script) == "ok"
    assert clock.sleeps == [7.0]


def test_retry_after_on_a_result(clock: FakeClock) -> None:
    script = Script(clock, Response(503, retry_after=datetime.timedelta(seconds=2)), Response(200))
    policy = pipeline(clock, retry_on_result=lambda r: r.status == 503)
    assert policy.call(script).status == 200
    assert clock.sleeps == [2.0]


def test_max_retry_after_caps_server_delays(clock: FakeClock) -> None:
    script = Script(clock, Transient(retry_after=30), Transient(retry_after=2), "ok")
    assert pipeline(clock, max_retry_after=5.0).call(script) == "ok"
    assert clock.sleeps == [5.0, 2.0]


def test_server_delay_still_respects_the_deadline(clock: FakeClock) -> None:
    error = Transient(retry_after=30)
    script = Script(clock, error, "never")
    with pytest.raises(Transient) as caught:
        pipeline(clock, deadline_seconds=10.0).call(script)
    assert caught.value is error
    assert clock.sleeps == []
    assert "(deadline)" in error.__notes__[0]


def test_a_custom_retry_after_reader(clock: FakeClock) -> None:
    seen: list[tuple[BaseException | None, object]] = []

    def reader(error: BaseException | None, result: object) -> float | None:
        seen.append((error, result))
        return 0.25

    first = Transient()
    script = Script(clock, first, "ok")
    assert pipeline(clock, retry_after=reader).call(script) == "ok"
    assert seen == [(first, None)]
    assert clock.sleeps == [0.25]


def test_read_retry_after() -> None:
    assert read_retry_after(Transient(retry_after=1.5), None) == 1.5
    assert read_retry_after(None, Response(503, retry_after=2)) == 2.0
    assert read_retry_after(None, Response(503, retry_after=datetime.timedelta(minutes=1))) == 60.0
    assert read_retry_after(Transient(retry_after=1.0), Response(1, retry_after=9.0)) == 1.0
    assert read_retry_after(Transient(), None) is None
    assert read_retry_after(None, None) is None
    assert read_retry_after(Transient(retry_after=-0.5), None) is None
    assert read_retry_after(Transient(retry_after=math.nan), None) is None
    assert read_retry_after(Transient(retry_after=False), None) is None
    assert read_retry_after(None, Response(1, retry_after=datetime.timedelta(seconds=-1))) is None


# -- giving up -------------------------------------------------------------------------


def test_give_up_reraises_the_same_exception_with_a_note(clock: FakeClock) -> None:
    last = ConnectionError("still down")
    script = Script(clock, ConnectionError("a"), ConnectionError("b"), last)
    with pytest.raises(ConnectionError) as caught:
        pipeline(clock).call(script)
    assert caught.value is last
    assert caught.value.__notes__ == [
        "otel-resilience: pipeline 'svc' gave up after 3 attempts (max attempts)"
    ]
    # The exception's own traceback is kept: it ends in the function that raised it.
    assert caught.traceback[-1].name == "__call__"


def test_give_up_after_a_single_attempt_says_attempt(clock: FakeClock) -> None:
    error = Transient()
    with pytest.raises(Transient):
        pipeline(clock, max_attempts=1).call(Script(clock, error))
    assert error.__notes__ == [
        "otel-resilience: pipeline 'svc' gave up after 1 attempt (max attempts)"
    ]


# -- rejections ------------------------------------------------------------------------


def open_breaker(clock: FakeClock, timeout: float = 30.0) -> CircuitBreaker:
    breaker = CircuitBreaker(
        "dep",
        CircuitBreakerConfig(failure_threshold=1, success_threshold=1, timeout_seconds=timeout),
        clock=clock,
    )
    breaker.record_failure(breaker.acquire())
    return breaker


def test_circuit_open_rejection_is_not_retried(clock: FakeClock) -> None:
    breaker = open_breaker(clock)
    script = Script(clock, "never")
    policy = Pipeline(
        retry=RetryConfig(max_attempts=5, backoff=Constant(seconds=1.0)),
        circuit_breaker=breaker,
        clock=clock,
    )
    with pytest.raises(CircuitOpenError) as caught:
        policy.call(script)
    assert script.calls == 0
    assert clock.sleeps == []
    assert caught.value.breaker_name == "dep"
    assert caught.value.retry_after == 30.0


def test_bulkhead_rejection_is_not_retried(clock: FakeClock) -> None:
    bulkhead = Bulkhead(1, name="pool")
    assert bulkhead.try_acquire()
    script = Script(clock, "never")
    policy = Pipeline(
        retry=RetryConfig(max_attempts=5, backoff=Constant(seconds=1.0)),
        bulkhead=bulkhead,
        clock=clock,
    )
    with pytest.raises(BulkheadFullError) as caught:
        policy.call(script)
    assert (caught.value.bulkhead_name, caught.value.reason) == ("pool", "queue_full")
    assert script.calls == 0
    assert clock.sleeps == []


def test_retry_rejections_honours_circuit_open_retry_after(clock: FakeClock) -> None:
    breaker = open_breaker(clock, timeout=30.0)
    clock.advance(12.0)
    script = Script(clock, "recovered")
    policy = Pipeline(
        retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=1.0), retry_rejections=True),
        circuit_breaker=breaker,
        clock=clock,
    )
    assert policy.call(script) == "recovered"
    # It waited exactly until the breaker half-opened, then its trial closed it.
    assert clock.sleeps == [18.0]
    assert script.started == [30.0]
    assert breaker.state.value == "closed"


def test_retry_rejections_uses_the_backoff_when_a_breaker_is_forced_open(
    clock: FakeClock,
) -> None:
    breaker = CircuitBreaker("dep", clock=clock)
    breaker.force_open()  # no automatic recovery: retry_after is None
    script = Script(clock, "never")
    policy = Pipeline(
        retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=2.0), retry_rejections=True),
        circuit_breaker=breaker,
        clock=clock,
    )
    with pytest.raises(CircuitOpenError) as caught:
        policy.call(script)
    assert caught.value.retry_after is None
    assert clock.sleeps == [2.0, 2.0]
    assert script.calls == 0


def test_retry_rejections_retries_a_busy_half_open_breaker_at_once(clock: FakeClock) -> None:
    breaker = CircuitBreaker(
        "dep",
        CircuitBreakerConfig(failure_threshold=1, timeout_seconds=5.0, half_open_max_calls=1),
        clock=clock,
    )
    breaker.record_failure(breaker.acquire())
    clock.advance(5.0)
    trial = breaker.acquire()  # the only trial slot is taken
    script = Script(clock, "never")
    policy = Pipeline(
        retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=2.0), retry_rejections=True),
        circuit_breaker=breaker,
        clock=clock,
    )
    with pytest.raises(CircuitOpenError) as caught:
        policy.call(script)
    # retry_after 0.0 ("a slot may free up at any moment") replaces the backoff: no sleep.
    assert caught.value.retry_after == 0.0
    assert clock.sleeps == []
    assert breaker.metrics.rejections == 3
    breaker.record_success(trial)


def test_retry_rejections_retries_a_full_bulkhead(clock: FakeClock) -> None:
    bulkhead = Bulkhead(1)
    assert bulkhead.try_acquire()
    script = Script(clock, "never")
    policy = Pipeline(
        retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=2.0), retry_rejections=True),
        bulkhead=bulkhead,
        clock=clock,
    )
    with pytest.raises(BulkheadFullError) as caught:
        policy.call(script)
    assert clock.sleeps == [2.0, 2.0]
    assert script.calls == 0
    assert "after 3 attempts (max attempts)" in caught.value.__notes__[0]
    assert bulkhead.rejections == 3


# -- the testing switch ----------------------------------------------------------------


def test_testing_mode_removes_waits_and_caps_attempts(clock: FakeClock) -> None:
    TEST_MODE.enabled = True
    TEST_MODE.attempts = 2
    script = Script(clock, *(Transient() for _ in range(5)))
    with pytest.raises(Transient):
        pipeline(clock, max_attempts=5, backoff=Constant(seconds=10.0)).call(script)
    assert script.calls == 2
    assert clock.sleeps == []
    assert clock.monotonic() == 0.0


def test_testing_mode_zeroes_server_delays_and_never_raises_the_limit(clock: FakeClock) -> None:
    TEST_MODE.enabled = True
    TEST_MODE.attempts = 10
    script = Script(clock, Transient(retry_after=30), Transient(), Transient())
    with pytest.raises(Transient):
        pipeline(clock, max_attempts=2).call(script)
    assert script.calls == 2
    assert clock.sleeps == []


def test_set_testing_switch(clock: FakeClock) -> None:
    set_testing(True, attempts=3)
    assert is_testing()
    script = Script(clock, *(Transient() for _ in range(5)))
    with pytest.raises(Transient):
        pipeline(clock, max_attempts=5, backoff=Constant(seconds=10.0)).call(script)
    assert (script.calls, clock.sleeps) == (3, [])
    set_testing(False)
    assert not is_testing()
    script = Script(clock, Transient(), "ok")
    assert pipeline(clock).call(script) == "ok"
    assert clock.sleeps == [1.0]


def test_testing_mode_context_restores_the_previous_setting(clock: FakeClock) -> None:
    with set_testing(True, attempts=1):
        script = Script(clock, Transient(), "never")
        with pytest.raises(Transient):
            pipeline(clock).call(script)
        assert script.calls == 1
    assert not is_testing()
    with pytest.raises(Transient), set_testing(True):
        raise Transient
    assert not is_testing()


def test_set_testing_validation() -> None:
    with pytest.raises(TypeError, match=r"set_testing\.enabled"):
        set_testing(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"set_testing\.attempts"):
        set_testing(True, attempts=0)
    with pytest.raises(TypeError, match=r"set_testing\.attempts"):
        set_testing(True, attempts=True)
    assert not is_testing()


def test_testing_mode_off_restores_normal_waits(clock: FakeClock) -> None:
    TEST_MODE.enabled = True
    TEST_MODE.enabled = False
    script = Script(clock, Transient(), "ok")
    assert pipeline(clock).call(script) == "ok"
    assert clock.sleeps == [1.0]


# -- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("max_attempts", 0, ValueError),
        ("max_attempts", -1, ValueError),
        ("max_attempts", True, TypeError),
        ("max_attempts", 2.0, TypeError),
        ("max_attempts", "3", TypeError),
        ("backoff", None, TypeError),
        ("backoff", 1.0, TypeError),
        ("retry_on", "ValueError", TypeError),
        ("retry_on", (ValueError, "x"), TypeError),
        ("retry_on", 3, TypeError),
        ("retry_rejections", 1, TypeError),
        ("retry_rejections", "yes", TypeError),
        ("retry_on_result", 5, TypeError),
        ("deadline_seconds", 0, ValueError),
        ("deadline_seconds", -1.0, ValueError),
        ("deadline_seconds", math.nan, ValueError),
        ("deadline_seconds", math.inf, ValueError),
        ("deadline_seconds", True, TypeError),
        ("deadline_seconds", "10", TypeError),
        ("retry_after", None, TypeError),
        ("retry_after", 1.0, TypeError),
        ("max_retry_after", -1.0, ValueError),
        ("max_retry_after", math.nan, ValueError),
        ("max_retry_after", math.inf, ValueError),
        ("max_retry_after", False, TypeError),
        ("max_retry_after", "60", TypeError),
        ("budget", "budget", TypeError),
        ("budget", 0.2, TypeError),
    ],
)
def test_config_validation_names_the_field(
    field: str, value: object, error: type[Exception]
) -> None:
    arguments: dict[str, Any] = {field: value}
    with pytest.raises(error, match=rf"^RetryConfig\.{field} must"):
        RetryConfig(**arguments)


def test_config_defaults_and_accepted_edges() -> None:
    config = RetryConfig()
    assert config.max_attempts == 3
    assert config.retry_on == (Exception,)
    assert config.retry_rejections is False
    assert config.retry_on_result is None
    assert config.deadline_seconds is None
    assert config.retry_after is read_retry_after
    assert config.max_retry_after == DEFAULT_MAX_RETRY_AFTER == 60.0
    assert config.budget is None
    # Zero is meaningful for the cap: never wait on a server's say-so.
    assert RetryConfig(max_retry_after=0).max_retry_after == 0
    assert RetryConfig(max_attempts=1).max_attempts == 1


def test_config_is_frozen_and_keyword_only() -> None:
    config = RetryConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_attempts = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        RetryConfig(5)  # type: ignore[call-arg]


def test_retry_constructor() -> None:
    clock = FakeClock()
    retry = Retry(clock=clock, name="r")
    assert retry.config == RetryConfig()
    assert retry.clock is clock
    assert retry.name == "r"
    assert "name='r'" in repr(retry)
    with pytest.raises(TypeError, match=r"^Retry\.config must be a RetryConfig"):
        Retry({"max_attempts": 3})  # type: ignore[arg-type]


def test_a_pipeline_runs_its_retry_config_on_its_own_clock(clock: FakeClock) -> None:
    policy = pipeline(clock)
    assert policy.retry is not None
    assert policy.retry.clock is clock
    script = Script(clock, Transient(), "ok")
    assert policy.call(script) == "ok"
    assert clock.sleeps == [1.0]


# -- Retry used alone ------------------------------------------------------------------


def test_retry_call_runs_the_function(clock: FakeClock) -> None:
    retry = Retry(RetryConfig(backoff=Constant(seconds=1.0)), clock=clock)
    script = Script(clock, Transient(), "ok")
    assert retry.call(script) == "ok"
    assert clock.sleeps == [1.0]


@pytest.mark.asyncio
async def test_retry_acall_awaits_the_function(clock: FakeClock) -> None:
    retry = Retry(RetryConfig(backoff=Constant(seconds=1.0)), clock=clock)
    calls: list[int] = []

    async def fetch() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Transient
        return "ok"

    assert await retry.acall(fetch) == "ok"
    assert clock.sleeps == [1.0]


def test_retry_decorates_a_function(clock: FakeClock) -> None:
    retry = Retry(RetryConfig(backoff=Constant(seconds=1.0)), clock=clock)
    calls: list[int] = []

    @retry
    def fetch() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise Transient
        return "ok"

    assert fetch() == "ok"
    assert fetch.__name__ == "fetch"


# -- docs ------------------------------------------------------------------------------


def test_doc_lists_every_config_field_with_its_default() -> None:
    text = DOC.read_text(encoding="utf-8")
    for config_field in dataclasses.fields(RetryConfig):
        assert f"`{config_field.name}`" in text, config_field.name
    for default in ("`3`", "`60.0`", "`(Exception,)`", "`False`", "`None`"):
        assert default in text, default


class _Delayed(ConnectionError):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__("delayed")
        self.retry_after = retry_after


@settings(max_examples=300, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=8),
    previous=st.floats(min_value=0.0, max_value=5.0),
    max_attempts=st.integers(min_value=1, max_value=6),
    error=st.sampled_from(
        [
            ConnectionError("down"),
            KeyError("not retried"),
            _Delayed(2.0),
            _Delayed(None),
            CircuitOpenError("b", 1.0),
        ]
    ),
    budget=st.booleans(),
    testing=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_fast_delay_agrees_with_decide_whenever_it_answers(
    attempt: int,
    previous: float,
    max_attempts: int,
    error: Exception,
    budget: bool,
    testing: bool,
    seed: int,
) -> None:
    config = RetryConfig(
        max_attempts=max_attempts,
        retry_on=(ConnectionError, CircuitOpenError),
        backoff=FullJitter(initial=0.1, max_delay=2.0),
        budget=RetryBudget() if budget else None,
    )
    fast_rng, decide_rng = random.Random(seed), random.Random(seed)
    with set_testing(testing):
        fast = Retry(config, rng=fast_rng).fast_delay(attempt, previous, error)
        state = RetryState(None)
        state.attempt, state.previous_delay = attempt, previous
        decided = Retry(config, rng=decide_rng).decide(state, error, None, 0.0)
    # The plain case: a retryable class, no server delay, not a rejection, attempts left,
    # no budget, not in test mode. Everything else is decide()'s alone.
    plain_error = isinstance(error, ConnectionError) and getattr(error, "retry_after", None) is None
    plain = plain_error and not budget and not testing and attempt < max_attempts
    assert (fast is not None) == plain
    if fast is not None:
        assert decided == fast
        assert state.attempt == attempt + 1
        assert state.previous_delay == fast
