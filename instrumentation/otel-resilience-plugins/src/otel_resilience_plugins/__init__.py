"""otel-resilience instrumentation for plugin entry points and configured functions.

:class:`ResilientPluginsInstrumentor` protects the callables and classes loaded from
configured entry-point groups with a pipeline and circuit breaker per plugin, and patches
the functions named in a TOML file (``OTEL_RESILIENCE_CONFIG``). ``opentelemetry-instrument``
loads it automatically through its ``opentelemetry_instrumentor`` entry point.
"""

from __future__ import annotations

from otel_resilience_plugins._config import (
    CONFIG_ENV,
    DEFAULT_BREAKER_TIMEOUT,
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_MAX_ATTEMPTS,
    GROUPS_ENV,
    METHODS_ENV,
    PluginPolicy,
    ResilienceFileConfig,
    WrapTarget,
    load_config,
)
from otel_resilience_plugins._instrumentor import (
    MAX_CACHED_PLUGINS,
    ResilientPluginClass,
    ResilientPluginsInstrumentor,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_BREAKER_TIMEOUT",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_MAX_ATTEMPTS",
    "GROUPS_ENV",
    "MAX_CACHED_PLUGINS",
    "METHODS_ENV",
    "PluginPolicy",
    "ResilienceFileConfig",
    "ResilientPluginClass",
    "ResilientPluginsInstrumentor",
    "WrapTarget",
    "load_config",
]
