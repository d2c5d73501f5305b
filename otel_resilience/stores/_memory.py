"""The in-memory state store: shared breaker state for the breakers of one process.

It is the reference model of the store semantics (the Redis scripts implement the same
state machine) and serves breakers that must share one state inside a process, for
example one breaker object per worker thread or per event loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from otel_resilience._clock import SYSTEM_CLOCK, Clock
from otel_resilience.breaker._state import CircuitState
from otel_resilience.breaker._window import FAILURE, SLOW, CountWindow, SlidingWindow, TimeWindow
from otel_resilience.stores._protocol import (
    Admission,
    AdmissionKind,
    Command,
    Outcome,
    Report,
    StoreParams,
    StoreView,
    Transition,
)

__all__ = ["AsyncInMemoryStateStore", "InMemoryStateStore"]

GENERATION_STRIDE = 1 << 32
"""Each new state of a name starts this far above the last (its generation and its lease
ids alike): tickets and leases of an earlier state never match."""

_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_FORCED_OPEN = CircuitState.FORCED_OPEN
_DISABLED = CircuitState.DISABLED

_FLAGS = {
    Outcome.SUCCESS: 0,
    Outcome.FAILURE: FAILURE,
    Outcome.SLOW_SUCCESS: SLOW,
    Outcome.SLOW_FAILURE: FAILURE | SLOW,
}


@dataclass(slots=True)
class _Entry:
    """One breaker's state (every field is the store's, times on the store's clock)."""

    generation: int
    written: float
    state: CircuitState = _CLOSED
    open_until: float = 0.0
    failures: int = 0
    open_count: int = 0
    trial_successes: int = 0
    last_trial: int = 0
    trials: dict[int, float] = field(default_factory=dict)
    window: SlidingWindow | None = None
    transitions: list[Transition] = field(default_factory=list)


