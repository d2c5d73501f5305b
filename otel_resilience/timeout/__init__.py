"""Timeout: limit how long a call or each attempt may run, and share the deadline.

:class:`Timeout` is the configuration the pipeline drivers enforce. Code running under a
timeout reads what is left of it with :func:`remaining` (cooperative cancellation: pass
it on as an I/O timeout, or stop early).
"""

from __future__ import annotations

from otel_resilience.timeout._timeout import (
    DEADLINE,
    DEFAULT_TIMEOUT_NAME,
    TIMEOUT_SCOPES,
    Deadline,
    Timeout,
    current_deadline,
    deadline_scope,
    remaining,
)

__all__ = [
    "DEADLINE",
    "DEFAULT_TIMEOUT_NAME",
    "TIMEOUT_SCOPES",
    "Deadline",
    "Timeout",
    "current_deadline",
    "deadline_scope",
    "remaining",
]
