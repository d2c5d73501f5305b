"""The OpenTelemetry adapter: engine reports in, spans and metrics out (API only).

:class:`OpenTelemetryListener` implements the engine's listener seam. Per protected call
it starts one INTERNAL span named after the pipeline, one child span per attempt, and a
span per recovery action (fallback); it records the call, attempt, retry and fallback
metrics; breakers and bulkheads it is told about are observed at collection time.

Cost: with only the OpenTelemetry API installed (no SDK set up), :meth:`enabled` is false,
``start_call`` returns ``None`` and nothing is created or formatted. Every call into
OpenTelemetry is isolated: a span processor, exporter or reader that raises is logged at
a limited rate and never changes the protected call.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_resilience._events import (
    LISTENER_ERRORS,
    AlertSent,
    AttemptOutcome,
    CallOutcome,
    CallRejected,
    CircuitStateChanged,
    ErrorClassified,
    FallbackExecuted,
    RecoveryPerformed,
    ResilienceEvent,
    RetryExhausted,
    RetryScheduled,
    TimeoutExceeded,
)
from otel_resilience.breaker._state import CircuitState
from otel_resilience.telemetry import names
from otel_resilience.telemetry._providers import (
    GLOBALS_READABLE,
    meter_ready,
    metrics_internal,
    tracer_ready,
)
from otel_resilience.telemetry._text import (
    DEFAULT_MAX_TEXT_BYTES,
    error_message,
    stacktrace,
    truncate,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from otel_resilience.breaker import CircuitBreaker
    from otel_resilience.bulkhead import Bulkhead

__all__ = ["ATTEMPT_CONTEXT_KEY", "OpenTelemetryListener", "current_attempt"]

_VERSION = "0.1.0"

ATTEMPT_CONTEXT_KEY = otel_context.create_key("otel_resilience.attempt")
"""OpenTelemetry context key holding the running attempt's number (1-based)."""

_SUCCESS = AttemptOutcome.SUCCESS
_MAX_LABEL_SETS = 1024
_MAX_COUNT_SERIES = 2048
"""Series kept per count; beyond, new error types are counted under ``_OTHER``."""
_OTHER = "_OTHER"
_REJECTED = AttemptOutcome.REJECTED
_CANCELLED = AttemptOutcome.CANCELLED
_STATES = tuple(CircuitState)

# The observer of the call running in this context, so that events reported through
# ``on_event`` (fallback, retry) land on that call's spans.
_CURRENT: ContextVar[_CallObserver | None] = ContextVar("otel_resilience.observer", default=None)


def current_attempt() -> int | None:
    """The attempt number of the protected call running here, or ``None`` outside one.

    Instrumentations use it to mark resends (``http.request.resend_count``).
    """
    value = otel_context.get_value(ATTEMPT_CONTEXT_KEY)
    return value if isinstance(value, int) else None


def _error_type(error: BaseException | None) -> str | None:
    return None if error is None else type(error).__qualname__


