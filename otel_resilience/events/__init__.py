"""The event bus: typed events, isolated sync and async subscribers, bounded queues.

:class:`EventBus` delivers frozen dataclass events to handlers subscribed by class:
fire-and-forget with :meth:`EventBus.publish` (never blocks, safe from any thread) or
acknowledged with :meth:`EventBus.publish_and_wait`. The orchestrator's events live here
too; the engine's events (:class:`~otel_resilience.CircuitStateChanged`, ...) are
published unchanged. See ``docs/event-bus.md``.
"""

from __future__ import annotations

from otel_resilience.events._bus import (
    DEFAULT_ACK_TIMEOUT,
    DEFAULT_BUS_NAME,
    DEFAULT_QUEUE_SIZE,
    AckResult,
    DropHook,
    EventBus,
    Subscription,
)
from otel_resilience.events._types import (
    AlertRaised,
    AlertResolved,
    ErrorOccurred,
    OrchestratorEvent,
    RecoveryActionTaken,
)

__all__ = [
    "DEFAULT_ACK_TIMEOUT",
    "DEFAULT_BUS_NAME",
    "DEFAULT_QUEUE_SIZE",
    "AckResult",
    "AlertRaised",
    "AlertResolved",
    "DropHook",
    "ErrorOccurred",
    "EventBus",
    "OrchestratorEvent",
    "RecoveryActionTaken",
    "Subscription",
]
