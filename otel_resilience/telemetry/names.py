"""Every span, event, attribute and metric name otel-resilience emits, in one place.

Dashboards, alert rules and docs/telemetry.md use exactly these names; a test checks the
docs table against this module and the Prometheus exposition against both. Attribute
values stay low-cardinality: pipeline and breaker names chosen by the developer, class
names of errors, enumerated outcomes and states; never messages, URLs or ids.

With the Prometheus exporter, dots become underscores, counters gain ``_total`` and a
unit ``s`` gains ``_seconds``: ``resilience.calls`` is scraped as
``resilience_calls_total`` and ``resilience.call.duration`` as
``resilience_call_duration_seconds_bucket`` (and ``_sum``, ``_count``).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ATTEMPT_SPAN",
    "ATTR_ACTIONS",
    "ATTR_ALERT_SINK",
    "ATTR_ATTEMPT",
    "ATTR_BREAKER",
    "ATTR_BREAKER_STATE",
    "ATTR_BULKHEAD",
    "ATTR_COMPONENT",
    "ATTR_DELAY",
    "ATTR_ERROR_MESSAGE",
    "ATTR_ERROR_SEVERITY",
    "ATTR_ERROR_TYPE",
    "ATTR_ESCALATED",
    "ATTR_EVENT_BUS",
    "ATTR_EXCEPTION_STACKTRACE",
    "ATTR_EXCEPTION_TYPE",
    "ATTR_FROM_STATE",
    "ATTR_HTTP_RESEND_COUNT",
    "ATTR_OUTCOME",
    "ATTR_PIPELINE",
    "ATTR_REASON",
    "ATTR_RECOVERY_ACTION",
    "ATTR_RETRY_AFTER",
    "ATTR_TIMEOUT_SCOPE",
    "ATTR_TO_STATE",
    "DURATION_BUCKETS",
    "EVENT_BREAKER_TRANSITION",
    "EVENT_RECOVERY_DECISION",
    "EVENT_REJECTED",
    "EVENT_RETRY_EXHAUSTED",
    "EVENT_RETRY_SCHEDULED",
    "EVENT_TIMEOUT",
    "INSTRUMENTATION_SCOPE",
    "METRICS",
    "METRIC_ALERTS",
    "METRIC_ATTEMPTS",
    "METRIC_ATTEMPT_DURATION",
    "METRIC_BREAKER_CALLS",
    "METRIC_BREAKER_REJECTIONS",
    "METRIC_BREAKER_STATE",
    "METRIC_BREAKER_STORE_DEGRADED",
    "METRIC_BREAKER_STORE_FALLBACKS",
    "METRIC_BREAKER_TRANSITIONS",
    "METRIC_BULKHEAD_IN_FLIGHT",
    "METRIC_BULKHEAD_QUEUED",
    "METRIC_BULKHEAD_REJECTIONS",
    "METRIC_CALLS",
    "METRIC_CALL_DURATION",
    "METRIC_ERRORS",
    "METRIC_ERROR_PATTERNS_ACTIVE",
    "METRIC_EVENTS_DROPPED",
    "METRIC_FALLBACKS",
    "METRIC_RECOVERY_ACTIONS",
    "METRIC_RETRIES",
    "METRIC_RETRY_DELAY",
    "METRIC_RETRY_EXHAUSTED",
    "METRIC_TIMEOUTS",
    "RECOVERY_FALLBACK",
    "RECOVERY_SPAN",
    "MetricName",
    "prometheus_name",
]

INSTRUMENTATION_SCOPE: Final = "otel_resilience"
"""Name of the tracer and meter (the instrumentation scope)."""

# -- spans and span events -------------------------------------------------------------

ATTEMPT_SPAN: Final = "attempt"
"""Child span of one attempt; named ``"<pipeline> attempt"``. The call span is named after
the pipeline itself."""
RECOVERY_SPAN: Final = "recovery"
"""Span of a recovery action; named ``"<pipeline> <action>"`` (e.g. ``"inventory fallback"``)."""
EVENT_RETRY_SCHEDULED: Final = "resilience.retry.scheduled"
EVENT_RETRY_EXHAUSTED: Final = "resilience.retry.exhausted"
EVENT_BREAKER_TRANSITION: Final = "resilience.circuit_breaker.transition"
EVENT_REJECTED: Final = "resilience.rejected"
EVENT_TIMEOUT: Final = "resilience.timeout"
EVENT_RECOVERY_DECISION: Final = "resilience.recovery.decision"
"""The orchestrator's decision for a failure: severity, escalation, actions."""

