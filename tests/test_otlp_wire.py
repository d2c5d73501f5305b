"""Spans on the wire: the real OTLP/HTTP exporter posting to a collector on loopback.

The test's own HTTP server accepts ``POST /v1/traces``, decodes the protobuf
``ExportTraceServiceRequest`` (gzip or deflate bodies too) and keeps the spans, so the
assertions see exactly what Jaeger or an OpenTelemetry Collector would receive.
"""

from __future__ import annotations

import gzip
import os
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_resilience import Fallback, Pipeline, RetryConfig
from otel_resilience.backoff import Constant
from otel_resilience.telemetry import names
from otel_resilience.telemetry.sdk import configure_telemetry
from otel_resilience.testing import FakeClock

TRACES_PATH = "/v1/traces"
RETRY_DELAY = 0.25


@dataclass
class Received:
    """One export request as the collector saw it."""

    path: str
    encoding: str | None
    content_type: str | None
    request: ExportTraceServiceRequest


@dataclass
class Collector:
    """What the loopback collector received; filled by the server's handler threads."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}{TRACES_PATH}"

    def spans(self) -> list[Span]:
        with self.lock:
            requests = [item.request for item in self.received]
        return [
            span
            for request in requests
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]

    def resources(self) -> list[dict[str, Any]]:
        with self.lock:
            requests = [item.request for item in self.received]
        return [
            attributes(resource_spans.resource.attributes)
            for request in requests
            for resource_spans in request.resource_spans
        ]


def _handler(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = self.headers.get("Content-Encoding")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            if self.path != TRACES_PATH:
                self.send_error(404)
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with collector.lock:
                collector.received.append(
                    Received(self.path, encoding, self.headers.get("Content-Type"), request)
                )
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # keep the test output clean

    return Handler


@pytest.fixture
def collector() -> Iterator[Collector]:
    received = Collector()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    received.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield received
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    return None if kind is None else getattr(any_value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    items: list[KeyValue] = list(pairs)
    return {pair.key: value(pair.value) for pair in items}


def by_name(spans: list[Span], name: str) -> list[Span]:
    return [span for span in spans if span.name == name]


def events(span: Span, name: str) -> list[dict[str, Any]]:
    return [attributes(event.attributes) for event in span.events if event.name == name]


def provider_for(collector: Collector, compression: Compression) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "wire-test"}))
    exporter = OTLPSpanExporter(endpoint=collector.endpoint, compression=compression)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def failing_call_with_fallback(provider: TracerProvider) -> tuple[Any, FakeClock]:
    """One call: two attempts fail with ConnectionError, then the fallback answers."""
    clock = FakeClock()
    pipeline = Pipeline(
        name="inventory",
        retry=RetryConfig(max_attempts=2, backoff=Constant(seconds=RETRY_DELAY)),
        fallback=Fallback(value="cached"),
        clock=clock,
        tracer_provider=provider,
    )

    def lookup() -> str:
        raise ConnectionError("inventory service unreachable")

    return pipeline.call(lookup), clock


@pytest.mark.parametrize(
    "compression",
    [Compression.NoCompression, Compression.Gzip, Compression.Deflate],
    ids=lambda c: c.value,
)
def test_one_call_two_failed_attempts_and_a_fallback(
    collector: Collector, compression: Compression
) -> None:
    provider = provider_for(collector, compression)
    result, clock = failing_call_with_fallback(provider)
    provider.shutdown()
    assert result == "cached"
    assert clock.sleeps == [RETRY_DELAY]

    with collector.lock:
        received = list(collector.received)
    assert received
    expected_encoding = None if compression is Compression.NoCompression else compression.value
    assert {item.encoding for item in received} == {expected_encoding}
    assert {item.content_type for item in received} == {"application/x-protobuf"}
    spans = collector.spans()
    assert len(spans) == 4
    assert len({span.trace_id for span in spans}) == 1
    assert all(resource["service.name"] == "wire-test" for resource in collector.resources())

    # The call span: the root, INTERNAL, named after the pipeline, not an error.
    (call,) = by_name(spans, "inventory")
    assert call.parent_span_id == b""
    assert call.kind == Span.SpanKind.SPAN_KIND_INTERNAL
    assert call.status.code != Status.StatusCode.STATUS_CODE_ERROR
    call_attributes = attributes(call.attributes)
    assert call_attributes[names.ATTR_PIPELINE] == "inventory"
    assert call_attributes[names.ATTR_OUTCOME] == "fallback"
    assert names.ATTR_ERROR_TYPE not in call_attributes

    # The attempts: children of the call span, numbered, each an error with its type.
    attempts = by_name(spans, f"inventory {names.ATTEMPT_SPAN}")
    assert [attributes(a.attributes)[names.ATTR_ATTEMPT] for a in attempts] == [1, 2]
    for attempt in attempts:
        assert attempt.parent_span_id == call.span_id
        assert attempt.kind == Span.SpanKind.SPAN_KIND_INTERNAL
        assert attempt.status.code == Status.StatusCode.STATUS_CODE_ERROR
        attempt_attributes = attributes(attempt.attributes)
        assert attempt_attributes[names.ATTR_ERROR_TYPE] == "ConnectionError"
        assert attempt_attributes[names.ATTR_OUTCOME] == "failure"
        assert events(attempt, "exception") == [
            {
                names.ATTR_EXCEPTION_TYPE: "ConnectionError",
                names.ATTR_ERROR_MESSAGE: "inventory service unreachable",
            }
        ]

    # The recovery action: a child of the call span, after the attempts.
    (fallback,) = by_name(spans, f"inventory {names.RECOVERY_FALLBACK}")
    assert fallback.parent_span_id == call.span_id
    fallback_attributes = attributes(fallback.attributes)
    assert fallback_attributes[names.ATTR_RECOVERY_ACTION] == names.RECOVERY_FALLBACK
    assert fallback_attributes[names.ATTR_ERROR_TYPE] == "ConnectionError"
    assert fallback.status.code != Status.StatusCode.STATUS_CODE_ERROR
    assert fallback.start_time_unix_nano >= max(a.end_time_unix_nano for a in attempts)

    # The retry decisions, as events on the call span.
    assert events(call, names.EVENT_RETRY_SCHEDULED) == [
        {
            names.ATTR_ATTEMPT: 1,
            names.ATTR_DELAY: RETRY_DELAY,
            names.ATTR_ERROR_TYPE: "ConnectionError",
        }
    ]
    assert events(call, names.EVENT_RETRY_EXHAUSTED) == [
        {names.ATTR_ATTEMPT: 2, names.ATTR_REASON: "max_attempts"}
    ]


def test_call_span_is_a_child_of_the_callers_span(collector: Collector) -> None:
    provider = provider_for(collector, Compression.NoCompression)
    with provider.get_tracer("app").start_as_current_span("GET /checkout") as caller:
        result, _ = failing_call_with_fallback(provider)
    provider.shutdown()
    assert result == "cached"
    spans = collector.spans()
    (request,) = by_name(spans, "GET /checkout")
    (call,) = by_name(spans, "inventory")
    assert call.parent_span_id == request.span_id
    assert request.span_id == caller.get_span_context().span_id.to_bytes(8, "big")
    assert len({span.trace_id for span in spans}) == 1
    assert len(spans) == 5


@pytest.mark.parametrize(
    "variable",
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"],
)
def test_configure_telemetry_exports_to_the_environments_endpoint(
    collector: Collector, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    base = f"http://127.0.0.1:{collector.port}"
    # The generic variable is a base URL; the traces one is used as is.
    monkeypatch.setenv(
        variable, base if variable.endswith("_OTLP_ENDPOINT") else base + TRACES_PATH
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    handles = configure_telemetry(prometheus=False, set_global=False)
    assert handles.tracer_provider is not None
    result, _ = failing_call_with_fallback(handles.tracer_provider)
    assert result == "cached"
    handles.shutdown()  # the batch processor flushes here
    with collector.lock:
        received = list(collector.received)
    assert received
    assert {item.path for item in received} == {TRACES_PATH}
    assert {item.encoding for item in received} == {"gzip"}
    assert sorted(span.name for span in collector.spans()) == [
        "inventory",
        "inventory attempt",
        "inventory attempt",
        "inventory fallback",
    ]
    assert {resource["service.name"] for resource in collector.resources()} == {"checkout"}
