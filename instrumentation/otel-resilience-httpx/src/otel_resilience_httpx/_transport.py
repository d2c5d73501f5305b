"""Resilient httpx transports (sync and async) and per-client instrumentation."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, overload

import httpx
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from otel_resilience import CircuitOpenError, Clock, remaining
from otel_resilience_httpx._config import HttpResilienceConfig, authority_key
from otel_resilience_httpx._core import (
    HttpResilience,
    TimeoutMap,
    capped_timeouts,
    redirect,
    response_of,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from otel_resilience import ErrorRecoveryOrchestrator

__all__ = [
    "AsyncResilientTransport",
    "ResilientTransport",
    "instrument_client",
    "uninstrument_client",
]

ClientT = TypeVar("ClientT", httpx.Client, httpx.AsyncClient)


def _resilience(
    owner: str,
    config: HttpResilienceConfig | None,
    resilience: HttpResilience | None,
    clock: Clock | None,
    wall_clock: Callable[[], float] | None,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    orchestrator: ErrorRecoveryOrchestrator | None,
) -> HttpResilience:
    if resilience is None:
        return HttpResilience(
            config,
            clock=clock,
            wall_clock=wall_clock,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            orchestrator=orchestrator,
        )
    if not isinstance(resilience, HttpResilience):
        raise TypeError(
            f"{owner}.resilience must be an HttpResilience, got {type(resilience).__name__}"
        )
    given = (config, clock, wall_clock, tracer_provider, meter_provider, orchestrator)
    if any(value is not None for value in given):
        raise ValueError(
            f"{owner}: pass either resilience or config/clock/providers/orchestrator, not both"
        )
    return resilience


def _timeouts(request: httpx.Request) -> TimeoutMap | None:
    value = request.extensions.get("timeout")
    return value if isinstance(value, dict) else None


class ResilientTransport(httpx.BaseTransport):
    """An httpx transport that retries, breaks circuits per authority and fails over.

    Wraps ``transport`` (default: a new :class:`httpx.HTTPTransport`). Each request runs
    through the pipeline of its authority: total timeout, retry (idempotent methods only,
    on transport errors and on ``config.retry_statuses``, honouring ``Retry-After``), the
    authority's circuit breaker, attempt timeout. A retried response is read and closed
    before the next attempt; when retries run out, the last response is returned as is.
    While the authority's breaker is open, the request goes to the failover alternates
    in order; with none left, :class:`~otel_resilience.CircuitOpenError` is raised.

    Each attempt calls the inner transport once, so an HTTP instrumentation of the inner
    transport (opentelemetry-instrumentation-httpx) makes one CLIENT span per attempt,
    nested in the pipeline's attempt span.

    Sync timeouts are cooperative: the remaining time caps the httpx connect, read,
    write and pool timeouts of each attempt.

    Args:
        transport: the transport that does the I/O.
        config: the :class:`HttpResilienceConfig`.
        resilience: an :class:`HttpResilience` to share breakers with other transports
            (instead of ``config`` and the arguments below).
        clock: time source (default: the system clock).
        wall_clock: seconds since the epoch, for ``Retry-After`` dates.
        tracer_provider: report spans there instead of the global provider.
        meter_provider: report metrics there instead of the global provider.
        orchestrator: an error-recovery orchestrator consulted on failed attempts.

    Example:
        >>> import httpx
        >>> statuses = iter([503, 200])
        >>> inner = httpx.MockTransport(lambda request: httpx.Response(next(statuses)))
        >>> config = HttpResilienceConfig(backoff=__import__(
        ...     "otel_resilience").backoff.Constant(seconds=0.0))
        >>> with httpx.Client(transport=ResilientTransport(inner, config=config)) as client:
        ...     client.get("http://inventory.internal/items").status_code
        200
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        config: HttpResilienceConfig | None = None,
        resilience: HttpResilience | None = None,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        orchestrator: ErrorRecoveryOrchestrator | None = None,
    ) -> None:
        if transport is None:
            transport = httpx.HTTPTransport()
        elif not isinstance(transport, httpx.BaseTransport):
            raise TypeError(
                "ResilientTransport.transport must be an httpx.BaseTransport, "
                f"got {type(transport).__name__}"
            )
        self.transport = transport
        """The wrapped transport."""
        self.resilience = _resilience(
            "ResilientTransport",
            config,
            resilience,
            clock,
            wall_clock,
            tracer_provider,
            meter_provider,
            orchestrator,
        )
        """The shared state: breakers, pipelines, config."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its authority's pipeline, failing over if needed."""
        resilience = self.resilience
        if not resilience.enabled or not is_instrumentation_enabled():
            return self.transport.handle_request(request)
        authority = authority_key(request.url)
        try:
            return self._run(authority, request)
        except CircuitOpenError as rejected:
            for base in resilience.alternates(authority):
                moved = redirect(request, base)
                try:
                    return self._run(authority_key(moved.url), moved)
                except CircuitOpenError:
                    continue
            raise rejected from None

    def _run(self, authority: str, request: httpx.Request) -> httpx.Response:
        pipeline = self.resilience.pipeline(authority, request.method)
        try:
            return pipeline.call(self._attempt, request, _timeouts(request))
        except Exception as error:
            response = response_of(error)
            if response is None:
                raise
            return response

    def _attempt(self, request: httpx.Request, timeouts: TimeoutMap | None) -> httpx.Response:
        left = remaining()
        if left is not None:
            request.extensions = {**request.extensions, "timeout": capped_timeouts(timeouts, left)}
        response = self.transport.handle_request(request)
        kind = self.resilience.failure(request, response)
        if kind is None:
            return response
        try:
            response.read()
        finally:
            response.close()
        raise self.resilience.signal(kind, request, response)

    def close(self) -> None:
        """Close the wrapped transport."""
        self.transport.close()


class AsyncResilientTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`ResilientTransport`, for :class:`httpx.AsyncClient`.

    Same arguments and behaviour; timeouts cancel the attempt (the remaining time also
    caps httpx's own timeouts). Default inner transport: :class:`httpx.AsyncHTTPTransport`.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        config: HttpResilienceConfig | None = None,
        resilience: HttpResilience | None = None,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        orchestrator: ErrorRecoveryOrchestrator | None = None,
    ) -> None:
        if transport is None:
            transport = httpx.AsyncHTTPTransport()
        elif not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(
                "AsyncResilientTransport.transport must be an httpx.AsyncBaseTransport, "
                f"got {type(transport).__name__}"
            )
        self.transport = transport
        """The wrapped transport."""
        self.resilience = _resilience(
            "AsyncResilientTransport",
            config,
            resilience,
            clock,
            wall_clock,
            tracer_provider,
            meter_provider,
            orchestrator,
        )
        """The shared state: breakers, pipelines, config."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its authority's pipeline, failing over if needed."""
        resilience = self.resilience
        if not resilience.enabled or not is_instrumentation_enabled():
            return await self.transport.handle_async_request(request)
        authority = authority_key(request.url)
        try:
            return await self._run(authority, request)
        except CircuitOpenError as rejected:
            for base in resilience.alternates(authority):
                moved = redirect(request, base)
                try:
                    return await self._run(authority_key(moved.url), moved)
                except CircuitOpenError:
                    continue
            raise rejected from None

    async def _run(self, authority: str, request: httpx.Request) -> httpx.Response:
        pipeline = self.resilience.pipeline(authority, request.method)
        try:
            return await pipeline.acall(self._attempt, request, _timeouts(request))
        except Exception as error:
            response = response_of(error)
            if response is None:
                raise
            return response

    async def _attempt(self, request: httpx.Request, timeouts: TimeoutMap | None) -> httpx.Response:
        left = remaining()
        if left is not None:
            request.extensions = {**request.extensions, "timeout": capped_timeouts(timeouts, left)}
        response = await self.transport.handle_async_request(request)
        kind = self.resilience.failure(request, response)
        if kind is None:
            return response
        try:
            await response.aread()
        finally:
            await response.aclose()
        raise self.resilience.signal(kind, request, response)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.transport.aclose()


def instrument_client(
    client: ClientT,
    *,
    config: HttpResilienceConfig | None = None,
    resilience: HttpResilience | None = None,
    clock: Clock | None = None,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    orchestrator: ErrorRecoveryOrchestrator | None = None,
) -> ClientT:
    """Make an existing client resilient: wrap its transport and its mounted transports.

    Idempotent: a client already wrapped is left as it is. All its transports share one
    :class:`HttpResilience` (so one breaker per authority). Returns ``client``.
    :func:`uninstrument_client` undoes it.

    Example:
        >>> import httpx
        >>> client = instrument_client(httpx.Client(), config=HttpResilienceConfig())
        >>> type(client._transport).__name__
        'ResilientTransport'
        >>> client.close()
    """
    if not isinstance(client, httpx.Client | httpx.AsyncClient):
        raise TypeError(
            f"instrument_client expects an httpx.Client or AsyncClient, got {type(client).__name__}"
        )
    shared = _resilience(
        "instrument_client",
        config,
        resilience,
        clock,
        None,
        tracer_provider,
        meter_provider,
        orchestrator,
    )
    if isinstance(client, httpx.Client):
        client._transport = wrap_transport(client._transport, shared)
        client._mounts = {
            pattern: None if inner is None else wrap_transport(inner, shared)
            for pattern, inner in client._mounts.items()
        }
    else:
        client._transport = wrap_transport(client._transport, shared)
        client._mounts = {
            pattern: None if inner is None else wrap_transport(inner, shared)
            for pattern, inner in client._mounts.items()
        }
    return client


def uninstrument_client(client: httpx.Client | httpx.AsyncClient) -> None:
    """Give ``client`` back its original transports (no-op for a plain client)."""
    if isinstance(client, httpx.Client):
        client._transport = unwrap_transport(client._transport)
        client._mounts = {
            pattern: None if inner is None else unwrap_transport(inner)
            for pattern, inner in client._mounts.items()
        }
    else:
        client._transport = unwrap_transport(client._transport)
        client._mounts = {
            pattern: None if inner is None else unwrap_transport(inner)
            for pattern, inner in client._mounts.items()
        }


@overload
def wrap_transport(
    transport: httpx.BaseTransport, resilience: HttpResilience
) -> httpx.BaseTransport: ...
@overload
def wrap_transport(
    transport: httpx.AsyncBaseTransport, resilience: HttpResilience
) -> httpx.AsyncBaseTransport: ...
def wrap_transport(
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport, resilience: HttpResilience
) -> httpx.BaseTransport | httpx.AsyncBaseTransport:
    """Return ``transport`` wrapped with ``resilience`` (unchanged if already resilient)."""
    if isinstance(transport, ResilientTransport | AsyncResilientTransport):
        return transport
    if isinstance(transport, httpx.BaseTransport):
        return ResilientTransport(transport, resilience=resilience)
    return AsyncResilientTransport(transport, resilience=resilience)


@overload
def unwrap_transport(transport: httpx.BaseTransport) -> httpx.BaseTransport: ...
@overload
def unwrap_transport(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport: ...
def unwrap_transport(
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport,
) -> httpx.BaseTransport | httpx.AsyncBaseTransport:
    """Return the transport inside a resilient one (``transport`` itself otherwise)."""
    if isinstance(transport, ResilientTransport | AsyncResilientTransport):
        return transport.transport
    return transport
