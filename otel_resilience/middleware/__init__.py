"""The wrapt middleware: the ``resilient`` decorator, and patching functions by path."""

from __future__ import annotations

from otel_resilience.middleware._resilient import ResilientFunction, resilient, unwrap, wrap

__all__ = ["ResilientFunction", "resilient", "unwrap", "wrap"]
