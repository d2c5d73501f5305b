"""otel-resilience instrumentation for plugins."""