# -- attributes ------------------------------------------------------------------------

ATTR_PIPELINE: Final = "resilience.pipeline"
ATTR_ATTEMPT: Final = "resilience.attempt"
"""1-based attempt number, on attempt spans."""
ATTR_OUTCOME: Final = "resilience.outcome"
"""An ``AttemptOutcome`` or ``CallOutcome`` value: success, failure, rejected, timeout..."""
ATTR_ERROR_TYPE: Final = "error.type"
"""Standard attribute: the exception's class name (qualified name, never the message)."""
ATTR_EXCEPTION_TYPE: Final = "exception.type"
ATTR_EXCEPTION_STACKTRACE: Final = "exception.stacktrace"
"""Only with ``record_exception_stacktrace=True``; the innermost 8 KiB."""
ATTR_ERROR_MESSAGE: Final = "exception.message"
"""Only on span events, truncated; never a metric attribute."""
ATTR_ERROR_SEVERITY: Final = "resilience.error.severity"
"""Read by the error-recovery orchestrator from the failing span."""
ATTR_DELAY: Final = "resilience.retry.delay"
ATTR_RETRY_AFTER: Final = "resilience.retry_after"
ATTR_REASON: Final = "resilience.reason"
ATTR_BREAKER: Final = "resilience.circuit_breaker"
ATTR_BREAKER_STATE: Final = "resilience.circuit_breaker.state"
ATTR_FROM_STATE: Final = "resilience.circuit_breaker.from_state"
ATTR_TO_STATE: Final = "resilience.circuit_breaker.to_state"
ATTR_BULKHEAD: Final = "resilience.bulkhead"
ATTR_TIMEOUT_SCOPE: Final = "resilience.timeout.scope"
ATTR_RECOVERY_ACTION: Final = "resilience.recovery.action"
ATTR_HTTP_RESEND_COUNT: Final = "http.request.resend_count"
"""Standard HTTP attribute set on the HTTP spans of the second and later attempts."""

ATTR_COMPONENT: Final = "resilience.component"
"""The component an error is attributed to (the orchestrator's unit of health)."""
ATTR_ACTIONS: Final = "resilience.recovery.plan"
"""The actions a decision chose, in order (a string array, on decision events)."""
ATTR_ESCALATED: Final = "resilience.error.escalated"
"""Whether a recurring pattern raised the severity."""
ATTR_ALERT_SINK: Final = "resilience.alert.sink"
"""The alert sink's class name (LoggingAlertSink, AlertmanagerAlertSink, ...)."""
ATTR_EVENT_BUS: Final = "resilience.event_bus"
"""An event bus's name."""
"""The alert sink's class name (LoggingAlertSink, AlertmanagerAlertSink, ...)."""

RECOVERY_FALLBACK: Final = "fallback"
"""``resilience.recovery.action`` value of a fallback."""

# -- metrics ---------------------------------------------------------------------------


class MetricName:
    """One metric: its OpenTelemetry name, instrument kind, unit, attributes, meaning."""

    __slots__ = ("attributes", "description", "kind", "name", "unit")

    def __init__(
        self, name: str, kind: str, unit: str, attributes: tuple[str, ...], description: str
    ) -> None:
        self.name = name
        self.kind = kind
        self.unit = unit
        self.attributes = attributes
        self.description = description

    @property
    def prometheus(self) -> str:
        """The name the Prometheus exporter gives it (histograms: the base name)."""
        return prometheus_name(self.name, self.kind, self.unit)

    def __repr__(self) -> str:
        return f"MetricName({self.name!r}, {self.kind!r})"


