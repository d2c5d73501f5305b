"""Bulkhead: limit concurrent calls, with an optional bounded FIFO wait queue.

:class:`Bulkhead` is the sans-IO core; the pipeline drivers wait on the waiter objects it
queues and raise :class:`~otel_resilience.BulkheadFullError` on rejection.
"""

from __future__ import annotations

from otel_resilience.bulkhead._bulkhead import (
    BULKHEAD_REJECTION_REASONS,
    DEFAULT_BULKHEAD_NAME,
    DEFAULT_MAX_QUEUE,
    DEFAULT_QUEUE_TIMEOUT,
    Admission,
    Bulkhead,
    BulkheadWaiter,
)

__all__ = [
    "BULKHEAD_REJECTION_REASONS",
    "DEFAULT_BULKHEAD_NAME",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_QUEUE_TIMEOUT",
    "Admission",
    "Bulkhead",
    "BulkheadWaiter",
]
