"""ErrorSpanProcessor: ERROR spans of other instrumentations reach the orchestrator, observe-only.

A real SDK TracerProvider with the processor and an in-memory exporter; spans are made
the way database, HTTP server and messaging instrumentations make them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from otel_resilience import (
    CircuitState,
    ErrorContext,
    ErrorRecoveryOrchestrator,
    Pipeline,
    ResilienceEvent,
    RetryConfig,
)
from otel_resilience._events import ErrorClassified
from otel_resilience.alerts import Alert
from otel_resilience.events import ErrorOccurred, EventBus
from otel_resilience.orchestrator import ErrorSpanProcessor
from otel_resilience.telemetry import names
from otel_resilience.testing import FakeClock

DB_SCOPE = "opentelemetry.instrumentation.psycopg"


class OperationalError(Exception):
    """What a database driver raises."""


DB_ERROR = f"{OperationalError.__module__}.OperationalError"
"""How the SDK records its ``exception.type``: module-qualified, as the conventions say."""
PATTERN = f"postgresql|{DB_ERROR}"


class Recorder:
    """A listener keeping the orchestrator's events."""

    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def start_call(self, pipeline: str) -> None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)

    def classified(self) -> list[ErrorClassified]:
        return [e for e in self.events if isinstance(e, ErrorClassified)]


