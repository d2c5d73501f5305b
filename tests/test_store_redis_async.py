"""The asyncio Redis state store against a real redis-server, on a real event loop."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
import redis
import redis.asyncio

from otel_resilience._clock import SYSTEM_CLOCK
from otel_resilience._errors import CircuitOpenError
from otel_resilience.breaker import CircuitState
from otel_resilience.stores import (
    AdmissionKind,
    AsyncBreakerStateStore,
    Command,
    Outcome,
    StoreParams,
    StoreUnavailableError,
)
from otel_resilience.stores.redis import (
    DEFAULT_STORE_RECOVERY_SECONDS,
    DEFAULT_STORE_TIMEOUT_SECONDS,
    AsyncRedisStateStore,
)
from otel_resilience.testing import FakeClock

if TYPE_CHECKING:
    import servers
else:
    # tests/ is not a package for the type checker: imported by name at run time.
    servers = importlib.import_module("tests.servers")

pytestmark = pytest.mark.integration

LOGGER = "otel_resilience.stores.redis"
OPEN_SECONDS = 30.0
FAILS_WITHIN = 2.0  # real seconds: the 0.25 s budget plus room for a loaded machine

P = StoreParams(
    failure_threshold=2,
    success_threshold=1,
    timeout_seconds=OPEN_SECONDS,
    half_open_max_calls=1,
    lease_seconds=10.0,
    key_ttl_seconds=120.0,
)


@pytest.fixture(scope="module")
def redis_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.RedisServer]:
    tmp_path: Path = tmp_path_factory.mktemp("redis")
    with servers.redis_server(tmp_path) as server:
        yield server


@pytest.fixture(scope="module")
def inspector(redis_srv: servers.RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(host=redis_srv.host, port=redis_srv.port, socket_timeout=10.0)
    yield client
    client.close()


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def store(
    redis_srv: servers.RedisServer, namespace: str, clock: FakeClock
) -> AsyncIterator[AsyncRedisStateStore]:
    async with AsyncRedisStateStore.from_url(
        redis_srv.url, namespace=namespace, clock=clock, telemetry=False
    ) as made:
        yield made


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[servers.RedisServer]:
    """A redis-server of this test's own, to kill or pause."""
    with servers.redis_server(tmp_path) as server:
        yield server


def available(store: AsyncRedisStateStore) -> bool:
    # A call, not an attribute: the type checker would narrow ``store.available``.
    return store.available


async def fails_within(action: Callable[[], Awaitable[object]]) -> StoreUnavailableError:
    """Await ``action``, expecting StoreUnavailableError within FAILS_WITHIN real seconds."""
    start = SYSTEM_CLOCK.monotonic()
    with pytest.raises(StoreUnavailableError) as caught:
        await action()
    assert SYSTEM_CLOCK.monotonic() - start < FAILS_WITHIN
    return caught.value


def test_the_async_store_meets_the_async_protocol() -> None:
    store = AsyncRedisStateStore.from_url("redis://127.0.0.1:9/0", telemetry=False)
    typed: AsyncBreakerStateStore = store
    # Breakers tell an asyncio store by its coroutine functions.
    for name in ("acquire", "report", "command", "read"):
        assert inspect.iscoroutinefunction(getattr(typed, name))
    options = store.client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == DEFAULT_STORE_TIMEOUT_SECONDS
    assert options["socket_connect_timeout"] == DEFAULT_STORE_TIMEOUT_SECONDS
    assert options["retry"].get_retries() == 0


@pytest.mark.asyncio
async def test_a_breaker_runs_its_course(
    store: AsyncRedisStateStore, inspector: redis.Redis
) -> None:
    admission = await store.acquire("db", P)
    assert admission.kind is AdmissionKind.ADMITTED
    await store.report("db", P, admission.token, Outcome.FAILURE, OPEN_SECONDS, trial=False)
    report = await store.report(
        "db", P, admission.token, Outcome.FAILURE, OPEN_SECONDS, trial=False
    )
    assert [(t.previous, t.state, t.reason) for t in report.transitions] == [
        (CircuitState.CLOSED, CircuitState.OPEN, "failure_threshold")
    ]
    rejected = await store.acquire("db", P)
    assert rejected.kind is AdmissionKind.REJECTED
    assert rejected.retry_after is not None
    assert OPEN_SECONDS - 1.0 < rejected.retry_after <= OPEN_SECONDS

    servers.shift_redis_time(inspector, store.namespace, OPEN_SECONDS + 2.0)
    trial = await store.acquire("db", P)
    assert trial.kind is AdmissionKind.TRIAL
    assert 2.0 <= trial.transitions[0].ago < 3.0
    closed = await store.report("db", P, trial.token, Outcome.SUCCESS, OPEN_SECONDS, trial=True)
    assert closed.view.state is CircuitState.CLOSED
    view = await store.read("db", P)
    assert view == closed.view
    forced = await store.command("db", P, Command.FORCE_OPEN, "manual", OPEN_SECONDS)
    assert forced.view.state is CircuitState.FORCED_OPEN


@pytest.mark.asyncio
async def test_each_operation_is_one_script_call(
    store: AsyncRedisStateStore, inspector: redis.Redis
) -> None:
    await store.read("db", P)  # the scripts are loaded from here on
    token = (await store.acquire("db", P)).token
    await store.report("db", P, token, Outcome.SUCCESS, OPEN_SECONDS, trial=False)
    await store.command("db", P, Command.RESET, "manual", OPEN_SECONDS)
    inspector.config_resetstat()
    for _ in range(3):
        token = (await store.acquire("db", P)).token
        await store.report("db", P, token, Outcome.SUCCESS, OPEN_SECONDS, trial=False)
        await store.command("db", P, Command.RESET, "manual", OPEN_SECONDS)
        await store.read("db", P)
    stats: dict[str, Any] = inspector.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 12
    assert "cmdstat_script|load" not in stats


