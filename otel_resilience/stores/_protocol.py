"""The state-store seam: what a shared circuit breaker asks of the place its state lives.

A store keeps one breaker state machine per name and applies each operation atomically
(one Lua script in Redis, one lock in memory). The breaker object in each process keeps
its configuration, classifies outcomes, caches the last :class:`StoreView` it was sent,
and delivers the :class:`Transition` records the store says *this caller* made: every
transition is reported to exactly one caller fleet-wide, so it becomes exactly one
event.

Times inside a store are the store's own (Redis server time); what crosses the seam is
durations in seconds (``open_remaining``, ``retry_after``, ``ago``), never timestamps, so
a client whose clock is off changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol

from otel_resilience._errors import ResilienceError
from otel_resilience._validation import check_int, check_number, check_ratio

if TYPE_CHECKING:
    from otel_resilience.breaker import CircuitBreakerConfig, CircuitState

__all__ = [
    "DEFAULT_KEY_TTL_SECONDS",
    "Admission",
    "AdmissionKind",
    "AsyncBreakerStateStore",
    "BreakerStateStore",
    "Command",
    "Outcome",
    "Report",
    "StoreDataError",
    "StoreParams",
    "StoreUnavailableError",
    "StoreView",
    "Transition",
]

DEFAULT_KEY_TTL_SECONDS: Final = 86_400.0
"""How long a breaker's keys outlive their last write (a day): idle state expires."""


class StoreUnavailableError(ResilienceError):
    """The state store could not be reached in time (or its own breaker is open).

    A shared breaker answers from its local state instead; the protected call never sees
    this error.
    """


class StoreDataError(ResilienceError):
    """A store held data that is not a breaker's state; the store reset it.

    Raised by nothing on the call path: stores log it (naming the key and field) and
    re-initialise the breaker's keys.
    """


class AdmissionKind(enum.IntEnum):
    """What :meth:`BreakerStateStore.acquire` decided."""

    ADMITTED = 0
    """CLOSED: the call may run; ``token`` is the generation it runs under."""
    TRIAL = 1
    """HALF_OPEN: the call is a trial; ``token`` is its lease id."""
    REJECTED = 2
    """OPEN, FORCED_OPEN, or HALF_OPEN with every trial slot leased."""
    DISABLED = 3
    """DISABLED: the call may run and its outcome records nothing."""


class Outcome(enum.IntEnum):
    """An outcome reported to the store (already classified by the breaker)."""

    SUCCESS = 0
    FAILURE = 1
    SLOW_SUCCESS = 2
    """A success at least ``slow_call_duration_seconds`` long (a failure for a trial)."""
    SLOW_FAILURE = 3
    IGNORED = 4
    """An ignored exception: counts nothing, gives a trial's lease back."""
    RELEASE = 5
    """The call never counted (cancelled, refused later): gives a trial's lease back."""


