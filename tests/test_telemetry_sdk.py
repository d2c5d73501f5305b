"""configure_telemetry and ResendCountSpanProcessor, on the real OpenTelemetry SDK.

Providers are passed explicitly; the global providers are only ever set in a subprocess.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from otel_resilience import Pipeline, RetryConfig
from otel_resilience.backoff import Constant
from otel_resilience.telemetry import ATTEMPT_CONTEXT_KEY, names
from otel_resilience.telemetry._providers import meter_ready, tracer_ready
from otel_resilience.telemetry.sdk import (
    DEFAULT_PROMETHEUS_HOST,
    DEFAULT_PROMETHEUS_PORT,
    DEFAULT_SERVICE_NAME,
    ResendCountSpanProcessor,
    TelemetryHandles,
    configure_telemetry,
    histogram_views,
)
from otel_resilience.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent
RESEND = names.ATTR_HTTP_RESEND_COUNT
SUBPROCESS_SECONDS = 60.0


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without OTEL_* variables, whatever the machine has set."""
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A real SDK tracer provider with the resend processor first, then an in-memory export."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(ResendCountSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def client_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.kind is SpanKind.CLIENT]


def resend_counts(exporter: InMemorySpanExporter) -> list[Any]:
    return [(span.attributes or {}).get(RESEND) for span in client_spans(exporter)]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


def quiet(**kwargs: Any) -> TelemetryHandles:
    """configure_telemetry that binds no port and leaves the globals alone."""
    kwargs.setdefault("prometheus", False)
    kwargs.setdefault("set_global", False)
    return configure_telemetry(**kwargs)


# -- ResendCountSpanProcessor -------------------------------------------------------------


def http_call(provider: TracerProvider, failures: int, **attributes: Any) -> Any:
    """A protected function that makes one HTTP CLIENT span per attempt."""
    tracer = provider.get_tracer("http-client")
    calls = 0

    def request() -> str:
        nonlocal calls
        calls += 1
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes=attributes):
            if calls <= failures:
                raise ConnectionError("connection reset")
        return "ok"

    return request


def test_resend_count_marks_the_http_spans_of_retried_attempts(
    spans: tuple[TracerProvider, InMemorySpanExporter], clock: FakeClock
) -> None:
    provider, exporter = spans
    pipeline = Pipeline(
        name="api",
        retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=0.2)),
        clock=clock,
        tracer_provider=provider,
    )
    request = http_call(provider, failures=2, **{"http.request.method": "GET"})

    assert pipeline.call(request) == "ok"

    assert resend_counts(exporter) == [None, 1, 2]
    attempts = {
        span.context.span_id: (span.attributes or {}).get(names.ATTR_ATTEMPT)
        for span in exporter.get_finished_spans()
        if span.name == "api attempt"
    }
    parents = [span.parent.span_id for span in client_spans(exporter) if span.parent]
    assert [attempts[parent] for parent in parents] == [1, 2, 3]


