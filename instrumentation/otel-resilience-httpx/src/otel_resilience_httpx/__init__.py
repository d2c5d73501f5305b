"""Resilient httpx clients, traced with OpenTelemetry.

Per client: ``httpx.Client(transport=ResilientTransport(config=...))``, its async twin
:class:`AsyncResilientTransport`, or :func:`instrument_client` on an existing client.
Globally: :class:`ResilientHTTPXInstrumentor`, loaded by ``opentelemetry-instrument``
and configured from ``OTEL_RESILIENCE_HTTPX_*`` variables.
"""

from __future__ import annotations

from otel_resilience_httpx._config import (
    DEFAULT_ATTEMPT_TIMEOUT,
    DEFAULT_BREAKER_TIMEOUT,
    DEFAULT_FAILURE_STATUSES,
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BREAKERS,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RETRY_METHODS,
    DEFAULT_RETRY_STATUSES,
    DEFAULT_TOTAL_TIMEOUT,
    ENV_PREFIX,
    HttpResilienceConfig,
    authority_key,
)
from otel_resilience_httpx._core import HttpResilience
from otel_resilience_httpx._errors import (
    ResponseStatusError,
    RetryableStatusError,
    UnhealthyStatusError,
)
from otel_resilience_httpx._instrumentor import ResilientHTTPXInstrumentor
from otel_resilience_httpx._retry_after import parse_retry_after
from otel_resilience_httpx._transport import (
    AsyncResilientTransport,
    ResilientTransport,
    instrument_client,
    uninstrument_client,
)

__all__ = [
    "DEFAULT_ATTEMPT_TIMEOUT",
    "DEFAULT_BREAKER_TIMEOUT",
    "DEFAULT_FAILURE_STATUSES",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_BREAKERS",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_RETRY_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "DEFAULT_TOTAL_TIMEOUT",
    "ENV_PREFIX",
    "AsyncResilientTransport",
    "HttpResilience",
    "HttpResilienceConfig",
    "ResilientHTTPXInstrumentor",
    "ResilientTransport",
    "ResponseStatusError",
    "RetryableStatusError",
    "UnhealthyStatusError",
    "authority_key",
    "instrument_client",
    "parse_retry_after",
    "uninstrument_client",
]
