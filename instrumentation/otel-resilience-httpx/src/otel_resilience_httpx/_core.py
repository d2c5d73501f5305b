"""The decisions shared by the sync and async transports: routes, statuses, failover."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import httpx
from opentelemetry import trace

from otel_resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerRegistry,
    Clock,
    Pipeline,
    ResilienceTimeoutError,
    RetryConfig,
)
from otel_resilience._clock import SYSTEM_CLOCK, wall_time
from otel_resilience.telemetry import listener_for
from otel_resilience_httpx._config import HttpResilienceConfig, authority_key
from otel_resilience_httpx._errors import (
    ResponseStatusError,
    RetryableStatusError,
    UnhealthyStatusError,
)
from otel_resilience_httpx._retry_after import parse_retry_after

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from otel_resilience import ErrorRecoveryOrchestrator
    from otel_resilience.stores import AsyncBreakerStateStore, BreakerStateStore

__all__ = ["HttpResilience", "TimeoutMap"]

TimeoutMap = Mapping[str, float | None]
"""httpx's per-request timeouts (``request.extensions["timeout"]``)."""

_STATUS_ATTRIBUTE = "http.response.status_code"


class _Route:
    """The pipelines of one authority, sharing its breaker."""

    __slots__ = ("breaker", "retrying", "single")

    def __init__(self, breaker: CircuitBreaker, retrying: Pipeline, single: Pipeline) -> None:
        self.breaker = breaker
        self.retrying = retrying
        self.single = single


class HttpResilience:
    """The state behind resilient transports: per-authority breakers and pipelines.

    One instance is shared by every transport it is given to, so all clients that call
    the same authority share that authority's breaker. The breakers live in a bounded
    :class:`~otel_resilience.CircuitBreakerRegistry` (``config.max_breakers``).

    Args:
        config: the :class:`HttpResilienceConfig` (default: ``HttpResilienceConfig()``).
        clock: time source of timeouts, retry waits and breakers (default: system clock).
        wall_clock: seconds since the epoch, for ``Retry-After`` HTTP-dates.
        tracer_provider: report spans there instead of the global provider.
        meter_provider: report metrics there instead of the global provider.
        orchestrator: an :class:`~otel_resilience.ErrorRecoveryOrchestrator` consulted
            on every failed attempt (it reads ``http.response.status_code`` from the
            attempt span to classify 429 and 503 LOW, other 5xx MEDIUM).
        store: keep the per-authority breakers' state in this shared store (for example
            ``otel_resilience.stores.redis.RedisStateStore``), so every process calling
            an authority shares one breaker for it. A blocking store serves both
            transports; an asyncio store only :class:`AsyncResilientTransport`.

    Example:
        >>> resilience = HttpResilience(HttpResilienceConfig(max_attempts=2))
        >>> resilience.breaker("http://127.0.0.1:9/").name
        'httpx http://127.0.0.1:9'
    """

    __slots__ = (
        "_breaker_config",
        "_lock",
        "_meter_provider",
        "_orchestrator",
        "_retry",
        "_routes",
        "_tracer_provider",
        "clock",
        "config",
        "enabled",
        "registry",
        "wall_clock",
    )

    def __init__(
        self,
        config: HttpResilienceConfig | None = None,
        *,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        orchestrator: ErrorRecoveryOrchestrator | None = None,
        store: BreakerStateStore | AsyncBreakerStateStore | None = None,
    ) -> None:
        if config is None:
            config = HttpResilienceConfig()
        elif not isinstance(config, HttpResilienceConfig):
            raise TypeError(
                f"HttpResilience.config must be an HttpResilienceConfig, "
                f"got {type(config).__name__}"
            )
        self.config = config
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self.wall_clock: Callable[[], float] = wall_clock if wall_clock is not None else wall_time
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._orchestrator = orchestrator
        self._breaker_config = CircuitBreakerConfig(
            failure_threshold=config.failure_threshold,
            timeout_seconds=config.breaker_timeout,
            # A 408 is retried, yet says nothing about the server's health.
            ignore_exceptions=(RetryableStatusError,),
        )
        explicit = tracer_provider is not None or meter_provider is not None
        self.registry = CircuitBreakerRegistry(
            default_config=self._breaker_config,
            max_breakers=config.max_breakers,
            clock=self.clock,
            # With explicit providers the breakers report there too, like the pipelines.
            listener=listener_for(tracer_provider, meter_provider) if explicit else None,
            # A shared store: one breaker per authority for every process using it.
            store=store,
        )
        self._retry = RetryConfig(
            max_attempts=config.max_attempts,
            backoff=config.backoff,
            retry_on=_is_retryable,
            max_retry_after=config.max_retry_after,
        )
        self._routes: OrderedDict[str, _Route] = OrderedDict()
        self._lock = threading.Lock()
        self.enabled = True
        """While ``False`` the transports pass requests straight through."""

    def breaker_name(self, authority: str) -> str:
        """Return the breaker name of ``authority`` (``scheme://host:port``)."""
        return f"{self.config.name} {authority}"

    def breaker(self, url: httpx.URL | str) -> CircuitBreaker:
        """Return the circuit breaker of ``url``'s authority (created on first use)."""
        return self.registry.get(self.breaker_name(authority_key(url)))

    def pipeline(self, authority: str, method: str) -> Pipeline:
        """Return the pipeline for ``method`` requests to ``authority``.

        Methods outside ``config.retry_methods`` get a pipeline without retry, sharing the
        authority's breaker and timeouts.
        """
        breaker = self.registry.get(self.breaker_name(authority))
        route = self._routes.get(authority)
        if route is None or route.breaker is not breaker:
            route = self._new_route(authority, breaker)
        return route.retrying if method in self.config.retry_methods else route.single

    def _new_route(self, authority: str, breaker: CircuitBreaker) -> _Route:
        config = self.config

        def build(retry: RetryConfig | None) -> Pipeline:
            return Pipeline(
                name=config.name,
                timeout=config.total_timeout,
                retry=retry,
                circuit_breaker=breaker,
                attempt_timeout=config.attempt_timeout,
                clock=self.clock,
                tracer_provider=self._tracer_provider,
                meter_provider=self._meter_provider,
                orchestrator=self._orchestrator,
                component=authority,
            )

        route = _Route(breaker, build(self._retry), build(None))
        with self._lock:
            self._routes[authority] = route
            self._routes.move_to_end(authority)
            # The registry bounds the breakers; this keeps the pipelines bounded with them.
            while len(self._routes) > config.max_breakers:
                self._routes.popitem(last=False)
        return route

    def alternates(self, authority: str) -> tuple[str, ...]:
        """Return the failover base URLs of ``authority``, in order (may be empty)."""
        failover = self.config.failover.get(authority)
        return () if failover is None else failover.alternates

    def failure(
        self, request: httpx.Request, response: httpx.Response
    ) -> type[ResponseStatusError] | None:
        """Mark the attempt span with the status; return the signal a bad status raises."""
        status = response.status_code
        span = trace.get_current_span()
        if span.is_recording():
            # The orchestrator classifies the failed attempt from this attribute.
            span.set_attribute(_STATUS_ATTRIBUTE, status)
        config = self.config
        if status in config.failure_statuses:
            return UnhealthyStatusError
        if status in config.retry_statuses and request.method in config.retry_methods:
            return RetryableStatusError
        return None

    def signal(
        self, kind: type[ResponseStatusError], request: httpx.Request, response: httpx.Response
    ) -> ResponseStatusError:
        """Build the signal for a response whose body has been read."""
        retryable = (
            response.status_code in self.config.retry_statuses
            and request.method in self.config.retry_methods
        )
        retry_after = (
            parse_retry_after(response.headers.get("retry-after"), self.wall_clock)
            if retryable
            else None
        )
        return kind(response, retryable=retryable, retry_after=retry_after)