@pytest.mark.asyncio
async def test_resend_count_in_the_async_driver(
    spans: tuple[TracerProvider, InMemorySpanExporter], clock: FakeClock
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("http-client")
    pipeline = Pipeline(
        name="api",
        retry=RetryConfig(max_attempts=2, backoff=Constant(seconds=0.2)),
        clock=clock,
        tracer_provider=provider,
    )
    calls = 0

    async def request() -> str:
        nonlocal calls
        calls += 1
        with tracer.start_as_current_span(
            "POST", kind=SpanKind.CLIENT, attributes={"http.request.method": "POST"}
        ):
            if calls == 1:
                raise ConnectionError("connection reset")
        return "ok"

    assert await pipeline.acall(request) == "ok"
    assert resend_counts(exporter) == [None, 1]


def test_resend_count_understands_the_old_http_method_attribute(
    spans: tuple[TracerProvider, InMemorySpanExporter], clock: FakeClock
) -> None:
    provider, exporter = spans
    pipeline = Pipeline(
        name="api", retry=RetryConfig(max_attempts=2), clock=clock, tracer_provider=provider
    )
    assert pipeline.call(http_call(provider, failures=1, **{"http.method": "GET"})) == "ok"
    assert resend_counts(exporter) == [None, 1]


@pytest.mark.parametrize(
    ("kind", "attributes"),
    [
        (SpanKind.CLIENT, {"db.system": "redis"}),  # a client span, but not HTTP
        (SpanKind.INTERNAL, {"http.request.method": "GET"}),
        (SpanKind.SERVER, {"http.request.method": "GET"}),
    ],
    ids=["client-without-method", "internal", "server"],
)
def test_resend_count_leaves_other_spans_alone(
    spans: tuple[TracerProvider, InMemorySpanExporter],
    clock: FakeClock,
    kind: SpanKind,
    attributes: dict[str, str],
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("other")
    calls = 0

    def work() -> None:
        nonlocal calls
        calls += 1
        with tracer.start_as_current_span("work", kind=kind, attributes=attributes):
            if calls == 1:
                raise ConnectionError("reset")

    pipeline = Pipeline(
        name="api", retry=RetryConfig(max_attempts=2), clock=clock, tracer_provider=provider
    )
    pipeline.call(work)
    marked = [s for s in exporter.get_finished_spans() if RESEND in (s.attributes or {})]
    assert len([s for s in exporter.get_finished_spans() if s.name == "work"]) == 2
    assert marked == []


def test_resend_count_keeps_a_value_the_instrumentation_set(
    spans: tuple[TracerProvider, InMemorySpanExporter], clock: FakeClock
) -> None:
    provider, exporter = spans
    pipeline = Pipeline(
        name="api", retry=RetryConfig(max_attempts=2), clock=clock, tracer_provider=provider
    )
    request = http_call(provider, failures=1, **{"http.request.method": "GET", RESEND: 7})
    pipeline.call(request)
    assert resend_counts(exporter) == [7, 7]


def test_resend_count_outside_a_protected_call_is_not_set(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    http_call(provider, failures=0, **{"http.request.method": "GET"})()
    assert resend_counts(exporter) == [None]


def test_resend_count_reads_the_parent_context_it_is_given(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("http-client")
    third_attempt = otel_context.set_value(ATTEMPT_CONTEXT_KEY, 3)
    span = tracer.start_span(
        "GET", context=third_attempt, kind=SpanKind.CLIENT, attributes={"http.method": "GET"}
    )
    span.end()
    # The explicit context wins over the current one, which has no attempt.
    assert resend_counts(exporter) == [2]


@pytest.mark.parametrize("value", [1, 0, True, "2", 2.0, None])
def test_resend_count_ignores_first_attempts_and_foreign_values(
    spans: tuple[TracerProvider, InMemorySpanExporter], value: object
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("http-client")
    context = otel_context.set_value(ATTEMPT_CONTEXT_KEY, value)
    tracer.start_span(
        "GET", context=context, kind=SpanKind.CLIENT, attributes={"http.method": "GET"}
    ).end()
    assert resend_counts(exporter) == [None]


# -- configure_telemetry: modes -----------------------------------------------------------


def test_none_mode_creates_no_tracer_provider() -> None:
    handles = quiet(traces="none")
    assert handles.tracer_provider is None
    assert handles.meter_provider is None  # no reader: nothing would read metrics
    assert handles.metrics_address is None
    assert handles.metrics_url is None
    assert handles.is_global is False
    handles.shutdown()


def test_auto_mode_without_an_endpoint_traces_nothing() -> None:
    with quiet() as handles:
        assert handles.tracer_provider is None


def test_console_mode_prints_every_span(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    handles = quiet(traces="console")
    assert isinstance(handles.tracer_provider, TracerProvider)
    pipeline = Pipeline(
        name="inventory",
        retry=RetryConfig(max_attempts=2, backoff=Constant(seconds=0.1)),
        clock=clock,
        tracer_provider=handles.tracer_provider,
    )
    failures = iter([ConnectionError("blip")])

    def fetch() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "stock"

    assert pipeline.call(fetch) == "stock"
    handles.shutdown()
    printed = capsys.readouterr().out
    decoder = json.JSONDecoder()
    documents, index = [], 0
    while index < len(printed):
        if printed[index].isspace():
            index += 1
            continue
        document, index = decoder.raw_decode(printed, index)
        documents.append(document)
    assert sorted(d["name"] for d in documents) == [
        "inventory",
        "inventory attempt",
        "inventory attempt",
    ]
    assert all(
        d["resource"]["attributes"]["service.name"] == DEFAULT_SERVICE_NAME for d in documents
    )


def test_traces_exporter_variable_chooses_in_auto_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    with quiet() as handles:
        assert handles.tracer_provider is None  # "none" wins over the endpoint
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    with quiet() as handles:
        assert handles.tracer_provider is not None
    with quiet(traces="none") as handles:
        assert handles.tracer_provider is None  # an explicit mode wins over the variable


def test_unknown_traces_exporter_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,zipkin")
    with pytest.raises(ValueError, match=r"OTEL_TRACES_EXPORTER.*zipkin"):
        quiet()


def test_configured_provider_marks_resends(clock: FakeClock) -> None:
    exporter = InMemorySpanExporter()
    handles = quiet(traces="none", span_processors=[SimpleSpanProcessor(exporter)])
    provider = handles.tracer_provider
    assert provider is not None  # extra processors need a provider, even with traces="none"
    pipeline = Pipeline(
        name="api", retry=RetryConfig(max_attempts=2), clock=clock, tracer_provider=provider
    )
    pipeline.call(http_call(provider, failures=1, **{"http.request.method": "GET"}))
    handles.shutdown()
    assert resend_counts(exporter) == [None, 1]


def test_extra_metric_readers_get_the_histogram_views(clock: FakeClock) -> None:
    reader = InMemoryMetricReader()
    with quiet(traces="none", metric_readers=[reader]) as handles:
        assert isinstance(handles.meter_provider, MeterProvider)
        pipeline = Pipeline(name="api", clock=clock, meter_provider=handles.meter_provider)
        pipeline.call(lambda: None)
        data = reader.get_metrics_data()
    assert data is not None
    histograms = {
        metric.name: metric.data.data_points[0]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == names.METRIC_CALL_DURATION.name
    }
    point = histograms[names.METRIC_CALL_DURATION.name]
    assert tuple(point.explicit_bounds) == names.DURATION_BUCKETS  # type: ignore[union-attr]


def test_histogram_views_cover_every_histogram() -> None:
    views = histogram_views()
    histograms = [m for m in names.METRICS if m.kind == "histogram"]
    assert len(views) == len(histograms) == 3


# -- configure_telemetry: resource and environment --------------------------------------


def test_default_service_name() -> None:
    handles = quiet(traces="none")
    assert handles.resource is not None
    assert handles.resource.attributes["service.name"] == DEFAULT_SERVICE_NAME


def test_service_name_argument() -> None:
    handles = quiet(traces="none", service_name="checkout")
    assert handles.resource is not None
    assert handles.resource.attributes["service.name"] == "checkout"


def test_otel_service_name_wins_over_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-environment")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    handles = quiet(traces="console", service_name="checkout")
    assert handles.tracer_provider is not None
    assert handles.tracer_provider.resource.attributes["service.name"] == "from-environment"
    handles.shutdown()


def test_resource_attributes_variable_names_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=billing,team=payments")
    handles = quiet(traces="none", service_name="checkout")
    assert handles.resource is not None
    assert handles.resource.attributes["service.name"] == "billing"
    assert handles.resource.attributes["team"] == "payments"


def test_resource_attributes_merge_with_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments,deployment.environment=dev")
    handles = quiet(
        traces="none",
        service_name="checkout",
        resource_attributes={"deployment.environment": "staging", "service.version": "1.2.3"},
    )
    assert handles.resource is not None
    attributes = dict(handles.resource.attributes)
    assert attributes["service.name"] == "checkout"
    assert attributes["team"] == "payments"
    assert attributes["deployment.environment"] == "staging"  # the code's value wins
    assert attributes["service.version"] == "1.2.3"
    assert attributes["telemetry.sdk.language"] == "python"


def test_sdk_disabled_sets_nothing_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    handles = configure_telemetry(prometheus_port=0, traces="console", set_global=False)
    assert handles.tracer_provider is None
    assert handles.meter_provider is None
    assert handles.metrics_address is None
    handles.shutdown()


# -- configure_telemetry: the metrics endpoint --------------------------------------------


def test_metrics_endpoint_serves_and_stops(clock: FakeClock) -> None:
    handles = configure_telemetry(prometheus_port=0, traces="none", set_global=False)
    assert handles.metrics_address is not None
    host, port = handles.metrics_address
    assert host == DEFAULT_PROMETHEUS_HOST
    assert port > 0
    assert handles.metrics_url == f"http://127.0.0.1:{port}/metrics"
    pipeline = Pipeline(name="checkout", clock=clock, meter_provider=handles.meter_provider)
    pipeline.call(lambda: None)
    assert handles.metrics_url is not None
    text = scrape(handles.metrics_url)
    assert "resilience_calls_total{" in text
    assert 'resilience_pipeline="checkout"' in text
    handles.shutdown()
    handles.shutdown()  # idempotent
    with pytest.raises(urllib.error.URLError):
        scrape(handles.metrics_url)


def test_prometheus_port_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "0")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    with configure_telemetry(traces="none", set_global=False) as handles:
        assert handles.metrics_address is not None
        assert handles.metrics_address[1] not in (0, DEFAULT_PROMETHEUS_PORT)


def test_bad_prometheus_port_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "ninety")
    with pytest.raises(ValueError, match="OTEL_EXPORTER_PROMETHEUS_PORT"):
        configure_telemetry(traces="none", set_global=False)


def test_a_taken_port_fails_cleanly() -> None:
    with configure_telemetry(prometheus_port=0, traces="none", set_global=False) as first:
        assert first.metrics_address is not None
        with pytest.raises(OSError):
            configure_telemetry(
                prometheus_port=first.metrics_address[1], traces="none", set_global=False
            )


def test_set_global_false_leaves_the_globals_alone() -> None:
    with quiet(traces="console", metric_readers=[InMemoryMetricReader()]) as handles:
        assert handles.tracer_provider is not None
        assert handles.meter_provider is not None
        assert tracer_ready(None) is None
        assert meter_ready(None) is None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"service_name": ""}, ValueError, "configure_telemetry.service_name"),
        ({"service_name": 3}, TypeError, "configure_telemetry.service_name"),
        ({"prometheus": 1}, TypeError, "configure_telemetry.prometheus"),
        ({"prometheus_port": -1}, ValueError, "configure_telemetry.prometheus_port"),
        ({"prometheus_port": 65536}, ValueError, "configure_telemetry.prometheus_port"),
        ({"prometheus_port": True}, TypeError, "configure_telemetry.prometheus_port"),
        ({"prometheus_port": "9464"}, TypeError, "configure_telemetry.prometheus_port"),
        ({"prometheus_port": 9464.0}, TypeError, "configure_telemetry.prometheus_port"),
        ({"prometheus_host": ""}, ValueError, "configure_telemetry.prometheus_host"),
        ({"traces": "jaeger"}, ValueError, "configure_telemetry.traces"),
        ({"traces": None}, ValueError, "configure_telemetry.traces"),
        ({"resource_attributes": [("a", 1)]}, TypeError, "configure_telemetry.resource_attr"),
        ({"resource_attributes": {1: "a"}}, TypeError, "configure_telemetry.resource_attr"),
        ({"set_global": "no"}, TypeError, "configure_telemetry.set_global"),
        ({"metric_readers": InMemoryMetricReader()}, TypeError, "configure_telemetry.metric_"),
        ({"span_processors": "x"}, TypeError, "configure_telemetry.span_processors"),
    ],
)
def test_bad_arguments_name_the_field(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        configure_telemetry(**kwargs)


def test_defaults() -> None:
    assert DEFAULT_PROMETHEUS_PORT == 9464
    assert DEFAULT_PROMETHEUS_HOST == "127.0.0.1"
    assert DEFAULT_SERVICE_NAME == "otel-resilience"


# -- the global providers, in a subprocess ------------------------------------------------

GLOBAL_SCRIPT = textwrap.dedent(
    """
    import sys

    from otel_resilience import RetryConfig, resilient
    from otel_resilience.backoff import Constant
    from otel_resilience.telemetry.sdk import configure_telemetry
    from otel_resilience.testing import FakeClock

    handles = configure_telemetry(
        service_name="global-demo", prometheus_port=0, traces="console"
    )
    attempts = []

    @resilient(retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=0.1)), clock=FakeClock())
    def lookup(key):
        attempts.append(key)
        if len(attempts) < 2:
            raise ConnectionError("blip")
        return key.upper()

    assert lookup("sku-1") == "SKU-1"
    try:
        configure_telemetry(prometheus=False, traces="none")
    except RuntimeError as error:
        print("second call refused:", error, file=sys.stderr)
    else:
        print("second call accepted", file=sys.stderr)
    print("port", handles.metrics_address[1], flush=True)
    sys.stdin.readline()
    handles.shutdown()
    print("stopped", flush=True)
    """
)


def test_global_providers_in_a_subprocess_are_scraped_over_http() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    process = subprocess.Popen(
        [sys.executable, "-c", GLOBAL_SCRIPT],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    # A thread drains stdout (the console exporter writes there too) line by line.
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        for line in process.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    printed: list[str] = []
    try:
        while not printed or not printed[-1].startswith("port "):
            try:
                printed.append(lines.get(timeout=SUBPROCESS_SECONDS))
            except queue.Empty:
                pytest.fail(f"the subprocess never reported its metrics port: {printed}")
        port = int(printed[-1].split()[1])
        text = scrape(f"http://127.0.0.1:{port}/metrics")
        process.stdin.write("\n")
        process.stdin.close()
        process.wait(timeout=SUBPROCESS_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(SUBPROCESS_SECONDS)
        if not process.stdin.closed:
            process.stdin.close()
        err = process.stderr.read()
        process.stdout.close()
        process.stderr.close()
    while not lines.empty():
        printed.append(lines.get())
    out = "".join(printed)
    assert process.returncode == 0, err
    assert "stopped" in out
    assert "second call refused: configure_telemetry(set_global=True) already ran" in err
    calls = [line for line in text.splitlines() if line.startswith("resilience_calls_total{")]
    assert len(calls) == 1
    assert 'resilience_pipeline="lookup"' in calls[0]
    assert 'resilience_outcome="success"' in calls[0]
    assert calls[0].endswith(" 1.0")
    assert 'resilience_retries_total{error_type="ConnectionError"' in text
    assert 'service_name="global-demo"' in text  # target_info carries the resource
    # The console exporter printed the spans of the call: the global tracer provider is set.
    assert '"name": "lookup attempt"' in out