def prometheus_name(name: str, kind: str, unit: str) -> str:
    """The Prometheus name of a metric, as the OpenTelemetry Prometheus exporter writes it."""
    base = name.replace(".", "_")
    if unit == "s":
        base += "_seconds"
    if kind in ("counter", "observable_counter"):
        base += "_total"
    return base


METRIC_CALLS: Final = MetricName(
    "resilience.calls",
    "observable_counter",
    "{call}",
    (ATTR_PIPELINE, ATTR_OUTCOME, ATTR_ERROR_TYPE),
    "Protected calls, by how they ended.",
)
METRIC_CALL_DURATION: Final = MetricName(
    "resilience.call.duration",
    "histogram",
    "s",
    (ATTR_PIPELINE, ATTR_OUTCOME),
    "Duration of whole protected calls, retries and waits included.",
)
METRIC_ATTEMPTS: Final = MetricName(
    "resilience.attempts",
    "observable_counter",
    "{attempt}",
    (ATTR_PIPELINE, ATTR_OUTCOME, ATTR_ERROR_TYPE),
    "Attempts, by outcome (a call makes one or more).",
)
METRIC_ATTEMPT_DURATION: Final = MetricName(
    "resilience.attempt.duration",
    "histogram",
    "s",
    (ATTR_PIPELINE, ATTR_OUTCOME),
    "Duration of single attempts.",
)
METRIC_RETRIES: Final = MetricName(
    "resilience.retries",
    "counter",
    "{retry}",
    (ATTR_PIPELINE, ATTR_ERROR_TYPE),
    "Retries scheduled.",
)
METRIC_RETRY_DELAY: Final = MetricName(
    "resilience.retry.delay",
    "histogram",
    "s",
    (ATTR_PIPELINE,),
    "Wait before each retry.",
)
METRIC_RETRY_EXHAUSTED: Final = MetricName(
    "resilience.retry.exhausted",
    "counter",
    "{call}",
    (ATTR_PIPELINE, ATTR_REASON),
    "Calls whose retries gave up, by reason (max_attempts, deadline, budget, ...).",
)
METRIC_FALLBACKS: Final = MetricName(
    "resilience.fallbacks",
    "counter",
    "{call}",
    (ATTR_PIPELINE, ATTR_ERROR_TYPE),
    "Fallbacks run.",
)
METRIC_TIMEOUTS: Final = MetricName(
    "resilience.timeouts",
    "counter",
    "{timeout}",
    (ATTR_PIPELINE, ATTR_TIMEOUT_SCOPE),
    "Attempt and total timeouts that fired.",
)
METRIC_BREAKER_STATE: Final = MetricName(
    "resilience.circuit_breaker.state",
    "observable_gauge",
    "",
    (ATTR_BREAKER, ATTR_BREAKER_STATE),
    "1 for the breaker's current state, 0 for the others.",
)
METRIC_BREAKER_TRANSITIONS: Final = MetricName(
    "resilience.circuit_breaker.transitions",
    "counter",
    "{transition}",
    (ATTR_BREAKER, ATTR_FROM_STATE, ATTR_TO_STATE),
    "State changes.",
)
METRIC_BREAKER_CALLS: Final = MetricName(
    "resilience.circuit_breaker.calls",
    "observable_counter",
    "{call}",
    (ATTR_BREAKER, ATTR_OUTCOME),
    "Calls the breaker recorded, by outcome (success, failure, ignored).",
)
METRIC_BREAKER_REJECTIONS: Final = MetricName(
    "resilience.circuit_breaker.rejections",
    "observable_counter",
    "{call}",
    (ATTR_BREAKER,),
    "Calls the breaker refused.",
)
METRIC_BREAKER_STORE_DEGRADED: Final = MetricName(
    "resilience.circuit_breaker.store.degraded",
    "observable_gauge",
    "",
    (ATTR_BREAKER,),
    "1 while a shared breaker decides from local state because its state store failed.",
)
METRIC_BREAKER_STORE_FALLBACKS: Final = MetricName(
    "resilience.circuit_breaker.store.fallbacks",
    "observable_counter",
    "{operation}",
    (ATTR_BREAKER,),
    "Operations a shared breaker decided from local state because its state store failed.",
)
METRIC_BULKHEAD_IN_FLIGHT: Final = MetricName(
    "resilience.bulkhead.in_flight",
    "observable_gauge",
    "{call}",
    (ATTR_BULKHEAD,),
    "Calls holding a bulkhead slot.",
)
METRIC_BULKHEAD_QUEUED: Final = MetricName(
    "resilience.bulkhead.queued",
    "observable_gauge",
    "{call}",
    (ATTR_BULKHEAD,),
    "Calls waiting in a bulkhead's queue.",
)
METRIC_BULKHEAD_REJECTIONS: Final = MetricName(
    "resilience.bulkhead.rejections",
    "observable_counter",
    "{call}",
    (ATTR_BULKHEAD,),
    "Calls a bulkhead refused (queue full or queue timeout).",
)

