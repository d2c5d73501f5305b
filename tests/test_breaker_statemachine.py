"""The breaker against a small reference model, driven by Hypothesis with a FakeClock."""

from __future__ import annotations

import math
import random  # noqa: TID251 - tests seed their own random source
from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from otel_resilience._errors import CircuitOpenError
from otel_resilience.breaker import (
    DISABLED_TICKET,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitState,
)
from otel_resilience.testing import FakeClock

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN
DISABLED = CircuitState.DISABLED

FAILURE_THRESHOLD = 3
SUCCESS_THRESHOLD = 2
TIMEOUT = 10.0
MAX_TRIALS = 2
LEASE = 25.0
WINDOW = 5
MINIMUM = 4
RATE = 0.75

CONFIG = CircuitBreakerConfig(
    failure_threshold=FAILURE_THRESHOLD,
    success_threshold=SUCCESS_THRESHOLD,
    timeout_seconds=TIMEOUT,
    half_open_max_calls=MAX_TRIALS,
    probe_lease_seconds=LEASE,
    record_exceptions=(ConnectionError,),
    ignore_exceptions=(KeyError,),
    sliding_window_size=WINDOW,
    minimum_calls=MINIMUM,
    failure_rate_threshold=RATE,
)


@dataclass
class Model:
    """The specification, written as plainly as possible."""

    now: float
    state: CircuitState = CLOSED
    epoch: int = 0  # bumped on every state change and on reset
    open_until: float = 0.0
    streak: int = 0
    window: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW))
    trial_successes: int = 0
    trials: dict[int, float] = field(default_factory=dict)  # trial id -> start time
    next_trial: int = 0
    successes: int = 0
    failures: int = 0
    ignored: int = 0
    rejections: int = 0
    stale: int = 0

    def move(self, state: CircuitState) -> None:
        self.state = state
        self.epoch += 1
        self.trials.clear()
        self.trial_successes = 0

    def open(self) -> None:
        self.open_until = self.now + TIMEOUT
        self.move(OPEN)

    def close(self) -> None:
        self.streak = 0
        self.window.clear()
        self.move(CLOSED)

    def refresh(self) -> CircuitState:
        if self.state is OPEN and self.now >= self.open_until:
            self.move(HALF_OPEN)
        return self.state

    def acquire(self) -> tuple[str, int] | float | None:
        """A permit token, or the rejection's retry_after."""
        state = self.refresh()
        if state is CLOSED:
            return ("closed", self.epoch)
        if state is DISABLED:
            return ("disabled", 0)
        if state is HALF_OPEN:
            if len(self.trials) >= MAX_TRIALS:
                for trial, start in list(self.trials.items()):
                    if self.now >= start + LEASE:
                        del self.trials[trial]
            if len(self.trials) < MAX_TRIALS:
                self.next_trial += 1
                self.trials[self.next_trial] = self.now
                return ("trial", self.next_trial)
            self.rejections += 1
            return 0.0
        self.rejections += 1
        return self.open_until - self.now if state is OPEN else None

    def valid(self, token: tuple[str, int]) -> bool:
        kind, value = token
        if kind == "closed":
            return value == self.epoch
        start = self.trials.pop(value, None)
        return start is not None and self.now < start + LEASE

    def outcome(self, token: tuple[str, int], outcome: str) -> None:
        kind, value = token
        if kind == "disabled":
            return
        if outcome == "release":
            if kind == "trial":
                self.trials.pop(value, None)
            return
        if not self.valid(token):
            self.stale += 1
            return
        if outcome == "ignore":
            self.ignored += 1
        elif outcome == "success":
            self.successes += 1
            if kind == "trial":
                self.trial_successes += 1
                if self.trial_successes >= SUCCESS_THRESHOLD:
                    self.close()
            else:
                self.streak = 0
                self.window.append(False)
                self.check_rate()
        else:
            self.failures += 1
            if kind == "trial":
                self.open()
            else:
                self.streak += 1
                self.window.append(True)
                if self.streak >= FAILURE_THRESHOLD:
                    self.open()
                else:
                    self.check_rate()

    def check_rate(self) -> None:
        if len(self.window) >= MINIMUM and sum(self.window) / len(self.window) >= RATE:
            self.open()


