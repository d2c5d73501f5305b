"""The orchestrator's telemetry: decision events, action spans and its four metrics.

An orchestrator built with ``listener=OpenTelemetryListener(tracer_provider=...,
meter_provider=...)`` on explicit SDK providers with in-memory export; FakeClock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from otel_resilience import (
    ErrorContext,
    ErrorRecoveryOrchestrator,
    ErrorSeverity,
    FailoverConfig,
    Pipeline,
    RecoveryPlan,
    RetryConfig,
)
from otel_resilience.alerts import Alert
from otel_resilience.orchestrator import DecisionTable, RecoveryAction
from otel_resilience.telemetry import OpenTelemetryListener, names
from otel_resilience.testing import FakeClock

SECRET = "secret-51c9"
"""Put in every error message; must never reach a metric attribute."""

COMPONENT = names.ATTR_COMPONENT
ERROR = names.ATTR_ERROR_TYPE
SEVERITY = names.ATTR_ERROR_SEVERITY
ACTION = names.ATTR_RECOVERY_ACTION
OUTCOME = names.ATTR_OUTCOME
SINK = names.ATTR_ALERT_SINK

Key = frozenset[tuple[str, Any]]


def key(**attributes: Any) -> Key:
    return frozenset(
        (getattr(names, f"ATTR_{name.upper()}"), value) for name, value in attributes.items()
    )


class Otel:
    """Explicit SDK providers with in-memory export, and the adapter on them."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        self.listener = OpenTelemetryListener(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )
        self.tracer = self.tracer_provider.get_tracer("tests")

    def metrics(self) -> dict[str, Metric]:
        found: dict[str, Metric] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found

    def values(self, metric: names.MetricName) -> dict[Key, float]:
        found = self.metrics().get(metric.name)
        if found is None:
            return {}
        result: dict[Key, float] = {}
        for point in found.data.data_points:
            assert isinstance(point, NumberDataPoint)
            result[frozenset((point.attributes or {}).items())] = point.value
        return result

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, (name, [s.name for s in self.spans()])
        return found[0]

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


