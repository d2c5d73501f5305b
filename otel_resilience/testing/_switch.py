"""The testing switch: no waits, few attempts, for users' own test suites."""

from __future__ import annotations

from types import TracebackType

from otel_resilience._testmode import TEST_MODE
from otel_resilience._validation import check_int

__all__ = ["TestingSwitch", "is_testing", "set_testing"]


class TestingSwitch:
    """What :func:`set_testing` returns: use it in ``with`` to restore the previous setting."""

    __test__ = False  # a name starting with "Test": keep pytest from collecting it
    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[bool, int]) -> None:
        self._previous = previous

    def __enter__(self) -> TestingSwitch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        TEST_MODE.enabled, TEST_MODE.attempts = self._previous


def set_testing(enabled: bool, *, attempts: int = 1) -> TestingSwitch:  # noqa: FBT001 - a switch
    """Turn testing mode on or off for the whole process.

    While on, every retry waits zero seconds (and so never sleeps) and makes at most
    ``attempts`` attempts, so a test suite exercising code protected by otel-resilience
    neither waits nor repeats slow failures. Breakers, timeouts and fallbacks behave as
    configured. Call it from a session-wide fixture, or use the returned switch in a
    ``with`` block to restore the previous setting on exit.

    Example:
        >>> from otel_resilience.testing import is_testing, set_testing
        >>> with set_testing(True, attempts=2):
        ...     is_testing()
        True
        >>> is_testing()
        False
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"set_testing.enabled must be a bool, got {enabled!r}")
    check_int("set_testing", "attempts", attempts)
    previous = (TEST_MODE.enabled, TEST_MODE.attempts)
    TEST_MODE.attempts = attempts
    TEST_MODE.enabled = enabled
    return TestingSwitch(previous)


def is_testing() -> bool:
    """Whether testing mode is on."""
    return TEST_MODE.enabled
