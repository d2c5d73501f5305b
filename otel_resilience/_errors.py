"""Typed errors raised by the strategies themselves (never wrapping the user's errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "ResilienceError",
    "ResilienceTimeoutError",
]


class ResilienceError(Exception):
    """Base class of the errors a strategy raises instead of running the protected call."""


class CircuitOpenError(ResilienceError):
    """A circuit breaker refused the call; the protected function was not called.

    Raised as ``CircuitOpenError(breaker_name, retry_after)``.

    Attributes:
        breaker_name: the breaker that refused.
        retry_after: seconds until the breaker admits a trial call again, or ``None``
            when no automatic recovery is scheduled (forced open). A retry configured
            with ``retry_rejections=True`` honours it as a server-directed delay, so it
            waits exactly as long as the breaker needs.
    """

    # No Python-level __init__: rejections are a hot path, and BaseException's own
    # constructor storing ``args`` is a third cheaper. The attributes read ``args``.
    __slots__ = ()

    if TYPE_CHECKING:

        def __init__(self, breaker_name: str, retry_after: float | None) -> None: ...

    @property
    def breaker_name(self) -> str:
        """The breaker that refused."""
        name: str = self.args[0]
        return name

    @property
    def retry_after(self) -> float | None:
        """Seconds until a trial call may be admitted; ``None`` when forced open."""
        retry_after: float | None = self.args[1]
        return retry_after

    def __str__(self) -> str:
        retry_after = self.retry_after
        when = "no automatic recovery" if retry_after is None else f"retry after {retry_after:.3f}s"
        return f"circuit breaker {self.breaker_name!r} is open ({when})"


class BulkheadFullError(ResilienceError):
    """A bulkhead refused the call: all slots busy and the queue full, or the wait timed out.

    Attributes:
        bulkhead_name: the bulkhead that refused.
        reason: ``"queue_full"`` or ``"queue_timeout"``.
    """

    __slots__ = ("bulkhead_name", "reason")

    def __init__(self, bulkhead_name: str, reason: str) -> None:
        self.bulkhead_name = bulkhead_name
        self.reason = reason
        super().__init__(f"bulkhead {bulkhead_name!r} rejected the call ({reason})")

    def __reduce__(self) -> tuple[type[BulkheadFullError], tuple[str, str]]:
        return (type(self), (self.bulkhead_name, self.reason))


class ResilienceTimeoutError(ResilienceError, TimeoutError):
    """A call or attempt overran its :class:`~otel_resilience.Timeout`.

    Also a :class:`TimeoutError`, so ``except TimeoutError`` catches it.

    Attributes:
        timeout: the limit in seconds.
        scope: ``"attempt"`` or ``"total"``.
    """

    def __init__(self, timeout: float, scope: str) -> None:
        self.timeout = timeout
        self.scope = scope
        super().__init__(f"{scope} timeout of {timeout:g}s exceeded")

    def __reduce__(self) -> tuple[type[ResilienceTimeoutError], tuple[float, str]]:
        return (type(self), (self.timeout, self.scope))
