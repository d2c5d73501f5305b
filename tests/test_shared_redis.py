"""Shared breakers over a real redis-server: many processes, skewed clocks, outages.

Each test starts from a fresh namespace on one redis-server started for the module
(``tests/servers.py``; skipped locally without the binary, failing under CI). The
multi-process tests run real worker processes (``tests/redis_breaker_worker.py``) that
wait on a Redis list so they all start at once. Time is never slept for: open periods
end because the test trips the breaker with a zero open duration, and the breaker around
Redis recovers when its fake clock is advanced. The only real waits are Redis's own
socket timeout against a paused server and the workers' start-up.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from otel_resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    CircuitState,
    SharedCircuitBreaker,
)
from otel_resilience._events import STORE_BACK, STORE_DOWN
from otel_resilience.stores import Command, StoreParams
from otel_resilience.stores.redis import DEFAULT_STORE_RECOVERY_SECONDS, RedisStateStore
from otel_resilience.testing import FakeClock

if TYPE_CHECKING:
    import servers
    from servers import RedisServer
else:
    # tests/ is not a package for the type checker: imported by name at run time.
    servers = importlib.import_module("tests.servers")
    RedisServer = servers.RedisServer

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("redis_breaker_worker.py")
WORKER_TIMEOUT = 120.0
"""Real seconds a worker process may take (start-up on a loaded machine included)."""

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with servers.redis_server(tmp_path_factory.mktemp("redis")) as running:
        yield running


@pytest.fixture
def live(server: RedisServer) -> RedisServer:
    """The module's server, alive and answering (a test before may have killed it)."""
    if server.paused:
        server.resume()
    if server.process.poll() is not None or not server.ping():
        server.restart()
    return server


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _fresh_store_logs() -> None:
    # The degraded/recovered logs are rate-limited per process: start each test unlimited.
    for log in (STORE_DOWN, STORE_BACK):
        log._last = float("-inf")


def control(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=10.0, decode_responses=True)


