"""Signals that carry a failed response through the pipeline."""

from __future__ import annotations

import httpx

__all__ = ["ResponseStatusError", "RetryableStatusError", "UnhealthyStatusError"]


class ResponseStatusError(Exception):
    """A response whose status asks for a retry or marks the server unhealthy.

    The resilient transport raises it inside an attempt so that the retry and the circuit
    breaker see the status like any failure, and catches it again outside the pipeline:
    the caller gets the (read and closed) response itself, never this error. It is seen
    only as the ``__cause__`` of a timeout, and as ``error.type`` on attempt spans.

    Attributes:
        response: the response, its body already read.
        status_code: the response's status.
        retryable: whether the retry may try again (method and status both allow it).
        retry_after: the server's ``Retry-After`` in seconds, or ``None``.
    """

    __slots__ = ("resilience_attributes", "response", "retry_after", "retryable", "status_code")

    def __init__(
        self, response: httpx.Response, *, retryable: bool, retry_after: float | None
    ) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.status_code = response.status_code
        self.retryable = retryable
        self.retry_after = retry_after
        # Read by pipelines for the orchestrator's severity rules, even without a
        # recording span (see otel_resilience.ErrorContext attributes).
        self.resilience_attributes = {"http.response.status_code": response.status_code}


class UnhealthyStatusError(ResponseStatusError):
    """A status the per-authority breaker counts as a failure (by default 429 and 5xx)."""


class RetryableStatusError(ResponseStatusError):
    """A retried status that says nothing about the server's health (408 by default).

    The breaker ignores it: it counts as neither success nor failure.
    """
