"""The telemetry seam: what a ResilienceListener and its CallObserver see, and isolation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from otel_resilience import (
    AttemptOutcome,
    Bulkhead,
    BulkheadFullError,
    BulkheadRejected,
    CallOutcome,
    CallRejected,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    CircuitState,
    CircuitStateChanged,
    Fallback,
    FallbackContext,
    FallbackExecuted,
    Pipeline,
    ResilienceEvent,
    ResilienceTimeoutError,
    RetryConfig,
    RetryExhausted,
    RetryScheduled,
    TimeoutExceeded,
)
from otel_resilience.backoff import Constant
from otel_resilience.testing import FakeClock

SUCCESS, FAILURE, REJECTED, TIMEOUT = (
    AttemptOutcome.SUCCESS,
    AttemptOutcome.FAILURE,
    AttemptOutcome.REJECTED,
    AttemptOutcome.TIMEOUT,
)


class Recorder:
    """A listener that is also its own call observer; records everything in order."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []

    def start_call(self, pipeline: str) -> Recorder:
        self.log.append(("start_call", pipeline))
        return self

    def on_event(self, event: ResilienceEvent) -> None:
        self.log.append(("event", event))

    def attempt_started(self, attempt: int) -> None:
        self.log.append(("attempt_started", attempt))

    def attempt_ended(
        self, attempt: int, outcome: AttemptOutcome, error: BaseException | None, duration: float
    ) -> None:
        self.log.append(("attempt_ended", attempt, outcome, error, duration))

    def call_ended(
        self, outcome: CallOutcome, error: BaseException | None, duration: float
    ) -> None:
        self.log.append(("call_ended", outcome, error, duration))

    def events(self) -> list[ResilienceEvent]:
        return [entry[1] for entry in self.log if entry[0] == "event"]

    def calls(self) -> list[tuple[Any, ...]]:
        return [entry for entry in self.log if entry[0] != "event"]


class Broken:
    """A listener and observer that raise in every method."""

    def __init__(self) -> None:
        self.hits = 0

    def _fail(self) -> None:
        self.hits += 1
        raise RuntimeError("telemetry is down")

    def start_call(self, pipeline: str) -> Broken:
        self.hits += 1
        return self

    def on_event(self, event: ResilienceEvent) -> None:
        self._fail()

    def attempt_started(self, attempt: int) -> None:
        self._fail()

    def attempt_ended(
        self, attempt: int, outcome: AttemptOutcome, error: BaseException | None, duration: float
    ) -> None:
        self._fail()

    def call_ended(
        self, outcome: CallOutcome, error: BaseException | None, duration: float
    ) -> None:
        self._fail()


class BrokenAtStart(Broken):
    """Raises already when a call starts."""

    def start_call(self, pipeline: str) -> Broken:
        self._fail()
        return self


def retry(attempts: int = 3, delay: float = 1.0) -> RetryConfig:
    return RetryConfig(max_attempts=attempts, backoff=Constant(seconds=delay))


def taking(clock: FakeClock, seconds: float, *outcomes: object) -> Callable[[], Any]:
    """A function whose calls each take ``seconds`` of fake time and play ``outcomes``."""
    queue = list(outcomes)

    def call() -> Any:
        clock.advance(seconds)
        item = queue.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    return call


# -- the observer ----------------------------------------------------------------------


def test_a_successful_call(clock: FakeClock) -> None:
    recorder = Recorder()
    pipeline = Pipeline(name="svc", clock=clock, listener=recorder)
    assert pipeline.call(taking(clock, 0.25, "ok")) == "ok"
    assert recorder.log == [
        ("start_call", "svc"),
        ("attempt_started", 1),
        ("attempt_ended", 1, SUCCESS, None, 0.25),
        ("call_ended", CallOutcome.SUCCESS, None, 0.25),
    ]