def run_workers(
    server: RedisServer, namespace: str, jobs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Start one process per job, release them together, return what each printed."""
    keys = {name: f"{namespace}:{name}" for name in ("ready", "gate", "done", "after")}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                json.dumps({**job, **keys, "url": server.url, "namespace": namespace}),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).parent.parent,
        )
        for job in jobs
    ]
    client = control(server)
    try:
        # Two barriers: all start at once; all report the state once every one is done.
        for counter, gate in (("ready", "gate"), ("done", "after")):
            servers.poll(
                functools.partial(_all_there, client, keys[counter], processes),
                what=f"worker processes {counter}",
            )
            client.rpush(keys[gate], *["go"] * len(jobs))
        results = []
        for process in processes:
            out, err = process.communicate(timeout=WORKER_TIMEOUT)
            assert process.returncode == 0, err.decode()
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()  # reaps it and closes its pipes
        client.close()


def _all_there(client: redis.Redis, counter: str, processes: list[Any]) -> bool:
    # True once every worker counted itself, or once one has died (its error is reported).
    return int(client.get(counter) or 0) == len(processes) or any(
        process.poll() is not None for process in processes
    )


# -- many processes ---------------------------------------------------------------------------


def test_processes_open_one_breaker_together_with_exactly_one_transition(
    live: RedisServer, namespace: str
) -> None:
    config = {"failure_threshold": 6, "timeout_seconds": 300.0}
    jobs = [{"mode": "fail", "name": "payments", "calls": 4, "config": config}] * 4
    # No cached view: each worker asks Redis at every call, so the end state is exact.
    jobs = [{**job, "max_staleness_seconds": 0} for job in jobs]
    results = run_workers(live, namespace, jobs)

    opened = [t for r in results for t in r["transitions"] if t[1] == "open"]
    assert opened == [["closed", "open", "failure_threshold"]]
    assert all(r["state"] == "open" for r in results)
    assert not any(r["degraded"] for r in results)
    # 16 calls, 6 of them opened it: the calls after the opening were refused or counted
    # for nothing, and the streak never went past what opened it.
    assert sum(r["rejections"] for r in results) <= 16 - 6
    assert all(r["transitions"] in ([], [["closed", "open", "failure_threshold"]]) for r in results)


def test_twenty_processes_racing_into_half_open_run_exactly_one_trial(
    live: RedisServer, namespace: str
) -> None:
    config = CircuitBreakerConfig(half_open_max_calls=1, timeout_seconds=300.0)
    store = RedisStateStore.from_url(live.url, namespace=namespace, telemetry=False)
    # Open it with a zero open duration: the next acquire anywhere finds HALF_OPEN.
    store.command("inventory", StoreParams.from_config(config), Command.TRIP, "test", 0.0)
    store.close()

    jobs = [
        {
            "mode": "probe",
            "name": "inventory",
            "config": {"half_open_max_calls": 1, "timeout_seconds": 300.0},
        }
    ] * 20
    results = run_workers(live, namespace, jobs)

    assert sorted(r["admitted"] for r in results) == ["rejected"] * 19 + ["trial"]
    half_opened = [t for r in results for t in r["transitions"]]
    assert half_opened == [["open", "half_open", "open_timeout"]]


# -- clocks -------------------------------------------------------------------------------------


def test_a_client_clock_a_minute_ahead_behaves_the_same(live: RedisServer, namespace: str) -> None:
    config = CircuitBreakerConfig(failure_threshold=2, timeout_seconds=30.0)
    on_time, ahead = FakeClock(), FakeClock(start=60.0)
    stores = [
        RedisStateStore.from_url(live.url, namespace=namespace, clock=clock, telemetry=False)
        for clock in (on_time, ahead)
    ]
    a, b = (
        CircuitBreaker("search", config, store=store, clock=clock, telemetry=False)
        for store, clock in zip(stores, (on_time, ahead), strict=True)
    )
    try:
        # The breaker a minute ahead opens it; the other sees the same open period.
        for _ in range(2):
            b.record_failure(b.acquire())
        assert a.state is OPEN
        assert b.state is OPEN
        waits = []
        for breaker in (a, b):
            with pytest.raises(CircuitOpenError) as caught:
                breaker.acquire()
            waits.append(caught.value.retry_after)
        # Redis time runs on for both; neither thinks the 30 s are over.
        assert all(wait is not None and 25.0 < wait <= 30.0 for wait in waits)
        # And a clock 60 s ahead does not make an OPEN view look expired.
        ahead.advance(1.0)
        assert b.state is OPEN
    finally:
        for store in stores:
            store.close()


# -- Redis goes away ---------------------------------------------------------------------------


def available(store: RedisStateStore) -> bool:
    """Whether the breaker around Redis admits operations (a call: no narrowing)."""
    return store.available


def _store(server: RedisServer, namespace: str, clock: FakeClock) -> RedisStateStore:
    return RedisStateStore.from_url(
        server.url, namespace=namespace, clock=clock, timeout_seconds=0.25, telemetry=False
    )


def test_redis_killed_mid_run_degrades_to_local_protection_and_recovers(
    live: RedisServer, namespace: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(live, namespace, clock)
    config = CircuitBreakerConfig(failure_threshold=3, timeout_seconds=30.0)
    breaker = SharedCircuitBreaker("ledger", config, store=store, clock=clock, telemetry=False)

    def down() -> str:
        raise ConnectionError("ledger down")

    try:
        assert breaker.call(lambda: "ok") == "ok"
        live.kill()
        clock.advance(1.0)  # past the cached view: the next call must ask Redis
        with caplog.at_level(logging.WARNING, logger="otel_resilience"):
            # Calls go on: the store failure never reaches the caller.
            assert breaker.call(lambda: "still ok") == "still ok"
            status = breaker.store_status()
            assert status.degraded
            assert status.fallbacks >= 1
            assert not available(store)  # the breaker around Redis is open
            # Local protection: three local failures open the local breaker.
            for _ in range(3):
                with pytest.raises(ConnectionError):
                    breaker.call(down)
            with pytest.raises(CircuitOpenError):
                breaker.call(lambda: "refused")
        warnings = [r for r in caplog.records if "deciding from local state" in r.message]
        assert len(warnings) == 1

        live.restart()
        clock.advance(DEFAULT_STORE_RECOVERY_SECONDS)
        with caplog.at_level(logging.INFO, logger="otel_resilience"):
            # The store answers again: the shared state (new, CLOSED) decides.
            assert breaker.call(lambda: "shared again") == "shared again"
        assert not breaker.store_status().degraded
        assert available(store)
        assert any("answers again" in r.message for r in caplog.records)
    finally:
        store.close()


def test_a_hanging_redis_degrades_within_the_store_timeout_and_recovers(
    live: RedisServer, namespace: str, clock: FakeClock
) -> None:
    store = _store(live, namespace, clock)
    config = CircuitBreakerConfig(failure_threshold=2, timeout_seconds=30.0)
    breaker = SharedCircuitBreaker("ledger", config, store=store, clock=clock, telemetry=False)
    try:
        with pytest.raises(ConnectionError):
            breaker.call(_raise_connection_error)  # a failure: reported to Redis
        assert breaker.store_status().view is not None
        live.pause()
        # The next failure report hangs on the socket until the store's timeout, then
        # counts locally; the one after does not touch Redis (its breaker is open).
        with pytest.raises(ConnectionError):
            breaker.call(_raise_connection_error)
        assert breaker.store_status().degraded
        assert not store.available
        with pytest.raises(ConnectionError):
            breaker.call(_raise_connection_error)
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: "refused locally")
        live.resume()
        clock.advance(DEFAULT_STORE_RECOVERY_SECONDS)
        breaker.reset()  # an operator reset reaches the shared state again
        assert not breaker.store_status().degraded
        assert breaker.call(lambda: "ok") == "ok"
        assert breaker.state is CLOSED
    finally:
        if live.paused:
            live.resume()
        store.close()


def _raise_connection_error() -> str:
    raise ConnectionError("down")


# -- the keys under a running breaker ---------------------------------------------------------


def test_keys_deleted_under_a_running_breaker_reinitialise_cleanly(
    live: RedisServer, namespace: str, clock: FakeClock
) -> None:
    store = _store(live, namespace, clock)
    config = CircuitBreakerConfig(failure_threshold=2, timeout_seconds=30.0)
    breaker = SharedCircuitBreaker("orders", config, store=store, clock=clock, telemetry=False)
    client = control(live)
    try:
        early = breaker.acquire()  # admitted under the old state
        for _ in range(2):
            breaker.record_failure(breaker.acquire())
        assert breaker.state is OPEN
        client.delete(*store.keys("orders"))
        clock.advance(1.0)  # the cached OPEN view says 29 s left; let it go stale
        breaker.on_result(early, "late")  # a ticket of the deleted state: counts nothing
        assert breaker.metrics.stale >= 1
        assert breaker.state is CLOSED  # a fresh state, not the deleted one
        assert breaker.call(lambda: "ok") == "ok"
        assert client.ttl(store.keys("orders")[0]) > 0
    finally:
        client.close()
        store.close()


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda c, k: c.hset(k, "state", "bogus"), id="unknown-state"),
        pytest.param(lambda c, k: c.hset(k, "generation", "not-a-number"), id="bad-generation"),
        pytest.param(lambda c, k: (c.delete(k), c.set(k, "a string")), id="wrong-type"),
    ],
)
def test_malformed_keys_log_a_clear_error_and_reset_never_crash(
    live: RedisServer,
    namespace: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    corrupt: Any,
) -> None:
    store = _store(live, namespace, clock)
    config = CircuitBreakerConfig(failure_threshold=2, timeout_seconds=30.0)
    breaker = SharedCircuitBreaker("billing", config, store=store, clock=clock, telemetry=False)
    client = control(live)
    try:
        for _ in range(2):
            breaker.record_failure(breaker.acquire())
        assert breaker.state is OPEN
        corrupt(client, store.keys("billing")[0])
        clock.advance(1.0)
        with caplog.at_level(logging.ERROR, logger="otel_resilience"):
            assert breaker.call(lambda: "ok") == "ok"  # reset to a fresh CLOSED state
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert errors, "no error logged for malformed data"
        assert store.keys("billing")[0] in errors[0].getMessage()
        assert not breaker.store_status().degraded
        assert breaker.state is CLOSED
    finally:
        client.close()
        store.close()


# -- the demo -------------------------------------------------------------------------------------


def test_the_demo_shares_its_ledger_breaker_through_redis(live: RedisServer) -> None:
    import io  # noqa: PLC0415

    from otel_resilience.cli._demo import DemoOptions, run_demo  # noqa: PLC0415

    client = control(live)
    try:
        client.flushall()
        out = io.StringIO()
        options = DemoOptions(
            duration=2.0, scenario="outage", metrics_port=0, live=False, redis_url=live.url
        )
        run_demo(options, out)
        # The ledger breaker's state is in Redis, under the default namespace, with a TTL.
        key = "otel_resilience:{ledger}"
        assert client.type(key) == "hash"
        assert client.hget(key, "state") in {"closed", "open", "half_open"}
        assert client.ttl(key) > 0
    finally:
        client.close()


def test_the_demo_rejects_a_redis_url_that_is_not_one() -> None:
    from otel_resilience.cli._demo import DemoOptions  # noqa: PLC0415

    with pytest.raises(ValueError, match="redis_url"):
        DemoOptions(redis_url="http://localhost:6379")