@pytest.mark.asyncio
async def test_a_client_without_a_socket_timeout_is_rejected() -> None:
    client = redis.asyncio.Redis(host="127.0.0.1", port=9, socket_timeout=None)
    with pytest.raises(ValueError, match="socket_timeout"):
        AsyncRedisStateStore(client)
    await client.aclose()


@pytest.mark.asyncio
async def test_the_operation_budget_holds_whatever_the_socket_timeout(
    own_redis: servers.RedisServer, clock: FakeClock
) -> None:
    # A client passed in with a long socket timeout: asyncio.timeout still bounds each
    # operation to the store's budget.
    client = redis.asyncio.Redis.from_url(own_redis.url, socket_timeout=30.0)
    store = AsyncRedisStateStore(client, clock=clock, telemetry=False)
    try:
        await store.read("db", P)
        own_redis.pause()
        error = await fails_within(lambda: store.acquire("db", P))
        assert isinstance(error.__cause__, TimeoutError)
        assert not available(store)
        error = await fails_within(lambda: store.acquire("db", P))
        assert isinstance(error.__cause__, CircuitOpenError)

        own_redis.resume()
        clock.advance(DEFAULT_STORE_RECOVERY_SECONDS)
        assert (await store.acquire("db", P)).kind is AdmissionKind.ADMITTED
        assert available(store)
    finally:
        own_redis.resume()
        await client.aclose()


@pytest.mark.asyncio
async def test_a_killed_redis_fails_fast_then_recovers(
    own_redis: servers.RedisServer, clock: FakeClock
) -> None:
    store = AsyncRedisStateStore.from_url(own_redis.url, clock=clock, telemetry=False)
    try:
        await store.command("db", P, Command.FORCE_OPEN, "manual", OPEN_SECONDS)
        own_redis.kill()
        error = await fails_within(lambda: store.read("db", P))
        assert isinstance(error.__cause__, redis.ConnectionError)
        error = await fails_within(lambda: store.read("db", P))
        assert isinstance(error.__cause__, CircuitOpenError)

        own_redis.restart()
        clock.advance(DEFAULT_STORE_RECOVERY_SECONDS)
        assert (await store.read("db", P)).state is CircuitState.CLOSED  # no data left
        assert available(store)
    finally:
        await store.aclose()


@pytest.mark.asyncio
async def test_cancellation_is_not_a_redis_failure(
    own_redis: servers.RedisServer, clock: FakeClock
) -> None:
    store = AsyncRedisStateStore.from_url(
        own_redis.url, clock=clock, telemetry=False, timeout_seconds=30.0
    )
    try:
        await store.read("db", P)
        own_redis.pause()
        task = asyncio.create_task(store.acquire("db", P))
        for _ in range(5):  # let the task take its permit and send; the reply never comes
            await clock.async_sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert available(store)  # control flow gave the permit back, counted nothing
        assert store.outage_breaker.metrics.failures == 0
    finally:
        own_redis.resume()
        await store.aclose()


@pytest.mark.asyncio
async def test_racing_tasks_get_exactly_one_trial(
    redis_srv: servers.RedisServer, namespace: str, inspector: redis.Redis
) -> None:
    async with AsyncRedisStateStore.from_url(
        redis_srv.url, namespace=namespace, telemetry=False, timeout_seconds=5.0
    ) as store:
        await store.command("db", P, Command.TRIP, "test", OPEN_SECONDS)
        servers.shift_redis_time(inspector, namespace, OPEN_SECONDS)
        answers = await asyncio.gather(*(store.acquire("db", P) for _ in range(20)))
        kinds = [answer.kind for answer in answers]
        assert kinds.count(AdmissionKind.TRIAL) == 1
        assert kinds.count(AdmissionKind.REJECTED) == 19
        assert sum(len(answer.transitions) for answer in answers) == 1


@pytest.mark.asyncio
async def test_malformed_data_is_logged_and_reset(
    store: AsyncRedisStateStore, inspector: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    before = await store.read("db", P)
    inspector.hset(store.keys("db")[0], "open_until", "soon")
    caplog.set_level(logging.ERROR, logger=LOGGER)
    view = await store.read("db", P)
    assert view.state is CircuitState.CLOSED
    assert view.generation > before.generation
    records = [record for record in caplog.records if record.name == LOGGER]
    assert len(records) == 1
    assert "'open_until' = 'soon'" in records[0].getMessage()


@pytest.mark.asyncio
async def test_aclose_closes_only_a_client_of_its_own(
    redis_srv: servers.RedisServer, namespace: str, inspector: redis.Redis
) -> None:
    def clients() -> int:
        return len(inspector.client_list())

    before = clients()
    own = AsyncRedisStateStore.from_url(redis_srv.url, namespace=namespace, telemetry=False)
    await own.read("db", P)
    assert clients() == before + 1
    await own.aclose()
    servers.poll(lambda: clients() == before, what="the store's connection to close")

    client = redis.asyncio.Redis.from_url(redis_srv.url, socket_timeout=5.0)
    lent = AsyncRedisStateStore(client, namespace=namespace, telemetry=False)
    await lent.read("db", P)
    connection = await client.client_id()
    await lent.aclose()
    assert await client.client_id() == connection  # the same connection, still open
    await client.aclose()
