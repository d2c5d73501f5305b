"""SharedCircuitBreaker over an asyncio store, on real event loops; every time a FakeClock."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from typing import Any

import pytest

from otel_resilience import Pipeline, RetryConfig, _events, resilient
from otel_resilience._errors import CircuitOpenError
from otel_resilience._events import CallObserver, CircuitStateChanged, ResilienceEvent
from otel_resilience.backoff import Constant
from otel_resilience.breaker import (
    DISABLED_TICKET,
    SHARED_TICKET_BASE,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitState,
    SharedCircuitBreaker,
    StoreStatus,
)
from otel_resilience.stores import (
    Admission,
    AsyncInMemoryStateStore,
    Command,
    InMemoryStateStore,
    Outcome,
    Report,
    StoreParams,
    StoreUnavailableError,
    StoreView,
)
from otel_resilience.testing import FakeClock

CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN
DISABLED = CircuitState.DISABLED

NAME = "svc"


async def checkpoint() -> None:
    """Let the other ready tasks run once; no time passes."""
    await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop


class AsyncStore(AsyncInMemoryStateStore):
    """The real asyncio in-memory store, counting what it answers.

    With ``yields`` every operation first lets the other tasks run, as a network round
    trip would; while ``down`` every operation raises ``error``.
    """

    def __init__(
        self,
        *,
        clock: FakeClock,
        error: type[Exception] = StoreUnavailableError,
        yields: bool = False,
    ) -> None:
        super().__init__(clock=clock)
        self.ops: Counter[str] = Counter()
        self.error = error
        self.yields = yields
        self.down = False
        self.failed = 0

    def total(self) -> int:
        return sum(self.ops.values())

    async def _enter(self, operation: str) -> None:
        if self.yields:
            await checkpoint()
        if self.down:
            self.failed += 1
            raise self.error("the store is down")
        self.ops[operation] += 1

    async def acquire(self, name: str, params: StoreParams) -> Admission:
        await self._enter("acquire")
        return await super().acquire(name, params)

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
        await self._enter("report")
        return await super().report(name, params, token, outcome, open_seconds, trial=trial)

    async def command(
        self, name: str, params: StoreParams, command: Command, reason: str, open_seconds: float
    ) -> Report:
        await self._enter("command")
        return await super().command(name, params, command, reason, open_seconds)

    async def read(self, name: str, params: StoreParams) -> StoreView:
        await self._enter("read")
        return await super().read(name, params)


class Recorder:
    """A ResilienceListener keeping every event it is sent."""

    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def start_call(self, pipeline: str) -> CallObserver | None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)

    def changes(self) -> list[tuple[CircuitState, CircuitState, str]]:
        return [
            (e.previous, e.state, e.reason)
            for e in self.events
            if isinstance(e, CircuitStateChanged)
        ]


def config(**overrides: Any) -> CircuitBreakerConfig:
    values: dict[str, Any] = {
        "failure_threshold": 2,
        "success_threshold": 1,
        "timeout_seconds": 10.0,
        "half_open_max_calls": 1,
        "probe_lease_seconds": 5.0,
    }
    values.update(overrides)
    return CircuitBreakerConfig(**values)


def shared(
    store: AsyncInMemoryStateStore | InMemoryStateStore,
    clock: FakeClock,
    *,
    staleness: float = 0.5,
    listener: Recorder | None = None,
    **overrides: Any,
) -> SharedCircuitBreaker:
    return SharedCircuitBreaker(
        NAME,
        config(**overrides),
        store=store,
        clock=clock,
        max_staleness_seconds=staleness,
        listener=listener,
        telemetry=False,
    )


def shared_view(store: AsyncInMemoryStateStore, breaker: SharedCircuitBreaker) -> StoreView:
    """The store's own view of the state, read past the counting and the switch."""
    return store.sync.read(NAME, breaker.params)


async def ok() -> str:
    return "ok"


class Boom(ConnectionError):
    pass


async def boom() -> str:
    raise Boom("dependency down")


async def rejected(breaker: SharedCircuitBreaker) -> CircuitOpenError:
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.aacquire()
    return caught.value


