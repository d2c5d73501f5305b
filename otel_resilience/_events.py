"""The telemetry seam: typed engine events and the listener protocols that receive them.

Strategies and drivers never talk to OpenTelemetry directly. They report to a
:class:`ResilienceListener`: per call through the :class:`CallObserver` it returns from
:meth:`ResilienceListener.start_call`, and for everything else through
:meth:`ResilienceListener.on_event` with one of the frozen event dataclasses below.
A listener that returns ``None`` from ``start_call`` costs the success path nothing more.

Listeners run outside every lock, in the thread (or task) that caused the event. An
exception raised by a listener is logged at a limited rate and otherwise ignored: it
never changes the result of a protected call.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from otel_resilience._clock import SYSTEM_CLOCK, Clock
from otel_resilience.breaker._state import CircuitState

__all__ = [
    "AlertSent",
    "AttemptOutcome",
    "BulkheadRejected",
    "CallObserver",
    "CallOutcome",
    "CallRejected",
    "CircuitStateChanged",
    "ErrorClassified",
    "FallbackExecuted",
    "RecoveryPerformed",
    "ResilienceEvent",
    "ResilienceListener",
    "RetryExhausted",
    "RetryScheduled",
    "TimeoutExceeded",
]

_logger = logging.getLogger("otel_resilience")


class AttemptOutcome(enum.Enum):
    """How one attempt ended; the value is the telemetry attribute value."""

    SUCCESS = "success"
    FAILURE = "failure"
    """The attempt raised, or returned a result classified as a failure."""
    REJECTED = "rejected"
    """A breaker or bulkhead refused the attempt; the function was not called."""
    TIMEOUT = "timeout"
    """The attempt overran its timeout."""
    CANCELLED = "cancelled"
    """Control flow (cancellation, interrupt, generator close) ended the attempt: never
    counted as a failure."""


class CallOutcome(enum.Enum):
    """How a whole protected call ended; the value is the telemetry attribute value."""

    SUCCESS = "success"
    FAILURE = "failure"
    FALLBACK = "fallback"
    """The call failed and a fallback produced its result."""
    REJECTED = "rejected"
    """The call was refused (open circuit, full bulkhead) and no fallback applied."""
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    """Control flow (cancellation, interrupt, generator close) ended the call."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitStateChanged:
    """A breaker moved from ``previous`` to ``state`` at clock time ``at``."""

    breaker: str
    previous: CircuitState
    state: CircuitState
    reason: str
    """Short machine-readable cause: ``failure_threshold``, ``failure_rate``,
    ``slow_call_rate``, ``open_timeout``, ``trial_failure``, ``trial_success``, ``manual``."""
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected:
    """A breaker refused a call without running it."""

    breaker: str
    state: CircuitState
    retry_after: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled:
    """A retry will start after ``delay`` seconds; ``attempt`` is the attempt that failed."""

    pipeline: str
    attempt: int
    delay: float
    error_type: str | None
    """Class name of the exception that failed the attempt, or ``None`` for a bad result."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryExhausted:
    """A retry gave up after ``attempts`` attempts for ``reason``."""

    pipeline: str
    attempts: int
    reason: str
    """``max_attempts``, ``deadline``, ``budget`` or ``not_retryable``."""
    error_type: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackExecuted:
    """A fallback replaced a failed outcome."""

    pipeline: str
    error_type: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkheadRejected:
    """A bulkhead refused a call: every slot busy and the queue full (or the wait timed out)."""

    bulkhead: str
    reason: str
    """``queue_full`` or ``queue_timeout``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutExceeded:
    """An attempt or a whole call overran its timeout."""

    pipeline: str
    scope: str
    """``attempt`` or ``total``."""
    timeout: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorClassified:
    """The orchestrator classified a failure and chose its recovery."""

    component: str
    error_type: str
    severity: str
    """Lower-case severity label, after escalation."""
    escalated: bool
    actions: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryPerformed:
    """The orchestrator performed one recovery action (breaker, failover, alert, custom)."""

    component: str
    action: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertSent:
    """An operator alert went to one sink (``ok``) or failed to."""

    component: str
    severity: str
    sink: str
    ok: bool


