"""One scenario suite for every state store: the in-memory model and Redis, sync and async.

Each scenario runs against four stores: :class:`InMemoryStateStore` and
:class:`RedisStateStore` (called directly, through a thin awaitable facade), and
:class:`AsyncInMemoryStateStore` and :class:`AsyncRedisStateStore` (awaited on the test's
event loop). Time is never slept for: the model's fake clock is advanced; for Redis,
whose scripts read the server's clock, every time stored under the test's namespace is
shifted back by the same amount (``servers.shift_redis_time``), TTLs included.

Durations read from Redis carry the real time the test took (milliseconds), so they
are compared with a tolerance; everything else must match exactly.

A differential test then drives the model and Redis with the same long random sequences
of operations and compares every answer.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
import redis

from otel_resilience._clock import seeded_random
from otel_resilience.breaker import CircuitState
from otel_resilience.stores import (
    Admission,
    AdmissionKind,
    AsyncInMemoryStateStore,
    Command,
    InMemoryStateStore,
    Outcome,
    Report,
    StoreParams,
    StoreView,
    Transition,
)
from otel_resilience.stores.redis import AsyncRedisStateStore, RedisStateStore
from otel_resilience.testing import FakeClock

if TYPE_CHECKING:
    import servers
else:
    # tests/ is not a package for the type checker: imported by name at run time.
    servers = importlib.import_module("tests.servers")

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN
DISABLED = CircuitState.DISABLED

OPEN_SECONDS = 30.0
LEASE_SECONDS = 10.0
TTL_SECONDS = 3600.0
REDIS_TOLERANCE = 0.5  # seconds of real time a scenario may take against Redis

STORES = ("memory", "memory-async", "redis", "redis-async")


def make_params(**overrides: Any) -> StoreParams:
    fields: dict[str, Any] = {
        "failure_threshold": 3,
        "success_threshold": 2,
        "timeout_seconds": OPEN_SECONDS,
        "half_open_max_calls": 2,
        "lease_seconds": LEASE_SECONDS,
        "key_ttl_seconds": TTL_SECONDS,
    }
    fields.update(overrides)
    return StoreParams(**fields)


P = make_params()


class _Awaitable:
    """A synchronous store behind the awaitable protocol: each call runs it directly."""

    def __init__(self, store: Any) -> None:
        self.sync = store

    async def acquire(self, name: str, params: StoreParams) -> Admission:
        result: Admission = self.sync.acquire(name, params)
        return result

    async def report(
        self,
        name: str,
        params: StoreParams,
        token: int,
        outcome: Outcome,
        open_seconds: float,
        *,
        trial: bool,
    ) -> Report:
        result: Report = self.sync.report(name, params, token, outcome, open_seconds, trial=trial)
        return result

    async def command(
        self, name: str, params: StoreParams, command: Command, reason: str, open_seconds: float
    ) -> Report:
        result: Report = self.sync.command(name, params, command, reason, open_seconds)
        return result

    async def read(self, name: str, params: StoreParams) -> StoreView:
        result: StoreView = self.sync.read(name, params)
        return result


@dataclass
class Harness:
    """A store under test, with the means to let time pass for it."""

    kind: str
    store: Any  # awaitable acquire / report / command / read
    advance: Callable[[float], None]
    tolerance: float

    def near(self, actual: float | None, expected: float) -> bool:
        """Whether a duration matches (Redis durations carry the real time the test took)."""
        return actual is not None and abs(actual - expected) <= self.tolerance

    async def acquire(self, name: str, params: StoreParams = P) -> Admission:
        result: Admission = await self.store.acquire(name, params)
        return result

    async def report(
        self,
        name: str,
        token: int,
        outcome: Outcome,
        params: StoreParams = P,
        *,
        trial: bool = False,
        open_seconds: float = OPEN_SECONDS,
    ) -> Report:
        result: Report = await self.store.report(
            name, params, token, outcome, open_seconds, trial=trial
        )
        return result

    async def command(
        self,
        name: str,
        command: Command,
        params: StoreParams = P,
        *,
        reason: str = "manual",
        open_seconds: float = OPEN_SECONDS,
    ) -> Report:
        result: Report = await self.store.command(name, params, command, reason, open_seconds)
        return result

    async def read(self, name: str, params: StoreParams = P) -> StoreView:
        result: StoreView = await self.store.read(name, params)
        return result

    # -- getting somewhere ----------------------------------------------------------------

    async def failures(
        self, name: str, count: int, params: StoreParams = P, *, token: int | None = None
    ) -> Report:
        """Report ``count`` failures of calls admitted now; return the last report."""
        report: Report | None = None
        for _ in range(count):
            ticket = token if token is not None else (await self.acquire(name, params)).token
            report = await self.report(name, ticket, Outcome.FAILURE, params)
        assert report is not None
        return report

    async def opened(self, name: str, params: StoreParams = P) -> StoreView:
        report = await self.command(name, Command.TRIP, params, reason="test")
        assert report.view.state is OPEN
        return report.view

    async def half_opened(self, name: str, params: StoreParams = P) -> Admission:
        """Open, let the open period pass, and take the first trial."""
        await self.opened(name, params)
        self.advance(OPEN_SECONDS)
        admission = await self.acquire(name, params)
        assert admission.kind is AdmissionKind.TRIAL, admission
        return admission


def states(transitions: tuple[Transition, ...]) -> list[tuple[CircuitState, CircuitState, str]]:
    return [(t.previous, t.state, t.reason) for t in transitions]


# -- the stores ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.RedisServer]:
    tmp_path: Path = tmp_path_factory.mktemp("redis")
    with servers.redis_server(tmp_path) as server:
        yield server


@pytest.fixture(scope="module")
def inspector(redis_srv: servers.RedisServer) -> Iterator[redis.Redis]:
    """A plain client for looking at (and ageing) what the scripts stored."""
    client = redis.Redis(host=redis_srv.host, port=redis_srv.port, socket_timeout=10.0)
    yield client
    client.close()


@pytest_asyncio.fixture(params=STORES)
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    kind: str = request.param
    if kind.startswith("memory"):
        clock = FakeClock()
        memory = InMemoryStateStore(clock=clock)
        store: Any = AsyncInMemoryStateStore(memory) if kind == "memory-async" else None
        yield Harness(kind, store or _Awaitable(memory), clock.advance, 1e-9)
        return
    server: servers.RedisServer = request.getfixturevalue("redis_srv")
    client: redis.Redis = request.getfixturevalue("inspector")
    namespace = f"conformance-{uuid.uuid4().hex[:12]}"

    def advance(seconds: float) -> None:
        servers.shift_redis_time(client, namespace, seconds)

    if kind == "redis":
        sync_store = RedisStateStore.from_url(
            server.url, namespace=namespace, clock=FakeClock(), telemetry=False
        )
        try:
            yield Harness(kind, _Awaitable(sync_store), advance, REDIS_TOLERANCE)
        finally:
            sync_store.close()
    else:
        async_store = AsyncRedisStateStore.from_url(
            server.url, namespace=namespace, clock=FakeClock(), telemetry=False
        )
        try:
            yield Harness(kind, async_store, advance, REDIS_TOLERANCE)
        finally:
            await async_store.aclose()


# -- admission and generations ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_new_breaker_admits_under_its_generation(h: Harness) -> None:
    admission = await h.acquire("db")
    assert admission.kind is AdmissionKind.ADMITTED
    assert admission.token == admission.view.generation > 0
    assert admission.retry_after is None
    assert admission.transitions == ()
    assert admission.view == StoreView(CLOSED, admission.token, 0.0, 0, 0, 0)
    assert (await h.acquire("db")).token == admission.token


@pytest.mark.asyncio
async def test_names_are_separate_breakers(h: Harness) -> None:
    await h.opened("a")
    assert (await h.acquire("b")).kind is AdmissionKind.ADMITTED
    assert (await h.read("a")).state is OPEN


@pytest.mark.asyncio
async def test_read_initialises_a_state_and_never_moves_it(h: Harness) -> None:
    view = await h.read("db")
    assert view.state is CLOSED
    assert (await h.acquire("db")).token == view.generation

    await h.opened("db")
    h.advance(OPEN_SECONDS + 5)
    view = await h.read("db")
    assert view.state is OPEN  # as stored: the move belongs to acquire
    assert view.open_remaining == 0.0
    admission = await h.acquire("db")
    assert states(admission.transitions) == [(OPEN, HALF_OPEN, "open_timeout")]


@pytest.mark.asyncio
async def test_outcomes_of_an_old_generation_count_for_nothing(h: Harness) -> None:
    stale = (await h.acquire("db")).token
    await h.failures("db", 3)  # another caller opens the breaker
    await h.command("db", Command.RESET)
    report = await h.report("db", stale, Outcome.FAILURE)
    assert not report.counted
    assert report.view.consecutive_failures == 0
    assert report.view.state is CLOSED


@pytest.mark.asyncio
async def test_a_trial_token_reported_as_a_generation_is_not_counted(h: Harness) -> None:
    trial = await h.half_opened("db")
    report = await h.report("db", trial.token, Outcome.SUCCESS)  # trial=False
    assert not report.counted
    assert report.view.trials == 1


# -- CLOSED: the failure streak ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_failure_threshold_opens_the_breaker_once(h: Harness) -> None:
    token = (await h.acquire("db")).token
    report = await h.failures("db", 2, token=token)
    assert report.counted
    assert report.view.consecutive_failures == 2
    assert report.transitions == ()

    report = await h.report("db", token, Outcome.SUCCESS)
    assert report.counted
    assert report.view.consecutive_failures == 0

    report = await h.failures("db", 3, token=token)
    assert states(report.transitions) == [(CLOSED, OPEN, "failure_threshold")]
    assert report.transitions[0].ago == 0.0
    assert report.view.state is OPEN
    assert report.view.generation == token + 1
    assert report.view.open_count == 1
    assert report.view.consecutive_failures == 3
    assert h.near(report.view.open_remaining, OPEN_SECONDS)

    late = await h.report("db", token, Outcome.FAILURE)
    assert not late.counted
    assert late.transitions == ()


@pytest.mark.asyncio
async def test_the_opening_outcome_sets_the_open_duration(h: Harness) -> None:
    token = (await h.acquire("db")).token
    await h.failures("db", 2, token=token)
    report = await h.report("db", token, Outcome.FAILURE, open_seconds=45.0)
    assert h.near(report.view.open_remaining, 45.0)


@pytest.mark.asyncio
@pytest.mark.parametrize("outcome", [Outcome.IGNORED, Outcome.RELEASE])
async def test_ignored_and_released_calls_count_nothing_while_closed(
    h: Harness, outcome: Outcome
) -> None:
    token = (await h.acquire("db")).token
    await h.failures("db", 2, token=token)
    report = await h.report("db", token, outcome)
    assert report.counted
    assert report.view.consecutive_failures == 2
    assert (await h.failures("db", 1, token=token)).view.state is OPEN


@pytest.mark.asyncio
async def test_slow_failures_are_failures_and_slow_successes_end_the_streak(h: Harness) -> None:
    token = (await h.acquire("db")).token
    report = await h.report("db", token, Outcome.SLOW_FAILURE)
    assert report.view.consecutive_failures == 1
    report = await h.report("db", token, Outcome.SLOW_SUCCESS)
    assert report.view.consecutive_failures == 0


# -- OPEN and the lazy move to HALF_OPEN ----------------------------------------------------


@pytest.mark.asyncio
async def test_open_rejects_with_the_time_left(h: Harness) -> None:
    await h.failures("db", 3)
    admission = await h.acquire("db")
    assert admission.kind is AdmissionKind.REJECTED
    assert admission.token == 0
    assert h.near(admission.retry_after, OPEN_SECONDS)
    h.advance(10.0)
    admission = await h.acquire("db")
    assert admission.kind is AdmissionKind.REJECTED
    assert h.near(admission.retry_after, OPEN_SECONDS - 10.0)
    assert h.near(admission.view.open_remaining, OPEN_SECONDS - 10.0)
    assert admission.transitions == ()


@pytest.mark.asyncio
async def test_the_lazy_move_is_stamped_with_the_end_of_the_open_period(h: Harness) -> None:
    opened = await h.opened("db")
    h.advance(OPEN_SECONDS + 4.0)
    first = await h.acquire("db")
    assert first.kind is AdmissionKind.TRIAL
    assert states(first.transitions) == [(OPEN, HALF_OPEN, "open_timeout")]
    assert h.near(first.transitions[0].ago, 4.0)
    assert first.view.state is HALF_OPEN
    assert first.view.generation == opened.generation + 1
    assert first.view.trials == 1
    # Exactly one caller hears of the move.
    second = await h.acquire("db")
    assert second.kind is AdmissionKind.TRIAL
    assert second.transitions == ()


@pytest.mark.asyncio
async def test_an_expired_open_period_never_goes_straight_to_closed(h: Harness) -> None:
    await h.opened("db")
    h.advance(OPEN_SECONDS * 10)
    admission = await h.acquire("db")
    assert admission.view.state is HALF_OPEN
    assert admission.kind is AdmissionKind.TRIAL


# -- HALF_OPEN: trial leases ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_trial_leases_bound_concurrent_trials(h: Harness) -> None:
    first = await h.half_opened("db")
    second = await h.acquire("db")
    assert second.kind is AdmissionKind.TRIAL
    assert second.token != first.token
    third = await h.acquire("db")
    assert third.kind is AdmissionKind.REJECTED
    assert third.retry_after == 0.0
    assert third.view.trials == 2


@pytest.mark.asyncio
async def test_an_expired_lease_is_reclaimed_and_its_outcome_is_stale(h: Harness) -> None:
    params = make_params(half_open_max_calls=1)
    first = await h.half_opened("db", params)
    assert (await h.acquire("db", params)).kind is AdmissionKind.REJECTED
    h.advance(LEASE_SECONDS)
    second = await h.acquire("db", params)
    assert second.kind is AdmissionKind.TRIAL
    assert second.view.trials == 1
    late = await h.report("db", first.token, Outcome.SUCCESS, params, trial=True)
    assert not late.counted
    assert late.view.state is HALF_OPEN


@pytest.mark.asyncio
async def test_a_lease_past_its_expiry_is_stale_before_it_is_reclaimed(h: Harness) -> None:
    first = await h.half_opened("db")
    h.advance(LEASE_SECONDS)
    report = await h.report("db", first.token, Outcome.FAILURE, trial=True)
    assert not report.counted
    assert report.view.state is HALF_OPEN
    assert report.view.trials == 0  # the lease is gone all the same


@pytest.mark.asyncio
async def test_a_lease_still_running_counts(h: Harness) -> None:
    first = await h.half_opened("db")
    h.advance(LEASE_SECONDS - 2.0)
    report = await h.report("db", first.token, Outcome.SUCCESS, trial=True)
    assert report.counted
    assert report.view.trials == 0


@pytest.mark.asyncio
async def test_success_threshold_trial_successes_close_the_breaker(h: Harness) -> None:
    first = await h.half_opened("db")
    second = await h.acquire("db")
    report = await h.report("db", first.token, Outcome.SUCCESS, trial=True)
    assert report.counted
    assert report.view.state is HALF_OPEN
    assert report.transitions == ()
    report = await h.report("db", second.token, Outcome.SUCCESS, trial=True)
    assert report.counted
    assert states(report.transitions) == [(HALF_OPEN, CLOSED, "trial_success")]
    assert report.view == StoreView(CLOSED, first.view.generation + 1, 0.0, 0, 0, 0)
    # The new generation admits, and its calls count from zero.
    assert (await h.acquire("db")).token == report.view.generation


@pytest.mark.asyncio
@pytest.mark.parametrize("outcome", [Outcome.FAILURE, Outcome.SLOW_SUCCESS, Outcome.SLOW_FAILURE])
async def test_a_failed_or_slow_trial_reopens(h: Harness, outcome: Outcome) -> None:
    first = await h.half_opened("db")
    second = await h.acquire("db")
    report = await h.report("db", first.token, outcome, trial=True, open_seconds=45.0)
    assert report.counted
    assert states(report.transitions) == [(HALF_OPEN, OPEN, "trial_failure")]
    assert report.view.open_count == 2
    assert report.view.trials == 0
    assert h.near(report.view.open_remaining, 45.0)
    # The other trial belonged to the half-open period that ended.
    late = await h.report("db", second.token, Outcome.SUCCESS, trial=True)
    assert not late.counted
    assert late.view.state is OPEN


@pytest.mark.asyncio
@pytest.mark.parametrize("outcome", [Outcome.IGNORED, Outcome.RELEASE])
async def test_ignored_and_released_trials_give_their_lease_back(
    h: Harness, outcome: Outcome
) -> None:
    params = make_params(half_open_max_calls=1)
    first = await h.half_opened("db", params)
    report = await h.report("db", first.token, outcome, params, trial=True)
    assert report.counted
    assert report.view.state is HALF_OPEN
    assert report.view.trials == 0
    assert report.transitions == ()
    # The slot is free again, and the given-back trial was no success.
    again = await h.acquire("db", params)
    assert again.kind is AdmissionKind.TRIAL
    report = await h.report("db", again.token, Outcome.SUCCESS, params, trial=True)
    assert report.view.state is HALF_OPEN
    third = await h.acquire("db", params)
    report = await h.report("db", third.token, Outcome.SUCCESS, params, trial=True)
    assert report.view.state is CLOSED


@pytest.mark.asyncio
async def test_a_lease_reported_twice_counts_once(h: Harness) -> None:
    first = await h.half_opened("db")
    assert (await h.report("db", first.token, Outcome.SUCCESS, trial=True)).counted
    again = await h.report("db", first.token, Outcome.SUCCESS, trial=True)
    assert not again.counted
    assert again.view.state is HALF_OPEN


# -- commands -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_reset_while_closed_bumps_the_generation(h: Harness) -> None:
    token = (await h.acquire("db")).token
    await h.failures("db", 2, token=token)
    report = await h.command("db", Command.RESET)
    assert report.counted
    assert report.transitions == ()
    assert report.view == StoreView(CLOSED, token + 1, 0.0, 0, 0, 0)
    assert not (await h.report("db", token, Outcome.FAILURE)).counted


async def _into(h: Harness, state: CircuitState) -> None:
    if state is OPEN:
        await h.opened("db")
    elif state is HALF_OPEN:
        await h.half_opened("db")
    elif state is FORCED_OPEN:
        await h.command("db", Command.FORCE_OPEN)
    elif state is DISABLED:
        await h.command("db", Command.DISABLE)
    assert (await h.read("db")).state is state


@pytest.mark.asyncio
@pytest.mark.parametrize("state", [OPEN, HALF_OPEN, FORCED_OPEN, DISABLED])
async def test_reset_closes_every_other_state(h: Harness, state: CircuitState) -> None:
    await _into(h, state)
    before = await h.read("db")
    report = await h.command("db", Command.RESET)
    assert states(report.transitions) == [(state, CLOSED, "manual")]
    assert report.view == StoreView(CLOSED, before.generation + 1, 0.0, 0, 0, 0)


@pytest.mark.asyncio
async def test_force_open_rejects_with_no_recovery_until_reset(h: Harness) -> None:
    report = await h.command("db", Command.FORCE_OPEN)
    assert states(report.transitions) == [(CLOSED, FORCED_OPEN, "manual")]
    assert (await h.command("db", Command.FORCE_OPEN)).transitions == ()
    h.advance(OPEN_SECONDS * 10)
    admission = await h.acquire("db")
    assert admission.kind is AdmissionKind.REJECTED
    assert admission.retry_after is None
    assert admission.view.state is FORCED_OPEN


@pytest.mark.asyncio
async def test_force_open_from_open_keeps_no_timer(h: Harness) -> None:
    await h.opened("db")
    report = await h.command("db", Command.FORCE_OPEN)
    assert states(report.transitions) == [(OPEN, FORCED_OPEN, "manual")]
    assert report.view.open_remaining == 0.0


@pytest.mark.asyncio
async def test_disable_admits_everything_and_records_nothing(h: Harness) -> None:
    token = (await h.acquire("db")).token
    report = await h.command("db", Command.DISABLE)
    assert states(report.transitions) == [(CLOSED, DISABLED, "manual")]
    admission = await h.acquire("db")
    assert admission.kind is AdmissionKind.DISABLED
    assert admission.token == 0
    assert admission.retry_after is None
    for ticket in (0, token):
        assert not (await h.report("db", ticket, Outcome.FAILURE)).counted
    assert (await h.read("db")).consecutive_failures == 0
    assert (await h.command("db", Command.DISABLE)).transitions == ()


@pytest.mark.asyncio
async def test_trip_opens_a_closed_breaker_with_its_reason(h: Harness) -> None:
    report = await h.command("db", Command.TRIP, reason="overload", open_seconds=12.0)
    assert states(report.transitions) == [(CLOSED, OPEN, "overload")]
    assert report.view.open_count == 1
    assert h.near(report.view.open_remaining, 12.0)


@pytest.mark.asyncio
async def test_trip_opens_a_half_open_breaker(h: Harness) -> None:
    trial = await h.half_opened("db")
    report = await h.command("db", Command.TRIP, reason="overload")
    assert states(report.transitions) == [(HALF_OPEN, OPEN, "overload")]
    assert report.view.open_count == 2
    assert not (await h.report("db", trial.token, Outcome.SUCCESS, trial=True)).counted


@pytest.mark.asyncio
async def test_trip_moves_an_expired_open_period_first(h: Harness) -> None:
    await h.opened("db")
    h.advance(OPEN_SECONDS + 3.0)
    report = await h.command("db", Command.TRIP, reason="overload")
    assert states(report.transitions) == [
        (OPEN, HALF_OPEN, "open_timeout"),
        (HALF_OPEN, OPEN, "overload"),
    ]
    assert h.near(report.transitions[0].ago, 3.0)
    assert report.transitions[1].ago == 0.0


@pytest.mark.asyncio
async def test_trip_leaves_a_running_open_period_alone(h: Harness) -> None:
    opened = await h.opened("db")
    h.advance(10.0)
    report = await h.command("db", Command.TRIP, reason="overload", open_seconds=99.0)
    assert report.transitions == ()
    assert report.view.generation == opened.generation
    assert report.view.open_count == 1
    assert h.near(report.view.open_remaining, OPEN_SECONDS - 10.0)


@pytest.mark.asyncio
@pytest.mark.parametrize("state", [FORCED_OPEN, DISABLED])
async def test_trip_leaves_operator_states_alone(h: Harness, state: CircuitState) -> None:
    await _into(h, state)
    report = await h.command("db", Command.TRIP, reason="overload")
    assert report.transitions == ()
    assert report.view.state is state


# -- sliding windows --------------------------------------------------------------------------


async def _outcomes(h: Harness, params: StoreParams, *outcomes: Outcome) -> Report:
    report: Report | None = None
    for outcome in outcomes:
        token = (await h.acquire("db", params)).token
        report = await h.report("db", token, outcome, params)
        assert report.counted
    assert report is not None
    return report


S, F = Outcome.SUCCESS, Outcome.FAILURE


@pytest.mark.asyncio
async def test_count_window_failure_rate_opens(h: Harness) -> None:
    params = make_params(
        failure_threshold=100, window_size=4, minimum_calls=4, failure_rate_threshold=0.5
    )
    assert (await _outcomes(h, params, S, F, S)).view.state is CLOSED
    report = await _outcomes(h, params, F)
    assert states(report.transitions) == [(CLOSED, OPEN, "failure_rate")]


@pytest.mark.asyncio
async def test_count_window_evicts_the_oldest_call(h: Harness) -> None:
    params = make_params(
        failure_threshold=100, window_size=2, minimum_calls=2, failure_rate_threshold=1.0
    )
    # F S -> 1/2; F evicts F: S F -> 1/2; F evicts S: F F -> 2/2.
    assert (await _outcomes(h, params, F, S, F)).view.state is CLOSED
    report = await _outcomes(h, params, F)
    assert states(report.transitions) == [(CLOSED, OPEN, "failure_rate")]


@pytest.mark.asyncio
async def test_minimum_calls_hold_the_rates_back(h: Harness) -> None:
    params = make_params(
        failure_threshold=100, window_size=10, minimum_calls=5, failure_rate_threshold=0.5
    )
    assert (await _outcomes(h, params, F, F, F, F)).view.state is CLOSED
    assert (await _outcomes(h, params, S)).view.state is OPEN


@pytest.mark.asyncio
async def test_slow_call_rate_opens(h: Harness) -> None:
    params = make_params(window_size=4, minimum_calls=2, slow_call_rate_threshold=0.5)
    assert (await _outcomes(h, params, Outcome.SUCCESS)).view.state is CLOSED
    report = await _outcomes(h, params, Outcome.SLOW_SUCCESS)
    assert states(report.transitions) == [(CLOSED, OPEN, "slow_call_rate")]


@pytest.mark.asyncio
async def test_failure_rate_is_judged_before_slow_call_rate(h: Harness) -> None:
    params = make_params(
        window_size=4,
        minimum_calls=2,
        failure_rate_threshold=0.5,
        slow_call_rate_threshold=0.5,
    )
    report = await _outcomes(h, params, Outcome.SUCCESS, Outcome.SLOW_FAILURE)
    assert states(report.transitions) == [(CLOSED, OPEN, "failure_rate")]


@pytest.mark.asyncio
async def test_failure_threshold_is_judged_before_the_rates(h: Harness) -> None:
    params = make_params(
        failure_threshold=2, window_size=4, minimum_calls=2, failure_rate_threshold=0.5
    )
    report = await _outcomes(h, params, F, F)
    assert states(report.transitions) == [(CLOSED, OPEN, "failure_threshold")]


@pytest.mark.asyncio
async def test_closing_empties_the_window(h: Harness) -> None:
    params = make_params(
        failure_threshold=100,
        success_threshold=1,
        window_size=4,
        minimum_calls=4,
        failure_rate_threshold=0.5,
    )
    await _outcomes(h, params, F, S, S)  # one more failure would make it 2/4
    trial = await h.half_opened("db", params)
    closed = await h.report("db", trial.token, Outcome.SUCCESS, params, trial=True)
    assert closed.view.state is CLOSED
    assert (await _outcomes(h, params, F)).view.state is CLOSED  # 1 call: below minimum
    # RESET while closed empties it too.
    await _outcomes(h, params, S, S)
    await h.command("db", Command.RESET, params)
    assert (await _outcomes(h, params, F)).view.state is CLOSED
    assert (await _outcomes(h, params, S, S, F)).view.state is OPEN  # 2/4 afresh


@pytest.mark.asyncio
async def test_time_window_forgets_calls_older_than_the_window(h: Harness) -> None:
    params = make_params(
        failure_threshold=100, window_seconds=10.0, minimum_calls=2, failure_rate_threshold=1.0
    )
    await _outcomes(h, params, F)
    h.advance(11.0)
    assert (await _outcomes(h, params, F)).view.state is CLOSED  # 1 call: below minimum
    assert (await _outcomes(h, params, F)).view.state is OPEN


@pytest.mark.asyncio
async def test_time_window_keeps_recent_calls(h: Harness) -> None:
    params = make_params(
        failure_threshold=100, window_seconds=10.0, minimum_calls=3, failure_rate_threshold=0.6
    )
    await _outcomes(h, params, F, S)
    h.advance(5.0)
    report = await _outcomes(h, params, F)  # 2/3 of the last ten seconds
    assert states(report.transitions) == [(CLOSED, OPEN, "failure_rate")]


@pytest.mark.asyncio
async def test_time_window_slow_call_rate(h: Harness) -> None:
    params = make_params(window_seconds=10.0, minimum_calls=2, slow_call_rate_threshold=1.0)
    await _outcomes(h, params, Outcome.SLOW_SUCCESS)
    h.advance(3.0)
    report = await _outcomes(h, params, Outcome.SLOW_FAILURE)
    assert states(report.transitions) == [(CLOSED, OPEN, "slow_call_rate")]


# -- expiry ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_expired_state_starts_closed_under_a_fresh_generation(h: Harness) -> None:
    token = (await h.acquire("db")).token
    opened = (await h.failures("db", 3, token=token)).view
    h.advance(TTL_SECONDS)
    admission = await h.acquire("db")
    assert admission.kind is AdmissionKind.ADMITTED
    assert admission.transitions == ()
    assert admission.view.state is CLOSED
    assert admission.view.open_count == 0
    assert admission.view.consecutive_failures == 0
    # Never a generation an earlier state used: its tickets count for nothing.
    assert admission.token > opened.generation
    assert not (await h.report("db", token, Outcome.FAILURE)).counted


@pytest.mark.asyncio
async def test_an_expired_half_open_state_forgets_its_leases(h: Harness) -> None:
    trial = await h.half_opened("db")
    h.advance(TTL_SECONDS)
    await h.half_opened("db")
    report = await h.report("db", trial.token, Outcome.SUCCESS, trial=True)
    assert not report.counted


@pytest.mark.asyncio
async def test_every_operation_keeps_the_state_alive(h: Harness) -> None:
    await h.command("db", Command.FORCE_OPEN)
    h.advance(TTL_SECONDS * 0.75)
    assert (await h.read("db")).state is FORCED_OPEN
    h.advance(TTL_SECONDS * 0.75)
    assert (await h.read("db")).state is FORCED_OPEN
    h.advance(TTL_SECONDS)
    assert (await h.read("db")).state is CLOSED


# -- one transition, one caller ------------------------------------------------------------


@pytest.mark.asyncio
async def test_each_transition_is_reported_to_the_caller_that_made_it(h: Harness) -> None:
    first = (await h.acquire("db")).token
    second = (await h.acquire("db")).token
    reports = [
        await h.report("db", first, Outcome.FAILURE),
        await h.report("db", second, Outcome.FAILURE),
        await h.report("db", first, Outcome.FAILURE),
        await h.report("db", second, Outcome.FAILURE),
    ]
    assert [len(report.transitions) for report in reports] == [0, 0, 1, 0]
    assert not reports[3].counted
    h.advance(OPEN_SECONDS)
    moves = [(await h.acquire("db")).transitions for _ in range(3)]
    assert [len(move) for move in moves] == [1, 0, 0]


# -- the model and Redis, side by side --------------------------------------------------------

DIFFERENTIAL_CONFIGS = (
    make_params(failure_threshold=2, success_threshold=1, half_open_max_calls=1),
    make_params(),
    make_params(
        failure_threshold=4,
        window_size=5,
        minimum_calls=3,
        failure_rate_threshold=0.5,
        slow_call_rate_threshold=0.6,
    ),
)
ADVANCES = (0.0, 1.0, 2.0, 5.0, 9.0, 10.0, 11.0, 29.0, 30.0, 31.0, 45.0)


def _same_view(model: StoreView, real: StoreView, base: tuple[int, int]) -> None:
    assert real.state is model.state
    assert real.generation - base[1] == model.generation - base[0]
    assert abs(real.open_remaining - model.open_remaining) <= REDIS_TOLERANCE
    assert real[3:] == model[3:]


def _same_transitions(model: tuple[Transition, ...], real: tuple[Transition, ...]) -> None:
    assert states(real) == states(model)
    for ours, theirs in zip(model, real, strict=True):
        assert abs(theirs.ago - ours.ago) <= REDIS_TOLERANCE


@pytest.mark.parametrize("seed", range(4))
def test_redis_answers_as_the_model_does(
    seed: int, redis_srv: servers.RedisServer, inspector: redis.Redis
) -> None:
    rng = seeded_random(seed)
    clock = FakeClock()
    model = InMemoryStateStore(clock=clock)
    namespace = f"differential-{uuid.uuid4().hex[:12]}"
    real = RedisStateStore.from_url(
        redis_srv.url, namespace=namespace, clock=FakeClock(), telemetry=False
    )
    params = DIFFERENTIAL_CONFIGS[seed % len(DIFFERENTIAL_CONFIGS)]
    # Tickets by the order they were handed out, as (model token, Redis token, trial).
    tickets: list[tuple[int, int, bool]] = []
    base: tuple[int, int] | None = None
    try:
        for step in range(400):
            roll = rng.random()
            where = f"seed {seed}, step {step}"
            if roll < 0.35:
                ours, theirs = model.acquire("db", params), real.acquire("db", params)
                assert theirs.kind is ours.kind, where
                assert (theirs.retry_after is None) is (ours.retry_after is None), where
                if ours.retry_after is not None and theirs.retry_after is not None:
                    assert abs(theirs.retry_after - ours.retry_after) <= REDIS_TOLERANCE
                if base is None:
                    base = (ours.view.generation, theirs.view.generation)
                if ours.kind in (AdmissionKind.ADMITTED, AdmissionKind.TRIAL):
                    trial = ours.kind is AdmissionKind.TRIAL
                    tickets.append((ours.token, theirs.token, trial))
                views = (ours.view, theirs.view)
                moves = (ours.transitions, theirs.transitions)
            elif roll < 0.7 and tickets:
                # Mostly recent tickets, sometimes old ones (stale by now, or not).
                index = len(tickets) - 1 - int(rng.random() ** 3 * len(tickets))
                our_token, their_token, trial = tickets[index]
                outcome = Outcome(int(rng.random() * len(Outcome)))
                seconds = rng.uniform(5.0, 40.0) // 1
                mine = model.report("db", params, our_token, outcome, seconds, trial=trial)
                yours = real.report("db", params, their_token, outcome, seconds, trial=trial)
                assert yours.counted is mine.counted, where
                views, moves = (mine.view, yours.view), (mine.transitions, yours.transitions)
            elif roll < 0.8:
                command = Command(int(rng.random() * len(Command)))
                if command is not Command.TRIP and rng.random() < 0.5:
                    command = Command.TRIP
                mine = model.command("db", params, command, "chaos", 20.0)
                yours = real.command("db", params, command, "chaos", 20.0)
                views, moves = (mine.view, yours.view), (mine.transitions, yours.transitions)
            elif roll < 0.85:
                views = (model.read("db", params), real.read("db", params))
                moves = ((), ())
            else:
                seconds = ADVANCES[int(rng.random() * len(ADVANCES))]
                if rng.random() < 0.02:
                    seconds = TTL_SECONDS
                    base = None  # a fresh state: generations start anew
                clock.advance(seconds)
                servers.shift_redis_time(inspector, namespace, seconds)
                continue
            if base is None:
                base = (views[0].generation, views[1].generation)
            try:
                _same_view(views[0], views[1], base)
                _same_transitions(moves[0], moves[1])
            except AssertionError as error:
                raise AssertionError(f"{where}: model {views[0]} {moves[0]}") from error
    finally:
        real.close()
