"""Pipelines consult the orchestrator inline: its decision changes the recovery of the call.

Each severity of the default table through real pipelines (sync and async drivers),
pattern escalation across attempts, severity set as a span attribute by user code or by
an instrumentation, and alerts from a sync pipeline in another thread delivered on the
orchestrator's loop. FakeClock everywhere; real threads and event loops.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    CircuitState,
    ErrorContext,
    ErrorRecoveryOrchestrator,
    ErrorSeverity,
    FailoverConfig,
    Fallback,
    Pipeline,
    ResilienceEvent,
    RetryConfig,
    RetryExhausted,
)
from otel_resilience._events import ErrorClassified
from otel_resilience.alerts import Alert
from otel_resilience.backoff import Constant
from otel_resilience.events import ErrorOccurred, EventBus
from otel_resilience.orchestrator import DEFAULT_RULES, SeverityClassifier, SeverityRule
from otel_resilience.testing import FakeClock

T = TypeVar("T")
Driver = Literal["sync", "async"]
DRIVERS: tuple[Driver, ...] = ("sync", "async")


class ThrottledError(Exception):
    """Classified LOW by the test classifier."""


class DiskFullError(Exception):
    """Classified CRITICAL by the test classifier."""


class LedgerCorruptedError(Exception):
    """Classified FATAL by the test classifier."""


CLASSIFIER = SeverityClassifier(
    (
        SeverityRule(ErrorSeverity.LOW, exception_types=(ThrottledError,), name="throttled"),
        SeverityRule(ErrorSeverity.CRITICAL, exception_types=(DiskFullError,), name="disk full"),
        SeverityRule(
            ErrorSeverity.FATAL, exception_types=(LedgerCorruptedError,), name="ledger corrupted"
        ),
        *DEFAULT_RULES,
    )
)


class Recorder:
    """A listener keeping every event; it observes no call."""

    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def start_call(self, pipeline: str) -> None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


class RecordingSink:
    """An alert sink that keeps what it received and the thread it ran in."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.threads: list[int] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)
        self.threads.append(threading.get_ident())


class Failing:
    """A protected function that fails every time, with a new message each time."""

    def __init__(self, error: type[Exception], before: Callable[[], None] | None = None) -> None:
        self.error = error
        self.before = before
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.before is not None:
            self.before()
        raise self.error(f"attempt {self.calls} failed")


def run(pipeline: Pipeline, driver: Driver, fn: Callable[[], T]) -> T:
    """Call ``fn`` through the sync driver, or through the async one in a real event loop."""
    if driver == "sync":
        return pipeline.call(fn)

    async def afn() -> T:
        return fn()

    return asyncio.run(pipeline.acall(afn))


def retry(attempts: int) -> RetryConfig:
    return RetryConfig(max_attempts=attempts, backoff=Constant(seconds=1.0))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def orchestrator(clock: FakeClock, recorder: Recorder) -> ErrorRecoveryOrchestrator:
    return ErrorRecoveryOrchestrator(clock=clock, listener=recorder, classifier=CLASSIFIER)


def pipeline(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock, name: str, **options: Any
) -> Pipeline:
    return Pipeline(name=name, clock=clock, orchestrator=orchestrator, **options)


def exhausted(recorder: Recorder) -> list[tuple[str, int, str]]:
    return [(e.pipeline, e.attempts, e.reason) for e in recorder.of(RetryExhausted)]


def state(breaker: CircuitBreaker) -> CircuitState:
    """The breaker's state, read anew (a plain attribute read would be narrowed by mypy)."""
    return breaker.state


# -- each severity of the default table ------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_low_keeps_retrying(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock, recorder: Recorder, driver: Driver
) -> None:
    fn = Failing(ThrottledError)
    quotes = pipeline(orchestrator, clock, "quotes", retry=retry(4), listener=recorder)

    with pytest.raises(ThrottledError) as raised:
        run(quotes, driver, fn)

    assert fn.calls == 4
    assert [e.severity for e in recorder.of(ErrorClassified)] == ["low"] * 4
    assert orchestrator.breaker("quotes").state is CircuitState.CLOSED
    assert exhausted(recorder) == [("quotes", 4, "max_attempts")]
    assert raised.value.__notes__ == [
        "otel-resilience: pipeline 'quotes' gave up after 4 attempts (max attempts)"
    ]