class _CallObserver:
    """Spans and metrics of one protected call (see :class:`OpenTelemetryListener`)."""

    __slots__ = (
        "_attempt_span",
        "_attempt_token",
        "_call_token",
        "_context",
        "_last_attempt",
        "_listener",
        "_observer_token",
        "_pipeline",
        "_recovery_span",
        "_recovery_token",
        "_span",
        "_tracer",
    )

    def __init__(
        self, listener: OpenTelemetryListener, pipeline: str, tracer: Tracer | None
    ) -> None:
        self._listener = listener
        self._pipeline = pipeline
        self._tracer = tracer
        self._span: Span | None = None
        self._context: otel_context.Context | None = None
        self._call_token: Token[otel_context.Context] | None = None
        self._attempt_span: Span | None = None
        self._last_attempt: Span | None = None
        self._attempt_token: Token[otel_context.Context] | None = None
        self._recovery_span: Span | None = None
        self._recovery_token: Token[otel_context.Context] | None = None
        if tracer is not None:
            try:
                span = tracer.start_span(
                    pipeline, kind=SpanKind.INTERNAL, attributes={names.ATTR_PIPELINE: pipeline}
                )
            except Exception:  # noqa: BLE001 - a failing tracer leaves the metrics
                LISTENER_ERRORS.exception("OpenTelemetry call span")
                self._tracer = None
            else:
                self._span = span
                self._context = trace_api.set_span_in_context(span)
                self._call_token = otel_context.attach(self._context)
        self._observer_token = _CURRENT.set(self)

    # -- attempts --------------------------------------------------------------------------

    def attempt_started(self, attempt: int) -> None:
        tracer = self._tracer
        if tracer is None:
            return
        span = tracer.start_span(
            f"{self._pipeline} {names.ATTEMPT_SPAN}",
            context=self._context,
            kind=SpanKind.INTERNAL,
            attributes={names.ATTR_PIPELINE: self._pipeline, names.ATTR_ATTEMPT: attempt},
        )
        self._attempt_span = span
        ctx = trace_api.set_span_in_context(span, self._context)
        self._attempt_token = otel_context.attach(
            otel_context.set_value(ATTEMPT_CONTEXT_KEY, attempt, ctx)
        )

    def attempt_ended(
        self,
        attempt: int,
        outcome: AttemptOutcome,
        error: BaseException | None,
        duration: float,
    ) -> None:
        listener = self._listener
        error_type = _error_type(error)
        if listener.metrics_on():
            listener.attempt_duration.record(
                duration, listener.labels(self._pipeline, outcome.value)
            )
            listener.attempt_counts.add(self._pipeline, outcome.value, error_type)
        span = self._attempt_span
        if span is None:
            return
        self._attempt_span = None
        self._last_attempt = span
        token, self._attempt_token = self._attempt_token, None
        try:
            span.set_attribute(names.ATTR_OUTCOME, outcome.value)
            if outcome is not _SUCCESS and outcome is not _CANCELLED:
                if error is not None:
                    span.set_attribute(names.ATTR_ERROR_TYPE, error_type)
                    listener.describe_error(span, error)
                if outcome is _REJECTED:
                    span.add_event(
                        names.EVENT_REJECTED, {names.ATTR_ERROR_TYPE: error_type or "rejected"}
                    )
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        finally:
            if token is not None:
                otel_context.detach(token)

    def attempt_details(self) -> tuple[Mapping[str, Any] | None, str | None, str | None]:
        """The last attempt span's attributes, trace id and span id (for error contexts).

        Attributes set on the attempt span by user code or instrumentations (such as
        ``resilience.error.severity``) reach the orchestrator this way.
        """
        span = self._last_attempt
        if span is None:
            return None, None, None
        context = span.get_span_context()
        attributes = getattr(span, "attributes", None)
        return (
            attributes if isinstance(attributes, Mapping) else None,
            format(context.trace_id, "032x") if context.trace_id else None,
            format(context.span_id, "016x") if context.span_id else None,
        )

    # -- recovery actions -----------------------------------------------------------------

    def recovery_started(self, action: str, error_type: str | None) -> None:
        tracer = self._tracer
        if tracer is None or self._recovery_span is not None:
            return
        attributes: dict[str, Any] = {
            names.ATTR_PIPELINE: self._pipeline,
            names.ATTR_RECOVERY_ACTION: action,
        }
        if error_type is not None:
            attributes[names.ATTR_ERROR_TYPE] = error_type
        span = tracer.start_span(
            f"{self._pipeline} {action}",
            context=self._context,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        self._recovery_span = span
        self._recovery_token = otel_context.attach(
            trace_api.set_span_in_context(span, self._context)
        )

    def _end_recovery(self, error: BaseException | None) -> None:
        span, self._recovery_span = self._recovery_span, None
        token, self._recovery_token = self._recovery_token, None
        try:
            if span is not None:
                if error is not None:
                    span.set_attribute(names.ATTR_ERROR_TYPE, type(error).__qualname__)
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
        finally:
            if token is not None:
                otel_context.detach(token)

    # -- the end --------------------------------------------------------------------------

    def call_ended(
        self, outcome: CallOutcome, error: BaseException | None, duration: float
    ) -> None:
        listener = self._listener
        try:
            _CURRENT.reset(self._observer_token)
        except ValueError:  # ended in another context than it started: nothing to restore
            _CURRENT.set(None)
        if listener.metrics_on():
            listener.call_duration.record(duration, listener.labels(self._pipeline, outcome.value))
            listener.call_counts.add(
                self._pipeline, outcome.value, None if error is None else type(error).__qualname__
            )
        span = self._span
        if span is None:
            return
        self._span = None
        try:
            # Each span is ended on its own, so one failing end cannot lose the others.
            if self._attempt_span is not None:  # never ended (should not happen): close it
                _isolated(self.attempt_ended, 0, AttemptOutcome.FAILURE, error, 0.0)
            _isolated(self._end_recovery, error if outcome is CallOutcome.FAILURE else None)
            span.set_attribute(names.ATTR_OUTCOME, outcome.value)
            if error is not None:
                # The operation failed for its caller: only then is the call span an error.
                # Retried or handled failures stay on the attempt and recovery spans.
                span.set_attribute(names.ATTR_ERROR_TYPE, type(error).__qualname__)
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        finally:
            token, self._call_token = self._call_token, None
            if token is not None:
                otel_context.detach(token)


class _Guarded:
    """Runs an observer's methods so that no exception from OpenTelemetry escapes."""

    __slots__ = ("_inner",)

    def __init__(self, inner: _CallObserver) -> None:
        self._inner = inner

    def attempt_started(self, attempt: int) -> None:
        try:
            self._inner.attempt_started(attempt)
        except Exception:  # noqa: BLE001 - telemetry never breaks a call
            LISTENER_ERRORS.exception("OpenTelemetry attempt span")

    def attempt_ended(
        self, attempt: int, outcome: AttemptOutcome, error: BaseException | None, duration: float
    ) -> None:
        try:
            self._inner.attempt_ended(attempt, outcome, error, duration)
        except Exception:  # noqa: BLE001 - telemetry never breaks a call
            LISTENER_ERRORS.exception("OpenTelemetry attempt span")

    def attempt_details(self) -> tuple[Mapping[str, Any] | None, str | None, str | None]:
        try:
            return self._inner.attempt_details()
        except Exception:  # noqa: BLE001 - telemetry never breaks a call
            LISTENER_ERRORS.exception("OpenTelemetry attempt details")
            return None, None, None

    def call_ended(
        self, outcome: CallOutcome, error: BaseException | None, duration: float
    ) -> None:
        try:
            self._inner.call_ended(outcome, error, duration)
        except Exception:  # noqa: BLE001 - telemetry never breaks a call
            LISTENER_ERRORS.exception("OpenTelemetry call span")


class OpenTelemetryListener:
    """Reports everything the engine does as OpenTelemetry spans and metrics.

    Uses only the OpenTelemetry API. Without explicit providers it follows the global
    ones, as every instrumentation does: nothing is recorded until the application sets
    up an SDK, and everything is from then on. Pipelines, breakers and bulkheads use a
    process-wide instance of it by default (:func:`otel_resilience.telemetry.default_listener`).

    Args:
        tracer_provider: where spans go; default the global provider.
        meter_provider: where metrics go; default the global provider.
        traces: set ``False`` to record metrics only.
        record_exception_stacktrace: add the formatted traceback to the ``exception``
            event of failed attempts. Off by default: formatting a traceback costs about
            90 µs per failure.
        max_text_bytes: cut exception messages copied into events to this many bytes.
    """

    wants_rejections = False
    """Rejections are counted from the breakers themselves and shown on attempt spans, so
    breakers need not report each one (see ``ResilienceListener``)."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        traces: bool = True,
        record_exception_stacktrace: bool = False,
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._traces = traces
        self._stacktrace = record_exception_stacktrace
        self._max_text = max_text_bytes
        self._tracer: Tracer | None = None
        self._tracing = False
        self._metering = False
        # Explicit providers are asked once; global ones are watched until an SDK shows up.
        self._watch_globals = tracer_provider is None or meter_provider is None
        self._breakers: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()
        self._bulkheads: weakref.WeakSet[Bulkhead] = weakref.WeakSet()
        self._orchestrators: weakref.WeakSet[Any] = weakref.WeakSet()
        self._buses: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._labels: dict[tuple[str, str], dict[str, str]] = {}
        # Calls and attempts are plain integers, exported at collection time.
        self.call_counts = _Counts()
        self.attempt_counts = _Counts()
        provider = (
            meter_provider if meter_provider is not None else metrics_api.get_meter_provider()
        )
        meter = provider.get_meter(names.INSTRUMENTATION_SCOPE, _VERSION)
        self._create_instruments(meter)
        self._switch_on()  # explicit SDK providers switch on here, once

    # -- instruments ----------------------------------------------------------------------

    def _create_instruments(self, meter: Meter) -> None:
        buckets = list(names.DURATION_BUCKETS)

        def counter(metric: names.MetricName) -> Any:
            return meter.create_counter(metric.name, metric.unit, metric.description)

        def histogram(metric: names.MetricName) -> Any:
            return meter.create_histogram(
                metric.name,
                unit=metric.unit,
                description=metric.description,
                explicit_bucket_boundaries_advisory=buckets,
            )

        self.call_duration = histogram(names.METRIC_CALL_DURATION)
        self.attempt_duration = histogram(names.METRIC_ATTEMPT_DURATION)
        self.retries = counter(names.METRIC_RETRIES)
        self.retry_delay = histogram(names.METRIC_RETRY_DELAY)
        self.retry_exhausted = counter(names.METRIC_RETRY_EXHAUSTED)
        self.fallbacks = counter(names.METRIC_FALLBACKS)
        self.timeouts = counter(names.METRIC_TIMEOUTS)
        self.transitions = counter(names.METRIC_BREAKER_TRANSITIONS)
        self.errors = counter(names.METRIC_ERRORS)
        self.recovery_actions = counter(names.METRIC_RECOVERY_ACTIONS)
        self.alerts = counter(names.METRIC_ALERTS)
        for metric, callback in (
            (names.METRIC_BREAKER_STATE, self._observe_breaker_state),
            (names.METRIC_BREAKER_STORE_DEGRADED, self._observe_store_degraded),
            (names.METRIC_BULKHEAD_IN_FLIGHT, self._observe_bulkhead_in_flight),
            (names.METRIC_BULKHEAD_QUEUED, self._observe_bulkhead_queued),
            (names.METRIC_ERROR_PATTERNS_ACTIVE, self._observe_patterns),
        ):
            meter.create_observable_gauge(
                metric.name, [callback], unit=metric.unit, description=metric.description
            )
        for metric, callback in (
            (names.METRIC_CALLS, self.call_counts.observe),
            (names.METRIC_ATTEMPTS, self.attempt_counts.observe),
            (names.METRIC_BREAKER_CALLS, self._observe_breaker_calls),
            (names.METRIC_BREAKER_REJECTIONS, self._observe_breaker_rejections),
            (names.METRIC_BREAKER_STORE_FALLBACKS, self._observe_store_fallbacks),
            (names.METRIC_BULKHEAD_REJECTIONS, self._observe_bulkhead_rejections),
            (names.METRIC_EVENTS_DROPPED, self._observe_dropped_events),
        ):
            meter.create_observable_counter(
                metric.name, [callback], unit=metric.unit, description=metric.description
            )

    def labels(self, pipeline: str, outcome: str) -> dict[str, str]:
        """The (shared, read-only) attribute dict of a pipeline and outcome."""
        key = (pipeline, outcome)
        labels = self._labels.get(key)
        if labels is None:
            if len(self._labels) >= _MAX_LABEL_SETS:
                self._labels.clear()  # bounded: pipelines are few; this is a safety valve
            labels = self._labels[key] = {
                names.ATTR_PIPELINE: pipeline,
                names.ATTR_OUTCOME: outcome,
            }
        return labels

    # -- is anything listening? -------------------------------------------------------------

    def tracing_on(self) -> bool:
        """Whether spans are recorded now (an SDK tracer provider is set up)."""
        if self._tracing:
            return True
        if not self._traces:
            return False
        provider = tracer_ready(self._tracer_provider)
        if provider is None:
            return False
        with self._lock:
            if self._tracer is None:
                self._tracer = provider.get_tracer(names.INSTRUMENTATION_SCOPE, _VERSION)
            # A global provider, once set, is never replaced: no need to look again.
            self._tracing = True
        return True

    def metrics_on(self) -> bool:
        """Whether metrics are recorded now (an SDK meter provider is set up)."""
        if self._metering:
            return True
        if meter_ready(self._meter_provider) is None:
            return False
        self._metering = True
        return True

    @property
    def idle_until_global_providers(self) -> bool:
        """Whether nothing but OpenTelemetry's global providers can switch this listener on.

        True while it records nothing and the API's globals can be read: as long as the
        global tracer and meter providers are both unset, :meth:`start_call` would return
        ``None``, so the drivers read those two globals instead of calling it. Asked once,
        when a pipeline is built; a listener switched on later stays called.
        """
        return GLOBALS_READABLE and not (self._tracing or self._metering)

    def enabled(self) -> bool:
        """Whether this listener records anything now; the engine skips it when not."""
        if self._tracing or self._metering:
            return True
        if not self._watch_globals or (
            GLOBALS_READABLE
            and trace_api._TRACER_PROVIDER is None
            and metrics_internal._METER_PROVIDER is None
        ):
            return False
        return self._switch_on()

    def _switch_on(self) -> bool:
        # Both asked (not short-circuited): each flag, once set, stays set.
        tracing = self.tracing_on()
        metering = self.metrics_on()
        return tracing or metering

    # -- the seam ---------------------------------------------------------------------------

    def start_call(self, pipeline: str) -> _Guarded | None:
        """Start following one call; ``None`` (nothing at all) while nothing records."""
        if not (self._tracing or self._metering):
            # The no-SDK case, on every protected call: two module globals, no call.
            if not self._watch_globals or (
                GLOBALS_READABLE
                and trace_api._TRACER_PROVIDER is None
                and metrics_internal._METER_PROVIDER is None
            ):
                return None
            if not self._switch_on():
                return None
        tracer = self._tracer if self.tracing_on() else None
        try:
            return _Guarded(_CallObserver(self, pipeline, tracer))
        except Exception:  # noqa: BLE001 - telemetry never breaks a call
            LISTENER_ERRORS.exception("OpenTelemetry call span")
            return None

    def on_event(self, event: ResilienceEvent) -> None:
        """Record an engine event as metrics and as an event on the current span."""
        if not (self._tracing or self._metering or self.enabled()):
            return
        try:
            self._record(event)
        except Exception:  # noqa: BLE001 - telemetry never breaks a call
            LISTENER_ERRORS.exception("OpenTelemetry event")

    def _record(self, event: ResilienceEvent) -> None:
        metrics_on = self.metrics_on()
        span = trace_api.get_current_span() if self._tracing else None
        if span is not None and not span.is_recording():
            span = None
        if isinstance(event, RetryScheduled):
            if metrics_on:
                attributes: dict[str, Any] = {names.ATTR_PIPELINE: event.pipeline}
                self.retry_delay.record(event.delay, attributes)
                if event.error_type is not None:
                    attributes[names.ATTR_ERROR_TYPE] = event.error_type
                self.retries.add(1, attributes)
            if span is not None:
                span.add_event(
                    names.EVENT_RETRY_SCHEDULED,
                    _without_none(
                        {
                            names.ATTR_ATTEMPT: event.attempt,
                            names.ATTR_DELAY: event.delay,
                            names.ATTR_ERROR_TYPE: event.error_type,
                        }
                    ),
                )
        elif isinstance(event, CircuitStateChanged):
            if metrics_on:
                self.transitions.add(
                    1,
                    {
                        names.ATTR_BREAKER: event.breaker,
                        names.ATTR_FROM_STATE: event.previous.value,
                        names.ATTR_TO_STATE: event.state.value,
                    },
                )
            if span is not None:
                span.add_event(
                    names.EVENT_BREAKER_TRANSITION,
                    {
                        names.ATTR_BREAKER: event.breaker,
                        names.ATTR_FROM_STATE: event.previous.value,
                        names.ATTR_TO_STATE: event.state.value,
                        names.ATTR_REASON: event.reason,
                    },
                )
        elif isinstance(event, FallbackExecuted):
            if metrics_on:
                self.fallbacks.add(
                    1,
                    _without_none(
                        {
                            names.ATTR_PIPELINE: event.pipeline,
                            names.ATTR_ERROR_TYPE: event.error_type,
                        }
                    ),
                )
            observer = _CURRENT.get()
            if observer is not None:
                observer.recovery_started(names.RECOVERY_FALLBACK, event.error_type)
        elif isinstance(event, RetryExhausted):
            if metrics_on:
                self.retry_exhausted.add(
                    1, {names.ATTR_PIPELINE: event.pipeline, names.ATTR_REASON: event.reason}
                )
            if span is not None:
                span.add_event(
                    names.EVENT_RETRY_EXHAUSTED,
                    {names.ATTR_ATTEMPT: event.attempts, names.ATTR_REASON: event.reason},
                )
        elif isinstance(event, TimeoutExceeded):
            if metrics_on:
                self.timeouts.add(
                    1, {names.ATTR_PIPELINE: event.pipeline, names.ATTR_TIMEOUT_SCOPE: event.scope}
                )
            if span is not None:
                span.add_event(names.EVENT_TIMEOUT, {names.ATTR_TIMEOUT_SCOPE: event.scope})
        elif isinstance(event, ErrorClassified):
            if metrics_on:
                self.errors.add(
                    1,
                    {
                        names.ATTR_COMPONENT: event.component,
                        names.ATTR_ERROR_TYPE: event.error_type,
                        names.ATTR_ERROR_SEVERITY: event.severity,
                    },
                )
            if span is not None:
                span.add_event(
                    names.EVENT_RECOVERY_DECISION,
                    {
                        names.ATTR_COMPONENT: event.component,
                        names.ATTR_ERROR_TYPE: event.error_type,
                        names.ATTR_ERROR_SEVERITY: event.severity,
                        names.ATTR_ESCALATED: event.escalated,
                        names.ATTR_ACTIONS: list(event.actions),
                        names.ATTR_REASON: truncate(event.reason, self._max_text),
                    },
                )
        elif isinstance(event, RecoveryPerformed):
            if metrics_on:
                self.recovery_actions.add(
                    1,
                    {
                        names.ATTR_COMPONENT: event.component,
                        names.ATTR_RECOVERY_ACTION: event.action,
                        names.ATTR_OUTCOME: "success" if event.ok else "failure",
                    },
                )
            self._recovery_span(event)
        elif isinstance(event, AlertSent):
            if metrics_on:
                self.alerts.add(
                    1,
                    {
                        names.ATTR_COMPONENT: event.component,
                        names.ATTR_ERROR_SEVERITY: event.severity,
                        names.ATTR_ALERT_SINK: event.sink,
                        names.ATTR_OUTCOME: "success" if event.ok else "failure",
                    },
                )
        elif isinstance(event, CallRejected):
            if span is not None:
                span.add_event(names.EVENT_REJECTED, {names.ATTR_BREAKER: event.breaker})
        elif span is not None:  # BulkheadRejected
            span.add_event(
                names.EVENT_REJECTED,
                {names.ATTR_BULKHEAD: event.bulkhead, names.ATTR_REASON: event.reason},
            )

    def _recovery_span(self, event: RecoveryPerformed) -> None:
        """A span for an orchestrator action, a child of the span current when it ran."""
        if not self._tracing or self._tracer is None:
            return
        span = self._tracer.start_span(
            f"{event.component} {event.action}",
            kind=SpanKind.INTERNAL,
            attributes={
                names.ATTR_COMPONENT: event.component,
                names.ATTR_RECOVERY_ACTION: event.action,
                names.ATTR_OUTCOME: "success" if event.ok else "failure",
            },
        )
        if not event.ok:
            span.set_status(Status(StatusCode.ERROR, truncate(event.detail, self._max_text)))
        span.end()

    def describe_error(self, span: Span, error: BaseException) -> None:
        """Add the ``exception`` event to a failed attempt's span, bounded."""
        attributes = {
            names.ATTR_EXCEPTION_TYPE: type(error).__qualname__,
            names.ATTR_ERROR_MESSAGE: error_message(error, self._max_text),
        }
        if self._stacktrace:
            # Not span.record_exception: it formats str(error) unguarded and unbounded.
            attributes[names.ATTR_EXCEPTION_STACKTRACE] = stacktrace(error)
        span.add_event("exception", attributes)

    # -- observed strategies ---------------------------------------------------------------

    def track(self, component: object) -> None:
        """Observe a breaker, bulkhead or orchestrator at collection time (held weakly)."""
        from otel_resilience.breaker import CircuitBreaker  # noqa: PLC0415 - import cycle
        from otel_resilience.bulkhead import Bulkhead  # noqa: PLC0415 - import cycle

        with self._lock:
            if isinstance(component, CircuitBreaker):
                self._breakers.add(component)
            elif isinstance(component, Bulkhead):
                self._bulkheads.add(component)
            elif callable(getattr(component, "active_patterns", None)):
                self._orchestrators.add(component)
            elif hasattr(component, "dropped") and hasattr(component, "subscriptions"):
                self._buses.add(component)
            else:
                raise TypeError(
                    "track() takes a CircuitBreaker, Bulkhead, EventBus or orchestrator, "
                    f"got {type(component).__name__}"
                )

    def _snapshot(self, items: weakref.WeakSet[Any]) -> list[Any]:
        with self._lock:
            return list(items)

    def _observe_breaker_state(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return self._each(self._breakers, _breaker_state)

    def _observe_breaker_calls(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return self._each(self._breakers, _breaker_calls)

    def _observe_breaker_rejections(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return self._each(
            self._breakers,
            lambda b: [Observation(b.observed_counts().rejections, {names.ATTR_BREAKER: b.name})],
        )

    def _observe_store_degraded(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return self._each(self._breakers, lambda b: _store_status(b, degraded=True))

    def _observe_store_fallbacks(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return self._each(self._breakers, lambda b: _store_status(b, degraded=False))

    def _observe_bulkhead_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return self._each(
            self._bulkheads, lambda b: [Observation(b.in_flight, {names.ATTR_BULKHEAD: b.name})]
        )

    def _observe_bulkhead_queued(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return self._each(
            self._bulkheads, lambda b: [Observation(b.queued, {names.ATTR_BULKHEAD: b.name})]
        )

    def _observe_bulkhead_rejections(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return self._each(
            self._bulkheads, lambda b: [Observation(b.rejections, {names.ATTR_BULKHEAD: b.name})]
        )

    def _observe_dropped_events(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return self._each(
            self._buses, lambda b: [Observation(b.dropped, {names.ATTR_EVENT_BUS: b.name})]
        )

    def _observe_patterns(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        # One series: the patterns of every orchestrator on this listener, added up.
        counts = self._each(self._orchestrators, lambda o: [Observation(o.active_patterns())])
        return [Observation(sum(int(o.value) for o in counts))] if counts else []

    def _each(
        self, items: weakref.WeakSet[Any], observe: Callable[[Any], list[Observation]]
    ) -> list[Observation]:
        """Observations of every tracked item; one failing item drops only its own."""
        with self._lock:
            snapshot = list(items)
        observations: list[Observation] = []
        for item in snapshot:
            try:
                observations.extend(observe(item))
            except Exception:  # noqa: BLE001 - a failing observation must not stop collection
                LISTENER_ERRORS.exception("OpenTelemetry observable callback")
        return observations

    def __repr__(self) -> str:
        return (
            f"OpenTelemetryListener(tracing={self._tracing}, metrics={self._metering}, "
            f"breakers={len(self._breakers)}, bulkheads={len(self._bulkheads)})"
        )


class _Counts:
    """Counts by (pipeline, outcome, error type), kept in plain integers.

    Incrementing costs a lock and a dict update instead of an SDK measurement; an
    observable counter reports the totals when metrics are collected.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str | None], int] = {}
        self._lock = threading.Lock()

    def add(self, pipeline: str, outcome: str, error_type: str | None) -> None:
        key = (pipeline, outcome, error_type)
        with self._lock:
            counts = self._counts
            if key in counts:
                counts[key] += 1
            elif len(counts) < _MAX_COUNT_SERIES:
                counts[key] = 1
            else:  # bounded: too many error types fold into one series
                fallback = (pipeline, outcome, _OTHER)
                counts[fallback] = counts.get(fallback, 0) + 1

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        with self._lock:
            items = list(self._counts.items())
        observations = []
        for (pipeline, outcome, error_type), value in items:
            attributes = {names.ATTR_PIPELINE: pipeline, names.ATTR_OUTCOME: outcome}
            if error_type is not None:
                attributes[names.ATTR_ERROR_TYPE] = error_type
            observations.append(Observation(value, attributes))
        return observations


def _breaker_state(breaker: CircuitBreaker) -> list[Observation]:
    state = breaker.observed_state()
    return [
        Observation(
            1 if candidate is state else 0,
            {names.ATTR_BREAKER: breaker.name, names.ATTR_BREAKER_STATE: candidate.value},
        )
        for candidate in _STATES
    ]


def _breaker_calls(breaker: CircuitBreaker) -> list[Observation]:
    counts = breaker.observed_counts()
    return [
        Observation(value, {names.ATTR_BREAKER: breaker.name, names.ATTR_OUTCOME: outcome})
        for outcome, value in (
            ("success", counts.successes),
            ("failure", counts.failures),
            ("ignored", counts.ignored),
        )
    ]


def _store_status(breaker: CircuitBreaker, *, degraded: bool) -> list[Observation]:
    """A shared breaker's degraded flag or fallback count; nothing for a local breaker."""
    store_status = getattr(breaker, "store_status", None)
    if store_status is None:
        return []
    status = store_status()
    value = int(status.degraded) if degraded else status.fallbacks
    return [Observation(value, {names.ATTR_BREAKER: breaker.name})]


def _isolated(fn: Callable[..., object], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - telemetry never breaks a call
        LISTENER_ERRORS.exception("OpenTelemetry span")


def _without_none(attributes: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in attributes.items() if value is not None}
