"""Errors seen by other instrumentations: ERROR spans fed to the orchestrator, observe-only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import StatusCode

from otel_resilience._events import LISTENER_ERRORS
from otel_resilience.orchestrator._context import ErrorContext, select_attributes
from otel_resilience.telemetry import names

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor as _SpanProcessor

    from otel_resilience.orchestrator._orchestrator import ErrorRecoveryOrchestrator
else:
    # At run time a plain class, so that importing it needs no SDK; type checkers see the
    # SDK's interface, so ``provider.add_span_processor(ErrorSpanProcessor(...))`` checks.
    _SpanProcessor = object

__all__ = ["DEFAULT_COMPONENT_ATTRIBUTES", "ErrorSpanProcessor"]

DEFAULT_COMPONENT_ATTRIBUTES = (
    "peer.service",
    "db.system",
    "db.system.name",
    "messaging.system",
    "rpc.service",
    "server.address",
    "service.name",
)
"""Span attributes that name the failing component, tried in order; then the
instrumentation scope's name."""


class ErrorSpanProcessor(_SpanProcessor):
    """A span processor that feeds ERROR spans of other instrumentations to the orchestrator.

    Add it to the SDK's tracer provider (``provider.add_span_processor(...)``) so the
    orchestrator sees the whole application, not only calls wrapped by otel-resilience:
    failing database queries, HTTP server errors, messaging failures. Observe-only: each
    ERROR span becomes an :class:`ErrorContext` for
    :meth:`ErrorRecoveryOrchestrator.observe` (patterns, severity, operator alerts), and no
    breaker, failover or retry is touched. Spans of otel-resilience itself are skipped
    (their failures reach the orchestrator through the pipelines).

    Duck-typed to the SDK's ``SpanProcessor`` interface, so importing it needs no SDK.

    Args:
        orchestrator: the orchestrator to feed.
        component_attributes: span attributes naming the component, tried in order.
        ignore_scopes: instrumentation scopes whose spans are skipped.
    """

    def __init__(
        self,
        orchestrator: ErrorRecoveryOrchestrator,
        *,
        component_attributes: Sequence[str] = DEFAULT_COMPONENT_ATTRIBUTES,
        ignore_scopes: Sequence[str] = (names.INSTRUMENTATION_SCOPE,),
    ) -> None:
        if not callable(getattr(orchestrator, "observe", None)):
            raise TypeError(
                "ErrorSpanProcessor.orchestrator must be an ErrorRecoveryOrchestrator, "
                f"got {type(orchestrator).__name__}"
            )
        self._orchestrator = orchestrator
        self._component_attributes = tuple(component_attributes)
        self._ignore = frozenset(ignore_scopes)

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        """Nothing to do when a span starts."""

    def _on_ending(self, span: Any) -> None:
        """Nothing to do while a span ends (newer SDKs call this)."""

    def on_end(self, span: Any) -> None:
        """Turn an ended ERROR span into an error context for the orchestrator."""
        try:
            context = self._context_of(span)
            if context is not None:
                self._orchestrator.observe(context)
        except Exception:  # noqa: BLE001 - a span processor must never break span ending
            LISTENER_ERRORS.exception("ErrorSpanProcessor")

    def _context_of(self, span: Any) -> ErrorContext | None:
        status = getattr(span, "status", None)
        if status is None or status.status_code is not StatusCode.ERROR:
            return None
        scope = getattr(getattr(span, "instrumentation_scope", None), "name", None) or ""
        if scope in self._ignore:
            return None
        attributes: Mapping[str, Any] = getattr(span, "attributes", None) or {}
        component = next(
            (str(attributes[key]) for key in self._component_attributes if attributes.get(key)),
            scope or "unknown",
        )
        exception = _exception_event(span)
        error_type = (
            attributes.get(names.ATTR_ERROR_TYPE)
            or exception.get(names.ATTR_EXCEPTION_TYPE)
            or "error"
        )
        message = status.description or exception.get(names.ATTR_ERROR_MESSAGE) or ""
        span_context = span.get_span_context() if hasattr(span, "get_span_context") else None
        trace_id = span_id = None
        if span_context is not None and span_context.trace_id:
            trace_id = format(span_context.trace_id, "032x")
            span_id = format(span_context.span_id, "016x")
        end_time = getattr(span, "end_time", None) or getattr(span, "start_time", None) or 0
        return ErrorContext(
            component=component,
            operation=str(getattr(span, "name", "") or "span"),
            error_type=str(error_type),
            message=str(message),
            timestamp=end_time / 1e9,
            trace_id=trace_id,
            span_id=span_id,
            attributes=select_attributes(attributes),
        )

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered."""
        del timeout_millis
        return True


def _exception_event(span: Any) -> Mapping[str, Any]:
    for event in getattr(span, "events", ()) or ():
        if getattr(event, "name", None) == "exception":
            attributes = getattr(event, "attributes", None)
            if isinstance(attributes, Mapping):
                return attributes
    return {}