def _is_retryable(error: BaseException) -> bool:
    if isinstance(error, httpx.TransportError):
        return True
    if isinstance(error, ResponseStatusError):
        return error.retryable
    return isinstance(error, ResilienceTimeoutError) and error.scope == "attempt"


def capped_timeouts(timeouts: TimeoutMap | None, left: float) -> dict[str, float | None]:
    """Return httpx timeouts no longer than ``left`` seconds (the pipeline's deadline)."""
    if not timeouts:
        return {"connect": left, "read": left, "write": left, "pool": left}
    return {
        key: left if value is None or value > left else value for key, value in timeouts.items()
    }


def redirect(request: httpx.Request, base: str) -> httpx.Request:
    """Return ``request`` sent to the base URL ``base`` instead of its own authority."""
    base_url = httpx.URL(base)
    prefix = base_url.raw_path.split(b"?", 1)[0].rstrip(b"/")
    url = request.url.copy_with(
        scheme=base_url.scheme,
        host=base_url.host,
        port=base_url.port,
        raw_path=prefix + request.url.raw_path,
    )
    headers = request.headers.copy()
    headers["Host"] = url.netloc.decode("ascii")
    return httpx.Request(
        request.method,
        url,
        headers=headers,
        stream=request.stream,
        extensions=dict(request.extensions),
    )


def response_of(error: BaseException) -> httpx.Response | None:
    """Return the response a request should end with, when ``error`` carries one.

    A status signal carries the last response; so does a total timeout whose cause is one
    (the next wait would have outlasted the deadline): the caller gets that response.
    """
    if isinstance(error, ResponseStatusError):
        return error.response
    if (
        isinstance(error, ResilienceTimeoutError)
        and error.scope == "total"
        and isinstance(error.__cause__, ResponseStatusError)
    ):
        return error.__cause__.response
    return None