def test_retries_are_numbered_timed_and_scheduled(clock: FakeClock) -> None:
    recorder = Recorder()
    first, second = ConnectionError("a"), TimeoutError("b")
    pipeline = Pipeline(name="svc", retry=retry(delay=1.0), clock=clock, listener=recorder)
    assert pipeline.call(taking(clock, 0.5, first, second, "ok")) == "ok"
    assert recorder.log == [
        ("start_call", "svc"),
        ("attempt_started", 1),
        ("attempt_ended", 1, FAILURE, first, 0.5),
        (
            "event",
            RetryScheduled(pipeline="svc", attempt=1, delay=1.0, error_type="ConnectionError"),
        ),
        ("attempt_started", 2),
        ("attempt_ended", 2, FAILURE, second, 0.5),
        ("event", RetryScheduled(pipeline="svc", attempt=2, delay=1.0, error_type="TimeoutError")),
        ("attempt_started", 3),
        ("attempt_ended", 3, SUCCESS, None, 0.5),
        ("call_ended", CallOutcome.SUCCESS, None, 3.5),
    ]


def test_retry_exhausted_and_a_failed_call(clock: FakeClock) -> None:
    recorder = Recorder()
    errors = [ConnectionError(str(n)) for n in range(2)]
    pipeline = Pipeline(name="svc", retry=retry(attempts=2), clock=clock, listener=recorder)
    with pytest.raises(ConnectionError):
        pipeline.call(taking(clock, 1.0, *errors))
    assert recorder.events() == [
        RetryScheduled(pipeline="svc", attempt=1, delay=1.0, error_type="ConnectionError"),
        RetryExhausted(
            pipeline="svc", attempts=2, reason="max_attempts", error_type="ConnectionError"
        ),
    ]
    assert recorder.log[-1] == ("call_ended", CallOutcome.FAILURE, errors[-1], 3.0)


def test_a_non_retryable_error_after_a_retry(clock: FakeClock) -> None:
    recorder = Recorder()
    fatal = KeyError("k")
    pipeline = Pipeline(
        name="svc",
        retry=RetryConfig(backoff=Constant(seconds=0.0), retry_on=ConnectionError),
        clock=clock,
        listener=recorder,
    )
    with pytest.raises(KeyError):
        pipeline.call(taking(clock, 0.0, ConnectionError(), fatal))
    assert [e for e in recorder.events() if isinstance(e, RetryExhausted)] == [
        RetryExhausted(pipeline="svc", attempts=2, reason="not_retryable", error_type="KeyError")
    ]


def test_bad_results_are_failed_attempts_without_an_error(clock: FakeClock) -> None:
    recorder = Recorder()
    pipeline = Pipeline(
        name="svc",
        retry=RetryConfig(
            max_attempts=2, backoff=Constant(seconds=0.0), retry_on_result=lambda r: r < 0
        ),
        clock=clock,
        listener=recorder,
    )
    assert pipeline.call(taking(clock, 0.0, -1, -2)) == -2
    assert recorder.calls() == [
        ("start_call", "svc"),
        ("attempt_started", 1),
        ("attempt_ended", 1, FAILURE, None, 0.0),
        ("attempt_started", 2),
        ("attempt_ended", 2, FAILURE, None, 0.0),
        ("call_ended", CallOutcome.FAILURE, None, 0.0),
    ]
    assert recorder.events() == [
        RetryScheduled(pipeline="svc", attempt=1, delay=0.0, error_type=None),
        RetryExhausted(pipeline="svc", attempts=2, reason="max_attempts", error_type=None),
    ]


# -- breaker events --------------------------------------------------------------------


