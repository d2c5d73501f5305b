"""RetryBudget: ratio with a minimum, a rolling window on the fake clock, sharing, threads."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_resilience import Pipeline, ResilienceEvent, RetryBudget, RetryConfig, RetryExhausted
from otel_resilience.backoff import Constant
from otel_resilience.retry._budget import (
    DEFAULT_BUDGET_RATIO,
    DEFAULT_BUDGET_WINDOW_SECONDS,
    DEFAULT_MIN_RETRIES,
)
from otel_resilience.testing import FakeClock


class Events:
    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def start_call(self, pipeline: str) -> None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)

    def exhausted(self) -> list[RetryExhausted]:
        return [event for event in self.events if isinstance(event, RetryExhausted)]


class Down:
    """Always fails, counting calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        raise ConnectionError("down")


def spend_all(budget: RetryBudget) -> int:
    granted = 0
    while budget.try_spend():
        granted += 1
        assert granted < 10_000
    return granted


# -- the rule --------------------------------------------------------------------------


def test_minimum_applies_while_few_calls(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.5, min_retries=3, clock=clock)
    assert spend_all(budget) == 3
    assert budget.rejected == 1


def test_ratio_of_recent_calls_applies_above_the_minimum(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.5, min_retries=2, clock=clock)
    for _ in range(10):
        budget.record_call()
    assert spend_all(budget) == 5
    assert (budget.calls, budget.retries, budget.rejected) == (10, 5, 1)
    # More calls make room for more retries.
    for _ in range(4):
        budget.record_call()
    assert spend_all(budget) == 2


def test_zero_ratio_and_zero_minimum_allows_no_retry(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_retries=0, clock=clock)
    for _ in range(100):
        budget.record_call()
    assert not budget.try_spend()


def test_defaults() -> None:
    budget = RetryBudget(clock=FakeClock())
    assert (budget.ratio, budget.min_retries, budget.window_seconds) == (
        DEFAULT_BUDGET_RATIO,
        DEFAULT_MIN_RETRIES,
        DEFAULT_BUDGET_WINDOW_SECONDS,
    )
    assert (DEFAULT_BUDGET_RATIO, DEFAULT_MIN_RETRIES, DEFAULT_BUDGET_WINDOW_SECONDS) == (
        0.2,
        10,
        10.0,
    )
    assert repr(budget) == "RetryBudget(ratio=0.2, min_retries=10, window_seconds=10.0)"


# -- the window ------------------------------------------------------------------------


def test_spent_retries_roll_off_after_the_window(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_retries=2, window_seconds=10.0, clock=clock)
    assert spend_all(budget) == 2
    clock.advance(9.0)
    assert not budget.try_spend()  # still inside the window
    clock.advance(1.0)
    assert budget.retries == 0
    assert spend_all(budget) == 2


def test_calls_roll_off_bucket_by_bucket(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=1.0, min_retries=0, window_seconds=10.0, clock=clock)
    for _ in range(4):
        budget.record_call()
    clock.advance(5.0)
    for _ in range(6):
        budget.record_call()
    assert budget.calls == 10
    clock.advance(5.0)  # t = 10: the bucket of t = 0 has left the window
    assert budget.calls == 6
    assert spend_all(budget) == 6
    clock.advance(5.0)  # t = 15: the calls have left; the retries spent at t = 10 stay
    assert (budget.calls, budget.retries) == (0, 6)
    assert spend_all(budget) == 0
    clock.advance(5.0)
    assert (budget.calls, budget.retries) == (0, 0)


def test_a_long_quiet_period_clears_everything(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=1.0, min_retries=0, window_seconds=1.0, clock=clock)
    for _ in range(5):
        budget.record_call()
    spend_all(budget)
    clock.advance(1e6)
    assert (budget.calls, budget.retries) == (0, 0)
    budget.record_call()
    assert spend_all(budget) == 1


def test_window_is_relative_to_the_clock_origin() -> None:
    clock = FakeClock(start=12345.678)
    budget = RetryBudget(ratio=0.0, min_retries=1, window_seconds=2.0, clock=clock)
    assert spend_all(budget) == 1
    clock.advance(2.0)
    assert spend_all(budget) == 1


@settings(max_examples=100, deadline=None)
@given(
    ratio=st.floats(min_value=0.0, max_value=2.0),
    min_retries=st.integers(min_value=0, max_value=5),
    steps=st.lists(
        st.one_of(
            st.just("call"),
            st.just("retry"),
            st.floats(min_value=0.0, max_value=4.0),
        ),
        max_size=80,
    ),
)
def test_retries_never_exceed_the_allowance(
    ratio: float, min_retries: int, steps: list[Any]
) -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=ratio, min_retries=min_retries, window_seconds=5.0, clock=clock)
    refused = 0
    for step in steps:
        if step == "call":
            budget.record_call()
        elif step == "retry":
            if budget.try_spend():
                assert budget.retries <= max(min_retries, ratio * budget.calls)
            else:
                refused += 1
                assert budget.retries + 1 > max(min_retries, ratio * budget.calls)
        else:
            clock.advance(step)
    assert budget.rejected == refused


# -- through pipelines -----------------------------------------------------------------


