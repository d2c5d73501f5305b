"""What telemetry costs: nothing created or formatted without an SDK; no traceback unasked.

No timing here. Cost shows as things that did not happen: no observer, no span current
inside the protected function, no exception formatted, no clock read, no stacktrace.
The pytest process never sets the global OpenTelemetry providers, so the default
listener runs API-only in-process; the switch to an SDK set up later is tested in a
subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN

from otel_resilience import (
    Bulkhead,
    CircuitBreaker,
    CircuitBreakerConfig,
    Fallback,
    Pipeline,
    RetryConfig,
)
from otel_resilience.backoff import Constant
from otel_resilience.telemetry import OpenTelemetryListener, current_attempt, default_listener
from otel_resilience.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent


class Counted(Exception):
    """An exception that counts every time it is turned into text."""

    formatted: ClassVar[int] = 0

    def __str__(self) -> str:
        Counted.formatted += 1
        return "counted"

    def __repr__(self) -> str:
        Counted.formatted += 1
        return "Counted()"


@pytest.fixture(autouse=True)
def _fresh_count() -> Iterator[None]:
    Counted.formatted = 0
    yield
    Counted.formatted = 0


class CountingClock(FakeClock):
    """A fake clock that counts how often the time is read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        return super().monotonic()


def no_global_sdk() -> None:
    assert getattr(trace, "_TRACER_PROVIDER", "missing") is None, (
        "a test set the global tracer provider in the pytest process; "
        "run such tests in a subprocess"
    )
    assert getattr(metrics_internal, "_METER_PROVIDER", "missing") is None, (
        "a test set the global meter provider in the pytest process; run such tests in a subprocess"
    )


# -- API only: nothing at all ----------------------------------------------------------------


def test_the_pytest_process_sets_no_global_providers() -> None:
    no_global_sdk()
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    assert not isinstance(metrics.get_meter_provider(), MeterProvider)


def test_without_an_sdk_the_default_listener_observes_nothing() -> None:
    no_global_sdk()
    listener = default_listener()
    assert not listener.enabled()
    assert not listener.tracing_on()
    assert not listener.metrics_on()
    assert listener.start_call("svc") is None


@pytest.mark.parametrize(
    "providers",
    [
        {
            "tracer_provider": trace.NoOpTracerProvider(),
            "meter_provider": metrics.NoOpMeterProvider(),
        },
        {"tracer_provider": trace.ProxyTracerProvider()},
        {"meter_provider": metrics.NoOpMeterProvider()},
    ],
    ids=["noop", "proxy-tracer", "noop-meter"],
)
def test_api_providers_given_explicitly_record_nothing(providers: dict[str, Any]) -> None:
    no_global_sdk()
    listener = OpenTelemetryListener(**providers)
    assert not listener.enabled()
    assert listener.start_call("svc") is None


def test_without_an_sdk_nothing_is_created_or_formatted() -> None:
    no_global_sdk()
    clock = FakeClock()
    breaker = CircuitBreaker(
        "db",
        CircuitBreakerConfig(failure_threshold=2, success_threshold=1, timeout_seconds=5.0),
        clock=clock,
    )
    pipeline = Pipeline(
        name="svc",
        retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=0.5)),
        circuit_breaker=breaker,
        bulkhead=Bulkhead(2, name="pool"),
        fallback=Fallback(value="fallback"),
        timeout=60.0,
        clock=clock,
    )
    assert pipeline.listener is default_listener()
    inside: list[tuple[bool, int | None]] = []

    def fails() -> str:
        inside.append((trace.get_current_span() is INVALID_SPAN, current_attempt()))
        raise Counted

    def works() -> str:
        inside.append((trace.get_current_span() is INVALID_SPAN, current_attempt()))
        return "ok"

    assert pipeline.call(works) == "ok"
    # Two failures open the breaker, the third attempt is rejected, the fallback answers.
    assert pipeline.call(fails) == "fallback"
    assert pipeline.call(works) == "fallback"  # still open: rejected at once
    clock.advance(5.0)
    assert pipeline.call(works) == "ok"  # the trial closes it

    assert Counted.formatted == 0
    assert inside == [(True, None)] * 4  # no span, no attempt number: nothing was made
    assert trace.get_current_span() is INVALID_SPAN


@pytest.mark.asyncio
async def test_without_an_sdk_nothing_is_created_or_formatted_for_async_calls() -> None:
    no_global_sdk()
    clock = FakeClock()
    pipeline = Pipeline(
        name="svc", retry=RetryConfig(max_attempts=2, backoff=Constant(seconds=0.5)), clock=clock
    )
    inside: list[bool] = []
    failures = [Counted()]

    async def work() -> str:
        inside.append(trace.get_current_span() is INVALID_SPAN)
        if failures:
            raise failures.pop()
        return "ok"

    assert await pipeline.acall(work) == "ok"
    assert inside == [True, True]
    assert Counted.formatted == 0
    assert clock.sleeps == [0.5]


def test_without_an_sdk_the_success_path_reads_no_clock() -> None:
    no_global_sdk()
    clock = CountingClock()
    pipeline = Pipeline(
        name="svc",
        retry=RetryConfig(max_attempts=3),
        circuit_breaker=CircuitBreaker("db", clock=clock),
        clock=clock,
    )
    clock.reads = 0  # construction may note the time; calls must not
    for _ in range(100):
        assert pipeline.call(lambda: "ok") == "ok"
    assert clock.reads == 0