class RecordingSink:
    """An alert sink that keeps what it received."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class RefusingSink:
    """An alert sink whose receiver is down."""

    async def send(self, alert: Alert) -> None:
        raise ConnectionRefusedError(f"receiver down {SECRET}")


@pytest.fixture
def otel() -> Iterator[Otel]:
    sdk = Otel()
    yield sdk
    sdk.shutdown()


def context(
    component: str, error_type: str, severity: ErrorSeverity | None = None, **fields: Any
) -> ErrorContext:
    return ErrorContext(
        component=component,
        operation="charge",
        error_type=error_type,
        message=f"request failed {SECRET}",
        severity=severity,
        timestamp=1_700_000_000.0,
        **fields,
    )


def attributes(item: Any) -> dict[str, Any]:
    return dict(item.attributes or {})


# -- metrics ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_errors_are_counted_by_component_error_type_and_final_severity(
    otel: Otel, clock: FakeClock
) -> None:
    orchestrator = ErrorRecoveryOrchestrator(clock=clock, listener=otel.listener)
    await orchestrator.handle_error(context("payments", "ConnectionError", ErrorSeverity.HIGH))
    for _ in range(6):  # the sixth escalates
        orchestrator.assess(context("search", "TimeoutError"))

    assert otel.values(names.METRIC_ERRORS) == {
        key(component="payments", error_type="ConnectionError", error_severity="high"): 1,
        key(component="search", error_type="TimeoutError", error_severity="medium"): 5,
        key(component="search", error_type="TimeoutError", error_severity="high"): 1,
    }


@pytest.mark.asyncio
async def test_recovery_actions_and_alerts_are_counted_with_their_outcome(
    otel: Otel, clock: FakeClock
) -> None:
    def flaky(ctx: ErrorContext, plan: RecoveryPlan) -> None:
        raise RuntimeError(SECRET)

    table = DecisionTable.DEFAULT.with_actions(
        ErrorSeverity.CRITICAL,
        [RecoveryAction.CIRCUIT_BREAK, RecoveryAction.FAILOVER, RecoveryAction.ALERT, "flaky"],
    )
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock,
        listener=otel.listener,
        table=table,
        failover={"db": FailoverConfig(("db-replica",))},
        alert_sinks=[RecordingSink(), RefusingSink()],
    )
    orchestrator.register_action("flaky", flaky)
    await orchestrator.handle_error(context("db", "OperationalError", ErrorSeverity.CRITICAL))
    await orchestrator.handle_error(context("db", "OperationalError", ErrorSeverity.CRITICAL))

    assert otel.values(names.METRIC_RECOVERY_ACTIONS) == {
        key(component="db", recovery_action="circuit_break", outcome="success"): 2,
        key(component="db", recovery_action="failover", outcome="success"): 1,
        key(component="db", recovery_action="failover", outcome="failure"): 1,
        key(component="db", recovery_action="alert", outcome="failure"): 2,
        key(component="db", recovery_action="flaky", outcome="failure"): 2,
    }
    assert otel.values(names.METRIC_ALERTS) == {
        key(
            component="db", error_severity="critical", alert_sink="RecordingSink", outcome="success"
        ): 2,
        key(
            component="db", error_severity="critical", alert_sink="RefusingSink", outcome="failure"
        ): 2,
    }


def test_active_patterns_are_observed_at_collection(otel: Otel, clock: FakeClock) -> None:
    orchestrator = ErrorRecoveryOrchestrator(clock=clock, listener=otel.listener)
    assert otel.values(names.METRIC_ERROR_PATTERNS_ACTIVE) == {frozenset(): 0}

    for component, error_type in (("a", "E1"), ("a", "E2"), ("b", "E1"), ("a", "E1")):
        orchestrator.assess(context(component, error_type))
    assert otel.values(names.METRIC_ERROR_PATTERNS_ACTIVE) == {frozenset(): 3}

    clock.advance(orchestrator.patterns.window_seconds)
    orchestrator.assess(context("c", "E3"))
    assert otel.values(names.METRIC_ERROR_PATTERNS_ACTIVE) == {frozenset(): 1}
    metric = otel.metrics()[names.METRIC_ERROR_PATTERNS_ACTIVE.name]
    assert isinstance(metric.data, Gauge)
    assert metric.unit == names.METRIC_ERROR_PATTERNS_ACTIVE.unit


def test_orchestrators_sharing_a_listener_add_up(otel: Otel, clock: FakeClock) -> None:
    first = ErrorRecoveryOrchestrator(clock=clock, listener=otel.listener)
    second = ErrorRecoveryOrchestrator(clock=clock, listener=otel.listener)
    first.assess(context("a", "E1"))
    first.assess(context("b", "E1"))
    second.assess(context("c", "E1"))
    assert otel.values(names.METRIC_ERROR_PATTERNS_ACTIVE) == {frozenset(): 3}


@pytest.mark.asyncio
async def test_no_message_reaches_a_metric_attribute(otel: Otel, clock: FakeClock) -> None:
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock, listener=otel.listener, alert_sinks=[RefusingSink()]
    )
    await orchestrator.handle_error(context("db", "OperationalError", ErrorSeverity.FATAL))
    collected = otel.metrics()
    for metric in (
        names.METRIC_ERRORS,
        names.METRIC_RECOVERY_ACTIONS,
        names.METRIC_ALERTS,
        names.METRIC_ERROR_PATTERNS_ACTIVE,
    ):
        exported = collected[metric.name]
        assert exported.unit == metric.unit
        assert exported.description == metric.description
        if metric.kind == "counter":
            assert isinstance(exported.data, Sum)
            assert exported.data.is_monotonic
        for point in exported.data.data_points:
            found = dict(point.attributes or {})
            assert set(found) <= set(metric.attributes), metric.name
            assert all(SECRET not in str(value) for value in found.values())


# -- spans and span events -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_decision_is_an_event_on_the_current_span(otel: Otel, clock: FakeClock) -> None:
    orchestrator = ErrorRecoveryOrchestrator(clock=clock, listener=otel.listener)
    for _ in range(5):
        orchestrator.assess(context("search", "TimeoutError"))
    with otel.tracer.start_as_current_span("handle order"):
        await orchestrator.handle_error(context("search", "TimeoutError"))

    span = otel.span("handle order")
    [decision] = [e for e in span.events if e.name == names.EVENT_RECOVERY_DECISION]
    assert attributes(decision) == {
        COMPONENT: "search",
        ERROR: "TimeoutError",
        SEVERITY: "high",
        names.ATTR_ESCALATED: True,
        names.ATTR_ACTIONS: ("circuit_break", "fallback"),
        names.ATTR_REASON: "default",
    }
    # Outside any span the decision is still counted.
    assert sum(otel.values(names.METRIC_ERRORS).values()) == 6


@pytest.mark.asyncio
async def test_each_action_is_a_span_under_the_current_one(otel: Otel, clock: FakeClock) -> None:
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock, listener=otel.listener, alert_sinks=[RefusingSink()]
    )
    with otel.tracer.start_as_current_span("handle order"):
        await orchestrator.handle_error(context("db", "OperationalError", ErrorSeverity.CRITICAL))

    parent = otel.span("handle order").context
    assert parent is not None
    breaker = otel.span("db circuit_break")
    assert breaker.kind is SpanKind.INTERNAL
    assert breaker.parent is not None
    assert breaker.parent.span_id == parent.span_id
    assert attributes(breaker) == {COMPONENT: "db", ACTION: "circuit_break", OUTCOME: "success"}
    assert breaker.status.status_code is StatusCode.UNSET

    failover = otel.span("db failover")
    assert attributes(failover)[OUTCOME] == "failure"
    assert failover.status.status_code is StatusCode.ERROR
    assert failover.status.description == "no failover configured"
    alert = otel.span("db alert")
    assert alert.status.description == "RefusingSink: ConnectionRefusedError"
    # The breaker's own transition is an event on the span current when it moved.
    [transition] = [
        e for e in otel.span("handle order").events if e.name == names.EVENT_BREAKER_TRANSITION
    ]
    assert attributes(transition)[names.ATTR_REASON] == "severity_critical"


def test_a_pipelines_decision_lands_on_its_call_span(otel: Otel, clock: FakeClock) -> None:
    orchestrator = ErrorRecoveryOrchestrator(clock=clock, listener=otel.listener)
    payments = Pipeline(
        name="payments",
        retry=RetryConfig(max_attempts=5),
        clock=clock,
        orchestrator=orchestrator,
        listener=otel.listener,
    )

    def charge() -> None:
        raise ConnectionError(SECRET)

    with pytest.raises(ConnectionError):
        payments.call(charge)

    call = otel.span("payments")
    assert call.context is not None
    events = {e.name: attributes(e) for e in call.events}
    assert events[names.EVENT_RECOVERY_DECISION][SEVERITY] == "high"
    assert events[names.EVENT_RETRY_EXHAUSTED][names.ATTR_REASON] == "orchestrator"
    assert events[names.EVENT_BREAKER_TRANSITION][names.ATTR_TO_STATE] == "open"
    action = otel.span("payments circuit_break")
    assert action.parent is not None
    assert action.parent.span_id == call.context.span_id
    assert len([s for s in otel.spans() if s.name == "payments attempt"]) == 1
    assert otel.values(names.METRIC_RECOVERY_ACTIONS) == {
        key(component="payments", recovery_action="circuit_break", outcome="success"): 1
    }


@pytest.mark.asyncio
async def test_actions_handed_to_the_loop_are_children_of_the_call_span(
    otel: Otel, clock: FakeClock
) -> None:
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock, listener=otel.listener, alert_sinks=[RecordingSink()]
    )
    await orchestrator.start()
    ledger = Pipeline(
        name="ledger",
        retry=RetryConfig(max_attempts=3),
        clock=clock,
        orchestrator=orchestrator,
        listener=otel.listener,
    )

    def post() -> None:
        trace.get_current_span().set_attribute(SEVERITY, "critical")
        raise OSError(SECRET)

    def call_in_thread() -> None:
        with pytest.raises(OSError):
            ledger.call(post)

    await asyncio.to_thread(call_in_thread)
    await orchestrator.stop()

    call = otel.span("ledger").context
    assert call is not None
    for name in ("ledger circuit_break", "ledger failover", "ledger alert"):
        span = otel.span(name)
        assert span.parent is not None
        assert span.parent.span_id == call.span_id, name
    assert otel.values(names.METRIC_ALERTS) == {
        key(
            component="ledger",
            error_severity="critical",
            alert_sink="RecordingSink",
            outcome="success",
        ): 1
    }


def test_traces_off_still_counts(clock: FakeClock) -> None:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    listener = OpenTelemetryListener(
        tracer_provider=tracer_provider, meter_provider=meter_provider, traces=False
    )
    orchestrator = ErrorRecoveryOrchestrator(clock=clock, listener=listener)
    with tracer_provider.get_tracer("tests").start_as_current_span("outer"):
        orchestrator.consult(context("db", "OperationalError", ErrorSeverity.HIGH))
    assert [s.name for s in exporter.get_finished_spans()] == ["outer"]
    [outer] = exporter.get_finished_spans()
    assert outer.events == ()
    data = reader.get_metrics_data()
    assert data is not None
    recorded = {m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics}
    assert {names.METRIC_ERRORS.name, names.METRIC_RECOVERY_ACTIONS.name} <= recorded
    tracer_provider.shutdown()
    meter_provider.shutdown()
