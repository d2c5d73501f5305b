"""Retry: whether and when to try again, and a budget shared across calls."""

from __future__ import annotations

from otel_resilience.retry._budget import RetryBudget
from otel_resilience.retry._retry import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RETRY_AFTER,
    Retry,
    RetryConfig,
    RetryState,
    read_retry_after,
)

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_RETRY_AFTER",
    "Retry",
    "RetryBudget",
    "RetryConfig",
    "RetryState",
    "read_retry_after",
]
