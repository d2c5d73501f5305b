"""A resend-count span processor that uninstrumentation can switch off (needs the SDK)."""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span

from otel_resilience.telemetry.sdk import ResendCountSpanProcessor

__all__ = ["SwitchableResendCountProcessor"]


class SwitchableResendCountProcessor(ResendCountSpanProcessor):
    """:class:`ResendCountSpanProcessor` that does nothing while ``active`` is false."""

    def __init__(self) -> None:
        super().__init__()
        self.active = True

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Mark resent HTTP client spans while active."""
        if self.active:
            super().on_start(span, parent_context)
