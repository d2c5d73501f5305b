"""The sans-IO core of the bulkhead: a counting semaphore with a bounded FIFO queue.

It never blocks. A call that finds every slot busy is queued as a *waiter* object that
the driver supplies; when a slot frees up, :meth:`Bulkhead.release` hands it directly to
the first waiter and calls the waiter's :meth:`~BulkheadWaiter.wake` after the lock is
released. The drivers do the actual waiting (a ``threading.Event`` in the sync driver, a
future in the async one) and give up through :meth:`Bulkhead.abandon`.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from typing import TYPE_CHECKING, Protocol

from otel_resilience._errors import BulkheadFullError
from otel_resilience._events import BulkheadRejected, ResilienceListener, safe_call
from otel_resilience._validation import check_int, check_optional_number

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = [
    "BULKHEAD_REJECTION_REASONS",
    "DEFAULT_BULKHEAD_NAME",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_QUEUE_TIMEOUT",
    "Admission",
    "Bulkhead",
    "BulkheadWaiter",
]

DEFAULT_MAX_QUEUE = 0
"""Calls that may wait for a slot by default: none (a full bulkhead rejects at once)."""

DEFAULT_QUEUE_TIMEOUT: float | None = None
"""How long a queued call waits by default: no limit (only with a queue)."""

DEFAULT_BULKHEAD_NAME = "bulkhead"
"""Name of a :class:`Bulkhead` when none is given (used in errors and telemetry)."""

BULKHEAD_REJECTION_REASONS = frozenset({"queue_full", "queue_timeout"})
"""Why a bulkhead refuses a call: the queue was full, or the wait in it timed out."""


class BulkheadWaiter(Protocol):
    """A queued call, as the driver represents it."""

    def wake(self) -> None:
        """The waiter now owns a slot; unblock it.

        Called outside the bulkhead's lock, from the thread that released the slot. It
        must not raise, and must tolerate being called after the waiter gave up (when
        :meth:`Bulkhead.abandon` returned ``False``: the slot is then the waiter's anyway).
        """


class Admission(enum.Enum):
    """The answer of :meth:`Bulkhead.acquire_or_enqueue`."""

    GRANTED = "granted"
    """A slot was taken; run the call, then :meth:`Bulkhead.release`."""
    QUEUED = "queued"
    """The waiter joined the queue; wait for ``wake()`` or give up with ``abandon``."""
    REJECTED = "rejected"
    """Every slot busy and the queue full; raise :meth:`Bulkhead.rejected_error`."""


class Bulkhead:
    """Limit how many calls run at once, with an optional bounded wait queue.

    At most ``max_concurrent`` calls hold a slot. When all are busy, up to ``max_queue``
    further calls wait in FIFO order, each for at most ``queue_timeout`` seconds; beyond
    that, calls are rejected with :class:`~otel_resilience.BulkheadFullError`. A freed
    slot passes straight to the oldest waiter, so a newcomer can never overtake the queue.

    Thread-safe: one lock guards the counters and the queue; waiters are woken and
    listeners told after it is released. One bulkhead may be shared by sync and async
    callers.

    Args:
        max_concurrent: slots, ``>= 1``.
        max_queue: how many calls may wait for a slot, ``>= 0``
            (default :data:`DEFAULT_MAX_QUEUE`: none).
        queue_timeout: seconds a queued call waits before it is rejected, ``> 0``, or
            ``None`` for no limit (default :data:`DEFAULT_QUEUE_TIMEOUT`). Needs a queue.
        name: identifies the bulkhead in errors and telemetry
            (default :data:`DEFAULT_BULKHEAD_NAME`).
        listener: receives a ``BulkheadRejected`` event for each rejection.

    Example:
        >>> bulkhead = Bulkhead(2)
        >>> bulkhead.try_acquire(), bulkhead.try_acquire(), bulkhead.try_acquire()
        (True, True, False)
        >>> bulkhead.release()
        >>> bulkhead.in_flight
        1
    """

    __slots__ = (
        "__weakref__",
        "_in_flight",
        "_listener",
        "_lock",
        "_max_concurrent",
        "_max_queue",
        "_name",
        "_queue",
        "_queue_timeout",
        "_rejections",
    )

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT,
        name: str = DEFAULT_BULKHEAD_NAME,
        listener: ResilienceListener | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        telemetry: bool = True,
    ) -> None:
        self._max_concurrent = check_int("Bulkhead", "max_concurrent", max_concurrent)
        self._max_queue = check_int("Bulkhead", "max_queue", max_queue, minimum=0)
        self._queue_timeout = check_optional_number("Bulkhead", "queue_timeout", queue_timeout)
        if self._queue_timeout is not None and self._max_queue == 0:
            raise ValueError(
                "Bulkhead.queue_timeout needs Bulkhead.max_queue >= 1: "
                "with no queue, no call ever waits"
            )
        checked_name: object = name
        if not isinstance(checked_name, str):
            raise TypeError(
                f"Bulkhead.name must be a str, got {type(checked_name).__name__} {name!r}"
            )
        if not name:
            raise ValueError("Bulkhead.name must not be empty")
        self._name = name
        if listener is not None and not callable(getattr(listener, "on_event", None)):
            raise TypeError(
                f"Bulkhead.listener must have an on_event method, got {type(listener).__name__}"
            )
        # Imported here: the telemetry package imports the breaker state and events.
        from otel_resilience.telemetry._default import (  # noqa: PLC0415
            resolve_listener,
            track,
        )

        resolved = resolve_listener(
            "Bulkhead",
            listener,
            telemetry=telemetry,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        # Each rejection is reported as an event unless the listener counts them itself.
        self._listener = (
            resolved
            if resolved is not None and getattr(resolved, "wants_rejections", True)
            else None
        )
        self._lock = threading.Lock()
        self._in_flight = 0
        self._rejections = 0
        self._queue: deque[BulkheadWaiter] = deque()
        track(resolved, self)  # observed by the telemetry listener at collection time

    @property
    def name(self) -> str:
        """The bulkhead's name."""
        return self._name

    @property
    def max_concurrent(self) -> int:
        """How many calls may hold a slot at once."""
        return self._max_concurrent

    @property
    def max_queue(self) -> int:
        """How many calls may wait for a slot."""
        return self._max_queue

    @property
    def queue_timeout(self) -> float | None:
        """Seconds a queued call waits before rejection, or ``None`` for no limit."""
        return self._queue_timeout

    @property
    def in_flight(self) -> int:
        """How many slots are taken (including slots handed to woken waiters)."""
        return self._in_flight

    @property
    def queued(self) -> int:
        """How many calls are waiting for a slot."""
        return len(self._queue)

    @property
    def rejections(self) -> int:
        """How many calls were rejected so far (queue full or queue timeout)."""
        return self._rejections

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued; never queues, never counts.

        The fast path of both drivers: no allocation. On ``False`` the driver goes on
        with :meth:`acquire_or_enqueue`.
        """
        with self._lock:
            if self._in_flight < self._max_concurrent and not self._queue:
                self._in_flight += 1
                return True
            return False

    def acquire_or_enqueue(self, waiter: BulkheadWaiter) -> Admission:
        """Take a slot, or queue ``waiter`` for one, or reject the call.

        A rejection is counted and reported to the listener (``reason="queue_full"``)
        after the lock is released.
        """
        with self._lock:
            if self._in_flight < self._max_concurrent and not self._queue:
                self._in_flight += 1
                return Admission.GRANTED
            if len(self._queue) < self._max_queue:
                self._queue.append(waiter)
                return Admission.QUEUED
            self._rejections += 1
        self._report("queue_full")
        return Admission.REJECTED

    def release(self) -> None:
        """Give back a slot: to the first queued waiter if there is one, else to the pool.

        A waiter handed the slot is woken after the lock is released; ``in_flight`` stays
        the same, since the slot changes owner without becoming free.

        Raises:
            RuntimeError: more releases than acquisitions.
        """
        with self._lock:
            if self._in_flight <= 0:
                raise RuntimeError(f"bulkhead {self._name!r} released more slots than acquired")
            if not self._queue:
                self._in_flight -= 1
                return
            waiter = self._queue.popleft()
        waiter.wake()

    def abandon(self, waiter: BulkheadWaiter, *, timed_out: bool = False) -> bool:
        """Take a queued ``waiter`` out of the queue because it stops waiting.

        Call it when the wait times out or is cancelled. The waiter must have been queued
        by :meth:`acquire_or_enqueue` (it is matched by identity).

        Args:
            waiter: the waiter that gives up.
            timed_out: the wait hit ``queue_timeout``; counts a rejection and reports
                ``reason="queue_timeout"`` (a cancellation is not a rejection).

        Returns:
            ``True`` if the waiter was still queued and is now removed. ``False`` if a
            slot had already been handed to it (its ``wake()`` has run or is about to):
            the caller then owns a slot and must :meth:`release` it (or use it).
        """
        with self._lock:
            queue = self._queue
            for index, queued in enumerate(queue):
                if queued is waiter:
                    del queue[index]
                    break
            else:
                return False
            if not timed_out:
                return True
            self._rejections += 1
        self._report("queue_timeout")
        return True

    def rejected_error(self, reason: str) -> BulkheadFullError:
        """Return the error a driver raises for a rejection with ``reason``.

        Raises:
            ValueError: ``reason`` is not ``"queue_full"`` or ``"queue_timeout"``.
        """
        if reason not in BULKHEAD_REJECTION_REASONS:
            raise ValueError(
                f"Bulkhead.rejected_error reason must be 'queue_full' or 'queue_timeout', "
                f"got {reason!r}"
            )
        return BulkheadFullError(self._name, reason)

    def _report(self, reason: str) -> None:
        listener = self._listener
        if listener is not None:
            safe_call(
                "bulkhead listener",
                listener.on_event,
                BulkheadRejected(bulkhead=self._name, reason=reason),
            )

    def __repr__(self) -> str:
        return (
            f"Bulkhead(name={self._name!r}, max_concurrent={self._max_concurrent}, "
            f"max_queue={self._max_queue}, queue_timeout={self._queue_timeout!r}, "
            f"in_flight={self._in_flight}, queued={len(self._queue)})"
        )
