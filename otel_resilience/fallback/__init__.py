"""Fallback: replace a failed call's outcome with a value or a handler's answer.

:class:`Fallback` decides whether an exception or a result is replaced and produces the
replacement; the pipeline drivers run it and report ``FallbackExecuted``.
"""

from __future__ import annotations

from otel_resilience.fallback._fallback import (
    DEFAULT_FALLBACK_NAME,
    DEFAULT_FALLBACK_ON,
    Fallback,
    FallbackContext,
)

__all__ = [
    "DEFAULT_FALLBACK_NAME",
    "DEFAULT_FALLBACK_ON",
    "Fallback",
    "FallbackContext",
]
