"""Global instrumentation: every new httpx client gets the resilient transport."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import httpx
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from wrapt import wrap_function_wrapper

from otel_resilience_httpx._config import HttpResilienceConfig
from otel_resilience_httpx._core import HttpResilience
from otel_resilience_httpx._transport import wrap_transport

if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from otel_resilience import Clock, ErrorRecoveryOrchestrator
    from otel_resilience.stores import BreakerStateStore

__all__ = ["ResilientHTTPXInstrumentor"]

_INSTRUMENTS = ("httpx >= 0.24, < 1.0",)

# The seams: the private factories through which Client.__init__ builds its transport
# and its proxy mounts. Patching them, rather than __init__ or send, touches nothing but
# transport creation, and a transport passed by the caller is wrapped the same way.
_SEAMS = (
    (httpx.Client, "_init_transport"),
    (httpx.Client, "_init_proxy_transport"),
    (httpx.AsyncClient, "_init_transport"),
    (httpx.AsyncClient, "_init_proxy_transport"),
)

# One resend-count processor per SDK tracer provider, switched off on uninstrument
# (an SDK provider cannot remove a span processor).
_RESEND_PROCESSORS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_RESEND_LOCK = threading.Lock()


class ResilientHTTPXInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Makes every httpx client created from now on resilient (sync and async).

    Loaded by ``opentelemetry-instrument`` through the ``opentelemetry_instrumentor``
    entry point, with its configuration from ``OTEL_RESILIENCE_HTTPX_*`` variables
    (:meth:`HttpResilienceConfig.from_env`). All instrumented clients share one
    :class:`HttpResilience`, so one breaker per authority for the whole process.

    It patches ``httpx.Client._init_transport`` and ``_init_proxy_transport`` (and the
    ``AsyncClient`` ones): the factories that build each client's transports, so each
    new client's transports, the ones passed as ``transport=`` and ``mounts`` included,
    are wrapped in :class:`ResilientTransport` / :class:`AsyncResilientTransport`.
    ``uninstrument()`` restores the factories and switches the transports of clients
    made meanwhile to pass-through.

    With an SDK tracer provider, it also adds (once) a span processor that sets
    ``http.request.resend_count`` on the HTTP CLIENT spans of retried attempts, as
    :class:`~otel_resilience.telemetry.sdk.ResendCountSpanProcessor` does; it is inert
    while uninstrumented.

    Example:
        >>> instrumentor = ResilientHTTPXInstrumentor()
        >>> instrumentor.instrument(config=HttpResilienceConfig(max_attempts=2))
        >>> type(httpx.Client()._transport).__name__
        'ResilientTransport'
        >>> instrumentor.uninstrument()
        >>> type(httpx.Client()._transport).__name__
        'HTTPTransport'
    """

    _resilience: HttpResilience | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        """Return the httpx versions this instruments."""
        return _INSTRUMENTS

    def instrument(
        self,
        *,
        config: HttpResilienceConfig | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        orchestrator: ErrorRecoveryOrchestrator | None = None,
        store: BreakerStateStore | None = None,
        clock: Clock | None = None,
        wall_clock: Callable[[], float] | None = None,
        resend_count: bool = True,
        skip_dep_check: bool = False,
    ) -> None:
        """Patch httpx (idempotent: a second call while instrumented does nothing).

        Args:
            config: the configuration; by default read from ``OTEL_RESILIENCE_HTTPX_*``.
            tracer_provider: report spans there instead of the global provider.
            meter_provider: report metrics there instead of the global provider.
            orchestrator: an error-recovery orchestrator consulted on failed attempts.
            store: a blocking shared state store for the per-authority breakers (the
                patched clients may be sync or async, so an asyncio store would not do).
            clock: time source of timeouts, waits and breakers (tests use a FakeClock).
            wall_clock: seconds since the epoch, for ``Retry-After`` dates.
            resend_count: add the resend-count span processor to an SDK tracer provider.
            skip_dep_check: instrument even if the httpx version is not supported.
        """
        super().instrument(
            config=config,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            orchestrator=orchestrator,
            store=store,
            clock=clock,
            wall_clock=wall_clock,
            resend_count=resend_count,
            skip_dep_check=skip_dep_check,
        )

    @property
    def resilience(self) -> HttpResilience | None:
        """The shared state of the instrumented clients, while instrumented."""
        return self._resilience

    def _instrument(self, **kwargs: Any) -> None:
        config = kwargs.get("config")
        if config is None:
            config = HttpResilienceConfig.from_env()
        tracer_provider = kwargs.get("tracer_provider")
        resilience = HttpResilience(
            config,
            clock=kwargs.get("clock"),
            wall_clock=kwargs.get("wall_clock"),
            tracer_provider=tracer_provider,
            meter_provider=kwargs.get("meter_provider"),
            orchestrator=kwargs.get("orchestrator"),
            store=kwargs.get("store"),
        )
        self._resilience = resilience

        def wrapper(wrapped: Callable[..., Any], instance: object, args: Any, kwargs: Any) -> Any:
            transport = wrapped(*args, **kwargs)
            if not is_instrumentation_enabled() or not resilience.enabled:
                return transport
            return wrap_transport(transport, resilience)

        for owner, name in _SEAMS:
            wrap_function_wrapper(owner, name, wrapper)
        if kwargs.get("resend_count", True):
            _enable_resend_count(tracer_provider or trace.get_tracer_provider())

    def _uninstrument(self, **kwargs: Any) -> None:
        for owner, name in _SEAMS:
            unwrap(owner, name)
        if self._resilience is not None:
            self._resilience.enabled = False
            self._resilience = None
        with _RESEND_LOCK:
            for processor in _RESEND_PROCESSORS.values():
                processor.active = False


def _enable_resend_count(provider: object) -> None:
    add = getattr(provider, "add_span_processor", None)
    if add is None:
        return  # the API's no-op or proxy provider: nothing records spans
    from otel_resilience_httpx._resend import SwitchableResendCountProcessor  # noqa: PLC0415

    with _RESEND_LOCK:
        processor = _RESEND_PROCESSORS.get(provider)
        if processor is None:
            processor = SwitchableResendCountProcessor()
            _RESEND_PROCESSORS[provider] = processor
            fresh = True
        else:
            fresh = False
        processor.active = True
    if fresh:
        add(processor)