ResilienceEvent: TypeAlias = (
    CircuitStateChanged
    | CallRejected
    | RetryScheduled
    | RetryExhausted
    | FallbackExecuted
    | BulkheadRejected
    | TimeoutExceeded
    | ErrorClassified
    | RecoveryPerformed
    | AlertSent
)
"""Every event a strategy or driver reports through :meth:`ResilienceListener.on_event`."""


class CallObserver(Protocol):
    """Follows one protected call: its attempts and how it ended.

    Durations are measured with the pipeline's injected clock, in seconds.
    """

    def attempt_started(self, attempt: int) -> None:
        """Attempt number ``attempt`` (1-based) is about to run."""

    def attempt_ended(
        self,
        attempt: int,
        outcome: AttemptOutcome,
        error: BaseException | None,
        duration: float,
    ) -> None:
        """Attempt ``attempt`` ended with ``outcome``; ``error`` is what it raised, if anything."""

    def call_ended(
        self, outcome: CallOutcome, error: BaseException | None, duration: float
    ) -> None:
        """The call ended; ``error`` is the exception the caller sees, if any."""


class ResilienceListener(Protocol):
    """Receives everything the engine reports. The OpenTelemetry adapter implements it.

    Optional members, looked up when present: ``enabled() -> bool`` (while ``False`` the
    drivers build no events and keep plain retries on their fast path),
    ``wants_rejections: bool`` (``False``: breakers and bulkheads do not report each
    rejection), ``idle_until_global_providers: bool`` (read when a pipeline is built;
    ``True``: ``start_call`` returns ``None`` while OpenTelemetry's global tracer and meter
    providers are both unset, so the drivers check those instead of calling it) and
    ``track(component)`` (breakers, bulkheads, orchestrators and event buses
    hand themselves over for observation at metric collection time).
    """

    def start_call(self, pipeline: str) -> CallObserver | None:
        """A protected call through ``pipeline`` starts; return an observer or ``None``."""

    def on_event(self, event: ResilienceEvent) -> None:
        """A strategy event happened (transition, rejection, retry, fallback, ...)."""


class _RateLimitedLog:
    """Logs listener failures at most once per ``interval`` seconds, counting the rest."""

    __slots__ = ("_clock", "_interval", "_last", "_lock", "_suppressed")

    def __init__(self, interval: float = 60.0, clock: Clock = SYSTEM_CLOCK) -> None:
        self._interval = interval
        self._clock = clock
        self._last = float("-inf")
        self._suppressed = 0
        self._lock = threading.Lock()

    def warning(self, what: str) -> None:
        """Log ``what`` as a warning, rate-limited like :meth:`exception`."""
        if self._allow():
            _logger.warning("%s", what)

    def info(self, what: str) -> None:
        """Log ``what`` at INFO level, rate-limited like :meth:`exception`."""
        if self._allow():
            _logger.info("%s", what)

    def _allow(self) -> bool:
        now = self._clock.monotonic()
        with self._lock:
            if now - self._last < self._interval:
                self._suppressed += 1
                return False
            self._last = now
            return True

    def exception(self, what: str) -> None:
        now = self._clock.monotonic()
        with self._lock:
            if now - self._last < self._interval:
                self._suppressed += 1
                return
            self._last = now
            suppressed, self._suppressed = self._suppressed, 0
        _logger.exception(
            "%s raised; the protected call is unaffected (%d similar errors suppressed)",
            what,
            suppressed,
        )


LISTENER_ERRORS = _RateLimitedLog()
"""Where every isolated listener, handler or telemetry failure is reported."""

STORE_DOWN = _RateLimitedLog()
"""Where shared breakers report that their state store failed (they then decide locally)."""

STORE_BACK = _RateLimitedLog()
"""Where shared breakers report that their state store answers again."""


def safe_call(what: str, fn: Callable[..., object], *args: object) -> None:
    """Call ``fn(*args)``; an ``Exception`` it raises is logged (rate-limited), never raised."""
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - isolation is the point: listeners must not break calls
        LISTENER_ERRORS.exception(what)
