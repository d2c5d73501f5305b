"""Timeout configuration and the cooperative deadline (context variable and helpers)."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import math
import threading

import pytest

from otel_resilience._clock import SYSTEM_CLOCK
from otel_resilience._errors import ResilienceError, ResilienceTimeoutError
from otel_resilience.testing import FakeClock
from otel_resilience.timeout import (
    DEADLINE,
    DEFAULT_TIMEOUT_NAME,
    Deadline,
    Timeout,
    current_deadline,
    deadline_scope,
    remaining,
)

# --- Timeout -------------------------------------------------------------------------------


def test_seconds_is_positional_and_name_keyword_only() -> None:
    timeout = Timeout(2)
    assert timeout.seconds == 2.0
    assert isinstance(timeout.seconds, float)
    assert timeout.name == DEFAULT_TIMEOUT_NAME
    assert Timeout(seconds=0.5, name="db").name == "db"
    with pytest.raises(TypeError):
        Timeout(1.0, "db")  # type: ignore[call-arg]


def test_timeout_is_frozen_data() -> None:
    timeout = Timeout(1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        timeout.seconds = 2.0  # type: ignore[misc]
    assert Timeout(1.0) == Timeout(1)
    assert not hasattr(timeout, "__dict__")


@pytest.mark.parametrize(
    ("seconds", "error"),
    [
        (0, ValueError),
        (0.0, ValueError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (True, TypeError),
        ("1", TypeError),
        (None, TypeError),
    ],
)
def test_invalid_seconds_names_the_field(seconds: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^Timeout\.seconds must"):
        Timeout(seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [("", ValueError, "must not be empty"), (7, TypeError, "must be a str")],
)
def test_invalid_name_names_the_field(name: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=rf"^Timeout\.name {message}"):
        Timeout(1.0, name=name)  # type: ignore[arg-type]


@pytest.mark.parametrize("scope", ["attempt", "total"])
def test_error_is_a_typed_timeout_error(scope: str) -> None:
    error = Timeout(1.5).error(scope)
    assert isinstance(error, ResilienceTimeoutError)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, ResilienceError)
    assert (error.timeout, error.scope) == (1.5, scope)


def test_error_scope_is_validated() -> None:
    with pytest.raises(ValueError, match="scope must be 'attempt' or 'total'"):
        Timeout(1.0).error("call")


def test_deadline_after() -> None:
    assert Timeout(2.5).deadline_after(100.0) == 102.5


# --- the deadline --------------------------------------------------------------------------


def test_no_deadline_outside_a_scope() -> None:
    assert DEADLINE.get() is None
    assert current_deadline() is None
    assert remaining() is None
    assert remaining(FakeClock()) is None


def test_remaining_counts_down_on_the_scope_clock_and_stops_at_zero() -> None:
    clock = FakeClock(start=50.0)
    with deadline_scope(52.0, clock=clock) as deadline:
        assert deadline == Deadline(at=52.0, clock=clock)
        assert current_deadline() is deadline
        assert remaining() == 2.0
        assert not deadline.expired()
        clock.advance(1.5)
        assert remaining() == 0.5
        clock.advance(0.5)
        assert remaining() == 0.0
        assert deadline.expired()
        clock.advance(10.0)
        assert remaining() == 0.0
        assert deadline.remaining() == 0.0
    assert remaining() is None


def test_remaining_reads_an_explicit_clock() -> None:
    scope_clock, other = FakeClock(start=0.0), FakeClock(start=3.0)
    with deadline_scope(5.0, clock=scope_clock):
        assert remaining() == 5.0
        assert remaining(other) == 2.0
        assert remaining(FakeClock(start=9.0)) == 0.0


def test_default_clock_is_the_system_clock() -> None:
    with deadline_scope(SYSTEM_CLOCK.monotonic() + 100.0) as deadline:
        assert deadline.clock is SYSTEM_CLOCK
        left = remaining()
        assert left is not None
        assert 0.0 < left <= 100.0


def test_nested_scopes_keep_the_tighter_deadline_and_restore() -> None:
    clock = FakeClock()
    with deadline_scope(10.0, clock=clock) as outer:
        with deadline_scope(4.0, clock=clock) as inner:
            assert inner.at == 4.0
            assert remaining() == 4.0
            with deadline_scope(8.0, clock=clock) as looser:
                # An inner timeout can shorten, never extend, the one around it.
                assert looser is inner
                assert remaining() == 4.0
            assert current_deadline() is inner
        assert current_deadline() is outer
        assert remaining() == 10.0
    assert current_deadline() is None


def test_scope_is_restored_when_the_block_raises() -> None:
    clock = FakeClock()
    with deadline_scope(10.0, clock=clock):
        with pytest.raises(KeyError), deadline_scope(1.0, clock=clock):
            raise KeyError("boom")
        assert remaining() == 10.0
    assert remaining() is None


def test_deadlines_on_different_clocks_compare_by_time_left() -> None:
    early, late = FakeClock(start=0.0), FakeClock(start=1000.0)
    # 5 s left on ``early`` versus 3 s left on ``late``: the second is tighter even though
    # its absolute value is larger.
    with deadline_scope(5.0, clock=early):
        with deadline_scope(1003.0, clock=late) as chosen:
            assert chosen.clock is late
            assert remaining() == 3.0
        with deadline_scope(1010.0, clock=late) as chosen:
            assert chosen.clock is early
            assert remaining() == 5.0


@pytest.mark.parametrize("deadline", [math.nan, math.inf, -math.inf])
def test_deadline_must_be_finite(deadline: float) -> None:
    with pytest.raises(ValueError, match="deadline_scope deadline must be finite"):
        deadline_scope(deadline)


def test_deadline_is_a_frozen_value() -> None:
    deadline = Deadline(at=1.0, clock=SYSTEM_CLOCK)
    with pytest.raises(dataclasses.FrozenInstanceError):
        deadline.at = 2.0  # type: ignore[misc]


def test_threads_do_not_inherit_the_deadline_unless_given_the_context() -> None:
    clock = FakeClock()
    seen: dict[str, float | None] = {}
    with deadline_scope(7.0, clock=clock):
        plain = threading.Thread(target=lambda: seen.__setitem__("plain", remaining()))
        context = contextvars.copy_context()
        carried = threading.Thread(
            target=lambda: seen.__setitem__("carried", context.run(remaining))
        )
        plain.start()
        carried.start()
        plain.join()
        carried.join()
    assert seen == {"plain": None, "carried": 7.0}


@pytest.mark.asyncio
async def test_tasks_see_their_own_deadlines() -> None:
    clock = FakeClock()
    entered = asyncio.Event()
    release = asyncio.Event()
    seen: dict[str, float | None] = {}

    async def worker(label: str, deadline: float) -> None:
        with deadline_scope(deadline, clock=clock):
            if label == "a":
                entered.set()
                await release.wait()
            else:
                await entered.wait()
                release.set()
            seen[label] = remaining()
        seen[label + "_after"] = remaining()

    await asyncio.gather(worker("a", 3.0), worker("b", 9.0))
    assert seen == {"a": 3.0, "b": 9.0, "a_after": None, "b_after": None}
    assert remaining() is None


@pytest.mark.asyncio
async def test_child_tasks_inherit_the_deadline_across_awaits() -> None:
    clock = FakeClock()

    async def child() -> float | None:
        await asyncio.sleep(0)  # noqa: TID251 - a bare yield to the real loop, not timing
        clock.advance(1.0)
        return remaining()

    with deadline_scope(4.0, clock=clock):
        assert await asyncio.create_task(child()) == 3.0
