"""Fault injection helpers: flaky calls, scripts, random faults, simulated latency."""

from __future__ import annotations

import asyncio
import inspect
import math
import random  # noqa: TID251 - tests seed their own random source
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from otel_resilience.testing import FakeClock
from otel_resilience.testing._faults import (
    DEFAULT_FAULT,
    AsyncFailingCall,
    FailingCall,
    FaultInjector,
    ScriptedCall,
    ScriptExhaustedError,
    afail_with,
    aflaky,
    fail_with,
    flaky,
    slow,
)

# --- flaky ---------------------------------------------------------------------------------


def test_flaky_fails_then_succeeds_and_counts() -> None:
    call = flaky(2, result="ok")
    assert isinstance(call, FailingCall)
    for attempt in (1, 2):
        with pytest.raises(ConnectionError, match="injected fault"):
            call("any", args=attempt)
        assert call.calls == attempt
    assert call() == "ok"
    assert call() == "ok"
    assert call.calls == 4
    assert call.failures == 2
    assert "calls=4" in repr(call)


def test_flaky_zero_failures_never_fails_and_defaults_to_none() -> None:
    call = flaky(0)
    assert call() is None
    assert call.calls == 1


def test_each_raise_is_a_fresh_copy_of_the_given_instance() -> None:
    template = TimeoutError("slow upstream")
    call = flaky(2, error=template)
    raised: list[BaseException] = []
    for _ in range(2):
        try:
            call()
        except TimeoutError as error:
            error.add_note("attempt note")
            raised.append(error)
    first, second = raised
    assert first is not second
    assert first is not template
    assert str(second) == "slow upstream"
    # Notes and tracebacks do not pile up across calls on a shared instance.
    assert second.__notes__ == ["attempt note"]
    assert not hasattr(template, "__notes__")
    assert template.__traceback__ is None


def test_error_may_be_a_class_or_a_factory() -> None:
    with pytest.raises(KeyError):
        flaky(1, error=KeyError)()
    counter = iter(range(10))
    call = flaky(2, error=lambda: OSError(f"failure {next(counter)}"))
    messages = []
    for _ in range(2):
        with pytest.raises(OSError) as info:
            call()
        messages.append(str(info.value))
    assert messages == ["failure 0", "failure 1"]


def test_default_error_is_a_connection_error() -> None:
    assert isinstance(DEFAULT_FAULT, ConnectionError)