def test_with_an_sdk_the_clock_is_read_to_time_calls() -> None:
    # The counterpart of the test above: the zero there comes from telemetry being off.
    clock = CountingClock()
    listener = OpenTelemetryListener(
        tracer_provider=TracerProvider(shutdown_on_exit=False),
        meter_provider=MeterProvider(shutdown_on_exit=False),
    )
    pipeline = Pipeline(
        name="svc",
        retry=RetryConfig(max_attempts=3),
        circuit_breaker=CircuitBreaker("db", clock=clock, listener=listener),
        clock=clock,
        listener=listener,
    )
    clock.reads = 0
    assert pipeline.call(lambda: "ok") == "ok"
    assert clock.reads > 0


# -- with an SDK: no traceback unless asked --------------------------------------------------


def failed_attempt_events(**listener_options: Any) -> list[dict[str, Any]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    listener = OpenTelemetryListener(tracer_provider=provider, **listener_options)
    clock = FakeClock()
    pipeline = Pipeline(
        name="svc",
        retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=0.0)),
        clock=clock,
        listener=listener,
    )
    with pytest.raises(Counted):
        pipeline.call(raise_counted)
    spans: list[ReadableSpan] = [
        span for span in exporter.get_finished_spans() if span.name == "svc attempt"
    ]
    assert len(spans) == 3
    return [
        dict(event.attributes or {})
        for span in spans
        for event in span.events
        if event.name == "exception"
    ]


def raise_counted() -> None:
    raise Counted


def test_a_failed_attempt_formats_its_message_once_and_no_traceback() -> None:
    events = failed_attempt_events()
    assert len(events) == 3
    assert all("exception.stacktrace" not in event for event in events)
    assert all(event["exception.message"] == "counted" for event in events)
    assert Counted.formatted == 3  # one str() per failed attempt, nothing else


def test_the_traceback_is_formatted_only_when_asked_for() -> None:
    events = failed_attempt_events(record_exception_stacktrace=True)
    assert len(events) == 3
    for event in events:
        stacktrace = event["exception.stacktrace"]
        assert "in raise_counted" in stacktrace
        assert stacktrace.rstrip().endswith("counted")


def test_a_successful_attempt_adds_no_events() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pipeline = Pipeline(name="svc", clock=FakeClock(), tracer_provider=provider)
    assert pipeline.call(lambda: "ok") == "ok"
    assert [(span.name, span.events) for span in exporter.get_finished_spans()] == [
        ("svc attempt", ()),
        ("svc", ()),
    ]


# -- the global providers, in a process of its own ---------------------------------------------

_GLOBAL_SDK_LATER = textwrap.dedent(
    """
    import json

    from opentelemetry import metrics, trace
    from opentelemetry.metrics import _internal as metrics_internal

    from otel_resilience import CircuitBreaker, Fallback, Pipeline, RetryConfig
    from otel_resilience.backoff import Constant
    from otel_resilience.telemetry import current_attempt, default_listener
    from otel_resilience.testing import FakeClock


    class Counted(Exception):
        formatted = 0

        def __str__(self):
            Counted.formatted += 1
            return "counted"


    report = {
        "globals_unset": trace._TRACER_PROVIDER is None
        and metrics_internal._METER_PROVIDER is None
    }
    clock = FakeClock()
    pipeline = Pipeline(
        name="svc",
        retry=RetryConfig(max_attempts=2, backoff=Constant(seconds=0.5)),
        circuit_breaker=CircuitBreaker("db", clock=clock),
        fallback=Fallback(value="fallback"),
        clock=clock,
    )
    inside = []


    def work():
        inside.append([trace.get_current_span() is trace.INVALID_SPAN, current_attempt()])
        raise Counted


    report["api_only"] = {
        "start_call_is_none": default_listener().start_call("svc") is None,
        "result": pipeline.call(work),
        "formatted": Counted.formatted,
        "inside": inside[:],
    }

    # The application sets up an SDK: the pipeline made before reports from now on.
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    inside.clear()
    result = pipeline.call(work)
    data = reader.get_metrics_data()
    report["sdk"] = {
        "result": result,
        "formatted": Counted.formatted,
        "inside": [[invalid, attempt] for invalid, attempt in inside],
        "spans": [span.name for span in exporter.get_finished_spans()],
        "metrics": sorted(
            metric.name
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        ),
    }
    print(json.dumps(report))
    """
)


def test_the_default_listener_switches_on_when_the_application_sets_up_an_sdk() -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    completed = subprocess.run(
        [sys.executable, "-c", _GLOBAL_SDK_LATER],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=environment,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)

    assert report["globals_unset"]
    assert report["api_only"] == {
        "start_call_is_none": True,
        "result": "fallback",
        "formatted": 0,
        "inside": [[True, None], [True, None]],
    }
    sdk = report["sdk"]
    assert sdk["result"] == "fallback"
    assert sdk["inside"] == [[False, 1], [False, 2]]
    assert sdk["formatted"] == 2  # one message per failed attempt
    assert sdk["spans"] == ["svc attempt", "svc attempt", "svc fallback", "svc"]
    assert "resilience.calls" in sdk["metrics"]
    assert "resilience.circuit_breaker.state" in sdk["metrics"]
