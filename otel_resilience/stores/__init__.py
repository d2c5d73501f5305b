"""State stores: where circuit breakers shared by several processes keep their state.

``CircuitBreaker(name, config, store=...)`` makes a shared breaker. The seam is
:class:`BreakerStateStore` (and :class:`AsyncBreakerStateStore` for asyncio); this package
has the in-memory store, and :mod:`otel_resilience.stores.redis` (the ``redis`` extra)
the Redis stores. See ``docs/shared-state.md``.
"""

from __future__ import annotations

from otel_resilience.stores._memory import AsyncInMemoryStateStore, InMemoryStateStore
from otel_resilience.stores._protocol import (
    DEFAULT_KEY_TTL_SECONDS,
    Admission,
    AdmissionKind,
    AsyncBreakerStateStore,
    BreakerStateStore,
    Command,
    Outcome,
    Report,
    StoreDataError,
    StoreParams,
    StoreUnavailableError,
    StoreView,
    Transition,
)

__all__ = [
    "DEFAULT_KEY_TTL_SECONDS",
    "Admission",
    "AdmissionKind",
    "AsyncBreakerStateStore",
    "AsyncInMemoryStateStore",
    "BreakerStateStore",
    "Command",
    "InMemoryStateStore",
    "Outcome",
    "Report",
    "StoreDataError",
    "StoreParams",
    "StoreUnavailableError",
    "StoreView",
    "Transition",
]
