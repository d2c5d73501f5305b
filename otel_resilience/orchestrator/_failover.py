"""Failover: which target a component uses, and when it goes back to its primary.

A component has a primary target and an ordered tuple of alternates
(:class:`FailoverConfig`). :class:`FailoverState` tracks the active one. Failing over
moves to the next alternate, in order, never back to an earlier one; only the primary's
health brings the component back: once the primary has been reported healthy without a
failure for ``healthy_seconds``, it is active again. Health comes from
:meth:`FailoverState.report`: call outcomes, health checks, or a breaker closing.

This module decides only: it never calls a target or sleeps. Time comes from the
injected clock.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Final

from otel_resilience._clock import SYSTEM_CLOCK
from otel_resilience._validation import check_int, check_number
from otel_resilience.telemetry import truncate

if TYPE_CHECKING:
    from otel_resilience._clock import Clock

__all__ = [
    "DEFAULT_FAILOVER_FAILURE_THRESHOLD",
    "DEFAULT_HEALTHY_SECONDS",
    "FAILOVER_HISTORY_SIZE",
    "FailoverConfig",
    "FailoverEvent",
    "FailoverState",
    "FailoverStatus",
]

DEFAULT_HEALTHY_SECONDS: Final = 30.0
"""How long the primary must stay healthy before the component returns to it."""

DEFAULT_FAILOVER_FAILURE_THRESHOLD: Final = 3
"""Consecutive failed reports on the active target that fail over on their own."""

FAILOVER_HISTORY_SIZE: Final = 100
"""Target changes kept by :meth:`FailoverState.history`."""

REASON_FAILURE_THRESHOLD: Final = "failure_threshold"
"""Reason of a failover caused by ``failure_threshold`` failed reports."""

REASON_PRIMARY_HEALTHY: Final = "primary_healthy"
"""Reason of the return to the primary after ``healthy_seconds`` of health."""

REASON_RESET: Final = "reset"
"""Reason of a return to the primary through :meth:`FailoverState.reset`."""

_CONFIG = "FailoverConfig"
_STATE = "FailoverState"


def _check_target(owner: str, field: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(
            f"{owner}.{field} must be a target name (str), got {type(value).__name__} {value!r}"
        )
    if not value.strip():
        raise ValueError(f"{owner}.{field} must be a non-empty name, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class FailoverConfig:
    """Where a component fails over to, and when it returns to its primary.

    Attributes:
        alternates: the targets to fail over to, in order of preference: a non-empty
            tuple (a list is accepted and stored as a tuple) of unique, non-empty names.
        healthy_seconds: how long the primary must be reported healthy, without a failure
            in between, before the component returns to it (> 0).
        failure_threshold: consecutive failed reports on the active target that fail over
            without waiting for the orchestrator's decision (>= 1).

    Example:
        >>> config = FailoverConfig(("eu-west", "us-east"), healthy_seconds=10.0)
        >>> config.alternates, config.failure_threshold
        (('eu-west', 'us-east'), 3)
    """

    alternates: tuple[str, ...]
    _: KW_ONLY
    healthy_seconds: float = DEFAULT_HEALTHY_SECONDS
    failure_threshold: int = DEFAULT_FAILOVER_FAILURE_THRESHOLD

    def __post_init__(self) -> None:
        alternates: object = self.alternates
        if isinstance(alternates, str) or not isinstance(alternates, tuple | list):
            raise TypeError(
                f"{_CONFIG}.alternates must be a tuple of target names, "
                f"got {type(alternates).__name__} {alternates!r}"
            )
        if not alternates:
            raise ValueError(f"{_CONFIG}.alternates must name at least one target")
        names = tuple(_check_target(_CONFIG, "alternates", name) for name in alternates)
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"{_CONFIG}.alternates must be unique, {name!r} repeats")
            seen.add(name)
        object.__setattr__(self, "alternates", names)
        object.__setattr__(
            self,
            "healthy_seconds",
            check_number(_CONFIG, "healthy_seconds", self.healthy_seconds),
        )
        check_int(_CONFIG, "failure_threshold", self.failure_threshold)


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverEvent:
    """The active target changed from ``previous`` to ``target`` at clock time ``at``.

    ``reason`` is what the caller of :meth:`FailoverState.fail_over` gave, or
    ``"failure_threshold"``, ``"primary_healthy"`` or ``"reset"``.
    """

    at: float
    previous: str
    target: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverStatus:
    """A consistent view of a :class:`FailoverState` for status reports.

    Attributes:
        primary: the primary target.
        current: the active target.
        on_primary: whether the active target is the primary.
        alternates_left: alternates after the active one, still available to fail over to.
        exhausted: a failover was asked for with no alternate left (cleared by a return
            to the primary).
        failovers: failovers so far (returns to the primary not counted).
        primary_healthy_for: seconds the primary has been reported healthy without a
            failure, or ``None`` when it is not known to be healthy.
    """

    primary: str
    current: str
    on_primary: bool
    alternates_left: tuple[str, ...]
    exhausted: bool
    failovers: int
    primary_healthy_for: float | None


class _Health:
    __slots__ = ("failures", "healthy_since")

    def __init__(self) -> None:
        self.failures = 0
        # Clock time of the first healthy report since the last failure; None if unknown.
        self.healthy_since: float | None = None


class FailoverState:
    """The active target of one component, its failovers and its return to the primary.

    Starts on the primary. :meth:`fail_over` moves to the next alternate in
    :attr:`FailoverConfig.alternates`; when none is left it returns ``None`` and stays on
    the last one. ``failure_threshold`` consecutive failed :meth:`report` calls on the
    active target fail over too. The component returns to the primary once the primary has
    been reported healthy (a successful call, a passing health check, its breaker closing)
    and no failure has been reported for it for ``healthy_seconds``; the next
    :meth:`current` then answers the primary, and a later failover starts again from the
    first alternate. Leaving a target forgets its health, so a primary just failed away
    from must prove itself healthy anew.

    Thread-safe: one lock guards the state; nothing outside this class runs under it.

    Args:
        primary: the primary target's name; not one of the alternates.
        config: the alternates, ``healthy_seconds`` and ``failure_threshold``.
        clock: where time comes from; the system clock when omitted.

    Example:
        >>> from otel_resilience.testing import FakeClock
        >>> clock = FakeClock()
        >>> state = FailoverState("db-a", FailoverConfig(("db-b",), healthy_seconds=30.0),
        ...                       clock=clock)
        >>> state.fail_over("db-a unreachable"), state.current()
        ('db-b', 'db-b')
        >>> state.fail_over("db-b unreachable") is None
        True
        >>> state.report("db-a", ok=True)
        >>> clock.advance(30.0)
        >>> state.current()
        'db-a'
    """

    __slots__ = (
        "_clock",
        "_config",
        "_exhausted",
        "_failovers",
        "_health",
        "_history",
        "_index",
        "_lock",
        "_primary",
        "_targets",
    )

    def __init__(self, primary: str, config: FailoverConfig, *, clock: Clock | None = None) -> None:
        self._primary = _check_target(_STATE, "primary", primary)
        if not isinstance(config, FailoverConfig):
            raise TypeError(
                f"{_STATE}.config must be a FailoverConfig, got {type(config).__name__}"
            )
        if primary in config.alternates:
            raise ValueError(f"{_STATE}.primary must not be one of the alternates, got {primary!r}")
        self._config = config
        self._clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self._targets = (primary, *config.alternates)
        self._health = {target: _Health() for target in self._targets}
        self._lock = threading.Lock()
        # Index of the active target in _targets; 0 is the primary. Read without the lock
        # by current()'s fast path: an int read is atomic, and a racing change is simply
        # seen by the next call.
        self._index = 0
        self._exhausted = False
        self._failovers = 0
        self._history: deque[FailoverEvent] = deque(maxlen=FAILOVER_HISTORY_SIZE)

    @property
    def primary(self) -> str:
        """The primary target."""
        return self._primary

    @property
    def config(self) -> FailoverConfig:
        """The alternates and thresholds."""
        return self._config

    @property
    def targets(self) -> tuple[str, ...]:
        """The primary followed by the alternates, in failover order."""
        return self._targets

    def current(self) -> str:
        """Return the active target, returning to the primary if it has been healthy long enough.

        On the primary this reads neither the clock nor the lock.
        """
        if self._index == 0:
            return self._primary
        now = self._clock.monotonic()
        with self._lock:
            self._settle_locked(now)
            return self._targets[self._index]

    def fail_over(self, reason: str, *, expected: str | None = None) -> str | None:
        """Move to the next alternate and return it; ``None`` when no alternate is left.

        Args:
            reason: why, for the history and status reports (truncated to 1 KiB).
            expected: the target the caller saw failing. When given and another target is
                active already (a concurrent caller failed over first), nothing moves and
                the active target is returned, so simultaneous failures of one target
                fail over once, not once each.

        Raises:
            TypeError: ``reason`` is not a string.
            ValueError: ``expected`` is not one of the targets.
        """
        if not isinstance(reason, str):
            raise TypeError(f"{_STATE}.fail_over reason must be a str, got {type(reason).__name__}")
        reason = truncate(reason)
        if expected is not None:
            self._check_known("expected", expected)
        now = self._clock.monotonic()
        with self._lock:
            self._settle_locked(now)
            if expected is not None and self._targets[self._index] != expected:
                return self._targets[self._index]
            return self._fail_over_locked(now, reason)

    def report(self, target: str, ok: bool) -> None:  # noqa: FBT001 - report(target, ok) reads as a sentence
        """Record a health signal for ``target``: a call outcome, a health check, a breaker.

        A healthy report starts (or continues) the target's healthy period; a failed one
        ends it. ``failure_threshold`` failed reports in a row on the active target fail
        over to the next alternate.

        Raises:
            ValueError: ``target`` is neither the primary nor an alternate.
        """
        self._check_known("target", target)
        now = self._clock.monotonic()
        with self._lock:
            self._settle_locked(now)
            health = self._health[target]
            if ok:
                health.failures = 0
                if health.healthy_since is None:
                    health.healthy_since = now
                return
            health.failures += 1
            health.healthy_since = None
            if (
                health.failures >= self._config.failure_threshold
                and self._targets[self._index] == target
            ):
                self._fail_over_locked(now, REASON_FAILURE_THRESHOLD)

    def reset(self) -> None:
        """Return to the primary now, whatever its health (an operator's decision)."""
        now = self._clock.monotonic()
        with self._lock:
            if self._index != 0:
                self._return_to_primary_locked(now, REASON_RESET)

    def status(self) -> FailoverStatus:
        """Return the active target, what is left and the primary's health, at once."""
        now = self._clock.monotonic()
        with self._lock:
            self._settle_locked(now)
            index = self._index
            since = self._health[self._primary].healthy_since
            return FailoverStatus(
                primary=self._primary,
                current=self._targets[index],
                on_primary=index == 0,
                alternates_left=self._targets[index + 1 :],
                exhausted=self._exhausted,
                failovers=self._failovers,
                primary_healthy_for=None if since is None else max(now - since, 0.0),
            )

    def history(self) -> list[FailoverEvent]:
        """Return the last :data:`FAILOVER_HISTORY_SIZE` target changes, oldest first."""
        with self._lock:
            return list(self._history)

    def __repr__(self) -> str:
        return (
            f"FailoverState(primary={self._primary!r}, "
            f"current={self._targets[self._index]!r}, targets={self._targets!r})"
        )

    def _check_known(self, field: str, target: object) -> None:
        if target not in self._health:
            raise ValueError(
                f"{_STATE}: {field} {target!r} is not a failover target "
                f"(targets: {', '.join(self._targets)})"
            )

    def _settle_locked(self, now: float) -> None:
        if self._index == 0:
            return
        since = self._health[self._primary].healthy_since
        if since is not None and now - since >= self._config.healthy_seconds:
            self._return_to_primary_locked(now, REASON_PRIMARY_HEALTHY)

    def _return_to_primary_locked(self, now: float, reason: str) -> None:
        previous = self._targets[self._index]
        self._index = 0
        self._exhausted = False
        self._history.append(
            FailoverEvent(at=now, previous=previous, target=self._primary, reason=reason)
        )

    def _fail_over_locked(self, now: float, reason: str) -> str | None:
        index = self._index
        previous = self._targets[index]
        if index + 1 >= len(self._targets):
            self._exhausted = True
            return None
        # The target failed away from must prove itself healthy again before a return.
        leaving = self._health[previous]
        leaving.healthy_since = None
        leaving.failures = 0
        index += 1
        target = self._targets[index]
        self._index = index
        self._failovers += 1
        self._history.append(FailoverEvent(at=now, previous=previous, target=target, reason=reason))
        return target