class RecordingSink:
    """An alert sink that keeps what it received."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class Sdk:
    """A tracer provider: the error span processor first, then an in-memory exporter."""

    def __init__(self, orchestrator: ErrorRecoveryOrchestrator, **options: Any) -> None:
        self.processor = ErrorSpanProcessor(orchestrator, **options)
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def tracer(self, scope: str = DB_SCOPE) -> Tracer:
        return self.provider.get_tracer(scope)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def orchestrator(clock: FakeClock, recorder: Recorder) -> ErrorRecoveryOrchestrator:
    return ErrorRecoveryOrchestrator(clock=clock, listener=recorder)


@pytest.fixture
def sdk(orchestrator: ErrorRecoveryOrchestrator) -> Iterator[Sdk]:
    made = Sdk(orchestrator)
    yield made
    made.provider.shutdown()


def failed_query(
    tracer: Tracer,
    *,
    attributes: dict[str, Any] | None = None,
    error: BaseException | None = None,
    description: str | None = "relation missing",
) -> None:
    """A database client span that failed, as a database instrumentation ends it."""
    with tracer.start_as_current_span(
        "SELECT orders",
        kind=SpanKind.CLIENT,
        attributes={"db.system": "postgresql", "db.namespace": "shop", **(attributes or {})},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        span.record_exception(error or OperationalError("relation 'orders' does not exist"))
        span.set_status(Status(StatusCode.ERROR, description))


def fingerprints(orchestrator: ErrorRecoveryOrchestrator) -> dict[str, int]:
    return {p.fingerprint: p.count for p in orchestrator.status().patterns}


# -- what reaches the orchestrator --------------------------------------------------------------


def test_an_error_span_of_another_instrumentation_is_observed(
    orchestrator: ErrorRecoveryOrchestrator, sdk: Sdk, recorder: Recorder
) -> None:
    failed_query(sdk.tracer())
    assert fingerprints(orchestrator) == {PATTERN: 1}
    [classified] = recorder.classified()
    assert (classified.component, classified.severity) == ("postgresql", "medium")
    assert len(sdk.exporter.get_finished_spans()) == 1


def test_observe_only_patterns_escalate_but_no_breaker_is_touched(
    orchestrator: ErrorRecoveryOrchestrator, sdk: Sdk, recorder: Recorder
) -> None:
    for _ in range(6):
        failed_query(sdk.tracer())
    assert fingerprints(orchestrator) == {PATTERN: 6}
    last = recorder.classified()[-1]
    assert (last.severity, last.escalated) == ("high", True)
    assert orchestrator.status().breakers == {}
    assert orchestrator.status().recent_actions == ()


@pytest.mark.asyncio
async def test_a_critical_span_alerts_through_the_sinks(
    clock: FakeClock, recorder: Recorder
) -> None:
    sink = RecordingSink()
    orchestrator = ErrorRecoveryOrchestrator(clock=clock, listener=recorder, alert_sinks=[sink])
    sdk = Sdk(orchestrator)
    await orchestrator.start()

    failed_query(
        sdk.tracer(),
        attributes={names.ATTR_ERROR_SEVERITY: "critical"},
        description="disk full",
    )
    await orchestrator.stop()  # waits for the scheduled alert

    [alert] = sink.alerts
    assert (alert.severity, alert.component, alert.error_type) == (
        "critical",
        "postgresql",
        DB_ERROR,
    )
    assert alert.description == "disk full"
    assert alert.annotations["operation"] == "SELECT orders"
    assert orchestrator.status().breakers == {}  # an alert, but no breaker
    assert orchestrator.failover_target("postgresql") == "postgresql"
    sdk.provider.shutdown()


@pytest.mark.asyncio
async def test_spans_ended_in_other_threads_alert_on_the_loop(
    clock: FakeClock, recorder: Recorder
) -> None:
    sink = RecordingSink()
    orchestrator = ErrorRecoveryOrchestrator(clock=clock, listener=recorder, alert_sinks=[sink])
    sdk = Sdk(orchestrator)
    await orchestrator.start()

    def worker() -> None:
        failed_query(sdk.tracer(), attributes={names.ATTR_ERROR_SEVERITY: "fatal"})

    await asyncio.to_thread(worker)
    await orchestrator.stop()
    assert [a.severity for a in sink.alerts] == ["fatal"]
    assert not orchestrator.retries_stopped("postgresql")  # observe-only
    sdk.provider.shutdown()


def test_the_context_carries_the_spans_ids_attributes_and_time(
    orchestrator: ErrorRecoveryOrchestrator, sdk: Sdk
) -> None:
    contexts: list[ErrorContext] = []

    async def scenario() -> None:
        bus = EventBus()

        async def collect(event: ErrorOccurred) -> None:
            contexts.append(event.context)

        bus.subscribe(ErrorOccurred, collect)
        await bus.start()
        orchestrator.event_bus = bus
        failed_query(sdk.tracer(), attributes={"db.query.parameters": ("a", "b")})
        await bus.stop()

    asyncio.run(scenario())
    [span] = sdk.exporter.get_finished_spans()
    [ctx] = contexts
    span_context = span.context
    assert span_context is not None
    assert ctx.trace_id == format(span_context.trace_id, "032x")
    assert ctx.span_id == format(span_context.span_id, "016x")
    assert ctx.operation == "SELECT orders"
    assert ctx.message == "relation missing"  # the status description
    assert span.end_time is not None
    assert ctx.timestamp == pytest.approx(span.end_time / 1e9)
    # Only attribute values a context can keep (no sequences).
    assert dict(ctx.attributes) == {"db.system": "postgresql", "db.namespace": "shop"}
    assert ctx.exception is None
    assert ctx.severity is None


@pytest.mark.parametrize(
    ("attributes", "error", "description", "expected"),
    [
        # error.type wins over the exception event; the status description is the message.
        ({"error.type": "UniqueViolation"}, None, "dup", ("UniqueViolation", "dup")),
        # Without a description, the exception event's message.
        ({}, OperationalError("no such table"), None, (DB_ERROR, "no such table")),
    ],
)
def test_error_type_and_message_sources(
    orchestrator: ErrorRecoveryOrchestrator,
    sdk: Sdk,
    recorder: Recorder,
    attributes: dict[str, Any],
    error: BaseException | None,
    description: str | None,
    expected: tuple[str, str],
) -> None:
    sink = RecordingSink()
    orchestrator.alert_sinks = (sink,)

    async def scenario() -> None:
        await orchestrator.start()
        failed_query(
            sdk.tracer(),
            attributes={**attributes, names.ATTR_ERROR_SEVERITY: "critical"},
            error=error,
            description=description,
        )
        await orchestrator.stop()

    asyncio.run(scenario())
    [alert] = sink.alerts
    assert (alert.error_type, alert.description) == expected


def test_a_span_without_error_type_or_exception(
    orchestrator: ErrorRecoveryOrchestrator, sdk: Sdk
) -> None:
    with sdk.tracer("messaging").start_as_current_span(
        "orders publish", attributes={"messaging.system": "kafka"}
    ) as span:
        span.set_status(Status(StatusCode.ERROR))
    assert fingerprints(orchestrator) == {"kafka|error": 1}


@pytest.mark.parametrize(
    ("attributes", "component"),
    [
        ({"peer.service": "billing", "db.system": "postgresql"}, "billing"),
        ({"db.system": "postgresql", "server.address": "db1"}, "postgresql"),
        ({"server.address": "api.example.com"}, "api.example.com"),
        ({}, "opentelemetry.instrumentation.requests"),  # the scope's name
    ],
)
def test_the_component_comes_from_the_first_naming_attribute(
    orchestrator: ErrorRecoveryOrchestrator,
    sdk: Sdk,
    recorder: Recorder,
    attributes: dict[str, str],
    component: str,
) -> None:
    tracer = sdk.tracer("opentelemetry.instrumentation.requests")
    with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes=attributes) as span:
        span.set_status(Status(StatusCode.ERROR))
    assert [e.component for e in recorder.classified()] == [component]


def test_http_server_errors_are_classified_by_status(
    orchestrator: ErrorRecoveryOrchestrator, sdk: Sdk, recorder: Recorder
) -> None:
    tracer = sdk.tracer("opentelemetry.instrumentation.asgi")
    for status in (503, 500):
        with tracer.start_as_current_span(
            "GET /orders",
            kind=SpanKind.SERVER,
            attributes={"http.response.status_code": status, "error.type": str(status)},
        ) as span:
            span.set_status(Status(StatusCode.ERROR))
    assert [e.severity for e in recorder.classified()] == ["low", "medium"]


# -- what does not -------------------------------------------------------------------------------


def test_ok_and_unset_spans_are_ignored(orchestrator: ErrorRecoveryOrchestrator, sdk: Sdk) -> None:
    tracer = sdk.tracer()
    with tracer.start_as_current_span("SELECT 1") as span:
        span.set_status(Status(StatusCode.OK))
    with tracer.start_as_current_span("SELECT 2"):
        pass
    assert fingerprints(orchestrator) == {}
    assert len(sdk.exporter.get_finished_spans()) == 2


def test_spans_of_otel_resilience_itself_are_ignored(
    orchestrator: ErrorRecoveryOrchestrator, sdk: Sdk, clock: FakeClock
) -> None:
    # A pipeline without the orchestrator, on the same provider: its failed attempts
    # are ERROR spans of our own scope.
    pipeline = Pipeline(
        name="svc", retry=RetryConfig(max_attempts=2), clock=clock, tracer_provider=sdk.provider
    )

    def fail() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        pipeline.call(fail)
    ours = [
        s for s in sdk.exporter.get_finished_spans() if s.status.status_code is StatusCode.ERROR
    ]
    assert len(ours) == 3  # two attempts and the call
    assert fingerprints(orchestrator) == {}


def test_ignored_scopes_are_configurable(orchestrator: ErrorRecoveryOrchestrator) -> None:
    sdk = Sdk(orchestrator, ignore_scopes=(DB_SCOPE,))
    failed_query(sdk.tracer())
    failed_query(sdk.tracer("opentelemetry.instrumentation.asyncpg"))
    assert fingerprints(orchestrator) == {PATTERN: 1}
    sdk.provider.shutdown()


def test_component_attributes_are_configurable(
    orchestrator: ErrorRecoveryOrchestrator, recorder: Recorder
) -> None:
    sdk = Sdk(orchestrator, component_attributes=("db.namespace",))
    failed_query(sdk.tracer())
    assert [e.component for e in recorder.classified()] == ["shop"]
    sdk.provider.shutdown()


# -- isolation ------------------------------------------------------------------------------------


def test_a_raising_orchestrator_does_not_break_span_ending(
    orchestrator: ErrorRecoveryOrchestrator, sdk: Sdk, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def broken(context: ErrorContext) -> None:
        calls.append(context.component)
        raise RuntimeError("orchestrator bug")

    monkeypatch.setattr(orchestrator, "observe", broken)
    failed_query(sdk.tracer())
    failed_query(sdk.tracer())
    assert calls == ["postgresql", "postgresql"]
    # The exporter after it still got every span.
    assert len(sdk.exporter.get_finished_spans()) == 2


def test_concurrent_spans_are_all_counted(
    orchestrator: ErrorRecoveryOrchestrator, sdk: Sdk
) -> None:
    threads, spans = 4, 50
    start = threading.Barrier(threads, timeout=10.0)

    def work() -> None:
        start.wait()
        for _ in range(spans):
            failed_query(sdk.tracer())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10.0)
    [pattern] = orchestrator.status().patterns
    assert pattern.total == threads * spans
    assert orchestrator.breaker("postgresql").state is CircuitState.CLOSED


def test_processor_contract(orchestrator: ErrorRecoveryOrchestrator) -> None:
    processor = ErrorSpanProcessor(orchestrator)
    assert processor.force_flush() is True
    processor.shutdown()
    with pytest.raises(TypeError, match="ErrorSpanProcessor"):
        ErrorSpanProcessor(object())  # type: ignore[arg-type]