@pytest.mark.parametrize("driver", DRIVERS)
def test_medium_retries_then_falls_back(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock, recorder: Recorder, driver: Driver
) -> None:
    fn = Failing(TimeoutError)
    prices = pipeline(
        orchestrator,
        clock,
        "prices",
        retry=retry(3),
        fallback=Fallback(value="cached"),
        listener=recorder,
    )

    assert run(prices, driver, fn) == "cached"

    assert fn.calls == 3
    assert [e.actions for e in recorder.of(ErrorClassified)] == [("retry", "fallback")] * 3
    assert orchestrator.breaker("prices").state is CircuitState.CLOSED
    assert clock.sleeps == [1.0, 1.0]


@pytest.mark.parametrize("driver", DRIVERS)
def test_high_trips_the_breaker_and_stops_retries_at_once(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock, recorder: Recorder, driver: Driver
) -> None:
    fn = Failing(ConnectionError)
    payments = pipeline(orchestrator, clock, "payments", retry=retry(5), listener=recorder)
    assert payments.circuit_breaker is orchestrator.breaker("payments")

    with pytest.raises(ConnectionError) as raised:
        run(payments, driver, fn)

    assert fn.calls == 1
    assert clock.sleeps == []
    assert orchestrator.breaker("payments").state is CircuitState.OPEN
    assert exhausted(recorder) == [("payments", 1, "orchestrator")]
    assert raised.value.__notes__ == [
        "otel-resilience: pipeline 'payments' gave up after 1 attempt (orchestrator)"
    ]
    [classified] = recorder.of(ErrorClassified)
    assert (classified.severity, classified.actions) == ("high", ("circuit_break", "fallback"))

    # The open breaker refuses the next call without running it, and a refusal is not
    # an error the orchestrator hears about.
    with pytest.raises(CircuitOpenError):
        run(payments, driver, fn)
    assert fn.calls == 1
    assert len(recorder.of(ErrorClassified)) == 1


@pytest.mark.parametrize("driver", DRIVERS)
def test_high_falls_back_after_one_attempt(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock, driver: Driver
) -> None:
    fn = Failing(ConnectionRefusedError)
    payments = pipeline(
        orchestrator, clock, "payments", retry=retry(5), fallback=Fallback(value="queued")
    )
    assert run(payments, driver, fn) == "queued"
    assert run(payments, driver, fn) == "queued"  # rejected by the open breaker
    assert fn.calls == 1


@pytest.mark.asyncio
async def test_critical_from_a_sync_pipeline_in_another_thread(
    clock: FakeClock, recorder: Recorder
) -> None:
    sink = RecordingSink()
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock,
        listener=recorder,
        classifier=CLASSIFIER,
        alert_sinks=[sink],
        failover={"db": FailoverConfig(("db-replica",))},
    )
    await orchestrator.start()
    loop_thread = threading.get_ident()
    fn = Failing(DiskFullError)
    db = pipeline(orchestrator, clock, "db", retry=retry(5), listener=recorder)

    def call_in_thread() -> int:
        with pytest.raises(DiskFullError):
            db.call(fn)
        return threading.get_ident()

    worker_thread = await asyncio.to_thread(call_in_thread)
    # The immediate actions happened before the call returned.
    assert fn.calls == 1
    assert orchestrator.breaker("db").state is CircuitState.OPEN
    assert orchestrator.failover_target("db") == "db-replica"
    assert exhausted(recorder) == [("db", 1, "orchestrator")]

    await orchestrator.stop()  # waits for the alert scheduled from the worker thread
    [alert] = sink.alerts
    assert (alert.severity, alert.component, alert.error_type) == (
        "critical",
        "db",
        "DiskFullError",
    )
    assert alert.description == "attempt 1 failed"
    assert sink.threads == [loop_thread]
    assert worker_thread != loop_thread


@pytest.mark.asyncio
async def test_fatal_stops_retries_of_the_component_for_a_while(
    clock: FakeClock, recorder: Recorder
) -> None:
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock, listener=recorder, classifier=CLASSIFIER, stop_retries_seconds=30.0
    )
    await orchestrator.start()
    ledger = pipeline(orchestrator, clock, "ledger", retry=retry(3), listener=recorder)
    corrupt = Failing(LedgerCorruptedError)

    async def call(fn: Failing) -> None:
        async def afn() -> str:
            return fn()

        await ledger.acall(afn)

    with pytest.raises(LedgerCorruptedError):
        await call(corrupt)
    assert corrupt.calls == 1
    assert orchestrator.retries_stopped("ledger")
    assert orchestrator.breaker("ledger").state is CircuitState.OPEN

    # An operator closes the breaker: a MEDIUM error, normally retried, is not.
    orchestrator.breaker("ledger").reset()
    slow = Failing(TimeoutError)
    with pytest.raises(TimeoutError):
        await call(slow)
    assert slow.calls == 1
    [*_, classified] = recorder.of(ErrorClassified)
    assert (classified.severity, classified.actions) == ("medium", ("fallback", "stop_retries"))

    # After the period it is retried again.
    clock.advance(30.0)
    slow.calls = 0
    with pytest.raises(TimeoutError):
        await call(slow)
    assert slow.calls == 3
    assert exhausted(recorder)[-1] == ("ledger", 3, "max_attempts")
    await orchestrator.stop()


