"""OpenTelemetry for otel-resilience: spans and metrics from the engine's listener seam.

Telemetry is on by default through the global OpenTelemetry providers; it records nothing
until the application sets up an SDK. Every name emitted is in
:mod:`otel_resilience.telemetry.names`. The SDK set-up helper, ``configure_telemetry``,
lives in :mod:`otel_resilience.telemetry.sdk` (``pip install otel-resilience[sdk]``).
"""

from __future__ import annotations

from otel_resilience.telemetry import names
from otel_resilience.telemetry._default import default_listener, listener_for
from otel_resilience.telemetry._listener import (
    ATTEMPT_CONTEXT_KEY,
    OpenTelemetryListener,
    current_attempt,
)
from otel_resilience.telemetry._text import DEFAULT_MAX_TEXT_BYTES, error_message, truncate

__all__ = [
    "ATTEMPT_CONTEXT_KEY",
    "DEFAULT_MAX_TEXT_BYTES",
    "OpenTelemetryListener",
    "current_attempt",
    "default_listener",
    "error_message",
    "listener_for",
    "names",
    "truncate",
]
