"""Telemetry on by default: which listener a pipeline, breaker or bulkhead reports to."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from otel_resilience.telemetry._listener import OpenTelemetryListener

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from otel_resilience._events import ResilienceListener

__all__ = ["default_listener", "listener_for", "resolve_listener", "track"]

_default: OpenTelemetryListener | None = None
_lock = threading.Lock()


def default_listener() -> OpenTelemetryListener:
    """The process-wide :class:`OpenTelemetryListener` on the global providers.

    Like every OpenTelemetry instrumentation, it records nothing until the application
    sets up an SDK (for instance with :func:`otel_resilience.telemetry.configure_telemetry`),
    and everything from then on.
    """
    global _default  # noqa: PLW0603 - one adapter for the global providers, made lazily
    if _default is None:
        with _lock:
            if _default is None:
                _default = OpenTelemetryListener()
    return _default


def resolve_listener(
    owner: str,
    listener: ResilienceListener | None,
    *,
    telemetry: bool,
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
) -> ResilienceListener | None:
    """The listener a strategy reports to, from its constructor's arguments.

    An explicit ``listener`` wins; otherwise ``telemetry=False`` means none, explicit
    providers get their own :class:`OpenTelemetryListener`, and the default is the
    process-wide one.
    """
    if not isinstance(telemetry, bool):
        raise TypeError(f"{owner}.telemetry must be a bool, got {telemetry!r}")
    explicit = tracer_provider is not None or meter_provider is not None
    if listener is not None:
        if explicit:
            raise TypeError(f"{owner} takes a listener or tracer_provider/meter_provider, not both")
        return listener
    if not telemetry:
        if explicit:
            raise TypeError(f"{owner}: providers given but telemetry=False")
        return None
    if explicit:
        return listener_for(tracer_provider, meter_provider)
    return default_listener()


_by_providers: dict[tuple[int, int], tuple[object, object, OpenTelemetryListener]] = {}


def listener_for(
    tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
) -> OpenTelemetryListener:
    """The one :class:`OpenTelemetryListener` of a pair of providers.

    Shared, because a meter keeps the first registration of an instrument name: a second
    adapter on the same meter provider would register callbacks that are never called.
    """
    key = (id(tracer_provider), id(meter_provider))
    with _lock:
        entry = _by_providers.get(key)
        # The providers are kept in the entry, so their ids cannot be reused meanwhile.
        if entry is not None and entry[0] is tracer_provider and entry[1] is meter_provider:
            return entry[2]
        listener = OpenTelemetryListener(
            tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        _by_providers[key] = (tracer_provider, meter_provider, listener)
        return listener


def track(listener: object, component: object) -> None:
    """Let ``listener`` observe ``component`` at metric collection time, if it can."""
    observe = getattr(listener, "track", None)
    if observe is not None:
        observe(component)
