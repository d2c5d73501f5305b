"""Failover: the config, moving through alternates, health reports and returning home."""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
from collections.abc import Iterator

import pytest

from otel_resilience.orchestrator._failover import (
    DEFAULT_FAILOVER_FAILURE_THRESHOLD,
    DEFAULT_HEALTHY_SECONDS,
    FAILOVER_HISTORY_SIZE,
    FailoverConfig,
    FailoverEvent,
    FailoverState,
    FailoverStatus,
)
from otel_resilience.testing import FakeClock


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads far more often than usual, so that a missing lock shows up."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def make(
    clock: FakeClock,
    alternates: tuple[str, ...] = ("b", "c"),
    *,
    healthy_seconds: float = 30.0,
    failure_threshold: int = 3,
) -> FailoverState:
    config = FailoverConfig(
        alternates, healthy_seconds=healthy_seconds, failure_threshold=failure_threshold
    )
    return FailoverState("a", config, clock=clock)


# -- FailoverConfig ---------------------------------------------------------------------


def test_config_defaults() -> None:
    config = FailoverConfig(("eu", "us"))
    assert config.alternates == ("eu", "us")
    assert config.healthy_seconds == DEFAULT_HEALTHY_SECONDS == 30.0
    assert config.failure_threshold == DEFAULT_FAILOVER_FAILURE_THRESHOLD == 3


def test_config_takes_alternates_positionally_and_the_rest_by_keyword() -> None:
    with pytest.raises(TypeError):
        FailoverConfig(("eu",), 10.0)  # type: ignore[call-arg]
    assert FailoverConfig(alternates=("eu",), healthy_seconds=10).healthy_seconds == 10.0


def test_config_stores_a_list_as_a_tuple() -> None:
    config = FailoverConfig(["eu", "us"])  # type: ignore[arg-type]
    assert config.alternates == ("eu", "us")
    assert isinstance(config.alternates, tuple)


def test_config_is_frozen() -> None:
    config = FailoverConfig(("eu",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.healthy_seconds = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("alternates", "error", "message"),
    [
        ((), ValueError, "at least one"),
        ([], ValueError, "at least one"),
        ("eu", TypeError, "tuple of target names"),
        (None, TypeError, "tuple of target names"),
        ({"eu"}, TypeError, "tuple of target names"),
        (("eu", "eu"), ValueError, "unique, 'eu' repeats"),
        (("eu", 1), TypeError, "target name"),
        (("eu", ""), ValueError, "non-empty"),
        (("  ",), ValueError, "non-empty"),
    ],
)
def test_config_rejects_bad_alternates(alternates: object, error: type, message: str) -> None:
    with pytest.raises(error, match=rf"FailoverConfig\.alternates .*{message}"):
        FailoverConfig(alternates)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("healthy_seconds", 0, ValueError),
        ("healthy_seconds", -1.0, ValueError),
        ("healthy_seconds", math.nan, ValueError),
        ("healthy_seconds", math.inf, ValueError),
        ("healthy_seconds", True, TypeError),
        ("healthy_seconds", "30", TypeError),
        ("failure_threshold", 0, ValueError),
        ("failure_threshold", 2.0, TypeError),
        ("failure_threshold", True, TypeError),
        ("failure_threshold", "3", TypeError),
    ],
)
def test_config_rejects_bad_numbers(field: str, value: object, error: type) -> None:
    with pytest.raises(error, match=rf"FailoverConfig\.{field}"):
        FailoverConfig(("eu",), **{field: value})  # type: ignore[arg-type]


# -- FailoverState construction ---------------------------------------------------------


def test_state_rejects_a_primary_among_the_alternates() -> None:
    with pytest.raises(ValueError, match=r"FailoverState\.primary must not be one"):
        FailoverState("eu", FailoverConfig(("us", "eu")))


@pytest.mark.parametrize(("primary", "error"), [("", ValueError), (None, TypeError)])
def test_state_rejects_a_bad_primary(primary: object, error: type) -> None:
    with pytest.raises(error, match=r"FailoverState\.primary"):
        FailoverState(primary, FailoverConfig(("us",)))  # type: ignore[arg-type]


def test_state_rejects_a_bad_config() -> None:
    with pytest.raises(TypeError, match=r"FailoverState\.config"):
        FailoverState("a", ("b",))  # type: ignore[arg-type]


# -- failing over -----------------------------------------------------------------------


def test_starts_on_the_primary(clock: FakeClock) -> None:
    state = make(clock)
    assert state.current() == "a"
    assert state.primary == "a"
    assert state.targets == ("a", "b", "c")
    assert state.status() == FailoverStatus(
        primary="a",
        current="a",
        on_primary=True,
        alternates_left=("b", "c"),
        exhausted=False,
        failovers=0,
        primary_healthy_for=None,
    )