class InMemoryStateStore:
    """Breaker state kept in this process, shared by every breaker given this store.

    Thread-safe: one lock makes each operation atomic. Keys expire ``key_ttl_seconds``
    after their last write, as in Redis.

    Args:
        clock: the store's time source (the system clock when omitted).

    Example:
        >>> from otel_resilience import CircuitBreaker, CircuitBreakerConfig
        >>> store = InMemoryStateStore()
        >>> config = CircuitBreakerConfig(failure_threshold=2)
        >>> first = CircuitBreaker("db", config, store=store, telemetry=False)
        >>> second = CircuitBreaker("db", config, store=store, telemetry=False)
        >>> for _ in range(2):
        ...     first.record_failure(first.acquire())
        >>> second.state
        <CircuitState.OPEN: 'open'>
    """

    __slots__ = ("_clock", "_entries", "_lock", "_next_generation")

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._next_generation = 0

    # -- the protocol ---------------------------------------------------------------------

    def acquire(self, name: str, params: StoreParams) -> Admission:
        """Ask for a permit (see :meth:`BreakerStateStore.acquire`)."""
        now = self._clock.monotonic()
        with self._lock:
            entry = self._entry(name, params, now)
            state = self._refresh(entry, now)
            kind = AdmissionKind.REJECTED
            token = 0
            retry_after: float | None = None
            if state is _CLOSED:
                kind, token = AdmissionKind.ADMITTED, entry.generation
            elif state is _DISABLED:
                kind = AdmissionKind.DISABLED
            elif state is _OPEN:
                retry_after = entry.open_until - now
            elif state is _HALF_OPEN:
                trials = entry.trials
                for lease, expiry in list(trials.items()):
                    if expiry <= now:
                        del trials[lease]
                if len(trials) < params.half_open_max_calls:
                    entry.last_trial += 1
                    token = entry.last_trial
                    trials[token] = now + params.lease_seconds
                    kind = AdmissionKind.TRIAL
                else:
                    retry_after = 0.0
            return Admission(kind, token, retry_after, *self._answer(entry, now))

    def report(
        self,
        name: str,
        params: StoreParams,
        token: int,
        outcome: Outcome,
        open_seconds: float,
        *,
        trial: bool,
    ) -> Report:
        """Report an outcome (see :meth:`BreakerStateStore.report`)."""
        now = self._clock.monotonic()
        with self._lock:
            entry = self._entry(name, params, now)
            if trial:
                counted = self._trial_outcome(entry, params, token, outcome, now, open_seconds)
            else:
                counted = entry.state is _CLOSED and token == entry.generation
                if counted:
                    self._closed_outcome(entry, params, outcome, now, open_seconds)
            return Report(counted, *self._answer(entry, now))

    def command(
        self, name: str, params: StoreParams, command: Command, reason: str, open_seconds: float
    ) -> Report:
        """Apply an operator command (see :meth:`BreakerStateStore.command`)."""
        now = self._clock.monotonic()
        with self._lock:
            entry = self._entry(name, params, now)
            if command is Command.RESET:
                if entry.state is _CLOSED:
                    self._clear(entry)
                    entry.generation += 1
                else:
                    self._close(entry, "manual", now)
            elif command is Command.TRIP:
                if self._refresh(entry, now) in (_CLOSED, _HALF_OPEN):
                    self._open(entry, reason, now, open_seconds)
            else:
                target = _FORCED_OPEN if command is Command.FORCE_OPEN else _DISABLED
                if entry.state is not target:
                    self._transition(entry, target, "manual", now)
            return Report(True, *self._answer(entry, now))

    def read(self, name: str, params: StoreParams) -> StoreView:
        """The current state (see :meth:`BreakerStateStore.read`)."""
        now = self._clock.monotonic()
        with self._lock:
            entry = self._entry(name, params, now)
            return self._view(entry, now)

    # -- the state machine (under ``self._lock``) -------------------------------------------

    def _entry(self, name: str, params: StoreParams, now: float) -> _Entry:
        entry = self._entries.get(name)
        if entry is None or now >= entry.written + params.key_ttl_seconds:
            self._next_generation += GENERATION_STRIDE
            # Lease ids count up from the generation too: a lease id handed out by an
            # earlier state of this name must never match a lease of the new one.
            generation = self._next_generation
            entry = _Entry(generation=generation, written=now, last_trial=generation)
            self._entries[name] = entry
        entry.written = now
        if entry.window is None and params.has_window:
            entry.window = (
                CountWindow(params.window_size)
                if params.window_size is not None
                else TimeWindow(params.window_seconds)  # type: ignore[arg-type]
            )
        return entry

    def _refresh(self, entry: _Entry, now: float) -> CircuitState:
        if entry.state is _OPEN and now >= entry.open_until:
            self._transition(entry, _HALF_OPEN, "open_timeout", entry.open_until, now)
        return entry.state

    def _closed_outcome(
        self, entry: _Entry, params: StoreParams, outcome: Outcome, now: float, open_seconds: float
    ) -> None:
        flags = _FLAGS.get(outcome)
        if flags is None:  # IGNORED or RELEASE: nothing to count while CLOSED
            return
        if flags & FAILURE:
            entry.failures += 1
        else:
            entry.failures = 0
        window = entry.window
        if window is not None:
            window.record(flags, now)
        if flags & FAILURE and entry.failures >= params.failure_threshold:
            self._open(entry, "failure_threshold", now, open_seconds)
        elif window is not None and window.calls >= params.minimum_calls:
            threshold = params.failure_rate_threshold
            if threshold is not None and window.failures / window.calls >= threshold:
                self._open(entry, "failure_rate", now, open_seconds)
                return
            threshold = params.slow_call_rate_threshold
            if threshold is not None and window.slow_calls / window.calls >= threshold:
                self._open(entry, "slow_call_rate", now, open_seconds)

    def _trial_outcome(
        self,
        entry: _Entry,
        params: StoreParams,
        token: int,
        outcome: Outcome,
        now: float,
        open_seconds: float,
    ) -> bool:
        expiry = entry.trials.pop(token, None) if entry.state is _HALF_OPEN else None
        if expiry is None or expiry <= now:
            return False
        if outcome is Outcome.SUCCESS:
            entry.trial_successes += 1
            if entry.trial_successes >= params.success_threshold:
                self._close(entry, "trial_success", now)
        elif outcome is not Outcome.IGNORED and outcome is not Outcome.RELEASE:
            self._open(entry, "trial_failure", now, open_seconds)
        return True

    def _open(self, entry: _Entry, reason: str, now: float, open_seconds: float) -> None:
        entry.open_count += 1
        entry.open_until = now + open_seconds
        self._transition(entry, _OPEN, reason, now)

    def _close(self, entry: _Entry, reason: str, now: float) -> None:
        self._clear(entry)
        self._transition(entry, _CLOSED, reason, now)

    @staticmethod
    def _clear(entry: _Entry) -> None:
        if entry.window is not None:
            entry.window.clear()
        entry.failures = 0
        entry.open_count = 0

    @staticmethod
    def _transition(
        entry: _Entry, state: CircuitState, reason: str, at: float, now: float | None = None
    ) -> None:
        entry.transitions.append(
            Transition(entry.state, state, reason, 0.0 if now is None else max(0.0, now - at))
        )
        entry.state = state
        entry.generation += 1
        entry.trials.clear()
        entry.trial_successes = 0

    def _answer(self, entry: _Entry, now: float) -> tuple[StoreView, tuple[Transition, ...]]:
        transitions = tuple(entry.transitions)
        entry.transitions.clear()
        return self._view(entry, now), transitions

    @staticmethod
    def _view(entry: _Entry, now: float) -> StoreView:
        remaining = max(0.0, entry.open_until - now) if entry.state is _OPEN else 0.0
        return StoreView(
            entry.state,
            entry.generation,
            remaining,
            entry.failures,
            entry.open_count,
            len(entry.trials),
        )


class AsyncInMemoryStateStore:
    """:class:`InMemoryStateStore` behind the asyncio store protocol.

    Each operation runs at once on the wrapped store (it never blocks for long); the
    coroutine interface lets asyncio breakers be tested against the model.

    Args:
        store: the store to share; a new one when omitted.
        clock: the clock of a new store (not with ``store``).
    """

    __slots__ = ("sync",)

    def __init__(
        self, store: InMemoryStateStore | None = None, *, clock: Clock | None = None
    ) -> None:
        if store is not None and clock is not None:
            raise ValueError("AsyncInMemoryStateStore: pass store or clock, not both")
        self.sync: InMemoryStateStore = InMemoryStateStore(clock=clock) if store is None else store
        """The wrapped synchronous store."""

    async def acquire(self, name: str, params: StoreParams) -> Admission:
        """As :meth:`InMemoryStateStore.acquire`."""
        return self.sync.acquire(name, params)

    async def report(
        self,
        name: str,
        params: StoreParams,
        token: int,
        outcome: Outcome,
        open_seconds: float,
        *,
        trial: bool,
    ) -> Report:
        """As :meth:`InMemoryStateStore.report`."""
        return self.sync.report(name, params, token, outcome, open_seconds, trial=trial)

    async def command(
        self, name: str, params: StoreParams, command: Command, reason: str, open_seconds: float
    ) -> Report:
        """As :meth:`InMemoryStateStore.command`."""
        return self.sync.command(name, params, command, reason, open_seconds)

    async def read(self, name: str, params: StoreParams) -> StoreView:
        """As :meth:`InMemoryStateStore.read`."""
        return self.sync.read(name, params)
