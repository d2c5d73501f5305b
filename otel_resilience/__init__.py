"""otel-resilience: OpenTelemetry-native breakers, retries, fallbacks, timeouts, bulkheads.

Everything public is importable from here. Strategies are small sans-IO decision
objects; a :class:`Pipeline` composes them in a fixed order, and :func:`resilient` applies
one to a function. Backoff strategies live in :mod:`otel_resilience.backoff`; test helpers
(:class:`~otel_resilience.testing.FakeClock`, fault injection, ``set_testing``) in
:mod:`otel_resilience.testing`.
"""

from __future__ import annotations

from otel_resilience import backoff
from otel_resilience._clock import Clock, RandomSource, SystemClock
from otel_resilience._errors import (
    BulkheadFullError,
    CircuitOpenError,
    ResilienceError,
    ResilienceTimeoutError,
)
from otel_resilience._events import (
    AttemptOutcome,
    BulkheadRejected,
    CallObserver,
    CallOutcome,
    CallRejected,
    CircuitStateChanged,
    FallbackExecuted,
    ResilienceEvent,
    ResilienceListener,
    RetryExhausted,
    RetryScheduled,
    TimeoutExceeded,
)
from otel_resilience.alerts import (
    Alert,
    AlertDeliveryError,
    AlertmanagerAlertSink,
    AlertSink,
    EventBusAlertSink,
    LoggingAlertSink,
    WebhookAlertSink,
)
from otel_resilience.breaker import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerMetrics,
    CircuitBreakerRegistry,
    CircuitState,
    RegistryFullError,
    SharedCircuitBreaker,
)
from otel_resilience.bulkhead import Bulkhead
from otel_resilience.events import EventBus
from otel_resilience.fallback import Fallback, FallbackContext
from otel_resilience.middleware import ResilientFunction, resilient, unwrap, wrap
from otel_resilience.orchestrator import (
    ErrorContext,
    ErrorRecoveryOrchestrator,
    ErrorSeverity,
    FailoverConfig,
    RecoveryAction,
    RecoveryPlan,
)
from otel_resilience.pipeline import Pipeline
from otel_resilience.retry import Retry, RetryBudget, RetryConfig
from otel_resilience.timeout import Timeout, remaining

__all__ = [
    "Alert",
    "AlertDeliveryError",
    "AlertSink",
    "AlertmanagerAlertSink",
    "AttemptOutcome",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadRejected",
    "CallObserver",
    "CallOutcome",
    "CallRejected",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerMetrics",
    "CircuitBreakerRegistry",
    "CircuitOpenError",
    "CircuitState",
    "CircuitStateChanged",
    "Clock",
    "ErrorContext",
    "ErrorRecoveryOrchestrator",
    "ErrorSeverity",
    "EventBus",
    "EventBusAlertSink",
    "FailoverConfig",
    "Fallback",
    "FallbackContext",
    "FallbackExecuted",
    "LoggingAlertSink",
    "Pipeline",
    "RandomSource",
    "RecoveryAction",
    "RecoveryPlan",
    "RegistryFullError",
    "ResilienceError",
    "ResilienceEvent",
    "ResilienceListener",
    "ResilienceTimeoutError",
    "ResilientFunction",
    "Retry",
    "RetryBudget",
    "RetryConfig",
    "RetryExhausted",
    "RetryScheduled",
    "SharedCircuitBreaker",
    "SystemClock",
    "Timeout",
    "TimeoutExceeded",
    "WebhookAlertSink",
    "backoff",
    "remaining",
    "resilient",
    "unwrap",
    "wrap",
]