# -- patterns across attempts ----------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_sixth_failure_in_the_window_escalates_and_trips_the_breaker(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock, recorder: Recorder, driver: Driver
) -> None:
    # A breaker that would not open by itself before the tenth failure.
    orchestrator.register_circuit_breaker("search", CircuitBreakerConfig(failure_threshold=10))
    fn = Failing(TimeoutError)  # MEDIUM; every message differs
    search = pipeline(orchestrator, clock, "search", retry=retry(10), listener=recorder)

    with pytest.raises(TimeoutError):
        run(search, driver, fn)

    assert fn.calls == 6
    classified = recorder.of(ErrorClassified)
    assert [(e.severity, e.escalated) for e in classified] == [("medium", False)] * 5 + [
        ("high", True)
    ]
    assert orchestrator.breaker("search").state is CircuitState.OPEN
    assert exhausted(recorder) == [("search", 6, "orchestrator")]
    [pattern] = orchestrator.status().patterns
    assert (pattern.fingerprint, pattern.count) == ("search|TimeoutError", 6)


# -- breakers and components -----------------------------------------------------------------------


def test_a_pipeline_breaker_is_tripped_along_with_the_components(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock
) -> None:
    own = CircuitBreaker("payments-eu", clock=clock)
    payments = pipeline(
        orchestrator,
        clock,
        "charge",
        component="payments",
        circuit_breaker=own,
        retry=retry(3),
    )
    assert payments.component == "payments"
    with pytest.raises(ConnectionError):
        payments.call(Failing(ConnectionError))
    assert state(own) is CircuitState.OPEN
    assert orchestrator.breaker("payments").state is CircuitState.OPEN
    assert "charge" not in orchestrator.status().breakers


def test_errors_of_pipelines_sharing_a_component_make_one_pattern(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock, recorder: Recorder
) -> None:
    orchestrator.register_circuit_breaker("inventory", CircuitBreakerConfig(failure_threshold=10))
    reads = pipeline(orchestrator, clock, "read", component="inventory", retry=retry(3))
    writes = pipeline(orchestrator, clock, "write", component="inventory", retry=retry(3))
    breaker = reads.circuit_breaker
    assert breaker is not None
    assert breaker is writes.circuit_breaker
    with pytest.raises(TimeoutError):
        reads.call(Failing(TimeoutError))
    with pytest.raises(TimeoutError):
        writes.call(Failing(TimeoutError))  # occurrences 4, 5 and 6: escalated on the 6th
    assert [e.escalated for e in recorder.of(ErrorClassified)] == [False] * 5 + [True]
    assert state(breaker) is CircuitState.OPEN