def test_breaker_transitions_and_rejections(clock: FakeClock) -> None:
    recorder = Recorder()
    breaker = CircuitBreaker(
        "dep",
        CircuitBreakerConfig(failure_threshold=2, success_threshold=1, timeout_seconds=30.0),
        clock=clock,
        listener=recorder,
    )
    pipeline = Pipeline(
        name="svc", retry=retry(attempts=5), circuit_breaker=breaker, clock=clock, listener=recorder
    )
    with pytest.raises(CircuitOpenError) as caught:
        pipeline.call(taking(clock, 0.0, ConnectionError(), ConnectionError()))
    assert recorder.log[-5:] == [
        ("attempt_started", 3),
        ("event", CallRejected(breaker="dep", state=CircuitState.OPEN, retry_after=29.0)),
        ("attempt_ended", 3, REJECTED, caught.value, 0.0),
        (
            "event",
            RetryExhausted(
                pipeline="svc", attempts=3, reason="not_retryable", error_type="CircuitOpenError"
            ),
        ),
        ("call_ended", CallOutcome.REJECTED, caught.value, 2.0),
    ]
    assert (
        CircuitStateChanged(
            breaker="dep",
            previous=CircuitState.CLOSED,
            state=CircuitState.OPEN,
            reason="failure_threshold",
            at=1.0,
        )
        in recorder.events()
    )
    recorder.log.clear()
    clock.advance(29.0)
    assert pipeline.call(lambda: "ok") == "ok"
    assert [e for e in recorder.events() if isinstance(e, CircuitStateChanged)] == [
        CircuitStateChanged(
            breaker="dep",
            previous=CircuitState.OPEN,
            state=CircuitState.HALF_OPEN,
            reason="open_timeout",
            at=31.0,
        ),
        CircuitStateChanged(
            breaker="dep",
            previous=CircuitState.HALF_OPEN,
            state=CircuitState.CLOSED,
            reason="trial_success",
            at=31.0,
        ),
    ]


# -- fallback, bulkhead, timeouts ------------------------------------------------------


def test_fallback_executed(clock: FakeClock) -> None:
    recorder = Recorder()
    error = ConnectionError("down")
    pipeline = Pipeline(
        name="svc", fallback=Fallback(value="cached"), clock=clock, listener=recorder
    )
    assert pipeline.call(taking(clock, 2.0, error)) == "cached"
    assert recorder.log == [
        ("start_call", "svc"),
        ("attempt_started", 1),
        ("attempt_ended", 1, FAILURE, error, 2.0),
        ("event", FallbackExecuted(pipeline="svc", error_type="ConnectionError")),
        ("call_ended", CallOutcome.FALLBACK, None, 2.0),
    ]


def test_no_fallback_event_when_a_sync_call_cannot_run_an_async_handler(clock: FakeClock) -> None:
    recorder = Recorder()

    async def handler(context: FallbackContext) -> str:
        return "never"

    pipeline = Pipeline(fallback=Fallback(handler=handler), clock=clock, listener=recorder)
    with pytest.raises(TypeError):
        pipeline.call(taking(clock, 0.0, ConnectionError()))
    assert [e for e in recorder.events() if isinstance(e, FallbackExecuted)] == []
    assert recorder.log[-1][0] == "call_ended"


def test_bulkhead_rejected(clock: FakeClock) -> None:
    recorder = Recorder()
    bulkhead = Bulkhead(1, name="pool", listener=recorder)
    assert bulkhead.try_acquire()
    pipeline = Pipeline(name="svc", bulkhead=bulkhead, clock=clock, listener=recorder)
    with pytest.raises(BulkheadFullError) as caught:
        pipeline.call(lambda: None)
    assert recorder.log == [
        ("start_call", "svc"),
        ("attempt_started", 1),
        ("event", BulkheadRejected(bulkhead="pool", reason="queue_full")),
        ("attempt_ended", 1, REJECTED, caught.value, 0.0),
        ("call_ended", CallOutcome.REJECTED, caught.value, 0.0),
    ]


def test_attempt_timeout_exceeded(clock: FakeClock) -> None:
    recorder = Recorder()
    pipeline = Pipeline(name="svc", attempt_timeout=1.0, clock=clock, listener=recorder)
    with pytest.raises(ResilienceTimeoutError) as caught:
        pipeline.call(taking(clock, 1.5, "late"))
    assert recorder.log == [
        ("start_call", "svc"),
        ("attempt_started", 1),
        ("event", TimeoutExceeded(pipeline="svc", scope="attempt", timeout=1.0)),
        ("attempt_ended", 1, TIMEOUT, caught.value, 1.5),
        ("call_ended", CallOutcome.TIMEOUT, caught.value, 1.5),
    ]


