"""A clock whose time moves only when told to, or when something sleeps on it."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Callable

from otel_resilience._clock import TimerHandle
from otel_resilience._validation import check_number

__all__ = ["FakeClock"]


class _FakeTimer:
    __slots__ = ("_callback", "_cancelled", "_loop", "deadline")

    def __init__(
        self,
        deadline: float,
        callback: Callable[[], object],
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.deadline = deadline
        self._callback = callback
        self._loop = loop
        self._cancelled = False

    def cancel(self) -> None:
        # Let go of the callback, as asyncio's handles do: its owner usually holds this
        # timer too, and the pair would otherwise be a cycle left for the collector.
        self._cancelled = True
        self._callback = _cancelled

    def fire(self) -> None:
        if self._cancelled:
            return
        if self._loop is None:
            self._callback()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._run_if_live)

    def _run_if_live(self) -> None:
        if not self._cancelled:
            self._callback()


def _cancelled() -> None:
    """The callback of a cancelled timer (never called)."""


class FakeClock:
    """A :class:`~otel_resilience.Clock` for tests: time moves only on ``advance`` or sleep.

    ``sleep`` and ``async_sleep`` advance fake time at once by the requested duration
    (``async_sleep`` then yields to the event loop once, so other tasks run); nothing
    waits for real. Timers from ``call_later`` (used by async timeouts and bulkhead queue
    waits) fire when fake time reaches them. ``wait(event, timeout)`` blocks until the
    event is set or fake time passes the timeout, so a test moves time with ``advance``.

    Thread-safe: many threads may sleep and advance at once; time never goes backwards.

    Example:
        >>> clock = FakeClock(start=100.0)
        >>> clock.sleep(2.5)
        >>> clock.monotonic()
        102.5
        >>> clock.advance(0.5)
        >>> clock.monotonic()
        103.0
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = check_number("FakeClock", "start", start, allow_minimum=True, minimum=-1e300)
        self._cond = threading.Condition()
        self._timers: list[tuple[float, int, _FakeTimer]] = []
        self._sequence = itertools.count()
        self.sleeps: list[float] = []
        """Every duration passed to ``sleep``/``async_sleep``, in order (for assertions)."""

    def monotonic(self) -> float:
        """Return the fake time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and fire the timers that fall due."""
        step = check_number("FakeClock", "advance.seconds", seconds, allow_minimum=True)
        due: list[_FakeTimer] = []
        with self._cond:
            self._now += step
            while self._timers and self._timers[0][0] <= self._now:
                due.append(heapq.heappop(self._timers)[2])
            self._cond.notify_all()
        for timer in due:
            timer.fire()

    def sleep(self, seconds: float) -> None:
        """Record the sleep and advance time by ``seconds`` (negative counts as zero)."""
        duration = max(float(seconds), 0.0)
        with self._cond:
            self.sleeps.append(duration)
        self.advance(duration)

    async def async_sleep(self, seconds: float) -> None:
        """Record the sleep, advance time, then yield to the event loop once."""
        self.sleep(seconds)
        await asyncio.sleep(0)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block until ``event`` is set or fake time reaches now + ``timeout``."""
        if timeout is None:
            return event.wait()
        with self._cond:
            deadline = self._now + max(timeout, 0.0)
            while not event.is_set() and self._now < deadline:
                # Woken by ``advance`` or by the setter through ``notify``; re-check
                # on a short real tick so a bare ``event.set()`` is also noticed.
                self._cond.wait(0.01)
            return event.is_set()

    def notify(self) -> None:
        """Wake threads blocked in :meth:`wait` so they re-check their events."""
        with self._cond:
            self._cond.notify_all()

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` when fake time reaches now + ``delay``.

        Called inside a running event loop, the callback runs in that loop (thread-safe);
        otherwise it runs in the thread that advances time.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._cond:
            timer = _FakeTimer(self._now + max(delay, 0.0), callback, loop)
            if timer.deadline > self._now:
                heapq.heappush(self._timers, (timer.deadline, next(self._sequence), timer))
                return timer
        timer.fire()
        return timer

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