METRIC_ERRORS: Final = MetricName(
    "resilience.errors",
    "counter",
    "{error}",
    (ATTR_COMPONENT, ATTR_ERROR_TYPE, ATTR_ERROR_SEVERITY),
    "Failures the orchestrator classified, by final severity.",
)
METRIC_RECOVERY_ACTIONS: Final = MetricName(
    "resilience.recovery.actions",
    "counter",
    "{action}",
    (ATTR_COMPONENT, ATTR_RECOVERY_ACTION, ATTR_OUTCOME),
    "Recovery actions the orchestrator performed (outcome success or failure).",
)
METRIC_ALERTS: Final = MetricName(
    "resilience.alerts",
    "counter",
    "{alert}",
    (ATTR_COMPONENT, ATTR_ERROR_SEVERITY, ATTR_ALERT_SINK, ATTR_OUTCOME),
    "Operator alerts sent, per sink (outcome success or failure).",
)
METRIC_ERROR_PATTERNS_ACTIVE: Final = MetricName(
    "resilience.error_patterns.active",
    "observable_gauge",
    "{pattern}",
    (),
    "Recurring error patterns (component and error type) seen within the window.",
)

METRIC_EVENTS_DROPPED: Final = MetricName(
    "resilience.events.dropped",
    "observable_counter",
    "{event}",
    (ATTR_EVENT_BUS,),
    "Events an event bus dropped: a subscriber's queue was full, or the bus was stopped.",
)

METRICS: Final = (
    METRIC_CALLS,
    METRIC_CALL_DURATION,
    METRIC_ATTEMPTS,
    METRIC_ATTEMPT_DURATION,
    METRIC_RETRIES,
    METRIC_RETRY_DELAY,
    METRIC_RETRY_EXHAUSTED,
    METRIC_FALLBACKS,
    METRIC_TIMEOUTS,
    METRIC_BREAKER_STATE,
    METRIC_BREAKER_TRANSITIONS,
    METRIC_BREAKER_CALLS,
    METRIC_BREAKER_REJECTIONS,
    METRIC_BREAKER_STORE_DEGRADED,
    METRIC_BREAKER_STORE_FALLBACKS,
    METRIC_BULKHEAD_IN_FLIGHT,
    METRIC_BULKHEAD_QUEUED,
    METRIC_BULKHEAD_REJECTIONS,
    METRIC_ERRORS,
    METRIC_RECOVERY_ACTIONS,
    METRIC_ALERTS,
    METRIC_ERROR_PATTERNS_ACTIVE,
    METRIC_EVENTS_DROPPED,
)
"""Every metric, in the order of the docs table."""

DURATION_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Explicit histogram bucket boundaries (seconds) for every duration and delay."""
