"""The Prometheus exposition: every metric in names.METRICS, named as documented.

A real PrometheusMetricReader behind configure_telemetry's endpoint (private registry,
port 0, loopback) is scraped over HTTP after pipelines, a breaker and a bulkhead were
driven so that every metric has a data point.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import urllib.request
from collections import defaultdict
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from otel_resilience import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    ErrorContext,
    ErrorRecoveryOrchestrator,
    ErrorSeverity,
    Fallback,
    Pipeline,
    ResilienceTimeoutError,
    RetryConfig,
)
from otel_resilience._events import RetryScheduled
from otel_resilience.alerts import Alert
from otel_resilience.backoff import Constant
from otel_resilience.events import EventBus
from otel_resilience.stores import (
    Admission,
    InMemoryStateStore,
    StoreParams,
    StoreUnavailableError,
)
from otel_resilience.telemetry import OpenTelemetryListener, names
from otel_resilience.telemetry.sdk import TelemetryHandles, configure_telemetry
from otel_resilience.testing import FakeClock

SCOPE_LABELS = {"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)


@pytest.fixture
def handles() -> Iterator[TelemetryHandles]:
    handles = configure_telemetry(prometheus_port=0, traces="none", set_global=False)
    yield handles
    handles.shutdown()


def scrape(handles: TelemetryHandles) -> str:
    assert handles.metrics_url is not None
    with urllib.request.urlopen(handles.metrics_url, timeout=10) as response:
        assert response.status == 200
        body: bytes = response.read()
    return body.decode("utf-8")


def samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def label_name(attribute: str) -> str:
    """How the exporter turns an attribute key into a label name."""
    return re.sub(r"[^a-zA-Z0-9]+", "_", attribute)


def expected_sample_names(metric: names.MetricName) -> set[str]:
    if metric.kind == "histogram":
        return {metric.prometheus + suffix for suffix in HISTOGRAM_SUFFIXES}
    return {metric.prometheus}


class RecordingSink:
    """An alert sink that keeps what it received."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class DownStore(InMemoryStateStore):
    """A real in-memory store that answers nothing, as a store whose server is down."""

    def acquire(self, name: str, params: StoreParams) -> Admission:
        raise StoreUnavailableError("store down")


def drive_everything(listener: OpenTelemetryListener, clock: FakeClock) -> tuple[object, ...]:
    """Make every metric in names.METRICS record at least one data point, every label set."""
    # Retries, their delays and exhaustion, failed attempts, then the fallback.
    flaky = Pipeline(
        name="flaky",
        retry=RetryConfig(max_attempts=2, backoff=Constant(seconds=0.5)),
        fallback=Fallback(value="cached"),
        clock=clock,
        listener=listener,
    )

    def always_down() -> str:
        raise ConnectionError("down")

    assert flaky.call(always_down) == "cached"

    # An attempt timeout (the function overruns on the fake clock).
    slow = Pipeline(name="slow", attempt_timeout=1.0, clock=clock, listener=listener)

    def overrun() -> str:
        clock.advance(1.5)
        return "late"

    with pytest.raises(ResilienceTimeoutError):
        slow.call(overrun)

    # A breaker that opens (a transition), then rejects; its counts are observed.
    breaker = CircuitBreaker(
        "payments", CircuitBreakerConfig(failure_threshold=1), clock=clock, listener=listener
    )
    guarded = Pipeline(name="guarded", circuit_breaker=breaker, clock=clock, listener=listener)
    assert guarded.call(lambda: "ok") == "ok"
    with pytest.raises(ConnectionError):
        guarded.call(always_down)
    with pytest.raises(CircuitOpenError):
        guarded.call(lambda: "never runs")

    # A bulkhead whose only slot is taken rejects; slots and queue are observed.
    bulkhead = Bulkhead(1, name="pool", listener=listener)
    bounded = Pipeline(name="bounded", bulkhead=bulkhead, clock=clock, listener=listener)
    assert bulkhead.try_acquire()
    try:
        with pytest.raises(BulkheadFullError):
            bounded.call(lambda: "never runs")
    finally:
        bulkhead.release()

    # The orchestrator: a connection error through a pipeline (HIGH: the breaker trips),
    # then a CRITICAL error alerting a sink; its active patterns are observed.
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock, listener=listener, alert_sinks=[RecordingSink()]
    )
    ledger = Pipeline(
        name="ledger",
        retry=RetryConfig(max_attempts=3),
        clock=clock,
        orchestrator=orchestrator,
        listener=listener,
    )
    with pytest.raises(ConnectionError):
        ledger.call(always_down)
    critical = ErrorContext(
        component="ledger",
        operation="post",
        error_type="OSError",
        severity=ErrorSeverity.CRITICAL,
        timestamp=1_700_000_000.0,
    )
    asyncio.run(orchestrator.handle_error(critical))
    # The listener observes them weakly: the caller keeps them alive until the scrape.
    # An event bus whose subscriber's queue (one event) overflows before it starts.
    bus = EventBus(name="bus", queue_size=1, telemetry=False)
    listener.track(bus)
    bus.subscribe(RetryScheduled, lambda event: None)
    for attempt in (1, 2):
        bus.publish(RetryScheduled(pipeline="p", attempt=attempt, delay=0.0, error_type=None))
    assert bus.dropped == 1
    # A shared breaker whose store is down decides locally (degraded, one fallback).
    shared = CircuitBreaker("inventory", store=DownStore(), clock=clock, listener=listener)
    assert shared.call(lambda: "local") == "local"
    return breaker, bulkhead, orchestrator, bus, shared


