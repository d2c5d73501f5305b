"""The testing switch: no waits, few attempts, for users' own test suites."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from otel_resilience._testmode import TEST_MODE
from otel_resilience._validation import check_int

__all__ = ["is_testing", "set_testing", "testing_mode"]


def set_testing(enabled: bool, *, attempts: int = 1) -> None:  # noqa: FBT001 - a switch
    """Turn testing mode on or off for the whole process.

    While on, every retry waits zero seconds (and so never sleeps) and makes at most
    ``attempts`` attempts, so a test suite exercising code protected by otel-resilience
    neither waits nor repeats slow failures. Breakers, timeouts and fallbacks behave as
    configured. Meant for a session-wide fixture; :func:`testing_mode` scopes it.

    Example:
        >>> from otel_resilience.testing import is_testing, set_testing
        >>> set_testing(True, attempts=2)
        >>> is_testing()
        True
        >>> set_testing(False)
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"set_testing.enabled must be a bool, got {enabled!r}")
    TEST_MODE.attempts = check_int("set_testing", "attempts", attempts)
    TEST_MODE.enabled = enabled


def is_testing() -> bool:
    """Whether testing mode is on."""
    return TEST_MODE.enabled


@contextmanager
def testing_mode(*, attempts: int = 1) -> Iterator[None]:
    """Turn testing mode on inside a ``with`` block and restore the previous setting."""
    previous = (TEST_MODE.enabled, TEST_MODE.attempts)
    set_testing(True, attempts=attempts)
    try:
        yield
    finally:
        TEST_MODE.enabled, TEST_MODE.attempts = previous