def test_every_call_counts_and_every_retry_spends(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_retries=100, clock=clock)
    policy = Pipeline(
        retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=0.0), budget=budget),
        clock=clock,
    )
    assert policy.call(lambda: 1) == 1
    with pytest.raises(ConnectionError):
        policy.call(Down())
    assert (budget.calls, budget.retries) == (2, 2)


def test_exhausted_budget_suppresses_retries(clock: FakeClock) -> None:
    events = Events()
    budget = RetryBudget(ratio=0.0, min_retries=1, clock=clock)
    policy = Pipeline(
        name="inventory",
        retry=RetryConfig(max_attempts=5, backoff=Constant(seconds=1.0), budget=budget),
        clock=clock,
        listener=events,
    )
    down = Down()
    with pytest.raises(ConnectionError) as caught:
        policy.call(down)
    # One retry from the budget, then the budget said no.
    assert down.calls == 2
    assert clock.sleeps == [1.0]
    assert caught.value.__notes__ == [
        "otel-resilience: pipeline 'inventory' gave up after 2 attempts (budget)"
    ]
    [exhausted] = events.exhausted()
    assert (exhausted.reason, exhausted.attempts, exhausted.error_type) == (
        "budget",
        2,
        "ConnectionError",
    )
    assert budget.rejected == 1


def test_one_budget_shared_between_two_pipelines(clock: FakeClock) -> None:
    events = Events()
    budget = RetryBudget(ratio=0.0, min_retries=2, clock=clock)
    config = RetryConfig(max_attempts=3, backoff=Constant(seconds=0.0), budget=budget)
    first = Pipeline(name="first", retry=config, clock=clock, listener=events)
    second = Pipeline(name="second", retry=config, clock=clock, listener=events)

    down_first = Down()
    with pytest.raises(ConnectionError):
        first.call(down_first)
    assert down_first.calls == 3  # both retries came from the shared budget

    down_second = Down()
    with pytest.raises(ConnectionError):
        second.call(down_second)
    assert down_second.calls == 1  # nothing left for the second pipeline
    assert [(e.pipeline, e.reason) for e in events.exhausted()] == [
        ("first", "max_attempts"),
        ("second", "budget"),
    ]
    assert budget.calls == 2

    clock.advance(10.0)  # the window rolls over: the second pipeline may retry again
    down_again = Down()
    with pytest.raises(ConnectionError):
        second.call(down_again)
    assert down_again.calls == 3


def test_calls_through_one_pipeline_fund_retries_of_another(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.5, min_retries=0, clock=clock)
    config = RetryConfig(max_attempts=2, backoff=Constant(seconds=0.0), budget=budget)
    healthy = Pipeline(name="healthy", retry=config, clock=clock)
    failing = Pipeline(name="failing", retry=config, clock=clock)
    for _ in range(3):
        healthy.call(lambda: None)
    # 4 calls in the window (3 + this one) allow 2 retries.
    outcomes = []
    for _ in range(3):
        down = Down()
        with pytest.raises(ConnectionError):
            failing.call(down)
        outcomes.append(down.calls)
    # calls 4, 5, 6 -> allowance 2, 2.5, 3: retries 1 and 2 granted, the third too.
    assert outcomes == [2, 2, 2]
    down = Down()
    with pytest.raises(ConnectionError):
        failing.call(down)
    # 7 calls -> 3.5 allowed; the 4th retry would make 4.
    assert down.calls == 1


@pytest.mark.asyncio
async def test_budget_applies_to_async_calls(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_retries=1, clock=clock)
    policy = Pipeline(
        retry=RetryConfig(max_attempts=4, backoff=Constant(seconds=0.0), budget=budget),
        clock=clock,
    )
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    with pytest.raises(ConnectionError) as caught:
        await policy.acall(down)
    assert calls == 2
    assert "(budget)" in caught.value.__notes__[0]


# -- threads ---------------------------------------------------------------------------


def test_concurrent_spending_never_exceeds_the_allowance(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_retries=37, clock=clock)
    granted = 0
    lock = threading.Lock()
    start = threading.Barrier(16)

    def worker() -> None:
        nonlocal granted
        start.wait()
        mine = sum(1 for _ in range(50) if budget.try_spend())
        with lock:
            granted += mine

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted == 37
    assert budget.retries == 37
    assert budget.rejected == 16 * 50 - 37


def test_concurrent_calls_are_all_counted(clock: FakeClock) -> None:
    budget = RetryBudget(clock=clock)
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(500):
            budget.record_call()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.calls == 4000


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("ratio", -0.1, ValueError),
        ("ratio", math.nan, ValueError),
        ("ratio", math.inf, ValueError),
        ("ratio", True, TypeError),
        ("ratio", "0.2", TypeError),
        ("min_retries", -1, ValueError),
        ("min_retries", 1.5, TypeError),
        ("min_retries", False, TypeError),
        ("min_retries", "10", TypeError),
        ("window_seconds", 0, ValueError),
        ("window_seconds", -5.0, ValueError),
        ("window_seconds", math.inf, ValueError),
        ("window_seconds", math.nan, ValueError),
        ("window_seconds", True, TypeError),
    ],
)
def test_validation_names_the_field(field: str, value: object, error: type[Exception]) -> None:
    arguments: dict[str, Any] = {field: value}
    with pytest.raises(error, match=rf"^RetryBudget\.{field} must"):
        RetryBudget(**arguments)


def test_budget_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        RetryBudget(0.5)  # type: ignore[call-arg]