def test_total_timeout_exceeded(clock: FakeClock) -> None:
    recorder = Recorder()
    pipeline = Pipeline(name="svc", timeout=1.0, clock=clock, listener=recorder)
    with pytest.raises(ResilienceTimeoutError) as caught:
        pipeline.call(taking(clock, 1.5, "late"))
    assert caught.value.scope == "total"
    assert ("event", TimeoutExceeded(pipeline="svc", scope="total", timeout=1.0)) in recorder.log
    assert recorder.log[-1] == ("call_ended", CallOutcome.TIMEOUT, caught.value, 1.5)


def test_control_flow_ends_the_call_as_cancelled(clock: FakeClock) -> None:
    recorder = Recorder()
    pipeline = Pipeline(name="svc", retry=retry(), clock=clock, listener=recorder)
    interrupt = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        pipeline.call(taking(clock, 0.5, interrupt))
    assert recorder.log[-1] == ("call_ended", CallOutcome.CANCELLED, interrupt, 0.5)
    assert recorder.events() == []


class OversleepingClock(FakeClock):
    """Sleeps longer than asked, as a loaded machine does."""

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds + 2.0)


def test_every_started_attempt_is_ended_even_when_a_sleep_overshoots() -> None:
    clock = OversleepingClock()
    recorder = Recorder()
    pipeline = Pipeline(timeout=2.0, retry=retry(delay=0.5), clock=clock, listener=recorder)
    with pytest.raises(ResilienceTimeoutError):
        pipeline.call(taking(clock, 0.0, ConnectionError(), "never"))
    started = [entry[1] for entry in recorder.log if entry[0] == "attempt_started"]
    ended = [entry[1] for entry in recorder.log if entry[0] == "attempt_ended"]
    assert started == ended


# -- async -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_calls_are_observed_the_same_way(clock: FakeClock) -> None:
    recorder = Recorder()
    first = ConnectionError("a")
    outcomes: list[object] = [first, "ok"]

    async def work() -> object:
        clock.advance(0.25)
        item = outcomes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    pipeline = Pipeline(name="svc", retry=retry(delay=1.0), clock=clock, listener=recorder)
    assert await pipeline.acall(work) == "ok"
    assert recorder.log == [
        ("start_call", "svc"),
        ("attempt_started", 1),
        ("attempt_ended", 1, FAILURE, first, 0.25),
        (
            "event",
            RetryScheduled(pipeline="svc", attempt=1, delay=1.0, error_type="ConnectionError"),
        ),
        ("attempt_started", 2),
        ("attempt_ended", 2, SUCCESS, None, 0.25),
        ("call_ended", CallOutcome.SUCCESS, None, 1.5),
    ]


@pytest.mark.asyncio
async def test_async_attempt_timeout_is_observed(clock: FakeClock) -> None:
    recorder = Recorder()
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    async def advance() -> None:
        await started.wait()
        clock.advance(2.0)

    pipeline = Pipeline(name="svc", attempt_timeout=2.0, clock=clock, listener=recorder)
    helper = asyncio.create_task(advance())
    with pytest.raises(ResilienceTimeoutError) as caught:
        await pipeline.acall(hang)
    await helper
    assert recorder.log == [
        ("start_call", "svc"),
        ("attempt_started", 1),
        ("event", TimeoutExceeded(pipeline="svc", scope="attempt", timeout=2.0)),
        ("attempt_ended", 1, TIMEOUT, caught.value, 2.0),
        ("call_ended", CallOutcome.TIMEOUT, caught.value, 2.0),
    ]


