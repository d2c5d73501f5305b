"""The circuit breaker's states."""

from __future__ import annotations

import enum

__all__ = ["CircuitState"]


class CircuitState(enum.Enum):
    """Where a circuit breaker stands.

    ``CLOSED``, ``OPEN`` and ``HALF_OPEN`` are the automatic states. ``FORCED_OPEN`` and
    ``DISABLED`` are set by an operator (:meth:`CircuitBreaker.force_open`,
    :meth:`CircuitBreaker.disable`) and left only by :meth:`CircuitBreaker.reset`.
    The value is the lower-case name used in telemetry attributes.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"
