"""otel-resilience: OpenTelemetry-native breakers, retries, fallbacks, timeouts, bulkheads."""

from __future__ import annotations
