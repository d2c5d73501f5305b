"""The circuit breaker: a sans-IO state machine behind a two-step permit API.

The breaker never runs the protected function. A driver asks for a permit with
:meth:`CircuitBreaker.acquire`, runs the call itself, and reports the outcome with the
permit's ticket (:meth:`~CircuitBreaker.on_result`, :meth:`~CircuitBreaker.on_error`, or
the raw :meth:`~CircuitBreaker.record_success`, :meth:`~CircuitBreaker.record_failure`,
:meth:`~CircuitBreaker.release`). Tickets carry the state generation they were issued
in, so an outcome from an earlier state counts for nothing.

One :class:`threading.Lock` guards the state; nothing awaits, so the same object serves
threads and event loops. The hot answers of ``try_acquire`` (admit while CLOSED, refuse
while OPEN or FORCED_OPEN without a listener for rejections) read one attribute each,
published with the state under the lock, and take no lock. Events are queued under the
lock and delivered after it is released, in the order the transitions happened.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple, Self, cast

# Imported as a module: ``_events`` imports ``breaker._state``, so when it is imported
# first this package initialises while ``_events`` is only half-built. Attribute access
# at call time works whichever module is imported first.
from otel_resilience import _events
from otel_resilience._clock import SYSTEM_CLOCK, Clock, RandomSource, default_random
from otel_resilience._errors import CircuitOpenError
from otel_resilience._standalone import Standalone
from otel_resilience.breaker._config import CircuitBreakerConfig
from otel_resilience.breaker._state import CircuitState
from otel_resilience.breaker._window import FAILURE, SLOW, CountWindow, SlidingWindow, TimeWindow

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from otel_resilience._events import CircuitStateChanged, ResilienceEvent, ResilienceListener
    from otel_resilience.pipeline import Pipeline
    from otel_resilience.stores import AsyncBreakerStateStore, BreakerStateStore

__all__ = [
    "DISABLED_TICKET",
    "MAX_PENDING_EVENTS",
    "CircuitBreaker",
    "CircuitBreakerMetrics",
    "StateChangeCallback",
]

DISABLED_TICKET: Final = 0
"""The ticket a DISABLED breaker hands out: reporting it records nothing."""

MAX_PENDING_EVENTS: Final = 10_000
"""Undelivered events kept per breaker; beyond it rejection events are dropped (counted).

