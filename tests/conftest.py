"""Shared fixtures: a fresh fake clock, a condition poller, and a clean testing switch."""

from __future__ import annotations

import gc
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from otel_resilience._testmode import TEST_MODE
from otel_resilience.testing import FakeClock

WaitUntil = Callable[[Callable[[], bool]], None]
NoLeakedCoroutines = Callable[[], AbstractContextManager[None]]


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at 0: time moves only on ``advance`` or sleep."""
    return FakeClock()


@pytest.fixture
def wait_until() -> WaitUntil:
    """Block until ``condition()`` holds (for cross-thread hand-offs, never for timing).

    Polls on a real event with a short tick; fails the test after five real seconds so a
    broken hand-off shows up as a failure rather than a hang.
    """

    def wait(condition: Callable[[], bool]) -> None:
        tick = threading.Event()
        for _ in range(5000):
            if condition():
                return
            tick.wait(0.001)
        pytest.fail("condition never became true")

    return wait


@pytest.fixture(autouse=True)
def _restore_test_mode() -> Iterator[None]:
    """Every test starts and ends with the retry testing switch off."""
    TEST_MODE.enabled = False
    TEST_MODE.attempts = 1
    yield
    TEST_MODE.enabled = False
    TEST_MODE.attempts = 1


@contextmanager
def _no_leaked_coroutines() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        # A coroutine that was created and dropped warns when it is finalised.
        gc.collect()
    leaked = [str(w.message) for w in caught if "was never awaited" in str(w.message)]
    assert not leaked, leaked


@pytest.fixture
def no_leaked_coroutines() -> NoLeakedCoroutines:
    """A context manager failing the test if a coroutine was created but never awaited."""
    return _no_leaked_coroutines
