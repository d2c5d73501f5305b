"""The orchestrator's events: frozen, slotted dataclasses published on the :class:`EventBus`.

The engine's own events (:class:`~otel_resilience.CircuitStateChanged`,
:class:`~otel_resilience.RetryScheduled`, :class:`~otel_resilience.FallbackExecuted`, ...)
are published on the same bus unchanged: any frozen dataclass instance is an event. The
classes here cover what the error-recovery orchestrator adds: errors, recovery actions
and operator alerts. They share the empty base :class:`OrchestratorEvent`, so one
subscription receives all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "AlertRaised",
    "AlertResolved",
    "ErrorOccurred",
    "OrchestratorEvent",
    "RecoveryActionTaken",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestratorEvent:
    """Base class of every event the error-recovery orchestrator publishes.

    Subscribing to it receives all of its subclasses::

        bus.subscribe(OrchestratorEvent, audit_log)
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorOccurred(OrchestratorEvent):
    """The orchestrator received a failure to classify."""

    # Typed Any so that this module does not import the orchestrator package (which
    # imports the bus): the value is an ``otel_resilience.orchestrator.ErrorContext``.
    context: Any
    """The failure, as an ``ErrorContext`` (component, operation, error type, severity, ...)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryActionTaken(OrchestratorEvent):
    """The orchestrator performed a recovery action for ``component``."""

    component: str
    action: str
    """The action's name: a ``RecoveryAction`` value (``"circuit_break"``, ...) or the name of
    a custom action registered on the orchestrator."""
    ok: bool
    """Whether the action completed without raising."""
    detail: str
    """One short line on what was done, or why it failed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRaised(OrchestratorEvent):
    """An operator alert started firing (sent to the configured alert sinks)."""

    alert: Any
    """The alert object the alert sinks receive."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertResolved(OrchestratorEvent):
    """A firing operator alert was resolved."""

    alert: Any
    """The alert object, as it was raised."""