def test_a_failing_orchestrator_does_not_break_the_call(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(context: ErrorContext) -> None:
        raise RuntimeError("orchestrator bug")

    monkeypatch.setattr(orchestrator, "consult", broken)
    fn = Failing(ConnectionError)
    payments = pipeline(orchestrator, clock, "payments", retry=retry(3))
    with pytest.raises(ConnectionError):
        payments.call(fn)
    assert fn.calls == 3  # retried as if no orchestrator were there


def test_bad_results_are_not_errors_for_the_orchestrator(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock, recorder: Recorder
) -> None:
    polls = pipeline(
        orchestrator,
        clock,
        "poll",
        retry=RetryConfig(
            max_attempts=3, backoff=Constant(seconds=1.0), retry_on_result=lambda r: r is None
        ),
    )
    assert polls.call(lambda: None) is None
    assert recorder.of(ErrorClassified) == []


def test_pipeline_validates_orchestrator_and_component(clock: FakeClock) -> None:
    with pytest.raises(TypeError, match=r"Pipeline\.orchestrator"):
        Pipeline(name="p", orchestrator=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Pipeline\.component"):
        Pipeline(name="p", component="")


# -- severity from span attributes -------------------------------------------------------------


class Traces:
    """An SDK tracer provider with in-memory export, passed to pipelines explicitly."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]


@pytest.fixture
def traces() -> Iterator[Traces]:
    sdk = Traces()
    yield sdk
    sdk.provider.shutdown()


def mark_severity(severity: str) -> Callable[[], None]:
    """What user code does: say how bad the failure is, on the current span."""

    def mark() -> None:
        trace.get_current_span().set_attribute("resilience.error.severity", severity)

    return mark


def record_response(status: int) -> None:
    """A stand-in for an HTTP client instrumentation recording the response on the span."""
    span = trace.get_current_span()
    span.set_attribute("http.response.status_code", status)
    span.set_attribute("http.request.method", "GET")


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("error", "severity", "calls"),
    [
        (TimeoutError, None, 4),  # MEDIUM by default: retried
        (TimeoutError, "high", 1),  # user code says HIGH: stopped at once
        (TimeoutError, "critical", 1),
        (ConnectionError, None, 1),  # HIGH by default: stopped at once
        (ConnectionError, "low", 4),  # user code says LOW: retried
        (ConnectionError, "bogus", 1),  # an invalid value is ignored
    ],
)
def test_user_code_sets_the_severity_on_the_current_span(
    orchestrator: ErrorRecoveryOrchestrator,
    clock: FakeClock,
    traces: Traces,
    driver: Driver,
    error: type[Exception],
    severity: str | None,
    calls: int,
) -> None:
    fn = Failing(error, mark_severity(severity) if severity else None)
    svc = pipeline(orchestrator, clock, "svc", retry=retry(4), tracer_provider=traces.provider)

    with pytest.raises(error):
        run(svc, driver, fn)

    assert fn.calls == calls
    stopped = calls == 1
    assert (orchestrator.breaker("svc").state is CircuitState.OPEN) is stopped
    attempts = traces.spans("svc attempt")
    assert len(attempts) == calls
    if severity is not None:
        assert all(
            (s.attributes or {}).get("resilience.error.severity") == severity for s in attempts
        )


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("status", "calls", "severity"),
    [
        (None, 1, "high"),  # a connection reset: HIGH, stopped at once
        (503, 4, "low"),  # the server said 503: LOW, retried
        (429, 4, "low"),
        (502, 4, "medium"),  # other 5xx: MEDIUM, retried
    ],
)
def test_an_instrumentation_attribute_changes_the_recovery(
    orchestrator: ErrorRecoveryOrchestrator,
    clock: FakeClock,
    recorder: Recorder,
    traces: Traces,
    driver: Driver,
    status: int | None,
    calls: int,
    severity: str,
) -> None:
    recorded: Callable[[], None] | None = None
    if status is not None:
        code = status

        def recorded() -> None:
            record_response(code)

    fn = Failing(ConnectionResetError, recorded)
    api = pipeline(orchestrator, clock, "api", retry=retry(4), tracer_provider=traces.provider)

    with pytest.raises(ConnectionResetError):
        run(api, driver, fn)

    assert fn.calls == calls
    assert orchestrator.breaker("api").state is (
        CircuitState.OPEN if calls == 1 else CircuitState.CLOSED
    )
    assert {e.severity for e in recorder.of(ErrorClassified)} == {severity}


@pytest.mark.asyncio
async def test_the_error_context_comes_from_the_attempt_span(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock, traces: Traces
) -> None:
    bus = EventBus()
    contexts: list[ErrorContext] = []

    async def collect(event: ErrorOccurred) -> None:
        contexts.append(event.context)

    bus.subscribe(ErrorOccurred, collect)
    await bus.start()
    orchestrator.event_bus = bus
    fn = Failing(TimeoutError, lambda: record_response(500))
    svc = pipeline(
        orchestrator,
        clock,
        "fetch",
        component="catalog",
        retry=retry(2),
        tracer_provider=traces.provider,
    )

    async def afn() -> str:
        return fn()

    with pytest.raises(TimeoutError):
        await svc.acall(afn)
    await bus.stop()

    attempts = sorted(traces.spans("fetch attempt"), key=lambda s: s.start_time or 0)
    assert [(c.component, c.operation, c.attempt) for c in contexts] == [
        ("catalog", "fetch", 1),
        ("catalog", "fetch", 2),
    ]
    for ctx, span in zip(contexts, attempts, strict=True):
        span_context = span.context
        assert span_context is not None
        assert ctx.trace_id == format(span_context.trace_id, "032x")
        assert ctx.span_id == format(span_context.span_id, "016x")
        assert ctx.error_type == "TimeoutError"
        assert ctx.message == f"attempt {ctx.attempt} failed"
        assert ctx.attributes["http.response.status_code"] == 500
        assert ctx.attributes["resilience.attempt"] == ctx.attempt
        assert ctx.exception is not None