# How each model outcome is reported, exercising every reporting method.
REPORTS = {
    "success": [
        lambda b, t: b.record_success(t),
        lambda b, t: b.on_result(t, "ok"),
        lambda b, t: b.on_error(t, ValueError("not recorded: a success")),
    ],
    "failure": [
        lambda b, t: b.record_failure(t),
        lambda b, t: b.on_error(t, ConnectionError()),
    ],
    "ignore": [lambda b, t: b.on_error(t, KeyError("ignored"))],
    "release": [
        lambda b, t: b.release(t),
        lambda b, t: b.on_error(t, KeyboardInterrupt()),
    ],
}


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(start=1000.0)
        self.breaker = CircuitBreaker("model", CONFIG, clock=self.clock)
        self.model = Model(now=1000.0)
        self.held: list[tuple[int, tuple[str, int]]] = []

    @initialize()
    def start_closed(self) -> None:
        assert self.breaker.state is CLOSED

    @rule()
    def acquire(self) -> None:
        expected = self.model.acquire()
        rejection: CircuitOpenError | None = None
        try:
            ticket = self.breaker.acquire()
        except CircuitOpenError as error:
            rejection = error
        if rejection is not None:
            assert not isinstance(expected, tuple), f"rejected, model admitted {expected}"
            assert rejection.retry_after == expected
            return
        assert isinstance(expected, tuple), f"admitted {ticket}, model rejected"
        kind = expected[0]
        if kind == "closed":
            assert ticket > 0
        elif kind == "trial":
            assert ticket < 0
            assert all(ticket != held for held, _ in self.held)
        else:
            assert ticket == DISABLED_TICKET
        self.held.append((ticket, expected))

    @precondition(lambda self: bool(self.held))
    @rule(
        data=st.data(),
        outcome=st.sampled_from(sorted(REPORTS)),
        how=st.integers(min_value=0, max_value=2),
    )
    def report(self, data: st.DataObject, outcome: str, how: int) -> None:
        index = data.draw(st.integers(min_value=0, max_value=len(self.held) - 1))
        ticket, token = self.held.pop(index)
        methods = REPORTS[outcome]
        methods[how % len(methods)](self.breaker, ticket)
        self.model.outcome(token, outcome)

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0, 5.0, TIMEOUT, LEASE]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.model.now += seconds

    @rule()
    def force_open(self) -> None:
        self.breaker.force_open()
        if self.model.state is not FORCED_OPEN:
            self.model.move(FORCED_OPEN)

    @rule()
    def disable(self) -> None:
        self.breaker.disable()
        if self.model.state is not DISABLED:
            self.model.move(DISABLED)

    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.model.close()

    @rule()
    def trip(self) -> None:
        state = self.model.refresh()
        opened = state in (CLOSED, HALF_OPEN)
        if opened:
            self.model.open()
        assert self.breaker.trip() is opened

    @invariant()
    def state_matches(self) -> None:
        assert self.breaker.state is self.model.refresh()

    @invariant()
    def what_acquire_reads_without_the_lock_matches_the_state(self) -> None:
        """The CLOSED period's ticket, else 0; the end of a refusal (OPEN, FORCED_OPEN)."""
        breaker = self.breaker
        state = breaker._state
        assert breaker._closed_ticket == (
            breaker._generation if state is CircuitState.CLOSED else 0
        )
        refused_until = {CircuitState.OPEN: breaker._open_until, CircuitState.FORCED_OPEN: math.inf}
        assert breaker._refused_until == refused_until.get(state, 0.0)

    @invariant()
    def counts_match(self) -> None:
        metrics = self.breaker.metrics
        model = self.model
        assert metrics.trials_in_flight <= MAX_TRIALS
        assert metrics.trials_in_flight == len(model.trials)
        assert (
            metrics.successes,
            metrics.failures,
            metrics.ignored,
            metrics.rejections,
            metrics.stale,
        ) == (model.successes, model.failures, model.ignored, model.rejections, model.stale)
        assert metrics.calls == metrics.successes + metrics.failures + metrics.ignored
        assert metrics.consecutive_failures == model.streak
        assert metrics.window_calls == len(model.window)
        assert metrics.window_failures == sum(model.window)


BreakerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
TestBreakerStateMachine = BreakerMachine.TestCase


def test_the_model_is_not_vacuous() -> None:
    """The model itself opens, half-opens and closes, so agreement means something."""
    model = Model(now=0.0)
    for _ in range(FAILURE_THRESHOLD):
        model.outcome(("closed", model.epoch), "failure")
    assert model.state is OPEN
    model.now += TIMEOUT
    tokens = [model.acquire() for _ in range(MAX_TRIALS + 1)]
    assert tokens[-1] == 0.0
    for token in tokens[:SUCCESS_THRESHOLD]:
        assert isinstance(token, tuple)
        model.outcome(token, "success")
    assert model.state is CLOSED


@pytest.mark.parametrize("seed", range(3))
def test_long_random_walks_agree(seed: int) -> None:
    """A few long deterministic walks reach states short examples rarely do."""
    rng = random.Random(seed)
    machine = BreakerMachine()
    machine.start_closed()
    for _ in range(2000):
        step = rng.random()
        if step < 0.45:
            machine.acquire()
        elif step < 0.85 and machine.held:
            index = rng.randrange(len(machine.held))
            ticket, token = machine.held.pop(index)
            outcome = rng.choice(sorted(REPORTS))
            rng.choice(REPORTS[outcome])(machine.breaker, ticket)
            machine.model.outcome(token, outcome)
        elif step < 0.97:
            machine.advance(rng.choice([0.5, 1.0, 3.0, TIMEOUT, LEASE]))
        elif step < 0.98:
            machine.trip()
        elif step < 0.99:
            machine.reset()
        else:
            machine.force_open()
        machine.state_matches()
        machine.counts_match()