@pytest.fixture
def exposition(handles: TelemetryHandles) -> str:
    clock = FakeClock()
    listener = OpenTelemetryListener(meter_provider=handles.meter_provider)
    observed = drive_everything(listener, clock)
    text = scrape(handles)
    del observed
    return text


def test_every_metric_is_exposed_under_its_documented_name(exposition: str) -> None:
    found = {sample.name for sample in samples(exposition)}
    for metric in names.METRICS:
        missing = expected_sample_names(metric) - found
        assert not missing, f"{metric.name} ({metric.kind}) not exposed as {sorted(missing)}"


def test_no_unexpected_resilience_names(exposition: str) -> None:
    expected = set().union(*(expected_sample_names(metric) for metric in names.METRICS))
    found = {sample.name for sample in samples(exposition) if sample.name.startswith("resilience")}
    assert found - expected == set()


def test_every_metric_has_its_documented_labels(exposition: str) -> None:
    labels: dict[str, set[str]] = defaultdict(set)
    for sample in samples(exposition):
        labels[sample.name].update(set(sample.labels) - SCOPE_LABELS - {"le"})
    for metric in names.METRICS:
        documented = {label_name(attribute) for attribute in metric.attributes}
        for sample_name in expected_sample_names(metric):
            assert labels[sample_name] == documented, sample_name


def test_labels_are_the_attribute_names_with_underscores(exposition: str) -> None:
    text = exposition
    assert 'resilience_pipeline="flaky"' in text
    assert 'error_type="ConnectionError"' in text
    assert 'resilience_circuit_breaker_from_state="closed"' in text
    assert 'resilience_circuit_breaker_to_state="open"' in text
    assert 'resilience_timeout_scope="attempt"' in text
    assert 'resilience_reason="max_attempts"' in text


def test_histogram_buckets_are_the_duration_buckets(exposition: str) -> None:
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = defaultdict(list)
    for sample in samples(exposition):
        if sample.name.endswith("_bucket") and sample.name.startswith("resilience"):
            key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            series[(sample.name, key)].append(float(sample.labels["le"]))
    histograms = {m.prometheus + "_bucket" for m in names.METRICS if m.kind == "histogram"}
    assert {name for name, _ in series} == histograms
    for bounds in series.values():
        assert bounds == [*names.DURATION_BUCKETS, math.inf]


def test_values_match_what_happened(exposition: str) -> None:
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for sample in samples(exposition)
    }

    def value(name: str, **labels: str) -> float:
        matches = [
            v
            for (sample_name, sample_labels), v in values.items()
            if sample_name == name and labels.items() <= dict(sample_labels).items()
        ]
        assert len(matches) == 1, (name, labels, matches)
        return matches[0]

    assert value("resilience_retries_total", resilience_pipeline="flaky") == 1
    assert value("resilience_retry_delay_seconds_sum", resilience_pipeline="flaky") == 0.5
    assert value("resilience_fallbacks_total", resilience_pipeline="flaky") == 1
    assert value("resilience_timeouts_total", resilience_pipeline="slow") == 1
    assert (
        value("resilience_circuit_breaker_rejections_total", resilience_circuit_breaker="payments")
        == 1
    )
    assert (
        value(
            "resilience_circuit_breaker_state",
            resilience_circuit_breaker="payments",
            resilience_circuit_breaker_state="open",
        )
        == 1
    )
    assert value("resilience_bulkhead_rejections_total", resilience_bulkhead="pool") == 1
    assert value("resilience_bulkhead_in_flight", resilience_bulkhead="pool") == 0
    assert (
        value(
            "resilience_calls_total",
            resilience_pipeline="flaky",
            resilience_outcome="fallback",
        )
        == 1
    )
    assert (
        value(
            "resilience_errors_total",
            resilience_component="ledger",
            error_type="ConnectionError",
            resilience_error_severity="high",
        )
        == 1
    )
    assert (
        value(
            "resilience_recovery_actions_total",
            resilience_recovery_action="circuit_break",
            resilience_outcome="success",
        )
        == 2
    )
    assert (
        value(
            "resilience_alerts_total",
            resilience_alert_sink="RecordingSink",
            resilience_error_severity="critical",
        )
        == 1
    )
    assert value("resilience_error_patterns_active") == 2


SEPARATE_LISTENERS = (
    "each component given the same meter_provider gets its own OpenTelemetryListener; the "
    "SDK keeps only the first listener's observable callbacks, so the others' observations "
    "are never collected"
)


def test_breaker_and_bulkhead_sharing_a_meter_provider_are_both_observed(
    handles: TelemetryHandles,
) -> None:
    breaker = CircuitBreaker("payments", meter_provider=handles.meter_provider)
    bulkhead = Bulkhead(2, name="pool", meter_provider=handles.meter_provider)
    text = scrape(handles)
    assert 'resilience_circuit_breaker="payments"' in text
    assert 'resilience_bulkhead="pool"' in text
    del breaker, bulkhead


def test_two_pipelines_sharing_a_meter_provider_are_both_counted(
    handles: TelemetryHandles,
) -> None:
    first = Pipeline(name="first", meter_provider=handles.meter_provider)
    second = Pipeline(name="second", meter_provider=handles.meter_provider)
    first.call(lambda: None)
    second.call(lambda: None)
    calls = [line for line in scrape(handles).splitlines() if line.startswith("resilience_calls")]
    assert any('resilience_pipeline="first"' in line for line in calls)
    assert any('resilience_pipeline="second"' in line for line in calls)