State changes are never dropped: there can be no more of them than operations that
hold the lock, and each producer drains the queue before returning.
"""

StateChangeCallback = Callable[["CircuitStateChanged"], object]
"""A callback added with :meth:`CircuitBreaker.add_listener`."""

_logger = logging.getLogger("otel_resilience")

# Module globals are cheaper to read than enum class attributes on the hot paths.
_CLOSED: Final = CircuitState.CLOSED
_OPEN: Final = CircuitState.OPEN
_HALF_OPEN: Final = CircuitState.HALF_OPEN
_FORCED_OPEN: Final = CircuitState.FORCED_OPEN
_FOREVER: Final = math.inf
"""``_refused_until`` while FORCED_OPEN."""
_DISABLED: Final = CircuitState.DISABLED


def admitted(ticket: int | CircuitOpenError) -> int:
    """The ticket from :meth:`CircuitBreaker.try_acquire`, or its refusal raised.

    Raised from here, where nothing else refers to the error once it is gone: a frame
    still holding it would form a reference cycle with the error's traceback.
    """
    if isinstance(ticket, int):
        return ticket
    try:
        raise ticket
    finally:
        del ticket


class CircuitBreakerCounts(NamedTuple):
    """The lifetime counters of a breaker (see :meth:`CircuitBreaker.observed_counts`)."""

    successes: int
    failures: int
    ignored: int
    rejections: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerMetrics:
    """A consistent snapshot of a breaker's counters, taken under its lock.

    The call counters are cumulative over the breaker's life (never reset, so they can
    feed monotonic counters); the ``window_*`` fields and the rates cover the current
    sliding window, which :meth:`CircuitBreaker.reset` and every close clear.

    Attributes:
        state: the state when the snapshot was taken.
        state_since: clock time of the last state change (of construction before any).
        calls: counted calls: ``successes + failures + ignored``.
        successes: calls counted as successes.
        failures: calls counted as failures (including slow trials in HALF_OPEN).
        ignored: calls that raised an ignored exception.
        rejections: calls refused with :class:`~otel_resilience.CircuitOpenError`.
        slow_calls: counted calls at least ``slow_call_duration_seconds`` long.
        stale: outcomes reported with a ticket from an earlier generation or a reclaimed
            trial; they changed nothing else.
        consecutive_failures: failures in a row while CLOSED.
        window_calls: calls in the sliding window (0 without a window).
        window_failures: failed calls in the sliding window.
        window_slow_calls: slow calls in the sliding window.
        failure_rate: ``window_failures / window_calls``, or ``None`` without a window or
            while the window holds fewer than ``minimum_calls`` calls.
        slow_call_rate: likewise for slow calls; ``None`` without slow-call detection.
        trials_in_flight: HALF_OPEN trial permits held right now.
        dropped_events: rejection events dropped because listeners fell behind.
    """

    state: CircuitState
    state_since: float
    calls: int
    successes: int
    failures: int
    ignored: int
    rejections: int
    slow_calls: int
    stale: int
    consecutive_failures: int
    window_calls: int
    window_failures: int
    window_slow_calls: int
    failure_rate: float | None
    slow_call_rate: float | None
    trials_in_flight: int
    dropped_events: int


class CircuitBreaker(Standalone):
    """A circuit breaker: stops calling a failing dependency, then probes it carefully.

    States (:class:`~otel_resilience.CircuitState`): CLOSED admits every call and
    counts outcomes; OPEN rejects every call until its open duration has passed; then it
    is HALF_OPEN (lazily: the move happens on the next :meth:`acquire` or read of
    :attr:`state`) and admits at most ``half_open_max_calls`` trial calls at a time.
    FORCED_OPEN and DISABLED are set by an operator and left only by :meth:`reset`.

    Args:
        name: a short, low-cardinality name (used in errors, events and telemetry).
        config: the rules; ``CircuitBreakerConfig()`` when omitted.
        clock: the time source; the system clock when omitted.
        rng: the random source for ``open_backoff`` jitter; a fresh one when omitted.
        listener: receives :class:`~otel_resilience._events.CircuitStateChanged` and
            :class:`~otel_resilience._events.CallRejected` events (outside the lock).
            Default: the OpenTelemetry adapter on the global providers.
        tracer_provider: report to these OpenTelemetry providers instead of the global
            ones (not with ``listener``).
        meter_provider: as ``tracer_provider``.
        telemetry: ``False`` switches reporting off (no listener at all).
        store: keep the state in this shared store (see :mod:`otel_resilience.stores`):
            the breaker is then a :class:`~otel_resilience.breaker.SharedCircuitBreaker`,
            one state for every process that uses the same store and name.

    Example:
        >>> from otel_resilience.testing import FakeClock
        >>> clock = FakeClock()
        >>> breaker = CircuitBreaker("db", CircuitBreakerConfig(failure_threshold=2), clock=clock)
        >>> for _ in range(2):
        ...     breaker.record_failure(breaker.acquire())
        >>> breaker.state
        <CircuitState.OPEN: 'open'>
        >>> clock.advance(60.0)
        >>> breaker.state
        <CircuitState.HALF_OPEN: 'half_open'>
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_clock",
        "_closed_ticket",
        "_config",
        "_consecutive_failures",
        "_dispatch_lock",
        "_dropped_events",
        "_failure_rate_threshold",
        "_failure_threshold",
        "_failures",
        "_generation",
        "_half_open_max_calls",
        "_ignore_predicate",
        "_ignore_types",
        "_ignored",
        "_last_open_delay",
        "_last_trial",
        "_lease",
        "_listener",
        "_lock",
        "_minimum_calls",
        "_monotonic",
        "_name",
        "_notify",
        "_open_backoff",
        "_open_count",
        "_open_until",
        "_pending",
        "_pipeline",
        "_plain_success",
        "_record_predicate",
        "_record_result",
        "_record_types",
        "_refused_until",
        "_reject_events",
        "_rejection_reads",
        "_rejection_ticks",
        "_rejections",
        "_rng",
        "_slow_call_duration",
        "_slow_call_rate_threshold",
        "_slow_calls",
        "_stale",
        "_state",
        "_state_since",
        "_success_threshold",
        "_successes",
        "_time_window",
        "_timeout",
        "_trial_successes",
        "_trials",
        "_window",
        "needs_duration",
    )

    _shares_state: ClassVar[bool] = False

    def __new__(cls, *args: Any, store: object = None, **kwargs: Any) -> Self:
        """Make a :class:`~otel_resilience.breaker.SharedCircuitBreaker` when given a ``store``."""
        if store is not None and cls is CircuitBreaker:
            from otel_resilience.breaker._shared import SharedCircuitBreaker  # noqa: PLC0415

            return cast("Self", object.__new__(SharedCircuitBreaker))
        return object.__new__(cls)

    def __init__(
        self,
        name: str,
        config: CircuitBreakerConfig | None = None,
        *,
        clock: Clock | None = None,
        rng: RandomSource | None = None,
        listener: ResilienceListener | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        telemetry: bool = True,
        store: BreakerStateStore | AsyncBreakerStateStore | None = None,
    ) -> None:
        if store is not None and not self._shares_state:
            raise TypeError(
                f"{type(self).__name__} keeps its state locally; a store needs "
                "CircuitBreaker(..., store=...) or SharedCircuitBreaker"
            )
        if not isinstance(name, str):
            raise TypeError(f"CircuitBreaker.name must be a str, got {type(name).__name__}")
        # Imported here: the telemetry package imports the breaker state and events.
        from otel_resilience.telemetry._default import (  # noqa: PLC0415
            resolve_listener,
            track,
        )

        listener = resolve_listener(
            "CircuitBreaker",
            listener,
            telemetry=telemetry,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        if not name:
            raise ValueError("CircuitBreaker.name must not be empty")
        if config is None:
            config = CircuitBreakerConfig()
        elif not isinstance(config, CircuitBreakerConfig):
            raise TypeError(
                f"CircuitBreaker.config must be a CircuitBreakerConfig, got {type(config).__name__}"
            )
        self._name = name
        self._config = config
        self._clock: Clock = SYSTEM_CLOCK if clock is None else clock
        # Bound once: the OPEN rejection path reads the clock on every call.
        self._monotonic = self._clock.monotonic
        self._rng: RandomSource = default_random() if rng is None else rng
        self._listener = listener
        # Whether each rejection is reported as an event (an optional listener attribute:
        # the OpenTelemetry adapter counts rejections from the breaker itself instead).
        self._reject_events = listener is not None and getattr(listener, "wants_rejections", True)
        self._pipeline: Pipeline | None = None
        self._callbacks: tuple[StateChangeCallback, ...] = ()
        self._notify = listener is not None
        self._lock = threading.Lock()
        self._dispatch_lock = threading.Lock()
        self._pending: deque[ResilienceEvent | Exception] = deque()
        self._dropped_events = 0

        # The configuration, flattened into slots for the hot paths.
        self._failure_threshold = config.failure_threshold
        self._success_threshold = config.success_threshold
        self._timeout = config.timeout_seconds
        self._half_open_max_calls = config.half_open_max_calls
        self._minimum_calls = config.minimum_calls
        self._failure_rate_threshold = config.failure_rate_threshold
        self._slow_call_rate_threshold = config.slow_call_rate_threshold
        self._slow_call_duration = config.slow_call_duration_seconds
        self._lease = config.probe_lease_seconds
        self._open_backoff = config.open_backoff
        self._record_result = config.record_result
        self._record_types, self._record_predicate = _split_filter(config.record_exceptions)
        self._ignore_types, self._ignore_predicate = _split_filter(config.ignore_exceptions)
        window: SlidingWindow | None = None
        if config.sliding_window_size is not None:
            window = CountWindow(config.sliding_window_size)
        elif config.sliding_window_seconds is not None:
            window = TimeWindow(config.sliding_window_seconds)
        self._window = window
        self._time_window = isinstance(window, TimeWindow)
        self.needs_duration: bool = config.detects_slow_calls
        """Whether outcomes should carry the call's duration (slow-call detection is on).

        Drivers then time each call with the breaker's clock and pass seconds.
        """
        # A success that needs no window, no slowness check and no clock: the fast path.
        self._plain_success = window is None and not self.needs_duration

        self._state = _CLOSED
        self._generation = 1
        # What acquire() reads without the lock, kept with the state under it (see
        # _set_generation_locked): the ticket of the current CLOSED period, else 0; and
        # when a refusal needs no event, the end of the OPEN period, inf while FORCED_OPEN,
        # else 0.0.
        self._closed_ticket = 1
        self._refused_until = 0.0
        self._state_since = self._clock.monotonic()
        self._open_until = 0.0
        self._open_count = 0
        self._last_open_delay = 0.0
        self._consecutive_failures = 0
        self._trials: dict[int, float] = {}
        self._trial_successes = 0
        self._last_trial = 0  # trial tickets count down from -1 and are never reused
        self._successes = 0
        self._failures = 0
        self._ignored = 0
        self._rejections = 0
        # Rejections counted without the lock (the hot OPEN and FORCED_OPEN paths): next()
        # on an itertools.count is atomic, with or without the GIL. A read takes a tick
        # of its own, so the count is ticks taken minus reads (see _rejections_locked).
        self._rejection_ticks = itertools.count()
        self._rejection_reads = 0
        self._slow_calls = 0
        self._stale = 0
        track(listener, self)  # observed by the telemetry listener at collection time

    # -- identity and inspection --------------------------------------------------------

    @property
    def name(self) -> str:
        """The breaker's name."""
        return self._name

    @property
    def config(self) -> CircuitBreakerConfig:
        """The breaker's configuration."""
        return self._config

    @property
    def asynchronous(self) -> bool:
        """Whether the state lives in an asyncio store, so drivers must await the breaker.

        Always ``False`` here; see :class:`~otel_resilience.breaker.SharedCircuitBreaker`.
        """
        return False

    @property
    def clock(self) -> Clock:
        """The injected clock; drivers time calls with it when :attr:`needs_duration` is set."""
        return self._clock

    @property
    def state(self) -> CircuitState:
        """The current state; reading it moves OPEN to HALF_OPEN once the open period ended."""
        state = self._state
        if state is _OPEN:
            now = self._clock.monotonic()
            with self._lock:
                state = self._refresh_locked(now)
            if self._pending:
                self._drain()
        return state

    def observed_state(self) -> CircuitState:
        """The state as telemetry reports it, without moving the breaker.

        An OPEN breaker whose open period has passed reads HALF_OPEN (it becomes so at its
        next call). No lock, no event: safe inside a metric collection callback.
        """
        state = self._state
        if state is _OPEN and self._monotonic() >= self._open_until:
            return _HALF_OPEN
        return state

    def observed_counts(self) -> CircuitBreakerCounts:
        """The lifetime call counters, read together, without moving the breaker."""
        with self._lock:
            return CircuitBreakerCounts(
                self._successes, self._failures, self._ignored, self._rejections_locked()
            )

    @property
    def metrics(self) -> CircuitBreakerMetrics:
        """A consistent snapshot of the counters (see :class:`CircuitBreakerMetrics`)."""
        now = self._clock.monotonic()
        with self._lock:
            state = self._refresh_locked(now)
            window = self._window
            window_calls = window_failures = window_slow = 0
            if window is not None:
                window.expire(now)
                window_calls = window.calls
                window_failures = window.failures
                window_slow = window.slow_calls
            enough = window is not None and window_calls >= self._minimum_calls
            snapshot = CircuitBreakerMetrics(
                state=state,
                state_since=self._state_since,
                calls=self._successes + self._failures + self._ignored,
                successes=self._successes,
                failures=self._failures,
                ignored=self._ignored,
                rejections=self._rejections_locked(),
                slow_calls=self._slow_calls,
                stale=self._stale,
                consecutive_failures=self._consecutive_failures,
                window_calls=window_calls,
                window_failures=window_failures,
                window_slow_calls=window_slow,
                failure_rate=window_failures / window_calls if enough else None,
                slow_call_rate=(
                    window_slow / window_calls
                    if enough and self._slow_call_duration is not None
                    else None
                ),
                trials_in_flight=len(self._trials),
                dropped_events=self._dropped_events,
            )
        if self._pending:
            self._drain()
        return snapshot

    # -- the two-step core ----------------------------------------------------------------

    def acquire(self) -> int:
        """Ask for a permit to make one call; return its ticket.

        Returns:
            In CLOSED, the current generation (a positive int); in HALF_OPEN, a unique
            negative trial ticket; in DISABLED, :data:`DISABLED_TICKET`. Report the call's
            outcome with it exactly once (``on_result``, ``on_error``, ``record_*`` or
            ``release``).

        Raises:
            CircuitOpenError: the breaker refuses the call. ``retry_after`` is the time
                left until HALF_OPEN when OPEN, ``0.0`` when HALF_OPEN with every trial
                slot taken (a slot may free up at any moment), ``None`` when FORCED_OPEN.
        """
        # This class's own decision (a subclass's try_acquire may call acquire). What
        # admitted() does, inline: a refusal raised through one frame fewer (~0.1 µs).
        ticket = CircuitBreaker.try_acquire(self)
        if isinstance(ticket, int):
            return ticket
        try:
            raise ticket
        finally:
            del ticket  # no reference cycle: the traceback holds this frame

    def try_acquire(self) -> int | CircuitOpenError:
        """:meth:`acquire` that returns the refusal instead of raising it.

        The drivers use it: the error is then raised (or acted on) in their own frame, one
        frame fewer for a rejection to unwind. The refusal has been counted and reported
        like one from :meth:`acquire`.

        Returns:
            The ticket, always a plain ``int`` (drivers test ``isinstance(ticket, int)``), or
            the :class:`CircuitOpenError` to raise.
        """
        # The hot paths take no lock: each reads one attribute that is written under the
        # lock with the state, so its value was current at the moment it was read.
        # CLOSED: the ticket of the CLOSED period (0 in other states).
        ticket = self._closed_ticket
        if ticket:
            return ticket
        # A refusal that reports no event changes nothing but a count kept lock-free.
        until = self._refused_until
        if until:
            if until == _FOREVER:  # FORCED_OPEN
                next(self._rejection_ticks)
                return CircuitOpenError(self._name, None)
            # OPEN until ``until``. The clock is read after it, so if ``now < until`` the
            # breaker was OPEN and unexpired when ``until`` was read, and the time left
            # never exceeds the open period.
            now = self._monotonic()
            if now < until:
                next(self._rejection_ticks)
                return CircuitOpenError(self._name, until - now)
        return self._acquire_slow()

    def _acquire_slow(self) -> int | CircuitOpenError:
        now = self._clock.monotonic()
        retry_after: float | None = None
        with self._lock:
            state = self._refresh_locked(now)
            ticket: int | None
            if state is _CLOSED:
                ticket = self._generation
            elif state is _HALF_OPEN:
                ticket = self._admit_trial_locked(now)
                retry_after = 0.0
            elif state is _DISABLED:
                ticket = DISABLED_TICKET
            else:
                ticket = None
                if state is _OPEN:
                    # Not counted from before the opening (a clock read before the lock
                    # may be): the time left never exceeds the open period.
                    retry_after = self._open_until - max(now, self._state_since)
            if ticket is None:
                self._reject_locked(state, retry_after)
        if self._pending:
            self._drain()
        if ticket is None:
            return CircuitOpenError(self._name, retry_after)
        return ticket

    def _rejections_locked(self) -> int:
        """All rejections so far: those counted under the lock and the lock-free ticks."""
        ticks = next(self._rejection_ticks) - self._rejection_reads
        self._rejection_reads += 1
        return self._rejections + ticks

    def _reject_locked(self, state: CircuitState, retry_after: float | None) -> None:
        """Count a rejection and queue its event (when rejections are reported)."""
        self._rejections += 1
        if self._reject_events:
            if len(self._pending) < MAX_PENDING_EVENTS:
                self._pending.append(
                    _events.CallRejected(breaker=self._name, state=state, retry_after=retry_after)
                )
            else:
                self._dropped_events += 1

    def on_result(self, ticket: int, result: object, duration: float | None = None) -> bool:
        """Report that the call of ``ticket`` returned ``result``.

        ``record_result`` decides whether the value is a failure; otherwise it is a
        success. ``duration`` (seconds, the breaker's clock) matters only when
        :attr:`needs_duration` is set.

        Returns:
            Whether the outcome was counted as a failure. A stale ticket or a DISABLED
            breaker counts nothing, so returns ``False``.
        """
        predicate = self._record_result
        if predicate is not None and ticket != DISABLED_TICKET:
            try:
                failed = predicate(result)
            except BaseException:
                # A broken predicate must not leak a half-open slot.
                self.release(ticket)
                raise
            if failed:
                return self._failure(ticket, duration)
        if ticket > 0 and self._plain_success:
            # Inlined ``_count_plain_success``: a method call is a third of this path.
            lock = self._lock
            lock.acquire()
            if ticket == self._generation:
                self._successes += 1
                self._consecutive_failures = 0
            else:
                self._stale += 1
            lock.release()
            return False
        return self._success(ticket, duration)

    def _count_plain_success(self, ticket: int) -> None:
        # The CLOSED success path without windows or slow-call detection: as for
        # ``acquire``, a bare acquire()/release() pair around code that cannot raise.
        lock = self._lock
        lock.acquire()
        if ticket == self._generation:
            self._successes += 1
            self._consecutive_failures = 0
        else:
            self._stale += 1
        lock.release()

    def on_error(self, ticket: int, error: BaseException, duration: float | None = None) -> bool:
        """Report that the call of ``ticket`` raised ``error``.

        Control flow (anything that is not an :class:`Exception`: cancellation,
        interrupts, generator close) only gives the permit back. Then
        ``ignore_exceptions`` (counted as ignored, permit given back),
        ``record_exceptions`` (a failure), and anything else is a success.

        Returns:
            Whether the outcome was counted as a failure.
        """
        if not isinstance(error, Exception):
            self.release(ticket)
            return False
        if ticket == DISABLED_TICKET:
            return False
        try:
            ignore = self._ignore_predicate
            if isinstance(error, self._ignore_types) or (ignore is not None and ignore(error)):
                ignored = True
                failed = False
            else:
                ignored = False
                record = self._record_predicate
                failed = isinstance(error, self._record_types) or (
                    record is not None and bool(record(error))
                )
        except BaseException:
            self.release(ticket)
            raise
        if ignored:
            self._ignore(ticket)
            return False
        if failed:
            return self._failure(ticket, duration)
        return self._success(ticket, duration)

    def record_success(self, ticket: int, duration: float | None = None) -> None:
        """Count the call of ``ticket`` as a success (a slow HALF_OPEN trial as a failure)."""
        if ticket > 0 and self._plain_success:
            self._count_plain_success(ticket)
            return
        self._success(ticket, duration)

    def record_failure(self, ticket: int, duration: float | None = None) -> None:
        """Count the call of ``ticket`` as a failure."""
        self._failure(ticket, duration)

    def release(self, ticket: int) -> None:
        """Give the permit of ``ticket`` back without counting anything.

        Only a HALF_OPEN trial holds a slot; releasing any other ticket does nothing.
        """
        if ticket < 0:
            with self._lock:
                self._trials.pop(ticket, None)

    # ``call``, ``acall`` and decorator use come from ``Standalone``: they run the
    # protected function through the sync and async drivers, which use the core above.

    def _build_pipeline(self) -> Pipeline:
        from otel_resilience.pipeline import Pipeline  # noqa: PLC0415 - import cycle

        return Pipeline(
            name=self._name, circuit_breaker=self, clock=self._clock, listener=self._listener
        )

    # -- operator controls --------------------------------------------------------------

    def force_open(self) -> None:
        """Reject every call (FORCED_OPEN, ``retry_after`` ``None``) until :meth:`reset`."""
        self._set_manual(_FORCED_OPEN)

    def disable(self) -> None:
        """Admit every call and record nothing (DISABLED) until :meth:`reset`."""
        self._set_manual(_DISABLED)

    def reset(self) -> None:
        """Return to CLOSED with an empty window and no failure streak.

        Calls admitted before the reset report stale tickets and count for nothing,
        even when the breaker was already CLOSED.
        """
        now = self._clock.monotonic()
        with self._lock:
            if self._state is _CLOSED:
                self._clear_counts_locked()
                self._set_generation_locked(self._generation + 1)
            else:
                self._close_locked(now, "manual")
        if self._pending:
            self._drain()

    def trip(self, reason: str = "manual") -> bool:
        """Open the breaker now, as if a threshold had been reached.

        From CLOSED or HALF_OPEN the breaker opens for its normal open duration (the
        open-backoff count grows as for any opening). An OPEN breaker keeps its timer;
        FORCED_OPEN and DISABLED are left alone.

        Args:
            reason: the ``reason`` of the :class:`CircuitStateChanged` event.

        Returns:
            Whether this call opened the breaker.
        """
        if not isinstance(reason, str):
            raise TypeError(f"CircuitBreaker.trip reason must be a str, got {reason!r}")
        if not reason:
            raise ValueError("CircuitBreaker.trip reason must not be empty")
        now = self._clock.monotonic()
        with self._lock:
            state = self._refresh_locked(now)
            opened = state is _CLOSED or state is _HALF_OPEN
            if opened:
                self._open_locked(now, reason)
        if self._pending:
            self._drain()
        return opened

    def _set_manual(self, target: CircuitState) -> None:
        now = self._clock.monotonic()
        with self._lock:
            if self._state is not target:
                self._transition_locked(target, "manual", now)
        if self._pending:
            self._drain()

    # -- listeners ----------------------------------------------------------------------

    def add_listener(self, callback: StateChangeCallback) -> None:
        """Call ``callback(event)`` with every later :class:`CircuitStateChanged`.

        Callbacks run outside the breaker's lock, in order, in the thread that caused (or
        first noticed) the transition; what they raise is logged and otherwise ignored.
        """
        if not callable(callback):
            raise TypeError(f"CircuitBreaker listener must be callable, got {callback!r}")
        with self._lock:
            self._callbacks = (*self._callbacks, callback)
            self._notify = True

    def remove_listener(self, callback: StateChangeCallback) -> None:
        """Stop calling ``callback``; does nothing if it was not added."""
        with self._lock:
            callbacks = list(self._callbacks)
            if callback in callbacks:
                callbacks.remove(callback)
                self._callbacks = tuple(callbacks)
                self._notify = self._listener is not None or bool(callbacks)

    # -- outcomes -------------------------------------------------------------------------

    def _slow(self, duration: float | None) -> int:
        threshold = self._slow_call_duration
        if threshold is not None and duration is not None and duration >= threshold:
            return SLOW
        return 0

    def _success(self, ticket: int, duration: float | None) -> bool:
        """Count a success; return whether it counted as a failure (a slow trial)."""
        if ticket == DISABLED_TICKET:
            return False
        slow = self._slow(duration)
        failed = False
        if ticket > 0:
            now = self._clock.monotonic() if self._time_window else None
            with self._lock:
                if ticket != self._generation:
                    self._stale += 1
                    return False
                self._successes += 1
                self._consecutive_failures = 0
                if slow:
                    self._slow_calls += 1
                window = self._window
                if window is not None:
                    window.record(slow, 0.0 if now is None else now)
                    self._evaluate_rates_locked(window, now)
        else:
            now = self._clock.monotonic()
            with self._lock:
                if not self._take_trial_locked(ticket, now):
                    return False
                if slow:
                    # A slow trial says the dependency has not recovered.
                    self._slow_calls += 1
                    self._failures += 1
                    self._open_locked(now, "trial_failure")
                    failed = True
                else:
                    self._successes += 1
                    self._trial_successes += 1
                    if self._trial_successes >= self._success_threshold:
                        self._close_locked(now, "trial_success")
        if self._pending:
            self._drain()
        return failed

    def _failure(self, ticket: int, duration: float | None) -> bool:
        """Count a failure; return whether it was counted."""
        if ticket == DISABLED_TICKET:
            return False
        slow = self._slow(duration)
        now = self._clock.monotonic()
        with self._lock:
            if ticket > 0:
                if ticket != self._generation:
                    self._stale += 1
                    return False
                self._failures += 1
                if slow:
                    self._slow_calls += 1
                self._consecutive_failures += 1
                window = self._window
                if window is not None:
                    window.record(FAILURE | slow, now)
                if self._consecutive_failures >= self._failure_threshold:
                    self._open_locked(now, "failure_threshold")
                elif window is not None:
                    self._evaluate_rates_locked(window, now)
            else:
                if not self._take_trial_locked(ticket, now):
                    return False
                self._failures += 1
                if slow:
                    self._slow_calls += 1
                self._open_locked(now, "trial_failure")
        if self._pending:
            self._drain()
        return True

    def _ignore(self, ticket: int) -> None:
        if ticket > 0:
            with self._lock:
                if ticket == self._generation:
                    self._ignored += 1
                else:
                    self._stale += 1
            return
        now = self._clock.monotonic()
        with self._lock:
            if self._take_trial_locked(ticket, now):
                self._ignored += 1

    # -- state machine (every ``_locked`` method needs ``self._lock`` held) --------------------

    def _refresh_locked(self, now: float) -> CircuitState:
        """Apply the lazy OPEN -> HALF_OPEN move; return the current state."""
        state = self._state
        if state is _OPEN and now >= self._open_until:
            # Stamped with the moment the open period ended, not when it was noticed.
            self._transition_locked(_HALF_OPEN, "open_timeout", self._open_until)
            return _HALF_OPEN
        return state

    def _admit_trial_locked(self, now: float) -> int | None:
        trials = self._trials
        if len(trials) >= self._half_open_max_calls:
            lease = self._lease
            if lease is None:
                return None
            expired = [ticket for ticket, started in trials.items() if now >= started + lease]
            if not expired:
                return None
            for ticket in expired:
                del trials[ticket]
        ticket = self._last_trial - 1
        self._last_trial = ticket
        trials[ticket] = now
        return ticket

    def _take_trial_locked(self, ticket: int, now: float) -> bool:
        """Remove a trial's permit; return whether its outcome still counts."""
        started = self._trials.pop(ticket, None)
        if started is None or (self._lease is not None and now >= started + self._lease):
            # From an earlier half-open period, or reclaimed / past its lease.
            self._stale += 1
            return False
        return True

    def _evaluate_rates_locked(self, window: SlidingWindow, now: float | None) -> None:
        calls = window.calls
        if calls < self._minimum_calls:
            return
        threshold = self._failure_rate_threshold
        if threshold is not None and window.failures / calls >= threshold:
            self._open_locked(self._clock.monotonic() if now is None else now, "failure_rate")
            return
        threshold = self._slow_call_rate_threshold
        if threshold is not None and window.slow_calls / calls >= threshold:
            self._open_locked(self._clock.monotonic() if now is None else now, "slow_call_rate")

    def _open_locked(self, now: float, reason: str) -> None:
        # A clock read before the lock may predate the last transition (the thread was
        # preempted meanwhile): the period then starts at that transition, not before it.
        now = max(now, self._state_since)
        self._open_count += 1
        delay = self._timeout
        backoff = self._open_backoff
        if backoff is not None:
            try:
                candidate = float(backoff.delay(self._open_count, self._rng, self._last_open_delay))
            except Exception as error:  # noqa: BLE001 - a broken backoff must not break the breaker
                self._pending.append(error)
            else:
                if math.isfinite(candidate) and candidate >= 0.0:
                    delay = candidate
        self._last_open_delay = delay
        self._open_until = now + delay
        self._transition_locked(_OPEN, reason, now)

    def _close_locked(self, now: float, reason: str) -> None:
        self._clear_counts_locked()
        self._transition_locked(_CLOSED, reason, now)

    def _clear_counts_locked(self) -> None:
        if self._window is not None:
            self._window.clear()
        self._consecutive_failures = 0
        self._open_count = 0
        self._last_open_delay = 0.0

    def _set_generation_locked(self, generation: int) -> None:
        """Start a new generation (after ``_state`` is set): tickets from before are stale.

        Also publishes what :meth:`try_acquire` reads without the lock.
        """
        self._generation = generation
        state = self._state
        self._closed_ticket = generation if state is _CLOSED else 0
        if self._reject_events:
            self._refused_until = 0.0  # every refusal takes the lock, to queue its event
        elif state is _OPEN:
            self._refused_until = self._open_until
        elif state is _FORCED_OPEN:
            self._refused_until = _FOREVER
        else:
            self._refused_until = 0.0

    def _transition_locked(self, state: CircuitState, reason: str, at: float) -> None:
        at = max(at, self._state_since)  # transitions are stamped in the order they happen
        previous = self._state
        self._state = state
        self._set_generation_locked(self._generation + 1)
        self._state_since = at
        # Trial permits belong to one half-open period; their late outcomes are stale.
        self._trials.clear()
        self._trial_successes = 0
        if self._notify:
            self._pending.append(
                _events.CircuitStateChanged(
                    breaker=self._name, previous=previous, state=state, reason=reason, at=at
                )
            )

    # -- event delivery (never under ``self._lock``) --------------------------------------

    def _drain(self) -> None:
        """Deliver queued events in order; whoever holds the dispatch lock delivers them."""
        pending = self._pending
        dispatch = self._dispatch_lock
        while pending:
            if not dispatch.acquire(blocking=False):
                # The holder re-checks the queue after releasing, so nothing is stranded.
                return
            try:
                # Only the dispatch-lock holder pops, so the queue cannot empty under us.
                while pending:
                    self._deliver(pending.popleft())
            finally:
                dispatch.release()

    def _deliver(self, item: ResilienceEvent | Exception) -> None:
        if isinstance(item, Exception):
            _logger.error(
                "circuit breaker %r: open_backoff.delay raised; used timeout_seconds",
                self._name,
                exc_info=item,
            )
            return
        listener = self._listener
        if listener is not None:
            _events.safe_call("circuit breaker listener", listener.on_event, item)
        if isinstance(item, _events.CircuitStateChanged):
            for callback in self._callbacks:
                _events.safe_call("circuit breaker state callback", callback, item)

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self._name!r}, state={self._state.value})"


def _split_filter(
    value: object,
) -> tuple[tuple[type[BaseException], ...], Callable[[BaseException], Any] | None]:
    """Split a validated exception filter into (classes, predicate)."""
    if isinstance(value, tuple):
        return value, None
    return (), cast("Callable[[BaseException], Any]", value)  # validated: a predicate