def test_factory_returning_a_non_exception_is_a_type_error() -> None:
    call = flaky(1, error=lambda: "oops")  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="factory returned 'oops', not an exception"):
        call()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"failures": -1}, ValueError, r"^FailingCall\.failures must be >= 0"),
        ({"failures": True}, TypeError, r"^FailingCall\.failures must be an int"),
        ({"failures": 1.0}, TypeError, r"^FailingCall\.failures must be an int"),
        ({"failures": 1, "error": int}, TypeError, r"^FailingCall\.error must be an exception"),
        ({"failures": 1, "error": "boom"}, TypeError, r"^FailingCall\.error must be callable"),
    ],
)
def test_flaky_validation_names_the_field(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        flaky(**kwargs)


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as possible, so a missing lock shows up as a lost count."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("fast_switching")
def test_flaky_counts_exactly_under_fifty_threads() -> None:
    threads_count, per_thread = 50, 200
    total = threads_count * per_thread
    call = flaky(total // 2, result=1)
    start = threading.Barrier(threads_count)
    lock = threading.Lock()
    failed = 0
    succeeded = 0

    def worker() -> None:
        nonlocal failed, succeeded
        start.wait(30.0)
        for _ in range(per_thread):
            try:
                call()
            except ConnectionError:
                with lock:
                    failed += 1
            else:
                with lock:
                    succeeded += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    assert call.calls == total
    assert failed == succeeded == total // 2


@pytest.mark.asyncio
async def test_aflaky_is_the_async_twin() -> None:
    call = aflaky(1, error=ValueError("nope"), result=7)
    assert isinstance(call, AsyncFailingCall)
    with pytest.raises(ValueError, match="nope"):
        await call()
    assert await call(1, 2, key=3) == 7
    assert call.calls == 2


@pytest.mark.parametrize("failures", [-1, False])
def test_aflaky_validation_names_its_class(failures: Any) -> None:
    with pytest.raises((ValueError, TypeError), match=r"^AsyncFailingCall\.failures"):
        aflaky(failures)


# --- scripts -------------------------------------------------------------------------------


def test_fail_with_plays_the_script_in_order() -> None:
    reset = ConnectionResetError("reset")
    call = fail_with([TimeoutError, reset, "first", None, 3])
    with pytest.raises(TimeoutError):
        call()
    with pytest.raises(ConnectionResetError) as info:
        call("ignored")
    assert info.value is reset
    assert call() == "first"
    assert call() is None
    assert call.remaining == 1
    assert call() == 3
    assert call.calls == 5
    assert call.remaining == 0
    with pytest.raises(ScriptExhaustedError, match="called 6 times; its script had 5 items"):
        call()
    assert "calls=6" in repr(call)


def test_script_exhaustion_is_an_assertion_error() -> None:
    assert issubclass(ScriptExhaustedError, AssertionError)
    with pytest.raises(AssertionError):
        fail_with([])()


def test_a_repeated_instance_does_not_accumulate_tracebacks() -> None:
    error = ValueError("again")
    call: ScriptedCall[None] = fail_with([error, error])
    depths = []
    for _ in range(2):
        with pytest.raises(ValueError) as info:
            call()
        depth, tb = 0, info.value.__traceback__
        while tb is not None:
            depth, tb = depth + 1, tb.tb_next
        depths.append(depth)
    assert depths[0] == depths[1]


def test_fail_with_accepts_any_iterable() -> None:
    call = fail_with(iter(range(3)))
    assert [call(), call(), call()] == [0, 1, 2]


@pytest.mark.asyncio
async def test_afail_with_is_the_async_twin() -> None:
    call = afail_with([KeyError, "done"])
    with pytest.raises(KeyError):
        await call()
    assert await call() == "done"
    with pytest.raises(ScriptExhaustedError):
        await call()
    assert call.calls == 3


# --- random faults -------------------------------------------------------------------------


def _pattern(injector: FaultInjector, calls: int) -> list[bool]:
    pattern = []
    for _ in range(calls):
        try:
            injector.check()
        except ConnectionError:
            pattern.append(True)
        else:
            pattern.append(False)
    return pattern


def test_fault_injector_is_deterministic_for_a_seed() -> None:
    first = _pattern(FaultInjector(0.3, rng=random.Random(11)), 500)
    second = _pattern(FaultInjector(0.3, rng=random.Random(11)), 500)
    other = _pattern(FaultInjector(0.3, rng=random.Random(12)), 500)
    assert first == second
    assert first != other


def test_fault_injector_fails_the_given_fraction() -> None:
    injector = FaultInjector(0.3, rng=random.Random(5))
    pattern = _pattern(injector, 10_000)
    assert injector.calls == 10_000
    assert injector.failures == sum(pattern)
    assert 2_700 <= injector.failures <= 3_300
    assert injector.rate == 0.3
    assert "failures=" in repr(injector)


@pytest.mark.parametrize(("rate", "expected"), [(0, 0), (0.0, 0), (1, 200), (1.0, 200)])
def test_fault_injector_extremes(rate: float, expected: int) -> None:
    injector = FaultInjector(rate, rng=random.Random(0))
    assert sum(_pattern(injector, 200)) == expected


def test_fault_injector_uses_the_error_factory() -> None:
    injector = FaultInjector(1.0, error_factory=lambda: PermissionError("denied"), rng=random)
    with pytest.raises(PermissionError, match="denied"):
        injector.check()


def test_wrap_checks_before_calling() -> None:
    calls: list[int] = []

    def fetch(key: int) -> int:
        """Fetch a key."""
        calls.append(key)
        return key * 2

    always = FaultInjector(1.0, rng=random.Random(0)).wrap(fetch)
    never = FaultInjector(0.0, rng=random.Random(0)).wrap(fetch)
    with pytest.raises(ConnectionError):
        always(1)
    assert never(2) == 4
    assert calls == [2]
    assert never.__name__ == "fetch"
    assert never.__doc__ == "Fetch a key."


@pytest.mark.asyncio
async def test_wrap_async_returns_a_coroutine_function() -> None:
    async def fetch(key: int) -> int:
        return key + 1

    always = FaultInjector(1.0, rng=random.Random(0)).wrap_async(fetch)
    never = FaultInjector(0.0, rng=random.Random(0)).wrap_async(fetch)
    assert inspect.iscoroutinefunction(never)
    assert await never(1) == 2
    with pytest.raises(ConnectionError):
        await always(1)


@pytest.mark.parametrize(
    ("rate", "kwargs", "error", "message"),
    [
        (1.5, {}, ValueError, r"^FaultInjector\.rate must be <= 1"),
        (-0.1, {}, ValueError, r"^FaultInjector\.rate must be >= 0"),
        (math.nan, {}, ValueError, r"^FaultInjector\.rate must be finite"),
        (True, {}, TypeError, r"^FaultInjector\.rate must be a number"),
        ("0.5", {}, TypeError, r"^FaultInjector\.rate must be a number"),
        (0.5, {"error_factory": 3}, TypeError, r"^FaultInjector\.error_factory must be callable"),
        (0.5, {"rng": object()}, TypeError, r"^FaultInjector\.rng must have a random\(\) method"),
    ],
)
def test_fault_injector_validation_names_the_field(
    rate: Any, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"rng": random.Random(0), **kwargs}
    with pytest.raises(error, match=message):
        FaultInjector(rate, **arguments)


# --- simulated latency ---------------------------------------------------------------------


def test_slow_advances_the_fake_clock_before_each_call() -> None:
    clock = FakeClock(start=10.0)
    seen: list[float] = []

    def work(value: int) -> int:
        """Do work."""
        seen.append(clock.monotonic())
        return value

    slowed = slow(clock, 1.5, work)
    assert slowed(1) == 1
    assert slowed(2) == 2
    assert seen == [11.5, 13.0]
    assert clock.sleeps == []
    assert slowed.__name__ == "work"


def test_slow_fires_timers_that_fall_due() -> None:
    clock = FakeClock()
    fired: list[float] = []
    clock.call_later(1.0, lambda: fired.append(clock.monotonic()))
    slow(clock, 2.0, lambda: None)()
    assert fired == [2.0]


@pytest.mark.asyncio
async def test_slow_async_returns_after_the_simulated_latency() -> None:
    clock = FakeClock()

    async def work() -> str:
        return f"done at {clock.monotonic()}"

    slowed = slow(clock, 3.0, work)
    assert inspect.iscoroutinefunction(slowed)
    assert await slowed() == "done at 3.0"
    assert clock.sleeps == []


@pytest.mark.asyncio
async def test_slow_async_call_is_cancelled_by_a_shorter_timer() -> None:
    clock = FakeClock()
    started: list[float] = []

    async def work() -> None:
        started.append(clock.monotonic())

    async def guarded() -> None:
        task = asyncio.current_task()
        assert task is not None
        # What an async timeout of 1 s does on a fake clock: a timer that cancels.
        clock.call_later(1.0, task.cancel)
        await slow(clock, 2.0, work)()

    child = asyncio.create_task(guarded())
    with pytest.raises(asyncio.CancelledError):
        await child
    assert started == []
    assert clock.monotonic() == 2.0


@pytest.mark.parametrize(
    ("seconds", "error"), [(-1.0, ValueError), (math.inf, ValueError), (True, TypeError)]
)
def test_slow_validation_names_the_field(seconds: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^slow\.seconds must"):
        slow(FakeClock(), seconds, lambda: None)


def test_slow_needs_a_callable() -> None:
    with pytest.raises(TypeError, match=r"^slow\.fn must be callable"):
        slow(FakeClock(), 1.0, 3)  # type: ignore[call-overload]