@pytest.fixture(autouse=True)
def _fresh_store_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Store-down/back logs that are not rate-limited, fresh for each test.

    The real ones are process-wide and rate-limited, which would hide a breaker logging
    more than once per outage (or leak one test's log into another's limit).
    """
    monkeypatch.setattr(_events, "STORE_DOWN", _events._RateLimitedLog(0.0, FakeClock()))
    monkeypatch.setattr(_events, "STORE_BACK", _events._RateLimitedLog(0.0, FakeClock()))


@pytest.fixture
def store_clock() -> FakeClock:
    return FakeClock(start=1000.0)


@pytest.fixture
def store(store_clock: FakeClock) -> AsyncStore:
    return AsyncStore(clock=store_clock)


# -- what kind of breaker -----------------------------------------------------------------


def test_a_breaker_over_an_asyncio_store_is_awaited_by_its_pipelines(store: AsyncStore) -> None:
    breaker = CircuitBreaker(NAME, config(), store=store, clock=FakeClock(), telemetry=False)
    assert isinstance(breaker, SharedCircuitBreaker)
    assert breaker.asynchronous is True
    assert breaker.pipeline.awaits_breaker is True
    assert Pipeline(circuit_breaker=breaker, telemetry=False).awaits_breaker is True
    over_sync = shared(InMemoryStateStore(clock=FakeClock()), FakeClock())
    assert over_sync.asynchronous is False
    assert Pipeline(circuit_breaker=over_sync, telemetry=False).awaits_breaker is False
    assert Pipeline(circuit_breaker=CircuitBreaker(NAME, telemetry=False)).awaits_breaker is False


def test_sync_use_of_an_asyncio_breaker_is_a_type_error_naming_async_use(
    store: AsyncStore,
) -> None:
    breaker = shared(store, FakeClock())
    calls: list[int] = []

    def work() -> int:
        calls.append(1)
        return 1

    with pytest.raises(TypeError, match="asyncio store") as caught:
        breaker.call(work)
    assert "async code" in str(caught.value)
    with pytest.raises(TypeError, match="asyncio store") as caught:
        breaker.acquire()
    assert "async code" in str(caught.value)
    assert NAME in str(caught.value)
    decorated = breaker(work)
    with pytest.raises(TypeError, match="async code"):
        decorated()
    with pytest.raises(TypeError, match="async code"):
        resilient(circuit_breaker=breaker, telemetry=False)(work)()
    assert calls == []
    assert store.total() == 0


def test_state_of_an_asyncio_breaker_is_its_cached_view(store: AsyncStore) -> None:
    breaker = shared(store, FakeClock(), staleness=0)
    for _ in range(3):
        assert breaker.state is CLOSED  # nothing cached: the local state, no store call
    assert store.total() == 0


# -- calls ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_acall_reports_outcomes_to_the_store(store: AsyncStore) -> None:
    rec = Recorder()
    a = shared(store, FakeClock(), listener=rec)
    assert await a.acall(ok) == "ok"
    assert store.ops == Counter(acquire=1)  # a success with nothing to change: not sent
    with pytest.raises(Boom):
        await a.acall(boom)
    assert store.ops["report"] == 1
    assert shared_view(store, a).consecutive_failures == 1
    assert await a.acall(ok) == "ok"  # ends the streak: sent
    assert store.ops["report"] == 2
    assert shared_view(store, a).consecutive_failures == 0
    for _ in range(2):
        with pytest.raises(Boom):
            await a.acall(boom)
    assert shared_view(store, a).state is OPEN
    assert rec.changes() == [(CLOSED, OPEN, "failure_threshold")]
    calls: list[int] = []

    async def never() -> str:
        calls.append(1)
        return "no"

    with pytest.raises(CircuitOpenError) as caught:
        await a.acall(never)
    assert caught.value.retry_after == 10.0
    assert calls == []
    metrics = a.metrics
    assert (metrics.successes, metrics.failures, metrics.rejections) == (2, 3, 1)


@pytest.mark.asyncio
async def test_a_decorated_coroutine_function_reports_through_the_shared_state(
    store: AsyncStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    a = shared(store, clock, staleness=0)
    b = shared(store, FakeClock(), staleness=0)

    @a
    async def fetch(key: str) -> str:
        if key == "bad":
            raise Boom(key)
        return key.upper()

    assert inspect.iscoroutinefunction(fetch)
    assert await fetch("a") == "A"
    for _ in range(2):
        with pytest.raises(Boom):
            await fetch("bad")
    await rejected(b)  # B sees the state A's calls made
    store_clock.advance(10.0)
    assert await fetch("b") == "B"  # the trial succeeds and closes it
    assert shared_view(store, a).state is CLOSED


@pytest.mark.asyncio
async def test_resilient_coroutine_with_retry_over_the_shared_breaker(store: AsyncStore) -> None:
    clock = FakeClock()
    a = shared(store, clock, failure_threshold=5)
    attempts: list[int] = []

    @resilient(
        circuit_breaker=a,
        retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=1.0)),
        clock=clock,
        telemetry=False,
    )
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise Boom("blip")
        return "done"

    assert inspect.iscoroutinefunction(flaky)
    assert await flaky() == "done"
    assert len(attempts) == 3
    assert clock.sleeps == [1.0, 1.0]
    assert store.ops["report"] == 3  # two failures and the success that ended the streak
    assert shared_view(store, a).consecutive_failures == 0


@pytest.mark.asyncio
async def test_outcomes_wait_in_the_outbox_until_aflush(store: AsyncStore) -> None:
    a = shared(store, FakeClock())
    ticket = await a.aacquire()
    assert ticket >= SHARED_TICKET_BASE
    assert a.on_error(ticket, Boom()) is True  # classified now, sent later
    assert store.ops["report"] == 0
    assert shared_view(store, a).consecutive_failures == 0
    await a.aflush()
    assert store.ops["report"] == 1
    assert shared_view(store, a).consecutive_failures == 1
    await a.aflush()  # nothing left to send
    assert store.ops["report"] == 1


@pytest.mark.asyncio
async def test_a_sync_store_works_from_acall(store_clock: FakeClock) -> None:
    sync_store = InMemoryStateStore(clock=store_clock)
    a = shared(sync_store, FakeClock(), staleness=0)
    assert not a.pipeline.awaits_breaker
    assert await a.acall(ok) == "ok"
    for _ in range(2):
        with pytest.raises(Boom):
            await a.acall(boom)
    assert InMemoryStateStore.read(sync_store, NAME, a.params).state is OPEN
    with pytest.raises(CircuitOpenError):
        await a.acall(ok)
    assert a.state is OPEN  # a blocking store is read directly
    store_clock.advance(10.0)
    trial = await a.aacquire()  # aacquire over a blocking store asks it directly
    assert trial < 0
    a.record_success(trial)
    assert a.state is CLOSED


# -- half-open races --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tasks_racing_into_half_open_run_exactly_one_trial(store_clock: FakeClock) -> None:
    store = AsyncStore(clock=store_clock, yields=True)  # every round trip lets others run
    clock = FakeClock()
    recs = [Recorder(), Recorder()]
    breakers = [shared(store, clock, listener=r) for r in recs]
    assert breakers[0].trip()
    await breakers[0].aflush()
    store_clock.advance(10.0)
    clock.advance(10.0)
    release = asyncio.Event()
    entered: list[int] = []

    async def probe(number: int) -> int:
        entered.append(number)
        await release.wait()
        return number

    tasks = [asyncio.create_task(breakers[i % 2].acall(probe, i)) for i in range(50)]
    for _ in range(1000):
        if sum(task.done() for task in tasks) == 49:
            break
        await checkpoint()
    assert len(entered) == 1
    assert sum(task.done() for task in tasks) == 49
    assert shared_view(store, breakers[0]).trials == 1
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, CircuitOpenError)]
    assert len(errors) == 49
    assert {e.retry_after for e in errors} == {0.0}
    assert [r for r in results if not isinstance(r, BaseException)] == entered
    assert shared_view(store, breakers[0]).state is CLOSED
    half_opened = [c for r in recs for c in r.changes() if c[1] is HALF_OPEN]
    closed = [c for r in recs for c in r.changes() if c[1] is CLOSED]
    assert len(half_opened) == 1
    assert closed == [(HALF_OPEN, CLOSED, "trial_success")]


@pytest.mark.asyncio
async def test_a_cancelled_trial_gives_its_lease_back_at_the_next_aacquire(
    store: AsyncStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    a = shared(store, clock)
    b = shared(store, clock)
    assert a.trip()
    await a.aflush()
    store_clock.advance(10.0)
    clock.advance(10.0)
    started = asyncio.Event()

    async def hang() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(a.acall(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The release is queued: the store still holds the lease, so B is refused.
    assert shared_view(store, a).trials == 1
    assert (await rejected(b)).retry_after == 0.0
    ticket = await a.aacquire()  # sends the queued release first, then leases again
    assert ticket < 0
    assert store.ops["report"] == 1
    assert a.metrics.failures == 0  # cancellation is never a failure
    a.record_success(ticket)
    await a.aflush()
    assert shared_view(store, a).state is CLOSED


@pytest.mark.asyncio
async def test_a_trial_failure_through_acall_reopens(
    store: AsyncStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    rec = Recorder()
    a = shared(store, clock, listener=rec, staleness=0)
    assert a.trip()
    await a.aflush()
    store_clock.advance(12.0)
    with pytest.raises(Boom):
        await a.acall(boom)
    assert shared_view(store, a).open_remaining == 10.0
    assert rec.changes() == [
        (CLOSED, OPEN, "manual"),
        (OPEN, HALF_OPEN, "open_timeout"),
        (HALF_OPEN, OPEN, "trial_failure"),
    ]
    half = [e for e in rec.events if isinstance(e, CircuitStateChanged)][1]
    assert half.at == clock.monotonic() - 2.0  # when the open period ended


# -- operator commands ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_operator_methods_queue_and_apply_at_aflush(store: AsyncStore) -> None:
    rec_a = Recorder()
    a = shared(store, FakeClock(), listener=rec_a)
    b = shared(store, FakeClock(), staleness=0)
    a.force_open()
    assert store.ops["command"] == 0
    assert shared_view(store, a).state is CLOSED
    assert rec_a.changes() == []
    await a.aflush()
    assert shared_view(store, a).state is FORCED_OPEN
    assert rec_a.changes() == [(CLOSED, FORCED_OPEN, "manual")]
    assert (await rejected(b)).retry_after is None
    a.reset()
    a.disable()  # queued in order: reset, then disable
    await a.aflush()
    assert shared_view(store, a).state is DISABLED
    assert await b.aacquire() == DISABLED_TICKET
    assert store.ops["command"] == 3


@pytest.mark.asyncio
async def test_trip_on_an_asyncio_breaker_says_it_was_queued(store: AsyncStore) -> None:
    a = shared(store, FakeClock())
    assert a.trip("maintenance") is True
    assert shared_view(store, a).state is CLOSED
    error = await rejected(a)  # aacquire sends the queued trip first
    assert error.retry_after == 10.0
    assert shared_view(store, a).state is OPEN


@pytest.mark.asyncio
async def test_a_queued_command_is_sent_by_the_next_acall(store: AsyncStore) -> None:
    a = shared(store, FakeClock())
    assert await a.acall(ok) == "ok"
    a.force_open()
    with pytest.raises(CircuitOpenError) as caught:
        await a.acall(ok)
    assert caught.value.retry_after is None


# -- degraded mode ------------------------------------------------------------------------------


@pytest.fixture(params=[StoreUnavailableError, RuntimeError])
def flaky(request: pytest.FixtureRequest, store_clock: FakeClock) -> AsyncStore:
    error: type[Exception] = request.param
    return AsyncStore(clock=store_clock, error=error)


def store_logs(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "otel_resilience" and r.levelno == level and "state store" in r.getMessage()
    ]


@pytest.mark.asyncio
async def test_calls_go_on_from_local_state_while_the_asyncio_store_is_down(
    flaky: AsyncStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otel_resilience")
    rec = Recorder()
    a = shared(flaky, FakeClock(), staleness=0, listener=rec)
    b = shared(flaky, FakeClock(), staleness=0)
    assert await a.acall(ok) == "ok"
    flaky.down = True
    assert await a.acall(ok) == "ok"
    assert a.store_status().degraded is True
    for _ in range(2):
        with pytest.raises(Boom):
            await a.acall(boom)  # the store's error never reaches the caller
    assert a.state is OPEN  # the local breaker opened
    assert rec.changes() == [(CLOSED, OPEN, "failure_threshold")]
    with pytest.raises(CircuitOpenError) as caught:
        await a.acall(ok)
    assert caught.value.retry_after == 10.0
    assert a.store_status().fallbacks == flaky.failed > 0
    warnings = store_logs(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert flaky.error.__name__ in warnings[0]
    assert store_logs(caplog, logging.INFO) == []

    flaky.down = False
    assert await a.acall(ok) == "ok"  # the shared state (CLOSED) decides again
    assert a.store_status().degraded is False
    infos = store_logs(caplog, logging.INFO)
    assert len(infos) == 1
    assert "answers again" in infos[0]
    await b.aacquire()
    assert b.state is CLOSED


@pytest.mark.asyncio
async def test_a_failed_flush_of_a_failure_counts_against_the_local_state(
    flaky: AsyncStore,
) -> None:
    a = shared(flaky, FakeClock(), staleness=60.0, failure_threshold=2)
    tickets = [await a.aacquire(), await a.aacquire()]  # from the store's CLOSED view
    flaky.down = True
    for ticket in tickets:
        a.record_failure(ticket)
    await a.aflush()  # both reports fail: the local state counts them
    assert a.store_status() == StoreStatus(degraded=True, fallbacks=2, view=a.store_status().view)
    assert a.state is OPEN
    assert (await rejected(a)).retry_after == 10.0
    flaky.down = False
    assert shared_view(flaky, a).consecutive_failures == 0


@pytest.mark.asyncio
async def test_queued_commands_apply_locally_when_the_store_is_down(flaky: AsyncStore) -> None:
    a = shared(flaky, FakeClock(), staleness=0)
    flaky.down = True
    a.force_open()
    await a.aflush()
    assert a.state is FORCED_OPEN
    assert (await rejected(a)).retry_after is None
    a.reset()
    await a.aflush()
    assert await a.acall(ok) == "ok"
    flaky.down = False
    assert shared_view(flaky, a).state is CLOSED  # none of it reached the store


# -- inspection -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_metrics_observed_state_and_repr_ask_the_store_nothing(
    store: AsyncStore, store_clock: FakeClock
) -> None:
    clock = FakeClock()
    a = shared(store, clock, staleness=0, failure_threshold=3, half_open_max_calls=2)
    b = shared(store, FakeClock(), staleness=0, failure_threshold=3, half_open_max_calls=2)
    assert repr(a) == "SharedCircuitBreaker(name='svc', state=unknown)"
    with pytest.raises(Boom):
        await b.acall(boom)
    with pytest.raises(Boom):
        await a.acall(boom)
    before = store.total()
    assert a.observed_state() is CLOSED
    metrics = a.metrics
    assert metrics.consecutive_failures == 2  # the shared streak, as A's answer carried it
    assert metrics.failures == 1  # this object's own count
    assert repr(a) == "SharedCircuitBreaker(name='svc', state=closed)"
    assert store.total() == before
    a.trip()
    await a.aflush()
    assert a.observed_state() is OPEN
    clock.advance(10.0)
    assert a.observed_state() is HALF_OPEN  # the cached period ran out on A's clock
    store_clock.advance(10.0)
    assert await b.aacquire() < 0
    assert await a.aacquire() < 0
    metrics = a.metrics
    assert metrics.state is HALF_OPEN
    assert metrics.trials_in_flight == 2
