"""Set up the OpenTelemetry SDK for an application: Prometheus metrics and OTLP traces.

This is the one module of otel-resilience that imports the OpenTelemetry SDK and its
exporters (``pip install otel-resilience[sdk]``); the library itself depends on the API
alone. :func:`configure_telemetry` builds a :class:`~opentelemetry.sdk.metrics.MeterProvider`
scraped by Prometheus and a :class:`~opentelemetry.sdk.trace.TracerProvider` that exports
over OTLP/HTTP (or to the console), honouring the standard ``OTEL_*`` environment
variables, and returns :class:`TelemetryHandles` to pass the providers around and to shut
everything down.

:class:`ResendCountSpanProcessor` marks the HTTP client spans of retried attempts with
``http.request.resend_count``; :func:`histogram_views` gives every duration histogram its
explicit bucket boundaries. Both are usable on a provider set up by hand.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypeAlias, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_PROMETHEUS_HOST,
    OTEL_EXPORTER_PROMETHEUS_PORT,
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, start_http_server

from otel_resilience._events import LISTENER_ERRORS
from otel_resilience._validation import check_int
from otel_resilience.telemetry import names
from otel_resilience.telemetry._listener import ATTEMPT_CONTEXT_KEY
from otel_resilience.telemetry._providers import meter_ready, tracer_ready

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from opentelemetry.context import Context
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import Span
    from opentelemetry.util.types import AttributeValue

__all__ = [
    "DEFAULT_PROMETHEUS_HOST",
    "DEFAULT_PROMETHEUS_PORT",
    "DEFAULT_SERVICE_NAME",
    "HTTP_METHOD_ATTRIBUTES",
    "TRACES_MODES",
    "ResendCountSpanProcessor",
    "TelemetryHandles",
    "TracesMode",
    "configure_telemetry",
    "histogram_views",
]

DEFAULT_SERVICE_NAME = "otel-resilience"
"""``service.name`` when neither the arguments nor the environment name the service."""

DEFAULT_PROMETHEUS_PORT = 9464
"""Port of the metrics endpoint when neither the argument nor
``OTEL_EXPORTER_PROMETHEUS_PORT`` gives one (the port registered for OpenTelemetry's
Prometheus exporter)."""

DEFAULT_PROMETHEUS_HOST = "127.0.0.1"
"""Address the metrics endpoint binds to by default: loopback only, so nothing is exposed
to the network unless asked for (``"0.0.0.0"`` for a scraper on another host)."""

TracesMode: TypeAlias = Literal["auto", "otlp", "console", "none"]
"""Where :func:`configure_telemetry` sends spans (see its ``traces`` argument)."""

TRACES_MODES: frozenset[str] = frozenset({"auto", "otlp", "console", "none"})
"""Every accepted value of ``configure_telemetry(traces=...)``."""

HTTP_METHOD_ATTRIBUTES = ("http.request.method", "http.method")
"""Attributes that mark a CLIENT span as an HTTP request: the current semantic convention
and the older one that some instrumentations still emit."""

_T = TypeVar("_T")
_MAX_PORT = 65535
_SERVER_JOIN_SECONDS = 5.0
_TRUE = "true"

# configure_telemetry(set_global=True) may claim the global providers once per process:
# the OpenTelemetry API refuses (with only a log line) to replace them afterwards.
_global_lock = threading.Lock()
_global_claimed = False


class ResendCountSpanProcessor(SpanProcessor):
    """Sets ``http.request.resend_count`` on HTTP client spans of retried attempts.

    An HTTP instrumentation (httpx, requests, urllib3, aiohttp...) starts a CLIENT span
    with ``http.request.method`` (or the older ``http.method``) for each request. When that
    span starts inside attempt ``n >= 2`` of a protected call (read from the parent
    context's :data:`~otel_resilience.telemetry.ATTEMPT_CONTEXT_KEY`, which the
    OpenTelemetry listener sets for every attempt), this processor sets
    ``http.request.resend_count = n - 1``, as the HTTP semantic conventions ask of a
    resent request. A value the instrumentation already set is kept.

    Add it before the exporting processors; :func:`configure_telemetry` does. It never
    raises: a failure is logged at a limited rate.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(ResendCountSpanProcessor())
        >>> provider.shutdown()
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Mark ``span`` as a resend when it is an HTTP request of a retried attempt."""
        if span.kind is not SpanKind.CLIENT:
            return  # the common case, decided without touching the context
        try:
            attempt = otel_context.get_value(ATTEMPT_CONTEXT_KEY, parent_context)
            if type(attempt) is not int or attempt < 2:
                return
            attributes = span.attributes
            if attributes is None or names.ATTR_HTTP_RESEND_COUNT in attributes:
                return
            if any(key in attributes for key in HTTP_METHOD_ATTRIBUTES):
                span.set_attribute(names.ATTR_HTTP_RESEND_COUNT, attempt - 1)
        except Exception:  # noqa: BLE001 - a span processor must never break the span's caller
            LISTENER_ERRORS.exception("ResendCountSpanProcessor")

    def __repr__(self) -> str:
        return "ResendCountSpanProcessor()"


def histogram_views() -> tuple[View, ...]:
    """Views that give every otel-resilience histogram its explicit bucket boundaries.

    The boundaries are :data:`~otel_resilience.telemetry.names.DURATION_BUCKETS`. The
    instruments already advise them; the views make them explicit for SDKs and readers
    that ignore the advice. Pass them as ``MeterProvider(views=...)`` when setting up a
    provider by hand; :func:`configure_telemetry` does.

    Example:
        >>> from opentelemetry.sdk.metrics import MeterProvider
        >>> provider = MeterProvider(views=histogram_views())
        >>> len(histogram_views())
        3
        >>> provider.shutdown()
    """
    return tuple(
        View(
            instrument_type=Histogram,
            instrument_name=metric.name,
            meter_name=names.INSTRUMENTATION_SCOPE,
            aggregation=ExplicitBucketHistogramAggregation(boundaries=names.DURATION_BUCKETS),
        )
        for metric in names.METRICS
        if metric.kind == "histogram"
    )


@dataclass(slots=True)
class _Running:
    """What :meth:`TelemetryHandles.shutdown` stops, and whether it already did."""

    server: WSGIServer | None = None
    thread: threading.Thread | None = None
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TelemetryHandles:
    """What :func:`configure_telemetry` set up; pass the providers on, shut down at exit.

    A provider is ``None`` when nothing would consume its data (no exporter, no reader),
    or when ``OTEL_SDK_DISABLED=true``: pipelines given ``None`` fall back to the global
    providers.

    Attributes:
        tracer_provider: the SDK tracer provider, or ``None`` when traces go nowhere.
        meter_provider: the SDK meter provider, or ``None`` when metrics go nowhere.
        prometheus_reader: the reader behind the metrics endpoint, or ``None``.
        prometheus_registry: the private ``prometheus_client`` registry the endpoint
            serves, or ``None``.
        metrics_address: ``(host, port)`` the endpoint listens on (the real port when
            ``0`` was asked for), or ``None`` when no endpoint runs.
        resource: the resource describing this process (``service.name`` and the rest).
        is_global: whether the providers were installed as the global ones.
    """

    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None
    prometheus_reader: PrometheusMetricReader | None = None
    prometheus_registry: CollectorRegistry | None = None
    metrics_address: tuple[str, int] | None = None
    resource: Resource | None = None
    is_global: bool = False
    _running: _Running = field(default_factory=_Running, repr=False)

    @property
    def metrics_url(self) -> str | None:
        """The URL Prometheus scrapes (``http://host:port/metrics``), or ``None``."""
        if self.metrics_address is None:
            return None
        host, port = self.metrics_address
        if ":" in host:  # an IPv6 address needs brackets in a URL
            host = f"[{host}]"
        return f"http://{host}:{port}/metrics"

    def shutdown(self) -> None:
        """Flush pending spans, stop the metrics endpoint and shut the providers down.

        Idempotent and thread-safe: later calls return at once. Every step runs even if an
        earlier one fails; the failure is raised afterwards. Global providers stay
        installed (OpenTelemetry cannot replace them) but record nothing more.
        """
        running = self._running
        with running.lock:
            if running.closed:
                return
            running.closed = True
            server, running.server = running.server, None
            thread, running.thread = running.thread, None
        errors: list[Exception] = []
        if self.tracer_provider is not None:
            try:
                self.tracer_provider.force_flush()
                self.tracer_provider.shutdown()
            except Exception as error:  # noqa: BLE001 - finish the other steps first
                errors.append(error)
        if server is not None:
            try:
                _stop_server(server, thread)
            except Exception as error:  # noqa: BLE001 - finish the other steps first
                errors.append(error)
        if self.meter_provider is not None:
            try:
                self.meter_provider.shutdown()
            except Exception as error:  # noqa: BLE001 - report after every step ran
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup("telemetry shutdown failed", errors)

    def __enter__(self) -> TelemetryHandles:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


def _stop_server(server: WSGIServer, thread: threading.Thread | None) -> None:
    server.shutdown()
    server.server_close()
    if thread is not None:
        thread.join(_SERVER_JOIN_SECONDS)


def configure_telemetry(
    *,
    service_name: str = DEFAULT_SERVICE_NAME,
    prometheus: bool = True,
    prometheus_port: int | None = None,
    prometheus_host: str | None = None,
    traces: TracesMode = "auto",
    resource_attributes: Mapping[str, AttributeValue] | None = None,
    set_global: bool = True,
    metric_readers: Sequence[MetricReader] = (),
    span_processors: Sequence[SpanProcessor] = (),
) -> TelemetryHandles:
    """Set up the OpenTelemetry SDK: a Prometheus endpoint for metrics, OTLP for traces.

    Metrics: a :class:`~opentelemetry.sdk.metrics.MeterProvider` with a
    :class:`~opentelemetry.exporter.prometheus.PrometheusMetricReader` on a private
    registry, served over HTTP at ``http://<host>:<port>/metrics`` by a daemon thread,
    and :func:`histogram_views` for explicit duration buckets.

    Traces: a :class:`~opentelemetry.sdk.trace.TracerProvider` with a
    :class:`ResendCountSpanProcessor` and, by ``traces``:

    - ``"auto"``: what ``OTEL_TRACES_EXPORTER`` names (``otlp``, ``console``, ``none``,
      comma-separated); if unset, OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
      ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, else no traces.
    - ``"otlp"``: a batching OTLP/HTTP exporter. It reads its own ``OTEL_EXPORTER_OTLP_*``
      variables (endpoint, headers, compression, timeout); the default endpoint is
      ``http://localhost:4318/v1/traces``.
    - ``"console"``: every span printed as JSON to standard output when it ends.
    - ``"none"``: no tracer provider, so no span is even created.

    The resource comes from ``Resource.create``: ``OTEL_RESOURCE_ATTRIBUTES`` merged with
    ``resource_attributes`` (these win). ``service.name`` is, in order, the one in
    ``resource_attributes``, ``OTEL_SERVICE_NAME``, the one in
    ``OTEL_RESOURCE_ATTRIBUTES``, then ``service_name``. With ``OTEL_SDK_DISABLED=true``
    nothing is set up: both providers are ``None`` and no port is bound. The SDK itself
    reads the other variables (``OTEL_TRACES_SAMPLER``, span limits...).

    Args:
        service_name: the default ``service.name``.
        prometheus: whether to serve metrics to Prometheus.
        prometheus_port: port of the metrics endpoint, ``0`` for any free port; default
            ``OTEL_EXPORTER_PROMETHEUS_PORT``, else :data:`DEFAULT_PROMETHEUS_PORT`.
        prometheus_host: address it binds to; default ``OTEL_EXPORTER_PROMETHEUS_HOST``,
            else :data:`DEFAULT_PROMETHEUS_HOST` (loopback).
        traces: one of :data:`TRACES_MODES`, see above.
        resource_attributes: more resource attributes (``deployment.environment``...).
        set_global: install the providers as the OpenTelemetry global ones, so every
            pipeline, breaker and bulkhead (and every other instrumentation) reports to
            them without further code. Possible once per process: a second call raises
            ``RuntimeError``, as does a call when another global SDK provider of the same
            kind is already installed. Tests pass ``False`` and hand the providers to
            their pipelines.
        metric_readers: more metric readers (an OTLP metric exporter, an in-memory
            reader...).
        span_processors: more span processors, added after the configured exporter.

    Returns:
        The providers and the endpoint; call :meth:`TelemetryHandles.shutdown` (or use the
        handles as a context manager) to flush and stop.

    Raises:
        TypeError, ValueError: an argument or an ``OTEL_*`` variable is invalid (the
            message names it).
        RuntimeError: ``set_global=True`` but the global providers are already set.
        OSError: the metrics port cannot be bound.

    Example:
        >>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        >>> from otel_resilience import Pipeline
        >>> reader = InMemoryMetricReader()
        >>> with configure_telemetry(
        ...     prometheus=False, traces="none", set_global=False, metric_readers=[reader]
        ... ) as handles:
        ...     pipeline = Pipeline(name="inventory", meter_provider=handles.meter_provider)
        ...     pipeline.call(lambda: "ok")
        'ok'
        >>> handles.tracer_provider is None
        True
    """
    owner = "configure_telemetry"
    _check_str(owner, "service_name", service_name)
    _check_bool(owner, "prometheus", prometheus)
    _check_bool(owner, "set_global", set_global)
    mode: object = traces  # typed as a literal, but checked: it may come from a config file
    if not isinstance(mode, str) or mode not in TRACES_MODES:
        raise ValueError(f"{owner}.traces must be one of {sorted(TRACES_MODES)}, got {traces!r}")
    port = _prometheus_port(owner, prometheus_port)
    host = _prometheus_host(owner, prometheus_host)
    attributes = _check_attributes(owner, resource_attributes)
    readers = _check_sequence(owner, "metric_readers", metric_readers)
    processors = _check_sequence(owner, "span_processors", span_processors)

    if os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == _TRUE:
        return TelemetryHandles(tracer_provider=None, meter_provider=None)

    destinations = _trace_destinations(traces)
    wants_tracer = bool(destinations) or bool(processors)
    wants_meter = prometheus or bool(readers)
    if set_global:
        _claim_globals(tracer=wants_tracer, meter=wants_meter)
    running = _Running()
    meter_provider: MeterProvider | None = None
    tracer_provider: TracerProvider | None = None
    try:
        resource = _resource(service_name, attributes)
        reader: PrometheusMetricReader | None = None
        registry: CollectorRegistry | None = None
        address: tuple[str, int] | None = None
        if prometheus:
            # A private registry: no clash with the application's own prometheus_client
            # metrics, and shutdown leaves nothing registered behind.
            registry = CollectorRegistry()
            reader = PrometheusMetricReader(registry=registry)
            running.server, running.thread = start_http_server(port, addr=host, registry=registry)
            bound = running.server.server_address
            address = (str(bound[0]), int(bound[1]))
        if wants_meter:
            meter_provider = MeterProvider(
                metric_readers=[*([reader] if reader is not None else []), *readers],
                resource=resource,
                views=histogram_views(),
            )
        if wants_tracer:
            # Last: the batching processor starts a worker thread as it is made.
            tracer_provider = TracerProvider(resource=resource)
            tracer_provider.add_span_processor(ResendCountSpanProcessor())
            for processor in (*_exporting_processors(destinations), *processors):
                tracer_provider.add_span_processor(processor)
        if set_global:
            if tracer_provider is not None:
                trace_api.set_tracer_provider(tracer_provider)
            if meter_provider is not None:
                metrics_api.set_meter_provider(meter_provider)
    except BaseException:
        if running.server is not None:
            _stop_server(running.server, running.thread)
        if tracer_provider is not None:
            tracer_provider.shutdown()
        if meter_provider is not None:
            meter_provider.shutdown()
        if set_global:
            _release_globals()
        raise
    return TelemetryHandles(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        prometheus_reader=reader,
        prometheus_registry=registry,
        metrics_address=address,
        resource=resource,
        is_global=set_global,
        _running=running,
    )


# -- helpers ----------------------------------------------------------------------------


def _check_bool(owner: str, field_name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(
            f"{owner}.{field_name} must be a bool, got {type(value).__name__} {value!r}"
        )


def _check_str(owner: str, field_name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{owner}.{field_name} must be a str, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise ValueError(f"{owner}.{field_name} must not be empty")
    return value


def _prometheus_port(owner: str, value: object) -> int:
    if value is None:
        text = os.environ.get(OTEL_EXPORTER_PROMETHEUS_PORT, "").strip()
        if not text:
            return DEFAULT_PROMETHEUS_PORT
        try:
            value = int(text)
        except ValueError:
            raise ValueError(
                f"{OTEL_EXPORTER_PROMETHEUS_PORT} must be a port number, got {text!r}"
            ) from None
        owner, field_name = "environment", OTEL_EXPORTER_PROMETHEUS_PORT
    else:
        field_name = "prometheus_port"
    port = check_int(owner, field_name, value, minimum=0)
    if port > _MAX_PORT:
        raise ValueError(f"{owner}.{field_name} must be <= {_MAX_PORT}, got {port}")
    return port


def _prometheus_host(owner: str, value: object) -> str:
    if value is None:
        text = os.environ.get(OTEL_EXPORTER_PROMETHEUS_HOST, "").strip()
        return text or DEFAULT_PROMETHEUS_HOST
    return _check_str(owner, "prometheus_host", value)


def _check_attributes(
    owner: str, value: Mapping[str, AttributeValue] | None
) -> dict[str, AttributeValue]:
    if value is None:
        return {}
    candidate: object = value
    if not isinstance(candidate, Mapping):
        raise TypeError(
            f"{owner}.resource_attributes must be a mapping, got {type(candidate).__name__}"
        )
    for key in candidate:
        if not isinstance(key, str) or not key:
            raise TypeError(f"{owner}.resource_attributes keys must be non-empty str, got {key!r}")
    return dict(value)


def _check_sequence(owner: str, field_name: str, value: Sequence[_T]) -> tuple[_T, ...]:
    candidate: object = value
    if isinstance(candidate, str | bytes) or not isinstance(candidate, Sequence):
        raise TypeError(f"{owner}.{field_name} must be a sequence, got {type(candidate).__name__}")
    return tuple(value)


def _trace_destinations(traces: str) -> frozenset[str]:
    """Where spans go (``otlp``, ``console``): ``traces``, read with the environment."""
    if traces != "auto":
        return frozenset({traces} - {"none"})
    chosen = os.environ.get(OTEL_TRACES_EXPORTER, "").strip().lower()
    if chosen:
        modes = {part.strip() for part in chosen.split(",") if part.strip()}
        unknown = modes - {"otlp", "console", "none"}
        if unknown:
            raise ValueError(
                f"{OTEL_TRACES_EXPORTER} may name otlp, console or none here, got {sorted(unknown)}"
            )
        return frozenset(modes - {"none"})
    if os.environ.get(OTEL_EXPORTER_OTLP_ENDPOINT) or os.environ.get(
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    ):
        return frozenset({"otlp"})
    return frozenset()


def _exporting_processors(destinations: frozenset[str]) -> list[SpanProcessor]:
    processors: list[SpanProcessor] = []
    if "otlp" in destinations:
        # Imported only when used: it pulls in requests and protobuf.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        processors.append(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in destinations:
        # sys.stdout looked up now, not at import: redirected output (tests, daemons) works.
        processors.append(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    return processors


def _resource(service_name: str, attributes: dict[str, AttributeValue]) -> Resource:
    if SERVICE_NAME not in attributes and not OTELResourceDetector().detect().attributes.get(
        SERVICE_NAME
    ):
        attributes = {SERVICE_NAME: service_name, **attributes}
    return Resource.create(attributes)


def _claim_globals(*, tracer: bool, meter: bool) -> None:
    global _global_claimed  # noqa: PLW0603 - the once-per-process claim on the globals
    with _global_lock:
        if _global_claimed:
            raise RuntimeError(
                "configure_telemetry(set_global=True) already ran in this process: "
                "OpenTelemetry's global providers can be set only once"
            )
        taken = [
            kind
            for kind, wanted, ready in (
                ("tracer", tracer, tracer_ready(None)),
                ("meter", meter, meter_ready(None)),
            )
            if wanted and ready is not None
        ]
        if taken:
            raise RuntimeError(
                f"configure_telemetry(set_global=True): a global {' and '.join(taken)} "
                "provider is already set up in this process, and OpenTelemetry's global "
                "providers can be set only once; pass set_global=False and use the handles"
            )
        _global_claimed = True


def _release_globals() -> None:
    global _global_claimed  # noqa: PLW0603 - a failed set-up gives the claim back
    with _global_lock:
        _global_claimed = False