def test_fails_over_in_order_then_reports_none(clock: FakeClock) -> None:
    state = make(clock)
    assert state.fail_over("a down") == "b"
    assert state.current() == "b"
    clock.advance(1.0)
    assert state.fail_over("b down") == "c"
    assert state.current() == "c"
    assert state.fail_over("c down") is None
    # No alternate left: the last one stays active.
    assert state.current() == "c"
    status = state.status()
    assert status.exhausted
    assert status.alternates_left == ()
    assert status.failovers == 2
    assert state.history() == [
        FailoverEvent(at=0.0, previous="a", target="b", reason="a down"),
        FailoverEvent(at=1.0, previous="b", target="c", reason="b down"),
    ]


def test_reason_must_be_a_string_and_is_truncated(clock: FakeClock) -> None:
    state = make(clock)
    with pytest.raises(TypeError, match="reason"):
        state.fail_over(None)  # type: ignore[arg-type]
    assert state.current() == "a"
    state.fail_over("x" * 10_000)
    (event,) = state.history()
    assert len(event.reason.encode()) <= 1024
    assert event.reason.endswith("...")


def test_expected_target_fails_over_once(clock: FakeClock) -> None:
    state = make(clock)
    assert state.fail_over("a down", expected="a") == "b"
    # A second caller that saw "a" fail too: "b" is already active, nothing moves.
    assert state.fail_over("a down", expected="a") == "b"
    assert state.status().failovers == 1
    assert state.fail_over("b down", expected="b") == "c"
    with pytest.raises(ValueError, match="'z' is not a failover target"):
        state.fail_over("?", expected="z")


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_failovers_of_one_target_move_once(clock: FakeClock) -> None:
    state = make(clock, ("b", "c", "d", "e"))
    count = 16
    start = threading.Barrier(count)
    results: list[str | None] = []
    lock = threading.Lock()

    def fail() -> None:
        start.wait()
        target = state.fail_over("a down", expected="a")
        with lock:
            results.append(target)

    threads = [threading.Thread(target=fail) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["b"] * count
    assert state.status().failovers == 1


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_failovers_hand_out_each_alternate_once(clock: FakeClock) -> None:
    alternates = tuple(f"alt{i}" for i in range(2_000))
    state = make(clock, alternates)
    count, per_thread = 8, 300
    start = threading.Barrier(count)
    results: list[str | None] = []
    lock = threading.Lock()

    def fail() -> None:
        start.wait()
        mine = [state.fail_over("down") for _ in range(per_thread)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=fail) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    moved = [target for target in results if target is not None]
    assert sorted(moved) == sorted(alternates)
    assert results.count(None) == count * per_thread - len(alternates)
    assert state.current() == "alt1999"
    assert state.status().failovers == len(alternates)


# -- health and the return to the primary -----------------------------------------------


def test_returns_to_the_primary_after_healthy_seconds(clock: FakeClock) -> None:
    state = make(clock, healthy_seconds=30.0)
    state.fail_over("a down")
    clock.advance(5.0)
    state.report("a", True)
    clock.advance(29.75)
    assert state.current() == "b"
    assert state.status().primary_healthy_for == 29.75
    clock.advance(0.25)
    assert state.current() == "a"
    assert state.history()[-1] == FailoverEvent(
        at=35.0, previous="b", target="a", reason="primary_healthy"
    )
    assert state.status().on_primary


def test_healthy_reports_in_a_row_do_not_restart_the_period(clock: FakeClock) -> None:
    state = make(clock, healthy_seconds=30.0)
    state.fail_over("a down")
    state.report("a", True)
    for _ in range(3):
        clock.advance(10.0)
        state.report("a", True)
    assert state.current() == "a"


def test_a_failure_restarts_the_healthy_period(clock: FakeClock) -> None:
    state = make(clock, healthy_seconds=30.0)
    state.fail_over("a down")
    state.report("a", True)
    clock.advance(20.0)
    state.report("a", False)
    clock.advance(20.0)
    assert state.current() == "b"
    state.report("a", True)
    clock.advance(29.0)
    assert state.current() == "b"
    clock.advance(1.0)
    assert state.current() == "a"


def test_health_before_a_failover_does_not_count(clock: FakeClock) -> None:
    state = make(clock, healthy_seconds=30.0)
    state.report("a", True)
    clock.advance(100.0)
    state.fail_over("a down")  # "a" just failed: its earlier health is void
    clock.advance(100.0)
    assert state.current() == "b"
    assert state.status().primary_healthy_for is None


def test_no_return_without_a_health_report(clock: FakeClock) -> None:
    state = make(clock)
    state.fail_over("a down")
    clock.advance(10_000.0)
    assert state.current() == "b"


def test_returns_from_the_last_alternate_after_exhaustion(clock: FakeClock) -> None:
    state = make(clock, healthy_seconds=30.0)
    state.fail_over("a down")
    state.fail_over("b down")
    assert state.fail_over("c down") is None
    state.report("a", True)
    clock.advance(30.0)
    status = state.status()
    assert status.current == "a"
    assert not status.exhausted
    # A later failover starts from the first alternate again.
    assert state.fail_over("a down again") == "b"
    assert state.status().failovers == 3


def test_fail_over_settles_the_return_first(clock: FakeClock) -> None:
    state = make(clock, healthy_seconds=30.0)
    state.fail_over("a down")
    state.report("a", True)
    clock.advance(30.0)
    # Nobody asked current(); the primary is active all the same, so this leaves it.
    assert state.fail_over("a down", expected="a") == "b"


def test_report_rejects_unknown_targets(clock: FakeClock) -> None:
    state = make(clock)
    with pytest.raises(ValueError, match=r"FailoverState: target 'z' is not a failover target"):
        state.report("z", True)


def test_reset_returns_to_the_primary_at_once(clock: FakeClock) -> None:
    state = make(clock)
    state.fail_over("a down")
    state.reset()
    assert state.current() == "a"
    assert state.history()[-1].reason == "reset"
    state.reset()  # already there: nothing recorded
    assert len(state.history()) == 2


# -- failure_threshold ------------------------------------------------------------------


def test_failed_reports_on_the_active_target_fail_over(clock: FakeClock) -> None:
    state = make(clock, failure_threshold=3)
    state.report("a", False)
    state.report("a", False)
    assert state.current() == "a"
    state.report("a", False)
    assert state.current() == "b"
    assert state.history()[-1].reason == "failure_threshold"
    # The streak on "b" starts from zero; a success breaks it.
    state.report("b", False)
    state.report("b", False)
    state.report("b", True)
    state.report("b", False)
    state.report("b", False)
    assert state.current() == "b"
    state.report("b", False)
    assert state.current() == "c"


def test_failed_reports_on_an_inactive_target_do_not_move(clock: FakeClock) -> None:
    state = make(clock, failure_threshold=1)
    state.report("c", False)
    state.report("b", False)
    assert state.current() == "a"
    assert state.status().failovers == 0


def test_failed_reports_past_the_last_alternate(clock: FakeClock) -> None:
    state = make(clock, ("b",), failure_threshold=1)
    state.report("a", False)
    assert state.current() == "b"
    state.report("b", False)
    assert state.current() == "b"
    assert state.status().exhausted


# -- history and threads ----------------------------------------------------------------


def test_history_is_bounded(clock: FakeClock) -> None:
    state = make(clock, ("b",), healthy_seconds=1.0)
    for _ in range(FAILOVER_HISTORY_SIZE):
        state.fail_over("a down")
        state.report("a", True)
        clock.advance(1.0)
        assert state.current() == "a"
    history = state.history()
    assert len(history) == FAILOVER_HISTORY_SIZE
    assert history[-1].reason == "primary_healthy"
    assert state.status().failovers == FAILOVER_HISTORY_SIZE


@pytest.mark.usefixtures("fast_switching")
def test_threads_reporting_and_reading_at_once(clock: FakeClock) -> None:
    state = make(clock, ("b", "c"), healthy_seconds=5.0, failure_threshold=1_000_000)
    start = threading.Barrier(6)
    errors: list[BaseException] = []
    seen: set[str] = set()

    def reader() -> None:
        try:
            start.wait()
            for _ in range(2_000):
                seen.add(state.current())
                state.status()
        except BaseException as error:
            errors.append(error)

    def reporter(target: str) -> None:
        try:
            start.wait()
            for step in range(2_000):
                state.report(target, step % 3 != 0)
        except BaseException as error:
            errors.append(error)

    moved: list[str] = []

    def mover() -> None:
        try:
            start.wait()
            for _ in range(200):
                target = state.fail_over("down")
                if target is not None:
                    moved.append(target)
                clock.advance(1.0)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    threads += [threading.Thread(target=reporter, args=(t,)) for t in ("a", "b", "c")]
    threads.append(threading.Thread(target=mover))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert seen <= {"a", "b", "c"}
    # Whatever the interleaving, a healthy primary brings the component home.
    state.report("a", True)
    clock.advance(5.0)
    assert state.current() == "a"
    # Only the mover fails over (the threshold is out of reach), and each move counts once.
    assert state.status().failovers == len(moved)
    assert set(moved) <= {"b", "c"}
