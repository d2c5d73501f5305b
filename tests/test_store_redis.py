"""The blocking Redis state store against a real redis-server on loopback.

What the conformance suite cannot show: the key layout and TTLs, one script call per
operation, server time, keys deleted or corrupted under a running breaker, the client's
timeouts, and Redis itself failing (killed, paused) under the store and its inner breaker.
"""

from __future__ import annotations

import importlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
import redis.crc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from otel_resilience._clock import SYSTEM_CLOCK
from otel_resilience._errors import CircuitOpenError
from otel_resilience.breaker import CircuitBreakerConfig, CircuitState
from otel_resilience.stores import (
    AdmissionKind,
    BreakerStateStore,
    Command,
    Outcome,
    StoreParams,
    StoreUnavailableError,
)
from otel_resilience.stores.redis import (
    DEFAULT_NAMESPACE,
    DEFAULT_STORE_RECOVERY_SECONDS,
    DEFAULT_STORE_TIMEOUT_SECONDS,
    STORE_ERROR_LOG_INTERVAL_SECONDS,
    RedisStateStore,
)
from otel_resilience.telemetry import names
from otel_resilience.testing import FakeClock

if TYPE_CHECKING:
    import servers
else:
    # tests/ is not a package for the type checker: imported by name at run time.
    servers = importlib.import_module("tests.servers")

pytestmark = pytest.mark.integration

LOGGER = "otel_resilience.stores.redis"
OPEN_SECONDS = 30.0
TTL_SECONDS = 120.0
# Real seconds an operation against a dead or hanging Redis may take: the 0.25 s timeout
# plus generous room for a loaded CI machine. A bound against hanging, not a benchmark.
FAILS_WITHIN = 2.0
JOIN_TIMEOUT = 60.0  # a guard against deadlock, not a timing assertion

P = StoreParams(
    failure_threshold=3,
    success_threshold=1,
    timeout_seconds=OPEN_SECONDS,
    half_open_max_calls=1,
    lease_seconds=10.0,
    key_ttl_seconds=TTL_SECONDS,
)
WINDOWED = StoreParams(
    failure_threshold=100,
    success_threshold=1,
    timeout_seconds=OPEN_SECONDS,
    half_open_max_calls=1,
    lease_seconds=10.0,
    key_ttl_seconds=TTL_SECONDS,
    window_size=2,
    minimum_calls=2,
    failure_rate_threshold=1.0,
)
TIMED = StoreParams(
    failure_threshold=100,
    success_threshold=1,
    timeout_seconds=OPEN_SECONDS,
    half_open_max_calls=1,
    lease_seconds=10.0,
    key_ttl_seconds=TTL_SECONDS,
    window_seconds=10.0,
    minimum_calls=1,
    failure_rate_threshold=1.0,
)


@pytest.fixture(scope="module")
def redis_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.RedisServer]:
    tmp_path: Path = tmp_path_factory.mktemp("redis")
    with servers.redis_server(tmp_path) as server:
        yield server


@pytest.fixture(scope="module")
def inspector(redis_srv: servers.RedisServer) -> Iterator[redis.Redis]:
    """A plain client for looking at (and tampering with) what the scripts stored."""
    client = redis.Redis(host=redis_srv.host, port=redis_srv.port, socket_timeout=10.0)
    yield client
    client.close()


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(
    redis_srv: servers.RedisServer, namespace: str, clock: FakeClock
) -> Iterator[RedisStateStore]:
    with RedisStateStore.from_url(
        redis_srv.url, namespace=namespace, clock=clock, telemetry=False
    ) as made:
        yield made


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def hash_fields(client: redis.Redis, key: str) -> dict[str, str]:
    return {text(k): text(v) for k, v in client.hgetall(key).items()}


def available(store: RedisStateStore) -> bool:
    # A call, not an attribute: the type checker would narrow ``store.available``.
    return store.available


