"""The pipeline and its two drivers (sync and async)."""

from __future__ import annotations

from otel_resilience.pipeline._pipeline import Pipeline

__all__ = ["Pipeline"]
