"""The global instrumentor, with the contrib httpx instrumentation, and its configuration."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from otel_resilience_httpx import (
    AsyncResilientTransport,
    HttpResilienceConfig,
    ResilientHTTPXInstrumentor,
    ResilientTransport,
)

from otel_resilience.backoff import Constant
from otel_resilience.testing import FakeClock

if TYPE_CHECKING:
    import httpx_loopback
elif "httpx_loopback" in sys.modules:
    httpx_loopback = sys.modules["httpx_loopback"]
else:
    # The tests folder is no package: load the helper by path, once.
    _spec = importlib.util.spec_from_file_location(
        "httpx_loopback", Path(__file__).with_name("httpx_loopback.py")
    )
    httpx_loopback = importlib.util.module_from_spec(_spec)
    sys.modules["httpx_loopback"] = httpx_loopback
    _spec.loader.exec_module(httpx_loopback)

Reply = httpx_loopback.Reply
Reset = httpx_loopback.Reset

ORIGINAL_INIT = httpx.Client._init_transport
ORIGINAL_ASYNC_INIT = httpx.AsyncClient._init_proxy_transport


@pytest.fixture
def server() -> Iterator[httpx_loopback.ScriptedServer]:
    with httpx_loopback.serve() as running:
        yield running


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider
    tracer_provider.shutdown()


@pytest.fixture
def ours() -> Iterator[ResilientHTTPXInstrumentor]:
    instrumentor = ResilientHTTPXInstrumentor()
    yield instrumentor
    instrumentor.uninstrument()


@pytest.fixture
def contrib() -> Iterator[HTTPXClientInstrumentor]:
    instrumentor = HTTPXClientInstrumentor()
    yield instrumentor
    instrumentor.uninstrument()


CONFIG = HttpResilienceConfig(backoff=Constant(seconds=0.25), attempt_timeout=5.0)


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


@pytest.mark.parametrize("contrib_first", [True, False], ids=["contrib-first", "ours-first"])
def test_each_attempt_is_its_own_client_span_under_one_logical_span(
    server: httpx_loopback.ScriptedServer,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    ours: ResilientHTTPXInstrumentor,
    contrib: HTTPXClientInstrumentor,
    contrib_first: bool,
) -> None:
    clock = FakeClock()
    if contrib_first:
        contrib.instrument(tracer_provider=provider)
    ours.instrument(config=CONFIG, tracer_provider=provider, clock=clock)
    if not contrib_first:
        contrib.instrument(tracer_provider=provider)
    server.push(Reply(503), Reset())
    with httpx.Client() as http:
        assert isinstance(http._transport, ResilientTransport)
        assert http.get(f"{server.url}/items").status_code == 200
    assert server.count == 3
    spans = list(exporter.get_finished_spans())
    [call] = [s for s in spans if s.name == "httpx"]
    assert call.kind is SpanKind.INTERNAL
    attempts = sorted(children(spans, call), key=lambda s: s.start_time or 0)
    assert [s.name for s in attempts] == ["httpx attempt"] * 3
    assert [s.attributes.get("http.response.status_code") for s in attempts if s.attributes] == [
        503,
        None,
        200,
    ]
    client_spans = []
    for attempt in attempts:
        [http_span] = children(spans, attempt)
        assert http_span.kind is SpanKind.CLIENT
        assert http_span.name == "GET"
        client_spans.append(http_span)
    resends = [(s.attributes or {}).get("http.request.resend_count") for s in client_spans]
    assert resends == [None, 1, 2]
    assert call.context is not None
    assert {s.context.trace_id for s in spans if s.context} == {call.context.trace_id}


def test_instrument_is_idempotent_and_uninstrument_restores(
    server: httpx_loopback.ScriptedServer, ours: ResilientHTTPXInstrumentor
) -> None:
    clock = FakeClock()
    ours.instrument(config=CONFIG, clock=clock)
    first = ours.resilience
    ours.instrument(config=HttpResilienceConfig(max_attempts=9), clock=clock)
    assert ours.resilience is first  # the second call did nothing
    assert httpx.Client._init_transport.__wrapped__ is ORIGINAL_INIT  # type: ignore[attr-defined]
    server.default = Reply(503)
    with httpx.Client() as http:
        assert isinstance(http._transport, ResilientTransport)
        assert http.get(server.url).status_code == 503
        assert server.count == 3
        async_client = httpx.AsyncClient(proxy="http://127.0.0.1:9")
        assert isinstance(async_client._transport, AsyncResilientTransport)
        assert all(isinstance(t, AsyncResilientTransport) for t in async_client._mounts.values())
        ours.uninstrument()
        ours.uninstrument()
        assert httpx.Client._init_transport is ORIGINAL_INIT
        assert httpx.AsyncClient._init_proxy_transport is ORIGINAL_ASYNC_INIT
        # A client made while instrumented now passes requests straight through.
        assert http.get(server.url).status_code == 503
        assert server.count == 4
    with httpx.Client() as plain:
        assert isinstance(plain._transport, httpx.HTTPTransport)
    ours.instrument(config=CONFIG, clock=clock)
    assert ours.resilience is not first
    assert ours.instrumentation_dependencies() == ("httpx >= 0.24, < 1.0",)


def test_suppressed_instrumentation_passes_through(
    server: httpx_loopback.ScriptedServer, ours: ResilientHTTPXInstrumentor
) -> None:
    from opentelemetry.instrumentation.utils import suppress_instrumentation  # noqa: PLC0415

    ours.instrument(config=CONFIG, clock=FakeClock())
    server.default = Reply(503)
    with httpx.Client() as http:
        with suppress_instrumentation():
            assert http.get(server.url).status_code == 503
        assert server.count == 1
        with suppress_instrumentation():
            unwrapped = httpx.Client()
        assert isinstance(unwrapped._transport, httpx.HTTPTransport)
        unwrapped.close()


def test_instrument_reads_the_environment(
    server: httpx_loopback.ScriptedServer,
    ours: ResilientHTTPXInstrumentor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_RESILIENCE_HTTPX_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("OTEL_RESILIENCE_HTTPX_RETRY_STATUSES", "418")
    monkeypatch.setenv("OTEL_RESILIENCE_HTTPX_RETRY_METHODS", "post")
    ours.instrument(clock=FakeClock())
    server.default = Reply(418)
    with httpx.Client() as http:
        assert http.post(server.url, content=b"tea").status_code == 418
        assert server.count == 5
        assert http.get(server.url).status_code == 418
        assert server.count == 6


def test_env_configuration_reads_every_variable() -> None:
    config = HttpResilienceConfig.from_env(
        {
            "OTEL_RESILIENCE_HTTPX_NAME": "api",
            "OTEL_RESILIENCE_HTTPX_MAX_ATTEMPTS": "4",
            "OTEL_RESILIENCE_HTTPX_TOTAL_TIMEOUT": "12.5",
            "OTEL_RESILIENCE_HTTPX_ATTEMPT_TIMEOUT": "none",
            "OTEL_RESILIENCE_HTTPX_RETRY_METHODS": "get, post",
            "OTEL_RESILIENCE_HTTPX_RETRY_STATUSES": "503,504",
            "OTEL_RESILIENCE_HTTPX_FAILURE_STATUSES": "500",
            "OTEL_RESILIENCE_HTTPX_FAILURE_THRESHOLD": "7",
            "OTEL_RESILIENCE_HTTPX_BREAKER_TIMEOUT": "15",
            "OTEL_RESILIENCE_HTTPX_MAX_BREAKERS": "8",
            "OTEL_RESILIENCE_HTTPX_MAX_RETRY_AFTER": "2",
            "OTEL_RESILIENCE_HTTPX_FAILOVER": (
                "http://a.test:8080=http://b.test:8080|http://c.test, d.test:81=http://e.test"
            ),
            "UNRELATED": "x",
        }
    )
    assert config.name == "api"
    assert (config.max_attempts, config.total_timeout, config.attempt_timeout) == (4, 12.5, None)
    assert config.retry_methods == {"GET", "POST"}
    assert config.retry_statuses == frozenset({503, 504})
    assert config.failure_statuses == frozenset({500})
    assert (config.failure_threshold, config.breaker_timeout) == (7, 15.0)
    assert (config.max_breakers, config.max_retry_after) == (8, 2.0)
    assert {k: v.alternates for k, v in config.failover.items()} == {
        "http://a.test:8080": ("http://b.test:8080", "http://c.test"),
        "http://d.test:81": ("http://e.test",),
    }
    assert HttpResilienceConfig.from_env({}).max_attempts == 3


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_ATTEMPTS", "three"),
        ("MAX_ATTEMPTS", "0"),
        ("TOTAL_TIMEOUT", "nan"),
        ("TOTAL_TIMEOUT", "-1"),
        ("ATTEMPT_TIMEOUT", "inf"),
        ("RETRY_STATUSES", "503,,504"),
        ("RETRY_STATUSES", "700"),
        ("FAILURE_THRESHOLD", "1.5"),
        ("BREAKER_TIMEOUT", "0"),
        ("FAILOVER", "a.test"),
        ("FAILOVER", "a.test=ftp://b.test"),
    ],
)
def test_bad_environment_values_name_the_variable(variable: str, value: str) -> None:
    name = f"OTEL_RESILIENCE_HTTPX_{variable}"
    with pytest.raises(ValueError, match=name):
        HttpResilienceConfig.from_env({name: value})


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("max_attempts", True, TypeError),
        ("max_attempts", 0, ValueError),
        ("total_timeout", float("nan"), ValueError),
        ("attempt_timeout", -1.0, ValueError),
        ("attempt_timeout", "5", TypeError),
        ("retry_methods", "GET", TypeError),
        ("retry_statuses", {99}, ValueError),
        ("retry_statuses", {"503"}, TypeError),
        ("failure_threshold", 0, ValueError),
        ("breaker_timeout", float("inf"), ValueError),
        ("max_breakers", 0, ValueError),
        ("max_retry_after", -1.0, ValueError),
        ("failover", {"a.test": "http://b.test"}, TypeError),
        ("failover", {"a.test": ["b.test"]}, ValueError),
    ],
)
def test_config_is_validated_naming_the_field(
    field: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"HttpResilienceConfig\.{field}"):
        HttpResilienceConfig(**{field: value})  # type: ignore[arg-type]


def test_attempt_timeout_longer_than_total_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt_timeout must be <= total_timeout"):
        HttpResilienceConfig(total_timeout=1.0, attempt_timeout=2.0)