@pytest.mark.asyncio
async def test_async_cancellation_is_observed_as_cancelled(clock: FakeClock) -> None:
    recorder = Recorder()
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    pipeline = Pipeline(name="svc", clock=clock, listener=recorder)
    task = asyncio.create_task(pipeline.acall(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert recorder.log[-1][:2] == ("call_ended", CallOutcome.CANCELLED)
    assert isinstance(recorder.log[-1][2], asyncio.CancelledError)


# -- isolation -------------------------------------------------------------------------


def scenario(clock: FakeClock, listener: Any) -> list[object]:
    """Run one of everything through a pipeline and return what the caller saw."""
    breaker = CircuitBreaker(
        "dep",
        CircuitBreakerConfig(failure_threshold=2, success_threshold=1, timeout_seconds=10.0),
        clock=clock,
        listener=listener,
    )
    bulkhead = Bulkhead(1, listener=listener)
    pipeline = Pipeline(
        name="svc",
        retry=retry(attempts=3, delay=1.0),
        circuit_breaker=breaker,
        bulkhead=bulkhead,
        clock=clock,
        listener=listener,
    )
    with_fallback = Pipeline(
        name="fb",
        fallback=Fallback(value="cached"),
        attempt_timeout=1.0,
        clock=clock,
        listener=listener,
    )
    seen: list[object] = []

    def attempt(fn: Callable[[], object], on: Pipeline = pipeline) -> None:
        try:
            seen.append(on.call(fn))
        except Exception as error:  # recording what the caller sees
            seen.append((type(error).__name__, getattr(error, "__notes__", None)))

    attempt(taking(clock, 0.1, "ok"))
    attempt(taking(clock, 0.1, ConnectionError(), "after retry"))
    attempt(taking(clock, 0.1, ConnectionError(), ConnectionError(), "never"))
    seen.append(breaker.state)
    clock.advance(10.0)
    attempt(taking(clock, 0.1, "trial"))
    seen.append(breaker.state)
    assert bulkhead.try_acquire()
    attempt(lambda: "never")
    bulkhead.release()
    attempt(taking(clock, 2.0, "late"), with_fallback)
    seen.append(breaker.metrics)
    seen.append(clock.monotonic())
    seen.append(list(clock.sleeps))
    return seen


def test_a_listener_that_raises_everywhere_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reference = scenario(FakeClock(), None)
    broken = Broken()
    with caplog.at_level(logging.ERROR, logger="otel_resilience"):
        assert scenario(FakeClock(), broken) == reference
    assert broken.hits > 10  # every method was really called and really raised


@pytest.mark.asyncio
async def test_a_raising_observer_changes_nothing_for_async_calls(clock: FakeClock) -> None:
    broken = Broken()
    first = ConnectionError("a")
    outcomes: list[object] = [first, "ok"]

    async def work() -> object:
        item = outcomes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    pipeline = Pipeline(retry=retry(), clock=clock, listener=broken)
    assert await pipeline.acall(work) == "ok"
    assert clock.sleeps == [1.0]
    assert broken.hits >= 5


def test_a_listener_whose_start_call_raises_changes_nothing(clock: FakeClock) -> None:
    broken = BrokenAtStart()
    reference = scenario(FakeClock(), None)
    assert scenario(FakeClock(), broken) == reference
    assert broken.hits > 0


# -- idle until OpenTelemetry's global providers are set ------------------------------------


class IdleRecorder(Recorder):
    """A recorder declaring that only a global provider could switch it on."""

    def __init__(self, *, idle: bool) -> None:
        super().__init__()
        self.idle_until_global_providers = idle


@pytest.mark.parametrize("idle", [True, False])
def test_an_idle_listener_is_not_asked_while_no_global_provider_is_set(
    idle: bool,
    clock: FakeClock,
) -> None:
    """The pytest process sets no global providers (see test_telemetry_cost)."""
    listener = IdleRecorder(idle=idle)
    pipeline = Pipeline(name="gated", listener=listener, clock=clock)
    assert pipeline.call(lambda: 7) == 7
    assert asyncio.run(pipeline.acall(_seven)) == 7
    asked = [entry for entry in listener.log if entry[0] == "start_call"]
    assert asked == ([] if idle else [("start_call", "gated")] * 2)


async def _seven() -> int:
    return 7


def test_the_opentelemetry_listener_is_idle_only_without_an_sdk() -> None:
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415 - the sdk extra
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415

    from otel_resilience.telemetry import OpenTelemetryListener  # noqa: PLC0415

    assert OpenTelemetryListener().idle_until_global_providers
    explicit = OpenTelemetryListener(
        tracer_provider=TracerProvider(), meter_provider=MeterProvider()
    )
    assert not explicit.idle_until_global_providers
    pipeline = Pipeline(name="explicit", listener=explicit)
    assert not pipeline.gated
