"""Time and randomness, injected.

This is the only module of the library allowed to read the real clock, sleep for real or
use the :mod:`random` module (a lint rule bans them elsewhere). Every strategy receives a
:class:`Clock` and a :class:`RandomSource`; tests pass
:class:`otel_resilience.testing.FakeClock` and a seeded ``random.Random``.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = [
    "Clock",
    "RandomSource",
    "SystemClock",
    "TimerHandle",
    "default_random",
    "seeded_random",
    "wall_time",
]


@runtime_checkable
class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled before it fires."""

    def cancel(self) -> None:
        """Stop the callback from running; a no-op once it ran."""


@runtime_checkable
class Clock(Protocol):
    """Monotonic time, sleeping and timers: everything the engine needs from time.

    Implementations must be safe to call from any thread. ``monotonic`` is in seconds
    with an arbitrary origin; only differences are meaningful.
    """

    def monotonic(self) -> float:
        """Return the current monotonic time in seconds."""

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""

    async def async_sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block until ``event`` is set or ``timeout`` seconds pass; return whether it is set."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` once, ``delay`` seconds from now, in the running event loop.

        Used by the async driver for timeouts; must be called from inside a running loop.
        """


class RandomSource(Protocol):
    """The part of :class:`random.Random` that jitter needs."""

    def random(self) -> float:
        """Return a float in ``[0.0, 1.0)``."""

    def uniform(self, a: float, b: float) -> float:
        """Return a float between ``a`` and ``b``."""


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.sleep`, :func:`asyncio.sleep`.

    Stateless; the shared instance :data:`SYSTEM_CLOCK` is the default everywhere.
    """

    __slots__ = ()

    monotonic = staticmethod(time.monotonic)
    """Return :func:`time.monotonic` (bound directly: this sits on hot paths)."""

    def sleep(self, seconds: float) -> None:
        """Sleep for real; a zero or negative duration returns at once."""
        if seconds > 0:
            time.sleep(seconds)

    async def async_sleep(self, seconds: float) -> None:
        """Sleep in the event loop; a zero or negative duration does not yield."""
        if seconds > 0:
            await asyncio.sleep(seconds)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait on ``event`` for at most ``timeout`` seconds (``None``: forever)."""
        return event.wait(timeout)

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        """Schedule ``callback`` on the running loop after ``delay`` seconds."""
        return asyncio.get_running_loop().call_later(max(delay, 0.0), callback)

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK: Clock = SystemClock()
"""The process-wide real clock, used when no clock is passed."""


def default_random() -> RandomSource:
    """Return a new, independently seeded random source for jitter."""
    return random.Random()


def seeded_random(seed: int) -> RandomSource:
    """Return a random source that repeats for the same ``seed`` (demos, simulations)."""
    return random.Random(seed)


def wall_time() -> float:
    """Seconds since the epoch, for timestamps that leave the process (error contexts)."""
    return time.time()
