"""Helpers for testing code that uses otel-resilience, and for testing otel-resilience.

- :class:`FakeClock`: inject it as ``clock=``; sleeping advances fake time at once.
"""

from __future__ import annotations

from otel_resilience.testing._fake_clock import FakeClock

__all__ = ["FakeClock"]
