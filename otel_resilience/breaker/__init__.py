"""Circuit breaker: a sans-IO state machine, its configuration, windows and a registry.

See ``docs/circuit-breaker.md`` for the model.
"""

from __future__ import annotations

from otel_resilience.breaker._breaker import (
    DISABLED_TICKET,
    CircuitBreaker,
    CircuitBreakerMetrics,
    StateChangeCallback,
)
from otel_resilience.breaker._config import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_HALF_OPEN_MAX_CALLS,
    DEFAULT_MINIMUM_CALLS,
    DEFAULT_PROBE_LEASE_SECONDS,
    DEFAULT_RECORD_EXCEPTIONS,
    DEFAULT_SUCCESS_THRESHOLD,
    DEFAULT_TIMEOUT_SECONDS,
    CircuitBreakerConfig,
    ExceptionFilter,
)
from otel_resilience.breaker._registry import (
    DEFAULT_MAX_BREAKERS,
    CircuitBreakerRegistry,
    RegistryFullError,
)
from otel_resilience.breaker._shared import (
    DEFAULT_MAX_STALENESS_SECONDS,
    SHARED_TICKET_BASE,
    SharedCircuitBreaker,
    StoreStatus,
)
from otel_resilience.breaker._state import CircuitState
from otel_resilience.breaker._window import TIME_WINDOW_BUCKETS

__all__ = [
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_HALF_OPEN_MAX_CALLS",
    "DEFAULT_MAX_BREAKERS",
    "DEFAULT_MAX_STALENESS_SECONDS",
    "DEFAULT_MINIMUM_CALLS",
    "DEFAULT_PROBE_LEASE_SECONDS",
    "DEFAULT_RECORD_EXCEPTIONS",
    "DEFAULT_SUCCESS_THRESHOLD",
    "DEFAULT_TIMEOUT_SECONDS",
    "DISABLED_TICKET",
    "SHARED_TICKET_BASE",
    "TIME_WINDOW_BUCKETS",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerMetrics",
    "CircuitBreakerRegistry",
    "CircuitState",
    "ExceptionFilter",
    "RegistryFullError",
    "SharedCircuitBreaker",
    "StateChangeCallback",
    "StoreStatus",
]
