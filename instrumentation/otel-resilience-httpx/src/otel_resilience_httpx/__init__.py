"""otel-resilience instrumentation for httpx."""