class Command(enum.IntEnum):
    """An operator command (:meth:`BreakerStateStore.command`)."""

    RESET = 0
    """To CLOSED with empty counts; a new generation even when already CLOSED."""
    FORCE_OPEN = 1
    DISABLE = 2
    TRIP = 3
    """Open now from CLOSED or HALF_OPEN (after the lazy OPEN -> HALF_OPEN move); an OPEN
    breaker keeps its timer; FORCED_OPEN and DISABLED are left alone."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreParams:
    """The configuration a store applies, sent with every operation.

    Built from a :class:`~otel_resilience.CircuitBreakerConfig` by :meth:`from_config`.
    Each caller's parameters govern the operation it sends, so every process sharing a
    breaker should configure it alike.

    Attributes:
        failure_threshold: consecutive failures (fleet-wide) that open CLOSED.
        success_threshold: trial successes that close HALF_OPEN.
        timeout_seconds: the open duration (unless an operation passes its own).
        half_open_max_calls: trial leases held at once in HALF_OPEN.
        lease_seconds: how long a trial may hold its lease; then it is reclaimed and its
            outcome is stale. Always set in a shared store: a process that dies holding a
            lease must not block recovery forever.
        minimum_calls: calls in the window before rates are judged.
        failure_rate_threshold: open when failures / calls in the window reach it.
        slow_call_rate_threshold: open when slow calls / calls in the window reach it.
        window_size: a count window of the last ``window_size`` counted calls.
        window_seconds: a time window of :data:`~otel_resilience.breaker.TIME_WINDOW_BUCKETS`
            buckets over the last ``window_seconds`` seconds (store time).
        key_ttl_seconds: every key expires this long after its last write.
    """

    failure_threshold: int
    success_threshold: int
    timeout_seconds: float
    half_open_max_calls: int
    lease_seconds: float
    minimum_calls: int = 1
    failure_rate_threshold: float | None = None
    slow_call_rate_threshold: float | None = None
    window_size: int | None = None
    window_seconds: float | None = None
    key_ttl_seconds: float = DEFAULT_KEY_TTL_SECONDS

    def __post_init__(self) -> None:
        owner = "StoreParams"
        check_int(owner, "failure_threshold", self.failure_threshold)
        check_int(owner, "success_threshold", self.success_threshold)
        check_number(owner, "timeout_seconds", self.timeout_seconds)
        check_int(owner, "half_open_max_calls", self.half_open_max_calls)
        check_number(owner, "lease_seconds", self.lease_seconds)
        check_int(owner, "minimum_calls", self.minimum_calls)
        if self.failure_rate_threshold is not None:
            check_ratio(owner, "failure_rate_threshold", self.failure_rate_threshold)
        if self.slow_call_rate_threshold is not None:
            check_ratio(owner, "slow_call_rate_threshold", self.slow_call_rate_threshold)
        if self.window_size is not None:
            check_int(owner, "window_size", self.window_size)
        if self.window_seconds is not None:
            check_number(owner, "window_seconds", self.window_seconds)
        if self.window_size is not None and self.window_seconds is not None:
            raise ValueError("StoreParams: set window_size or window_seconds, not both")
        check_number(owner, "key_ttl_seconds", self.key_ttl_seconds)
        if self.key_ttl_seconds <= self.timeout_seconds:
            raise ValueError(
                f"StoreParams.key_ttl_seconds ({self.key_ttl_seconds}) must exceed "
                f"timeout_seconds ({self.timeout_seconds}): an OPEN state would expire early"
            )

    @property
    def has_window(self) -> bool:
        """Whether outcomes feed a sliding window (every success must then be reported)."""
        return self.window_size is not None or self.window_seconds is not None

    @classmethod
    def from_config(
        cls, config: CircuitBreakerConfig, *, key_ttl_seconds: float = DEFAULT_KEY_TTL_SECONDS
    ) -> StoreParams:
        """The store parameters of a breaker configuration.

        ``probe_lease_seconds=None`` (no lease locally) becomes a lease of
        ``max(timeout_seconds, 60)`` seconds: shared trials always expire.
        """
        lease = config.probe_lease_seconds
        if lease is None:
            lease = max(config.timeout_seconds, 60.0)
        return cls(
            failure_threshold=config.failure_threshold,
            success_threshold=config.success_threshold,
            timeout_seconds=config.timeout_seconds,
            half_open_max_calls=config.half_open_max_calls,
            lease_seconds=lease,
            minimum_calls=config.minimum_calls,
            failure_rate_threshold=config.failure_rate_threshold,
            slow_call_rate_threshold=config.slow_call_rate_threshold,
            window_size=config.sliding_window_size,
            window_seconds=config.sliding_window_seconds,
            key_ttl_seconds=key_ttl_seconds,
        )


class StoreView(NamedTuple):
    """A breaker's shared state as the store saw it when it answered.

    Attributes:
        state: the state after the operation (OPEN whose period has passed is reported as
            it is stored; the next ``acquire`` moves it).
        generation: the current generation; outcomes of calls admitted under another
            generation count for nothing.
        open_remaining: seconds until an OPEN breaker may go HALF_OPEN (0.0 otherwise).
        consecutive_failures: the fleet-wide failure streak while CLOSED.
        open_count: openings since the breaker last closed (drives ``open_backoff``).
        trials: trial leases held (HALF_OPEN).
    """

    state: CircuitState
    generation: int
    open_remaining: float
    consecutive_failures: int
    open_count: int
    trials: int


class Transition(NamedTuple):
    """A state change the answering operation made (reported to this caller only).

    Attributes:
        previous: the state before.
        state: the state after.
        reason: as :class:`~otel_resilience._events.CircuitStateChanged` ``reason``:
            ``failure_threshold``, ``failure_rate``, ``slow_call_rate``,
            ``trial_failure``, ``trial_success``, ``open_timeout``, ``manual`` or the
            reason given to :attr:`Command.TRIP`.
        ago: seconds before the answer at which it took effect (0.0 but for the lazy
            ``open_timeout`` move, stamped when the open period ended).
    """

    previous: CircuitState
    state: CircuitState
    reason: str
    ago: float


class Admission(NamedTuple):
    """The answer to :meth:`BreakerStateStore.acquire`.

    Attributes:
        kind: what was decided.
        token: the generation (ADMITTED), the lease id (TRIAL), else 0.
        retry_after: for REJECTED, seconds until a trial may be admitted (0.0 when every
            trial slot is leased, ``None`` when FORCED_OPEN); else ``None``.
        view: the state after the operation.
        transitions: the changes this operation made, oldest first.
    """

    kind: AdmissionKind
    token: int
    retry_after: float | None
    view: StoreView
    transitions: tuple[Transition, ...]


class Report(NamedTuple):
    """The answer to :meth:`BreakerStateStore.report` and :meth:`~BreakerStateStore.command`.

    Attributes:
        counted: whether the outcome counted (``False``: a stale generation or a lease
            that is gone; always ``True`` for commands).
        view: the state after the operation.
        transitions: the changes this operation made, oldest first.
    """

    counted: bool
    view: StoreView
    transitions: tuple[Transition, ...]


class BreakerStateStore(Protocol):
    """Where shared breakers keep their state (blocking I/O).

    Every method applies one atomic operation to the breaker ``name``, creating its
    state (CLOSED, a fresh generation never used before under that name) when there is
    none, and raises :class:`StoreUnavailableError` when the store cannot answer in
    time. An asyncio store (:class:`AsyncBreakerStateStore`) has the same methods as
    coroutine functions; that is how a breaker tells the two apart.
    """

    def acquire(self, name: str, params: StoreParams) -> Admission:
        """Ask for a permit: apply the lazy OPEN -> HALF_OPEN move, then decide."""
        ...

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
        """Report the outcome of the call admitted with ``token``.

        ``trial`` says whether ``token`` is a lease id (else a generation).
        ``open_seconds`` is the open duration to use if this outcome opens the breaker.
        """
        ...

    def command(
        self, name: str, params: StoreParams, command: Command, reason: str, open_seconds: float
    ) -> Report:
        """Apply an operator command (``reason`` names a :attr:`Command.TRIP`)."""
        ...

    def read(self, name: str, params: StoreParams) -> StoreView:
        """The current state without the lazy OPEN -> HALF_OPEN move (may initialise it)."""
        ...


class AsyncBreakerStateStore(Protocol):
    """:class:`BreakerStateStore` for asyncio: the same operations, awaited."""

    def acquire(self, name: str, params: StoreParams) -> Awaitable[Admission]:
        """As :meth:`BreakerStateStore.acquire`."""
        ...

    def report(
        self,
        name: str,
        params: StoreParams,
        token: int,
        outcome: Outcome,
        open_seconds: float,
        *,
        trial: bool,
    ) -> Awaitable[Report]:
        """As :meth:`BreakerStateStore.report`."""
        ...

    def command(
        self, name: str, params: StoreParams, command: Command, reason: str, open_seconds: float
    ) -> Awaitable[Report]:
        """As :meth:`BreakerStateStore.command`."""
        ...

    def read(self, name: str, params: StoreParams) -> Awaitable[StoreView]:
        """As :meth:`BreakerStateStore.read`."""
        ...
