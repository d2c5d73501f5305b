"""The timeout strategy (data the drivers implement) and the cooperative deadline."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from dataclasses import KW_ONLY, dataclass
from types import TracebackType

from otel_resilience._clock import SYSTEM_CLOCK, Clock
from otel_resilience._errors import ResilienceTimeoutError
from otel_resilience._validation import check_number

__all__ = [
    "DEADLINE",
    "DEFAULT_TIMEOUT_NAME",
    "TIMEOUT_SCOPES",
    "Deadline",
    "Timeout",
    "current_deadline",
    "deadline_scope",
    "remaining",
]

DEFAULT_TIMEOUT_NAME = "timeout"
"""Name of a :class:`Timeout` when none is given (used in telemetry)."""

TIMEOUT_SCOPES = frozenset({"attempt", "total"})
"""The scopes a timeout error and the ``TimeoutExceeded`` event carry."""


@dataclass(frozen=True, slots=True)
class Timeout:
    """Limit how long a protected call (or each attempt of it) may run.

    This is data: it says how long; the two pipeline drivers enforce it. The scope comes
    from where the pipeline applies it: around every attempt (``"attempt"``) or around
    the whole call, retries and their waits included (``"total"``).

    **Async** (``acall``, decorated ``async def``): when the attempt (or the whole call)
    overruns ``seconds`` on the pipeline's clock, the driver cancels it and raises
    :class:`~otel_resilience.ResilienceTimeoutError`, which is also a built-in
    :class:`TimeoutError`. The cancelled code sees ``asyncio.CancelledError`` at its
    current ``await`` and may clean up.

    **Sync**: Python cannot interrupt a running function from outside, so a sync timeout
    cannot stop the call. Instead the sync driver:

    a. publishes the deadline to cooperative code: inside the call,
       :func:`otel_resilience.timeout.remaining` returns the seconds left (and
       :func:`current_deadline` the absolute :class:`Deadline` on the pipeline clock), so
       the function can pass them on as socket or HTTP timeouts, or stop early;
    b. if the call returns after the deadline, discards the late result and raises
       ``ResilienceTimeoutError``. The call ran to completion: its side effects happened;
    c. never starts an attempt, or a retry wait, once the deadline has passed.

    Attributes:
        seconds: the limit, finite and ``> 0``.
        name: identifies the timeout in telemetry (default :data:`DEFAULT_TIMEOUT_NAME`).

    Example:
        >>> Timeout(2.5).seconds
        2.5
        >>> Timeout(1, name="db").error("total")
        ResilienceTimeoutError('total timeout of 1s exceeded')
    """

    seconds: float
    _: KW_ONLY
    name: str = DEFAULT_TIMEOUT_NAME

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", check_number("Timeout", "seconds", self.seconds))
        name: object = self.name
        if not isinstance(name, str):
            raise TypeError(f"Timeout.name must be a str, got {type(name).__name__} {name!r}")
        if not name:
            raise ValueError("Timeout.name must not be empty")

    def deadline_after(self, now: float) -> float:
        """Return the absolute deadline of something that starts at clock time ``now``."""
        return now + self.seconds

    def error(self, scope: str) -> ResilienceTimeoutError:
        """Return the error a driver raises when this timeout is exceeded in ``scope``.

        Raises:
            ValueError: ``scope`` is not ``"attempt"`` or ``"total"``.
        """
        if scope not in TIMEOUT_SCOPES:
            raise ValueError(f"Timeout.error scope must be 'attempt' or 'total', got {scope!r}")
        return ResilienceTimeoutError(self.seconds, scope)


@dataclass(frozen=True, slots=True, kw_only=True)
class Deadline:
    """An absolute point in time on a clock, by which a call should be done.

    Attributes:
        at: the deadline, in the ``clock.monotonic()`` time base.
        clock: the clock ``at`` refers to (the pipeline's clock).
    """

    at: float
    clock: Clock

    def remaining(self) -> float:
        """Return the seconds left before the deadline; ``0.0`` once it has passed."""
        left = self.at - self.clock.monotonic()
        return left if left > 0.0 else 0.0

    def expired(self) -> bool:
        """Return whether the deadline has been reached."""
        return self.clock.monotonic() >= self.at


DEADLINE: ContextVar[Deadline | None] = ContextVar("otel_resilience.deadline", default=None)
"""The deadline of the innermost timeout around the running code, or ``None``.

Like every context variable it follows ``await`` within a task and is copied into new
tasks, but not into threads started by the call (``contextvars.copy_context().run``
carries it there). Set it through :func:`deadline_scope`, which keeps the tighter of
nested deadlines and restores the previous one.
"""


def current_deadline() -> Deadline | None:
    """Return the deadline that applies to the running code, or ``None``."""
    return DEADLINE.get()


def remaining(clock: Clock | None = None) -> float | None:
    """Return the seconds left before the current deadline, or ``None`` if there is none.

    Cooperative code calls this to size its own I/O timeouts or to stop early. The result
    is ``0.0`` once the deadline has passed, never negative.

    Args:
        clock: read the current time from this clock instead of the one the deadline was
            set with; it must share that clock's time base.

    Example:
        >>> from otel_resilience.testing import FakeClock
        >>> clock = FakeClock(start=10.0)
        >>> remaining() is None
        True
        >>> with deadline_scope(12.0, clock=clock):
        ...     clock.advance(0.5)
        ...     remaining()
        1.5
    """
    deadline = DEADLINE.get()
    if deadline is None:
        return None
    if clock is None:
        return deadline.remaining()
    left = deadline.at - clock.monotonic()
    return left if left > 0.0 else 0.0


class _DeadlineScope:
    """Context manager behind :func:`deadline_scope` (a class: it sits on the call path)."""

    __slots__ = ("_deadline", "_token")

    def __init__(self, deadline: Deadline) -> None:
        self._deadline = deadline
        self._token: Token[Deadline | None] | None = None

    def __enter__(self) -> Deadline:
        new = self._deadline
        current = DEADLINE.get()
        chosen = new if current is None or _is_tighter(new, current) else current
        self._token = DEADLINE.set(chosen)
        return chosen

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        token = self._token
        if token is not None:
            self._token = None
            DEADLINE.reset(token)


def _is_tighter(new: Deadline, current: Deadline) -> bool:
    if new.clock is current.clock:
        return new.at < current.at
    # Different clocks have unrelated origins: compare the time each has left.
    return new.at - new.clock.monotonic() < current.at - current.clock.monotonic()


def deadline_scope(
    deadline: float, *, clock: Clock | None = None
) -> AbstractContextManager[Deadline]:
    """Return a context manager that publishes ``deadline`` to the code it runs.

    Inside the ``with`` block, :data:`DEADLINE` holds the tighter of the deadline already
    in force and this one (an inner timeout can shorten an outer one, never extend it);
    the previous value is restored on exit. ``__enter__`` returns the :class:`Deadline` in
    force. Enter and exit it in the same thread or task.

    Args:
        deadline: absolute time on ``clock`` (``clock.monotonic() + seconds``).
        clock: the clock ``deadline`` refers to; default the system clock.

    Raises:
        ValueError: ``deadline`` is NaN or infinite.
    """
    if not math.isfinite(deadline):
        raise ValueError(f"deadline_scope deadline must be finite, got {deadline!r}")
    return _DeadlineScope(Deadline(at=deadline, clock=SYSTEM_CLOCK if clock is None else clock))