def server_micros(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds * 1e6 + micros


def half_open(store: RedisStateStore, params: StoreParams, client: redis.Redis) -> int:
    """Trip the breaker, let its open period pass (for the server), take the first trial."""
    store.command("db", params, Command.TRIP, "test", OPEN_SECONDS)
    servers.shift_redis_time(client, store.namespace, OPEN_SECONDS)
    admission = store.acquire("db", params)
    assert admission.kind is AdmissionKind.TRIAL
    return admission.token


def elapsed(action: Callable[[], object]) -> float:
    """Real seconds ``action`` took (it is expected to raise StoreUnavailableError)."""
    start = SYSTEM_CLOCK.monotonic()
    with pytest.raises(StoreUnavailableError):
        action()
    return SYSTEM_CLOCK.monotonic() - start


# -- keys -------------------------------------------------------------------------------------


def test_the_store_meets_the_protocol(store: RedisStateStore) -> None:
    typed: BreakerStateStore = store
    assert typed is store


def test_keys_are_one_hash_per_breaker_tagged_with_its_name(
    store: RedisStateStore, namespace: str, inspector: redis.Redis
) -> None:
    hash_key, trials, ring = store.keys("payments")
    assert hash_key == f"{namespace}:{{payments}}"
    assert trials == f"{hash_key}:trials"
    assert ring == f"{hash_key}:ring"
    # One cluster slot: the hash tag is the breaker name.
    slots = {redis.crc.key_slot(key.encode()) for key in (hash_key, trials, ring)}
    assert slots == {redis.crc.key_slot(b"payments")}

    token = store.acquire("payments", WINDOWED).token
    store.report("payments", WINDOWED, token, Outcome.FAILURE, OPEN_SECONDS, trial=False)
    store.command("payments", WINDOWED, Command.TRIP, "test", OPEN_SECONDS)
    servers.shift_redis_time(inspector, namespace, OPEN_SECONDS)
    assert store.acquire("payments", WINDOWED).kind is AdmissionKind.TRIAL
    stored = {key.decode() for key in inspector.scan_iter(match=f"{namespace}:*")}
    assert stored == {hash_key, trials, ring}
    assert inspector.type(hash_key) == b"hash"
    assert inspector.type(trials) == b"zset"
    assert inspector.type(ring) == b"string"


def test_the_default_namespace() -> None:
    store = RedisStateStore.from_url("redis://127.0.0.1:9/0", telemetry=False)
    assert store.namespace == DEFAULT_NAMESPACE == "otel_resilience"
    assert store.keys("db")[0] == "otel_resilience:{db}"
    assert store.outage_breaker.name == "state-store:otel_resilience"
    store.close()


@pytest.mark.parametrize("name", ["", "a{b", "a}b", "{db}"])
def test_names_that_would_break_the_hash_tag_are_rejected(
    store: RedisStateStore, name: str
) -> None:
    with pytest.raises(ValueError, match="name"):
        store.acquire(name, P)
    with pytest.raises(ValueError, match="name"):
        store.keys(name)


def test_a_name_that_is_not_a_string_is_rejected(store: RedisStateStore) -> None:
    with pytest.raises(TypeError, match="name"):
        store.acquire(7, P)  # type: ignore[arg-type]


@pytest.mark.parametrize("namespace", ["", "a{b", "b}"])
def test_namespaces_that_would_break_the_hash_tag_are_rejected(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        RedisStateStore.from_url("redis://127.0.0.1:9/0", namespace=namespace)


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf"), True, "0.25"])
def test_bad_timeouts_are_rejected(timeout: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="timeout_seconds"):
        RedisStateStore.from_url("redis://127.0.0.1:9/0", timeout_seconds=timeout)


def test_every_key_expires_key_ttl_seconds_after_its_last_use(
    store: RedisStateStore, inspector: redis.Redis
) -> None:
    token = store.acquire("db", WINDOWED).token
    store.report("db", WINDOWED, token, Outcome.SUCCESS, OPEN_SECONDS, trial=False)
    half_open(store, WINDOWED, inspector)  # a lease
    ttls = [inspector.pttl(key) for key in store.keys("db")]
    assert all(TTL_SECONDS * 1000 - 5000 < ttl <= TTL_SECONDS * 1000 for ttl in ttls), ttls
    # A read refreshes them too (as the model refreshes an entry on every access).
    for key in store.keys("db"):
        inspector.pexpire(key, 50_000)
    store.read("db", WINDOWED)
    ttls = [inspector.pttl(key) for key in store.keys("db")]
    assert all(ttl > 50_000 for ttl in ttls), ttls


def test_big_numbers_are_stored_exactly(store: RedisStateStore, inspector: redis.Redis) -> None:
    generation = store.acquire("db", P).token
    fields = hash_fields(inspector, store.keys("db")[0])
    # Server microseconds: beyond the 14 digits Redis keeps of a Lua number by default.
    assert generation > 10**15
    assert fields["generation"] == str(generation)
    assert fields["last_lease"] == str(generation)
    store.command("db", P, Command.RESET, "manual", OPEN_SECONDS)
    assert hash_fields(inspector, store.keys("db")[0])["generation"] == str(generation + 1)


# -- one round trip per operation --------------------------------------------------------------


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}


def test_each_operation_is_one_script_call(store: RedisStateStore, inspector: redis.Redis) -> None:
    inspector.script_flush()
    inspector.config_resetstat()
    # First use on a server that lost its scripts: NOSCRIPT, then SCRIPT LOAD, once each.
    token = store.acquire("db", P).token
    store.report("db", P, token, Outcome.FAILURE, OPEN_SECONDS, trial=False)
    store.command("db", P, Command.RESET, "manual", OPEN_SECONDS)
    store.read("db", P)
    calls = command_calls(inspector)
    assert calls["script|load"] == 4
    assert calls["evalsha"] == 8  # four NOSCRIPT answers, four runs

    inspector.config_resetstat()
    for _ in range(5):
        token = store.acquire("db", P).token
        store.report("db", P, token, Outcome.SUCCESS, OPEN_SECONDS, trial=False)
        store.command("db", P, Command.TRIP, "test", OPEN_SECONDS)
        store.read("db", P)
        store.command("db", P, Command.RESET, "manual", OPEN_SECONDS)
    calls = command_calls(inspector)
    assert calls["evalsha"] == 25
    # Nothing else reached the server but the scripts' own commands and this inspection.
    sent = set(calls) - {"evalsha", "info", "config|resetstat"}
    assert sent <= {"time", "hgetall", "hset", "pexpire", "del", "zcard"}, sent


# -- server time ------------------------------------------------------------------------------


def test_time_is_the_servers_not_the_clients(
    redis_srv: servers.RedisServer, namespace: str, inspector: redis.Redis
) -> None:
    ahead_clock = FakeClock(start=60.0)
    behind = RedisStateStore.from_url(
        redis_srv.url, namespace=namespace, clock=FakeClock(), telemetry=False
    )
    ahead = RedisStateStore.from_url(
        redis_srv.url, namespace=namespace, clock=ahead_clock, telemetry=False
    )
    try:
        before = server_micros(inspector)
        report = behind.command("db", P, Command.TRIP, "test", OPEN_SECONDS)
        after = server_micros(inspector)
        open_until = float(hash_fields(inspector, behind.keys("db")[0])["open_until"])
        assert before + OPEN_SECONDS * 1e6 <= open_until <= after + OPEN_SECONDS * 1e6
        for store in (behind, ahead):
            admission = store.acquire("db", P)
            assert admission.kind is AdmissionKind.REJECTED
            assert admission.view.generation == report.view.generation
            assert admission.retry_after is not None
            assert OPEN_SECONDS - 1.0 < admission.retry_after <= OPEN_SECONDS
        # However far a client's clock runs, the open period is the server's.
        ahead_clock.advance(3600.0)
        assert ahead.acquire("db", P).kind is AdmissionKind.REJECTED
    finally:
        behind.close()
        ahead.close()


# -- keys deleted under a running breaker -----------------------------------------------------


def test_deleted_keys_start_a_fresh_state(store: RedisStateStore, inspector: redis.Redis) -> None:
    token = store.acquire("db", P).token
    store.report("db", P, token, Outcome.FAILURE, OPEN_SECONDS, trial=False)
    inspector.delete(*store.keys("db"))
    report = store.report("db", P, token, Outcome.FAILURE, OPEN_SECONDS, trial=False)
    assert not report.counted
    assert report.view.state is CircuitState.CLOSED
    assert report.view.consecutive_failures == 0
    assert report.view.generation > token
    assert store.acquire("db", P).token == report.view.generation


def test_a_deleted_hash_takes_its_leases_and_window_along(
    store: RedisStateStore, inspector: redis.Redis
) -> None:
    hash_key, trials, ring = store.keys("db")
    for outcome in (Outcome.SUCCESS, Outcome.FAILURE):
        token = store.acquire("db", WINDOWED).token
        store.report("db", WINDOWED, token, outcome, OPEN_SECONDS, trial=False)
    lease = half_open(store, WINDOWED, inspector)
    assert inspector.exists(trials, ring) == 2

    inspector.delete(hash_key)
    admission = store.acquire("db", WINDOWED)
    assert admission.kind is AdmissionKind.ADMITTED
    assert admission.view.trials == 0
    assert inspector.exists(trials, ring) == 0
    stale = store.report("db", WINDOWED, lease, Outcome.SUCCESS, OPEN_SECONDS, trial=True)
    assert not stale.counted
    # The window starts empty: one failure is below minimum_calls.
    report = store.report(
        "db", WINDOWED, admission.token, Outcome.FAILURE, OPEN_SECONDS, trial=False
    )
    assert report.view.state is CircuitState.CLOSED


def test_an_expired_key_starts_a_fresh_state(
    store: RedisStateStore, inspector: redis.Redis
) -> None:
    opened = store.command("db", P, Command.FORCE_OPEN, "manual", OPEN_SECONDS).view
    for key in store.keys("db"):
        inspector.pexpire(key, 0)  # expires at once
    view = store.read("db", P)
    assert view.state is CircuitState.CLOSED
    assert view.generation > opened.generation


# -- the time window's buckets ------------------------------------------------------------------


def place_now(client: redis.Redis, hash_key: str, seconds_after_head: float) -> None:
    """Shift stored times so that server time is ``seconds_after_head`` past the newest bucket."""
    head = float(hash_fields(client, hash_key)["window_head"])
    since = (server_micros(client) - head) / 1e6
    namespace = hash_key.split(":{", 1)[0]
    servers.shift_redis_time(client, namespace, seconds_after_head - since)


def test_time_window_buckets_hold_a_call_for_90_to_100_percent_of_the_window(
    store: RedisStateStore, inspector: redis.Redis
) -> None:
    hash_key = store.keys("db")[0]
    token = store.acquire("db", TIMED).token
    store.report("db", TIMED, token, Outcome.SUCCESS, OPEN_SECONDS, trial=False)
    head = float(hash_fields(inspector, hash_key)["window_head"])
    width = 1e6  # ten buckets of a second
    assert head % width == 0  # the first bucket starts on the server's bucket grid

    # 9.5 s later the call is still in the window: its bucket is the oldest of ten.
    place_now(inspector, hash_key, 9.5)
    store.report("db", TIMED, token, Outcome.SUCCESS, OPEN_SECONDS, trial=False)
    fields = hash_fields(inspector, hash_key)
    assert fields["bucket_calls"] == "1,0,0,0,0,0,0,0,0,1"
    # 10.5 s after the first call's bucket began, its bucket has left the window.
    place_now(inspector, hash_key, 1.5)
    report = store.report("db", TIMED, token, Outcome.FAILURE, OPEN_SECONDS, trial=False)
    fields = hash_fields(inspector, hash_key)
    assert fields["bucket_calls"] == "1,1,0,0,0,0,0,0,0,0"
    assert fields["bucket_failures"] == "1,0,0,0,0,0,0,0,0,0"
    assert report.view.state is CircuitState.CLOSED  # 1 failure in 2 calls
    # A window's worth of silence empties it.
    place_now(inspector, hash_key, 10.5)
    report = store.report("db", TIMED, token, Outcome.FAILURE, OPEN_SECONDS, trial=False)
    assert hash_fields(inspector, hash_key)["bucket_calls"] == "1,0,0,0,0,0,0,0,0,0"
    assert report.view.state is CircuitState.OPEN  # 1 failure in 1 call


# -- malformed data ------------------------------------------------------------------------------


def _set(field: str, value: str) -> Callable[[redis.Redis, tuple[str, str, str]], None]:
    def tamper(client: redis.Redis, keys: tuple[str, str, str]) -> None:
        client.hset(keys[0], field, value)

    return tamper


def _delete_field(field: str) -> Callable[[redis.Redis, tuple[str, str, str]], None]:
    def tamper(client: redis.Redis, keys: tuple[str, str, str]) -> None:
        client.hdel(keys[0], field)

    return tamper


def _replace(index: int, value: bytes) -> Callable[[redis.Redis, tuple[str, str, str]], None]:
    def tamper(client: redis.Redis, keys: tuple[str, str, str]) -> None:
        client.delete(keys[index])
        client.set(keys[index], value)

    return tamper


def _ring(value: bytes) -> Callable[[redis.Redis, tuple[str, str, str]], None]:
    def tamper(client: redis.Redis, keys: tuple[str, str, str]) -> None:
        client.set(keys[2], value)

    return tamper


MALFORMED = {
    # name: (tamper, params, what the log must say besides the key)
    "hash is a string": (_replace(0, b"garbage"), WINDOWED, "a string key"),
    "unknown state": (_set("state", "ajar"), P, "'state' = 'ajar'"),
    "a field the script never writes": (_set("gen", "7"), P, "'gen' = '7'"),
    "generation not a number": (_set("generation", "abc"), P, "'generation' = 'abc'"),
    "generation not an integer": (_set("generation", "1.5"), P, "'generation' = '1.5'"),
    "negative streak": (_set("failures", "-1"), P, "'failures' = '-1'"),
    "open_until not a number": (_set("open_until", "nan"), P, "'open_until' = 'nan'"),
    "missing field": (_delete_field("generation"), P, "'generation' = '(missing)'"),
    "leases not a zset": (_replace(1, b"x"), P, "a string key"),
    "ring not a string": (
        lambda client, keys: (client.delete(keys[2]), client.rpush(keys[2], "1")),
        WINDOWED,
        "a list key",
    ),
    "ring byte out of range": (_ring(b"\x07\x00"), WINDOWED, r"'offset 0' = '\\x07'"),
    "ring too short": (_ring(b""), WINDOWED, "'offset 0' = ''"),
    "window count over its size": (_set("window_calls", "3"), WINDOWED, "'window_calls' = '3'"),
    "bucket list too short": (_set("bucket_calls", "1,2,3"), TIMED, "'bucket_calls' = '1,2,3'"),
    "failures over calls": (
        _set("bucket_failures", "3,0,0,0,0,0,0,0,0,0"),
        TIMED,
        "'bucket_failures'",
    ),
    "long binary value": (
        _set("state", "\u00e9" * 200),
        P,
        "'state' = '" + r"\\xc3\\xa9" * 32 + "...'",
    ),
}


def _prepare(store: RedisStateStore, params: StoreParams, client: redis.Redis) -> None:
    """A running breaker: a full window while CLOSED, else a trial lease in HALF_OPEN."""
    for outcome in (Outcome.SUCCESS, Outcome.FAILURE):
        token = store.acquire("db", params).token
        store.report("db", params, token, outcome, OPEN_SECONDS, trial=False)
    if not params.has_window:
        half_open(store, params, client)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_data_is_logged_once_and_reset(
    case: str,
    store: RedisStateStore,
    inspector: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tamper, params, says = MALFORMED[case]
    _prepare(store, params, inspector)
    before = store.read("db", params)
    keys = store.keys("db")
    tamper(inspector, keys)
    caplog.set_level(logging.ERROR, logger=LOGGER)

    # An operation that reaches the tampered key answers from a fresh state.
    token = store.acquire("db", params).token
    report = store.report("db", params, token, Outcome.SUCCESS, OPEN_SECONDS, trial=False)
    view = store.read("db", params)

    records = [record for record in caplog.records if record.name == LOGGER]
    assert len(records) == 1, [record.getMessage() for record in records]
    message = records[0].getMessage()
    assert records[0].levelno == logging.ERROR
    assert "malformed breaker state" in message
    assert says in message, message
    assert any(repr(key) in message for key in keys), message
    assert "reset" in message
    assert view.state is CircuitState.CLOSED
    assert view.generation > before.generation
    assert report.view.generation == view.generation
    # The state is sound again: nothing more to report.
    store.read("db", params)
    assert len([record for record in caplog.records if record.name == LOGGER]) == 1


def test_malformed_data_is_reported_at_a_limited_rate(
    store: RedisStateStore,
    inspector: redis.Redis,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    hash_key = store.keys("db")[0]
    for _ in range(3):
        inspector.hset(hash_key, "state", "ajar")
        assert store.read("db", P).state is CircuitState.CLOSED
    assert len([record for record in caplog.records if record.name == LOGGER]) == 1
    clock.advance(STORE_ERROR_LOG_INTERVAL_SECONDS)
    inspector.hset(hash_key, "state", "ajar")
    store.read("db", P)
    assert len([record for record in caplog.records if record.name == LOGGER]) == 2


def test_a_client_that_decodes_replies_works_and_reports_binary_values(
    redis_srv: servers.RedisServer,
    namespace: str,
    inspector: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = redis.Redis.from_url(redis_srv.url, socket_timeout=5.0, decode_responses=True)
    store = RedisStateStore(client, namespace=namespace, telemetry=False)
    try:
        report = store.command("db", P, Command.TRIP, "r\u00e9seau", OPEN_SECONDS)
        assert report.transitions[0].reason == "r\u00e9seau"
        inspector.hset(store.keys("db")[0], "state", b"\xff\xfe")
        caplog.set_level(logging.ERROR, logger=LOGGER)
        assert store.read("db", P).state is CircuitState.CLOSED
        assert r"'state' = '\\xff\\xfe'" in caplog.text
    finally:
        client.close()


# -- the client and its timeouts --------------------------------------------------------------


def test_from_url_sets_short_timeouts_and_no_retries() -> None:
    store = RedisStateStore.from_url("redis://127.0.0.1:9/0", telemetry=False)
    options = store.client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == DEFAULT_STORE_TIMEOUT_SECONDS == 0.25
    assert options["socket_connect_timeout"] == DEFAULT_STORE_TIMEOUT_SECONDS
    assert options["retry"].get_retries() == 0
    assert store.timeout_seconds == DEFAULT_STORE_TIMEOUT_SECONDS
    store.close()
    custom = RedisStateStore.from_url("redis://127.0.0.1:9/0", timeout_seconds=1.5)
    assert custom.client.connection_pool.connection_kwargs["socket_timeout"] == 1.5
    custom.close()


def test_a_client_without_a_socket_timeout_is_rejected() -> None:
    client = redis.Redis(host="127.0.0.1", port=9, socket_timeout=None)
    with pytest.raises(ValueError, match="socket_timeout"):
        RedisStateStore(client)
    client.close()


def test_the_connection_is_made_on_first_use(
    redis_srv: servers.RedisServer, namespace: str, inspector: redis.Redis
) -> None:
    def clients() -> int:
        return len(inspector.client_list())

    before = clients()
    store = RedisStateStore.from_url(redis_srv.url, namespace=namespace, telemetry=False)
    assert clients() == before
    store.read("db", P)
    assert clients() == before + 1
    store.close()
    servers.poll(lambda: clients() == before, what="the store's connection to close")


def test_close_leaves_a_client_passed_in_open(
    redis_srv: servers.RedisServer, namespace: str
) -> None:
    client = redis.Redis.from_url(redis_srv.url, socket_timeout=5.0)
    store = RedisStateStore(client, namespace=namespace, telemetry=False)
    store.read("db", P)
    connection = client.client_id()
    store.close()
    assert client.client_id() == connection  # the same connection, still open
    assert store.read("db", P).state is CircuitState.CLOSED
    client.close()


def test_nothing_listening_fails_at_once_and_opens_the_inner_breaker(clock: FakeClock) -> None:
    store = RedisStateStore.from_url(f"redis://127.0.0.1:{servers.free_port()}/0", clock=clock)
    try:
        assert available(store)
        with pytest.raises(StoreUnavailableError, match="acquire failed") as caught:
            store.acquire("db", P)
        assert isinstance(caught.value.__cause__, redis.ConnectionError)
        assert "Redis state store 'otel_resilience'" in str(caught.value)
        assert not available(store)
        assert store.outage_breaker.state is CircuitState.OPEN
        with pytest.raises(StoreUnavailableError, match="not sent") as caught:
            store.read("db", P)
        assert isinstance(caught.value.__cause__, CircuitOpenError)
    finally:
        store.close()


# -- Redis failing under the store ---------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[servers.RedisServer]:
    """A redis-server of this test's own, to kill or pause."""
    with servers.redis_server(tmp_path) as server:
        yield server


def test_a_killed_redis_fails_fast_then_recovers_after_the_recovery_period(
    own_redis: servers.RedisServer, clock: FakeClock
) -> None:
    store = RedisStateStore.from_url(own_redis.url, clock=clock, telemetry=False)
    try:
        before = store.command("db", P, Command.FORCE_OPEN, "manual", OPEN_SECONDS)
        own_redis.kill()

        assert elapsed(lambda: store.acquire("db", P)) < FAILS_WITHIN
        assert not available(store)
        # While the inner breaker is open nothing is sent: no socket, no wait.
        for _ in range(3):
            with pytest.raises(StoreUnavailableError) as caught:
                store.acquire("db", P)
            assert isinstance(caught.value.__cause__, CircuitOpenError)

        own_redis.restart()
        with pytest.raises(StoreUnavailableError):
            store.read("db", P)  # still within the recovery period
        clock.advance(DEFAULT_STORE_RECOVERY_SECONDS)
        view = store.read("db", P)
        assert available(store)
        # The restarted Redis has no data: a fresh state under a new generation.
        assert view.state is CircuitState.CLOSED
        assert view.generation > before.view.generation
    finally:
        store.close()


def test_a_paused_redis_fails_within_the_timeout_then_recovers(
    own_redis: servers.RedisServer, clock: FakeClock
) -> None:
    store = RedisStateStore.from_url(own_redis.url, clock=clock, telemetry=False)
    try:
        store.read("db", P)  # connected
        own_redis.pause()
        start = SYSTEM_CLOCK.monotonic()
        with pytest.raises(StoreUnavailableError) as caught:
            store.acquire("db", P)
        assert SYSTEM_CLOCK.monotonic() - start < FAILS_WITHIN
        assert isinstance(caught.value.__cause__, redis.TimeoutError)
        with pytest.raises(StoreUnavailableError) as caught:
            store.acquire("db", P)
        assert isinstance(caught.value.__cause__, CircuitOpenError)

        own_redis.resume()
        clock.advance(DEFAULT_STORE_RECOVERY_SECONDS)
        assert store.acquire("db", P).kind is AdmissionKind.ADMITTED
        assert available(store)
    finally:
        store.close()


def test_a_new_connection_to_a_paused_redis_fails_within_the_timeout(
    own_redis: servers.RedisServer, clock: FakeClock
) -> None:
    store = RedisStateStore.from_url(own_redis.url, clock=clock, telemetry=False)
    try:
        own_redis.pause()  # before the first connection: the handshake hangs
        assert elapsed(lambda: store.read("db", P)) < FAILS_WITHIN
    finally:
        own_redis.resume()
        store.close()


def test_the_outage_breaker_takes_its_own_configuration(clock: FakeClock) -> None:
    config = CircuitBreakerConfig(failure_threshold=2, timeout_seconds=1.0)
    store = RedisStateStore.from_url(
        f"redis://127.0.0.1:{servers.free_port()}/0",
        namespace="shop",
        clock=clock,
        outage_config=config,
        telemetry=False,
    )
    try:
        assert store.outage_breaker.name == "state-store:shop"
        assert store.outage_breaker.config is config
        elapsed(lambda: store.read("db", P))
        assert available(store)
        elapsed(lambda: store.read("db", P))
        assert not available(store)
        clock.advance(1.0)
        assert available(store)  # HALF_OPEN: the next operation is a probe
    finally:
        store.close()


def test_the_outage_breaker_reports_to_the_breaker_metrics(clock: FakeClock) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    store = RedisStateStore.from_url(
        f"redis://127.0.0.1:{servers.free_port()}/0",
        namespace="shop",
        clock=clock,
        meter_provider=provider,
    )
    try:
        elapsed(lambda: store.read("db", P))
        data = reader.get_metrics_data()
        assert data is not None
        states: dict[str, float] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != names.METRIC_BREAKER_STATE.name:
                        continue
                    for point in metric.data.data_points:
                        assert isinstance(point, NumberDataPoint)
                        attributes = dict(point.attributes or {})
                        if attributes.get(names.ATTR_BREAKER) == "state-store:shop":
                            states[str(attributes[names.ATTR_BREAKER_STATE])] = point.value
        assert states["open"] == 1
        assert states["closed"] == 0
    finally:
        store.close()
        provider.shutdown()


# -- real threads ---------------------------------------------------------------------------


def run_threads(count: int, target: Callable[[int], None]) -> None:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            barrier.wait(JOIN_TIMEOUT)
            target(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors


def test_racing_threads_get_exactly_one_trial_and_one_transition(
    redis_srv: servers.RedisServer, namespace: str, inspector: redis.Redis
) -> None:
    store = RedisStateStore.from_url(
        redis_srv.url, namespace=namespace, telemetry=False, timeout_seconds=5.0
    )
    try:
        store.command("db", P, Command.TRIP, "test", OPEN_SECONDS)
        servers.shift_redis_time(inspector, namespace, OPEN_SECONDS)
        answers: list[Any] = [None] * 20

        def race(index: int) -> None:
            answers[index] = store.acquire("db", P)

        run_threads(20, race)
        kinds = [answer.kind for answer in answers]
        assert kinds.count(AdmissionKind.TRIAL) == 1
        assert kinds.count(AdmissionKind.REJECTED) == 19
        assert sum(len(answer.transitions) for answer in answers) == 1
    finally:
        store.close()


def test_racing_failures_open_the_breaker_once(
    redis_srv: servers.RedisServer, namespace: str
) -> None:
    store = RedisStateStore.from_url(
        redis_srv.url, namespace=namespace, telemetry=False, timeout_seconds=5.0
    )
    try:
        token = store.acquire("db", P).token
        reports: list[Any] = [None] * 20

        def fail(index: int) -> None:
            reports[index] = store.report(
                "db", P, token, Outcome.FAILURE, OPEN_SECONDS, trial=False
            )

        run_threads(20, fail)
        assert sum(report.counted for report in reports) == P.failure_threshold
        assert sum(len(report.transitions) for report in reports) == 1
    finally:
        store.close()
