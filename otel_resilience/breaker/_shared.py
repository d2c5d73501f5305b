"""A circuit breaker whose state lives in a shared store (Redis, or memory for tests).

The breaker keeps what is local by nature (its configuration, how outcomes are
classified, its listeners, this process's counters) and asks the store for everything
that must be one fleet-wide: the state, the generation, the failure streak and windows,
the half-open leases. Each store operation is atomic and answers with the state after it
(a :class:`~otel_resilience.stores.StoreView`) and the transitions *this* operation made,
so each transition becomes exactly one event in exactly one process.

Cost: the breaker caches the last view it was sent for ``max_staleness_seconds``. While
the cached view is CLOSED, ``acquire`` answers from it without a round trip; a success
that changes nothing in the store (no failure streak to end, no window to feed) is not
sent either, so the closed success path costs one round trip per ``max_staleness_seconds``
per process. Failures, trials and commands always go to the store.

Failure of the store: any error from it (the Redis store raises
:class:`~otel_resilience.stores.StoreUnavailableError` after its short socket timeout, and
at once while its own breaker around Redis is open) makes this breaker decide from its
local state machine, the plain :class:`CircuitBreaker` it extends, counting only this
process's calls. The first store answer after that switches back.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final

from otel_resilience import _events
from otel_resilience._errors import CircuitOpenError
from otel_resilience._validation import check_number
from otel_resilience.breaker._breaker import (
    DISABLED_TICKET,
    CircuitBreaker,
    CircuitBreakerMetrics,
    admitted,
)
from otel_resilience.breaker._config import CircuitBreakerConfig
from otel_resilience.breaker._state import CircuitState
from otel_resilience.stores._protocol import (
    DEFAULT_KEY_TTL_SECONDS,
    Admission,
    AdmissionKind,
    Command,
    Outcome,
    Report,
    StoreParams,
    StoreView,
    Transition,
)

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from otel_resilience._clock import Clock, RandomSource
    from otel_resilience._events import ResilienceListener
    from otel_resilience.stores._protocol import AsyncBreakerStateStore, BreakerStateStore

__all__ = [
    "DEFAULT_MAX_STALENESS_SECONDS",
    "SHARED_TICKET_BASE",
    "SharedCircuitBreaker",
    "StoreStatus",
]

DEFAULT_MAX_STALENESS_SECONDS: Final = 0.5
"""How long a cached store view may answer ``acquire`` (and excuse a success report)."""

SHARED_TICKET_BASE: Final = 1 << 62
"""Tickets at or beyond this (or its negative) belong to the store; smaller ones are local."""

_CLOSED: Final = CircuitState.CLOSED
_OPEN: Final = CircuitState.OPEN
_HALF_OPEN: Final = CircuitState.HALF_OPEN
_FORCED_OPEN: Final = CircuitState.FORCED_OPEN
_DISABLED: Final = CircuitState.DISABLED

_FAILED: Final = frozenset({Outcome.FAILURE, Outcome.SLOW_FAILURE})

_logger = logging.getLogger("otel_resilience")

# A queued store operation of an asyncio breaker: an outcome or a command.
_Outcome = tuple[int, bool, Outcome, float | None]
_Command = tuple[Command, str]


@dataclasses.dataclass(frozen=True, slots=True)
class StoreStatus:
    """How a shared breaker's store is doing, as seen from this process.

    Attributes:
        degraded: the last store operation failed; the breaker decides locally.
        fallbacks: operations decided from local state because the store failed.
        view: the last view the store sent (``None`` before the first answer).
    """

    degraded: bool
    fallbacks: int
    view: StoreView | None


class SharedCircuitBreaker(CircuitBreaker):
    """A circuit breaker whose state is shared through a store by every process using it.

    Made by ``CircuitBreaker(name, config, store=store)`` (or by this class directly).
    Every process (or breaker object) that uses the same store and name shares one state:
    one failure streak, one open period, ``half_open_max_calls`` trials fleet-wide, and one
    :class:`~otel_resilience._events.CircuitStateChanged` per transition, delivered by the
    process whose operation made it. Configure the breaker alike everywhere: each
    operation carries its caller's thresholds.

    With an asyncio store (:class:`~otel_resilience.stores.AsyncBreakerStateStore`) use
    the breaker from async code (``acall``, async pipelines and decorated coroutine
    functions): those await :meth:`aacquire` and :meth:`aflush`. The synchronous
    operator methods then queue their command for the next :meth:`aflush`.

    Args:
        name: as for :class:`CircuitBreaker`; also the key of the shared state.
        config: as for :class:`CircuitBreaker`.
        store: where the state lives.
        max_staleness_seconds: how long a cached view answers ``acquire`` without a round
            trip (``0`` asks the store every time). A trip elsewhere is seen here at the
            next store answer, at the latest this long after the previous one.
        key_ttl_seconds: how long the shared state outlives its last write.
        clock, rng, listener, tracer_provider, meter_provider, telemetry: as for
            :class:`CircuitBreaker`.
    """

    __slots__ = (
        "_aio",
        "_degraded",
        "_excuse_ticket",
        "_fast_ticket",
        "_fast_until",
        "_max_staleness",
        "_outbox",
        "_params",
        "_plain_result",
        "_shared_open_delay",
        "_store",
        "_store_fallbacks",
        "_view",
        "_view_at",
    )

    _shares_state: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        config: CircuitBreakerConfig | None = None,
        *,
        store: BreakerStateStore | AsyncBreakerStateStore,
        max_staleness_seconds: float = DEFAULT_MAX_STALENESS_SECONDS,
        key_ttl_seconds: float = DEFAULT_KEY_TTL_SECONDS,
        clock: Clock | None = None,
        rng: RandomSource | None = None,
        listener: ResilienceListener | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        telemetry: bool = True,
    ) -> None:
        owner = type(self).__name__
        missing = [op for op in ("acquire", "report", "command", "read") if not _has(store, op)]
        if missing:
            raise TypeError(
                f"{owner}.store must be a state store (acquire, report, command, read); "
                f"{type(store).__name__} has no {', '.join(missing)}"
            )
        max_staleness = check_number(
            owner, "max_staleness_seconds", max_staleness_seconds, allow_minimum=True
        )
        ttl = check_number(owner, "key_ttl_seconds", key_ttl_seconds)
        # Checked before the base class registers the breaker with telemetry.
        # (A config of the wrong type is the base class's to reject.)
        effective = CircuitBreakerConfig() if config is None else config
        timeout = getattr(effective, "timeout_seconds", 0)
        if isinstance(timeout, float) and ttl <= timeout:
            raise ValueError(
                f"{owner}.key_ttl_seconds ({ttl:g}) must exceed the config's timeout_seconds "
                f"({timeout:g}): the shared OPEN state would expire before its end"
            )
        super().__init__(
            name,
            config,
            clock=clock,
            rng=rng,
            listener=listener,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            telemetry=telemetry,
            store=store,
        )
        self._params = StoreParams.from_config(self._config, key_ttl_seconds=ttl)
        self._store: Any = store  # sync or async, told apart by ``_aio``
        self._aio = inspect.iscoroutinefunction(store.acquire)
        self._max_staleness = max_staleness
        self._view: StoreView | None = None
        self._view_at = 0.0
        self._degraded = False
        self._store_fallbacks = 0
        self._shared_open_delay = 0.0
        self._outbox: deque[_Outcome | _Command] = deque()
        # The hot path, precomputed from the cached view by ``_apply`` (0: not usable):
        # the ticket a CLOSED view admits with, until ``_fast_until`` on this clock, and
        # the ticket whose plain success needs no report (no streak, window or timing).
        self._fast_ticket = 0
        self._fast_until = 0.0
        self._excuse_ticket = 0
        # Every success may need reporting: never take the base class's local shortcut.
        self._plain_success = False
        # Whether on_result can count a success without classifying or timing it.
        self._plain_result = self._record_result is None and not self.needs_duration

    # -- inspection -----------------------------------------------------------------------

    @property
    def asynchronous(self) -> bool:
        """Whether the store is an asyncio store (drivers then await the breaker)."""
        return self._aio

    @property
    def store(self) -> BreakerStateStore | AsyncBreakerStateStore:
        """The store holding the shared state."""
        store: BreakerStateStore | AsyncBreakerStateStore = self._store
        return store

    @property
    def params(self) -> StoreParams:
        """The parameters sent with every store operation."""
        return self._params

    @property
    def state(self) -> CircuitState:
        """The shared state (local while the store is unreachable).

        With a blocking store this asks the store unless the cached view is fresh; with an
        asyncio store it is the cached view. An OPEN state whose period has passed reads
        HALF_OPEN (the move itself happens at the next ``acquire``).
        """
        now = self._monotonic()
        if not self._aio and not self._fresh(now):
            try:
                view = self._store.read(self._name, self._params)
            except Exception as error:  # noqa: BLE001 - a failing store means local state
                self._degrade(error, "read")
            else:
                self._apply(view, (), now)
        if self._degraded or self._view is None:
            return super().state
        return self._view_state(now)

    def observed_state(self) -> CircuitState:
        """The state as telemetry reports it: the cached view, no store operation."""
        if self._degraded or self._view is None:
            return super().observed_state()
        return self._view_state(self._monotonic())

    def store_status(self) -> StoreStatus:
        """Whether the store answers, how often it did not, and the last view it sent."""
        with self._lock:
            return StoreStatus(self._degraded, self._store_fallbacks, self._view)

    @property
    def metrics(self) -> CircuitBreakerMetrics:
        """This process's counters, with the state, streak and trials of the shared state."""
        local = super().metrics
        view = self._view
        if self._degraded or view is None:
            return local
        return dataclasses.replace(
            local,
            state=self._view_state(self._monotonic()),
            consecutive_failures=view.consecutive_failures,
            trials_in_flight=view.trials,
        )

    # -- admission ----------------------------------------------------------------------

    def acquire(self) -> int:
        """Ask for a permit (see :meth:`CircuitBreaker.acquire`); may ask the store.

        Raises:
            CircuitOpenError: the shared (or, degraded, the local) breaker refuses.
            TypeError: the store is an asyncio store: use :meth:`aacquire`.
        """
        return admitted(self.try_acquire())

    def try_acquire(self) -> int | CircuitOpenError:
        """:meth:`acquire` returning the refusal instead of raising it."""
        if self._aio:
            raise TypeError(
                f"circuit breaker {self._name!r} keeps its state in an asyncio store; "
                "call it from async code (acall, an async pipeline, a coroutine function)"
            )
        now = self._monotonic()
        fast = self._fast_ticket
        if fast and now < self._fast_until:
            return fast  # a fresh CLOSED view: no round trip
        ticket = self._from_view(now)
        if ticket is not None:
            return ticket
        try:
            admission = self._store.acquire(self._name, self._params)
        except Exception as error:  # noqa: BLE001 - a failing store means local state
            self._degrade(error, "acquire")
            return CircuitBreaker.try_acquire(self)
        return self._admit(admission, now)

    async def aacquire(self) -> int:
        """:meth:`acquire` for async code: sends queued operations first, awaits the store."""
        if self._outbox:
            await self.aflush()
        if not self._aio:
            return self.acquire()
        now = self._monotonic()
        fast = self._fast_ticket
        if fast and now < self._fast_until:
            return fast  # a fresh CLOSED view: no round trip
        # Decided in a frame of its own, which has ended when the refusal is raised.
        return admitted(await self._atry_acquire(now))

    async def _atry_acquire(self, now: float) -> int | CircuitOpenError:
        """:meth:`try_acquire` past the fresh CLOSED view, awaiting an asyncio store."""
        ticket = self._from_view(now)
        if ticket is not None:
            return ticket
        try:
            admission = await self._store.acquire(self._name, self._params)
        except Exception as error:  # noqa: BLE001 - a failing store means local state
            self._degrade(error, "acquire")
            return CircuitBreaker.try_acquire(self)
        return self._admit(admission, now)

    def _fresh(self, now: float) -> bool:
        return self._view is not None and now - self._view_at < self._max_staleness

    def _from_view(self, now: float) -> int | CircuitOpenError | None:
        """Decide from a fresh cached view; ``None`` when the store must decide."""
        view = self._view
        # Degraded, the local state decides: a cached view must not admit past it.
        if view is None or self._degraded or now - self._view_at >= self._max_staleness:
            return None
        state = view.state
        if state is _CLOSED:
            return SHARED_TICKET_BASE + view.generation
        if state is _OPEN:
            remaining = self._view_at + view.open_remaining - now
            if remaining > 0.0:
                return self._rejection(_OPEN, remaining)
        elif state is _FORCED_OPEN:
            return self._rejection(_FORCED_OPEN, None)
        elif state is _DISABLED:
            return DISABLED_TICKET
        return None  # HALF_OPEN (or OPEN that has run out): the store leases trials

    def _admit(self, admission: Admission, now: float) -> int | CircuitOpenError:
        self._apply(admission.view, admission.transitions, now)
        kind = admission.kind
        if kind is AdmissionKind.ADMITTED:
            return SHARED_TICKET_BASE + admission.token
        if kind is AdmissionKind.TRIAL:
            return -(SHARED_TICKET_BASE + admission.token)
        if kind is AdmissionKind.DISABLED:
            return DISABLED_TICKET
        return self._rejection(admission.view.state, admission.retry_after)

    def _rejection(self, state: CircuitState, retry_after: float | None) -> CircuitOpenError:
        """Count a rejection, deliver its event, and return the error to raise."""
        with self._lock:
            self._reject_locked(state, retry_after)
        if self._pending:
            self._drain()
        return CircuitOpenError(self._name, retry_after)

    # -- outcomes -------------------------------------------------------------------------

    def release(self, ticket: int) -> None:
        """Give a permit back (a shared trial's lease goes back to the store)."""
        if ticket <= -SHARED_TICKET_BASE:
            self._send(-ticket - SHARED_TICKET_BASE, Outcome.RELEASE, None, trial=True)
        elif ticket < SHARED_TICKET_BASE:
            super().release(ticket)

    def on_result(self, ticket: int, result: object, duration: float | None = None) -> bool:
        """Report a returned call (see :meth:`CircuitBreaker.on_result`).

        A CLOSED success the store has no use for (per a fresh view: no failure streak to
        end, no window to feed) is only counted here.
        """
        if (
            ticket == self._excuse_ticket
            and ticket  # 0: no excuse (and DISABLED_TICKET, which records nothing)
            and self._plain_result
            and self._monotonic() < self._fast_until
        ):
            lock = self._lock
            lock.acquire()
            self._successes += 1
            lock.release()
            return False
        return super().on_result(ticket, result, duration)

    def _success(self, ticket: int, duration: float | None) -> bool:
        if -SHARED_TICKET_BASE < ticket < SHARED_TICKET_BASE:
            return super()._success(ticket, duration)
        slow = self._slow(duration)
        if ticket > 0:
            token = ticket - SHARED_TICKET_BASE
            if not slow and self._excused(token):
                with self._lock:
                    self._successes += 1
                return False
            return self._send(token, Outcome.SLOW_SUCCESS if slow else Outcome.SUCCESS, duration)
        outcome = Outcome.SLOW_SUCCESS if slow else Outcome.SUCCESS
        return self._send(-ticket - SHARED_TICKET_BASE, outcome, duration, trial=True)

    def _failure(self, ticket: int, duration: float | None) -> bool:
        if -SHARED_TICKET_BASE < ticket < SHARED_TICKET_BASE:
            return super()._failure(ticket, duration)
        outcome = Outcome.SLOW_FAILURE if self._slow(duration) else Outcome.FAILURE
        if ticket > 0:
            return self._send(ticket - SHARED_TICKET_BASE, outcome, duration)
        return self._send(-ticket - SHARED_TICKET_BASE, outcome, duration, trial=True)

    def _ignore(self, ticket: int) -> None:
        if -SHARED_TICKET_BASE < ticket < SHARED_TICKET_BASE:
            super()._ignore(ticket)
        elif ticket > 0:
            with self._lock:  # nothing to tell the store: an ignored call changes nothing
                self._ignored += 1
        else:
            self._send(-ticket - SHARED_TICKET_BASE, Outcome.IGNORED, None, trial=True)

    def _excused(self, token: int) -> bool:
        """Whether a CLOSED success would change nothing in the store, per a fresh view."""
        excused = self._excuse_ticket  # 0 while degraded: the local state must see it
        return (
            bool(excused)
            and token == excused - SHARED_TICKET_BASE
            and self._monotonic() < self._fast_until
        )

    def _send(
        self, token: int, outcome: Outcome, duration: float | None, *, trial: bool = False
    ) -> bool:
        """Report an outcome to the store; return whether it counted as a failure."""
        if self._aio:
            self._outbox.append((token, trial, outcome, duration))
            return outcome in _FAILED or (trial and outcome is Outcome.SLOW_SUCCESS)
        now = self._monotonic()
        try:
            report = self._report_request(token, outcome, trial=trial)()
        except Exception as error:  # noqa: BLE001 - a failing store means local state
            return self._report_failed(error, outcome, duration, trial=trial)
        return self._reported(report, now, outcome, trial=trial)

    # One request builder and one failure path per operation, for both kinds of store:
    # a blocking store's request is called, an asyncio store's is awaited.

    def _report_request(self, token: int, outcome: Outcome, *, trial: bool) -> Callable[[], Any]:
        return functools.partial(
            self._store.report,
            self._name,
            self._params,
            token,
            outcome,
            self._open_seconds(outcome),
            trial=trial,
        )

    def _report_failed(
        self, error: Exception, outcome: Outcome, duration: float | None, *, trial: bool
    ) -> bool:
        self._degrade(error, "report")
        return self._settle_locally(outcome, duration, trial=trial)

    def _command_request(self, command: Command, reason: str) -> Callable[[], Any]:
        return functools.partial(
            self._store.command,
            self._name,
            self._params,
            command,
            reason,
            self._command_seconds(command),
        )

    def _command_failed(self, error: Exception, command: Command, reason: str) -> bool:
        self._degrade(error, "command")
        return self._command_locally(command, reason)

    def _reported(self, report: Report, now: float, outcome: Outcome, *, trial: bool) -> bool:
        self._apply(report.view, report.transitions, now)
        with self._lock:
            if not report.counted:
                self._stale += 1
                return False
            if outcome is Outcome.SUCCESS:
                self._successes += 1
            elif outcome is Outcome.SLOW_SUCCESS:
                self._slow_calls += 1
                if trial:  # a slow trial says the dependency has not recovered
                    self._failures += 1
                    return True
                self._successes += 1
            elif outcome is Outcome.IGNORED:
                self._ignored += 1
            elif outcome is not Outcome.RELEASE:
                self._failures += 1
                if outcome is Outcome.SLOW_FAILURE:
                    self._slow_calls += 1
                return True
        return False

    def _settle_locally(self, outcome: Outcome, duration: float | None, *, trial: bool) -> bool:
        """The store did not take an outcome: count it against the local state instead.

        A trial's lease expires in the store by itself; a CLOSED outcome is counted in the
        local state's current generation, so the local breaker protects from now on.
        """
        if trial or outcome is Outcome.IGNORED or outcome is Outcome.RELEASE:
            return False
        ticket = self._generation
        if outcome in _FAILED:
            return super()._failure(ticket, duration)
        return super()._success(ticket, duration)

    def _open_seconds(self, outcome: Outcome) -> float:
        """The open duration to send: ``open_backoff`` of the shared open count, if set."""
        backoff = self._open_backoff
        if backoff is None or outcome is Outcome.SUCCESS or outcome is Outcome.IGNORED:
            return self._timeout
        view = self._view
        attempt = 1 if view is None else view.open_count + 1
        try:
            delay = float(backoff.delay(attempt, self._rng, self._shared_open_delay))
        except Exception:  # noqa: BLE001 - a broken backoff must not break the breaker
            _events.LISTENER_ERRORS.exception(f"circuit breaker {self._name!r} open_backoff")
            return self._timeout
        if not math.isfinite(delay) or delay < 0.0:
            return self._timeout
        self._shared_open_delay = delay
        return delay

    # -- asyncio stores -------------------------------------------------------------------

    def has_outbox(self) -> bool:
        """Whether outcomes or commands wait for :meth:`aflush` (asyncio stores only)."""
        return bool(self._outbox)

    async def aflush(self) -> None:
        """Send the outcomes and commands queued for an asyncio store, in order.

        Async drivers call it after each attempt; a queue left by a cancelled call is
        sent by the next :meth:`aacquire`.
        """
        outbox = self._outbox
        while outbox:
            item = outbox.popleft()
            now = self._monotonic()
            if len(item) == 2:  # a command
                command, reason = item
                try:
                    report = await self._command_request(command, reason)()
                except Exception as error:  # noqa: BLE001 - a failing store means local state
                    self._command_failed(error, command, reason)
                else:
                    self._apply(report.view, report.transitions, now)
                continue
            token, trial, outcome, duration = item
            try:
                report = await self._report_request(token, outcome, trial=trial)()
            except Exception as error:  # noqa: BLE001 - a failing store means local state
                self._report_failed(error, outcome, duration, trial=trial)
            else:
                self._reported(report, now, outcome, trial=trial)

    # -- operator controls --------------------------------------------------------------

    def force_open(self) -> None:
        """Reject every call fleet-wide until :meth:`reset`."""
        self._command(Command.FORCE_OPEN, "manual")

    def disable(self) -> None:
        """Admit every call fleet-wide and record nothing until :meth:`reset`."""
        self._command(Command.DISABLE, "manual")

    def reset(self) -> None:
        """Return the shared state (and this process's local state) to CLOSED.

        The shared reset is the one event; the local state, unseen while the store
        answers, is reset quietly (with an event only when the store is down).
        """
        if self._command(Command.RESET, "manual") is not False:
            with self._lock:
                self._clear_counts_locked()
                self._state = _CLOSED
                # Local tickets from before count for nothing.
                self._set_generation_locked(self._generation + 1)
                self._trials.clear()
                self._trial_successes = 0

    def trip(self, reason: str = "manual") -> bool:
        """Open the shared breaker now (see :meth:`CircuitBreaker.trip`).

        Returns:
            Whether this call opened it (with an asyncio store: whether it was queued;
            while the store fails: whether it opened the local breaker).
        """
        if not isinstance(reason, str):
            raise TypeError(f"CircuitBreaker.trip reason must be a str, got {reason!r}")
        if not reason:
            raise ValueError("CircuitBreaker.trip reason must not be empty")
        report = self._command(Command.TRIP, reason)
        if isinstance(report, bool):
            return report
        return any(change.state is _OPEN for change in report.transitions)

    def _command(self, command: Command, reason: str) -> Report | bool:
        """The store's report; ``True`` when queued; else what the local state did."""
        if self._aio:
            self._outbox.append((command, reason))
            return True
        now = self._monotonic()
        try:
            report: Report = self._command_request(command, reason)()
        except Exception as error:  # noqa: BLE001 - a failing store means local state
            return self._command_failed(error, command, reason)
        self._apply(report.view, report.transitions, now)
        return report

    def _command_seconds(self, command: Command) -> float:
        return self._open_seconds(Outcome.FAILURE) if command is Command.TRIP else self._timeout

    def _command_locally(self, command: Command, reason: str) -> bool:
        """Apply a command to the local state; for a trip, whether it opened the breaker."""
        if command is Command.TRIP:
            return CircuitBreaker.trip(self, reason)
        if command is Command.RESET:
            CircuitBreaker.reset(self)
            return False  # told apart from a store's answer: the local reset is done
        if command is Command.FORCE_OPEN:
            CircuitBreaker.force_open(self)
        else:
            CircuitBreaker.disable(self)
        return True

    # -- the cached view ------------------------------------------------------------------

    def _view_state(self, now: float) -> CircuitState:
        view = self._view
        assert view is not None  # noqa: S101 - callers checked
        if view.state is _OPEN and now >= self._view_at + view.open_remaining:
            return _HALF_OPEN
        return view.state

    def _apply(self, view: StoreView, transitions: tuple[Transition, ...], now: float) -> None:
        """Cache a store answer and queue the transitions this process made."""
        recovered = False
        with self._lock:
            current = self._view
            # Answers to concurrent operations may arrive out of order: keep the newest.
            if current is None or view.generation >= current.generation:
                self._view = view
                self._view_at = now
            if self._degraded:
                recovered = True
                self._degraded = False
            self._refresh_fast_locked()
            if self._notify:
                for change in transitions:
                    self._pending.append(
                        _events.CircuitStateChanged(
                            breaker=self._name,
                            previous=change.previous,
                            state=change.state,
                            reason=change.reason,
                            at=now - change.ago,
                        )
                    )
            if transitions:
                self._state_since = now - transitions[-1].ago
        if recovered:
            _events.STORE_BACK.info(
                f"circuit breaker {self._name!r}: the state store answers again; "
                "deciding from the shared state"
            )
        if self._pending:
            self._drain()

    def _refresh_fast_locked(self) -> None:
        """Recompute the hot-path tickets from the cached view (``self._lock`` held)."""
        view = self._view
        if view is None or self._degraded or view.state is not _CLOSED:
            self._fast_ticket = self._excuse_ticket = 0
            return
        ticket = SHARED_TICKET_BASE + view.generation
        self._fast_ticket = ticket
        self._fast_until = self._view_at + self._max_staleness
        quiet = not self._params.has_window and view.consecutive_failures == 0
        self._excuse_ticket = ticket if quiet else 0

    def _degrade(self, error: Exception, operation: str) -> None:
        with self._lock:
            self._fast_ticket = self._excuse_ticket = 0
            self._store_fallbacks += 1
            entering = not self._degraded
            self._degraded = True
        if entering:
            _events.STORE_DOWN.warning(
                f"circuit breaker {self._name!r}: state store failed during {operation} "
                f"({type(error).__name__}: {_short(error)}); deciding from local state"
            )

    def __repr__(self) -> str:
        view = self._view
        state = "unknown" if view is None else view.state.value
        mode = ", degraded" if self._degraded else ""
        return f"SharedCircuitBreaker(name={self._name!r}, state={state}{mode})"


def _has(store: object, operation: str) -> bool:
    return callable(getattr(store, operation, None))


def _short(error: Exception, limit: int = 200) -> str:
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break the fallback
        return "<unprintable>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
