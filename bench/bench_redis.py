"""Shared breaker state in Redis: otel-resilience against pybreaker's Redis storage.

Run by hand: ``uv run --group bench python bench/bench_redis.py [--quick]``. The script
starts its own ``redis-server`` (Debian package ``redis-server``) on 127.0.0.1, on a free
port, without persistence and with its files in a temporary directory, and stops it at the
end, also after an error. Without the binary it exits with a message saying so.

Each scenario times, in one run, a breaker alone around a trivial function:

9. **Success path (sync).** otel-resilience with its state in Redis (the default cached
   view, and ``max_staleness_seconds=0``, which asks Redis on every acquire) and with local
   state, against pybreaker with ``CircuitRedisStorage`` and with its memory storage.
10. **Failure path (sync).** Every call raises a counted failure; the thresholds are too
    high for any breaker to open, so every call reports a failure.
11. **Open-circuit rejection (sync).** Every breaker is open for an hour.
12. **Success path (async).** otel-resilience with ``AsyncRedisStateStore`` and local
    state, awaited in one event loop (no async peer keeps its state in Redis).

otel-resilience runs with ``telemetry=False`` (breakers, pipelines and stores), so the
numbers are about where the state lives.

The rows that wait for Redis on every call (:data:`WAITING_ROWS`) are timed interleaved
with each other, and the other rows with each other, one group right after the other
(:func:`split` and :func:`merge`): a row that blocks, on a socket or even in
``time.sleep``, leaves the samples that follow it slower on a virtual machine, which
raised the fast rows' medians by up to a third when every row was interleaved.

After timing, the Redis traffic of each contender is counted: the server's statistics are
reset (``CONFIG RESETSTAT``), the contender makes :data:`ROUND_TRIP_CALLS` calls, and
``INFO stats`` tells how many requests it read (``total_reads_processed``: one per round
trip, since every client waits for each reply) and how many commands it ran
(``total_commands_processed``, which also counts the commands inside a Lua script). Every
count starts from a cache older than ``max_staleness_seconds``, as after a quiet spell.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pybreaker
import redis
from bench_sync import FAILURE_THRESHOLD, OPEN_SECONDS
from harness import (
    HEADER,
    RESULT,
    BenchmarkError,
    Case,
    CaseResult,
    Probe,
    Scenario,
    ScenarioResult,
    TransientError,
    add_arguments,
    progress_to_stderr,
    rows,
    run_scenarios,
    select,
    settings_from,
    typed,
)

import otel_resilience
from otel_resilience import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from otel_resilience.breaker import DEFAULT_MAX_STALENESS_SECONDS, SharedCircuitBreaker
from otel_resilience.stores.redis import AsyncRedisStateStore, RedisStateStore

__all__ = [
    "KEYS",
    "LISTING",
    "NAMESPACE",
    "NEVER_OPEN",
    "QUICK_ROUND_TRIP_CALLS",
    "REDIS_BINARY",
    "ROUND_TRIP_CALLS",
    "ROUND_TRIP_HEADER",
    "WAITING_ROWS",
    "RedisBench",
    "RedisReport",
    "RedisServer",
    "RedisServerMissingError",
    "RoundTripCounts",
    "RoundTrips",
    "count_method",
    "find_redis_server",
    "format_text",
    "merge",
    "open_bench",
    "redis_server",
    "round_trip_rows",
    "split",
    "wants_redis",
]

REDIS_BINARY = "redis-server"
"""The server binary, as Debian's ``redis-server`` package (and upstream builds) install it."""

SEARCH_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
"""Searched after ``PATH``, where a user's PATH may not look."""

START_POLLS = 200
"""PINGs, :data:`POLL_SECONDS` apart, before a server that does not answer is given up on."""

POLL_SECONDS = 0.05
"""Seconds between two PINGs of a starting server."""

STOP_SECONDS = 10.0
"""Seconds a terminated server gets to exit before it is killed."""

ADMIN_TIMEOUT_SECONDS = 10.0
"""Socket timeout of the connection that reads the server's statistics."""

NAMESPACE = "bench"
"""Key namespace of every otel-resilience store (and of pybreaker's keys, as a prefix)."""

NEVER_OPEN = 10**9
"""Failure threshold of the failure-path breakers: more failures than a run makes."""

ROUND_TRIP_CALLS = 10_000
"""Calls per contender when counting Redis round trips."""

QUICK_ROUND_TRIP_CALLS = 1_000
"""The same for ``--quick``."""

STALE_WAIT_SECONDS = DEFAULT_MAX_STALENESS_SECONDS + 0.1
"""Pause before counting, so that every cached view has expired."""

SUCCESS_KEY = "redis_success_sync"
FAILURE_KEY = "redis_failure_sync"
REJECTION_KEY = "redis_rejection_sync"
ASYNC_SUCCESS_KEY = "redis_success_async"

LISTING = (
    (SUCCESS_KEY, "9. Shared state, success path (sync)"),
    (FAILURE_KEY, "10. Shared state, failure path (sync)"),
    (REJECTION_KEY, "11. Shared state, open-circuit rejection (sync)"),
    (ASYNC_SUCCESS_KEY, "12. Shared state, success path (async)"),
)
"""Key and title of every scenario here, known without starting a server (``--list``)."""

_TITLES = dict(LISTING)

KEYS = frozenset(_TITLES)
"""The keys of the Redis scenarios."""

SHARED = "otel-resilience shared (Redis)"
SHARED_NOW = "otel-resilience shared (Redis), max_staleness_seconds=0"
LOCAL = "otel-resilience local"
PB_REDIS = "pybreaker (CircuitRedisStorage)"
PB_MEMORY = "pybreaker (memory storage)"

WAITING_ROWS = {
    SUCCESS_KEY: frozenset({SHARED_NOW, PB_REDIS}),
    FAILURE_KEY: frozenset({SHARED, SHARED_NOW, PB_REDIS}),
    REJECTION_KEY: frozenset({SHARED_NOW, PB_REDIS}),
    ASYNC_SUCCESS_KEY: frozenset({SHARED_NOW}),
}
"""By scenario, the rows that wait for at least one Redis round trip on every call (the
counts after timing must agree)."""

_PART_SEPARATOR = "/"

_SHARED_NOTE = (
    "CircuitBreaker(name, config, store=RedisStateStore.from_url(url, telemetry=False)); "
    f"answers from its cached view for max_staleness_seconds={DEFAULT_MAX_STALENESS_SECONDS}"
)
_SHARED_NOW_NOTE = "SharedCircuitBreaker(..., max_staleness_seconds=0): asks Redis on every acquire"
_PB_REDIS_NOTE = "CircuitRedisStorage(STATE_CLOSED, redis.Redis(host, port)), as its README shows"


class RedisServerMissingError(RuntimeError):
    """``redis-server`` is not installed, so the Redis scenarios cannot run."""


def find_redis_server() -> str | None:
    """The path of ``redis-server`` on ``PATH`` or in :data:`SEARCH_DIRS`, if there is one."""
    found = shutil.which(REDIS_BINARY)
    if found is not None:
        return found
    for directory in SEARCH_DIRS:
        candidate = Path(directory) / REDIS_BINARY
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def wants_redis(keys: Sequence[str] | None) -> bool:
    """Whether ``--scenario`` keys (none: every scenario) select a Redis scenario."""
    return not keys or any(key in KEYS for key in keys)


# -- the server -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisServer:
    """A running ``redis-server`` on 127.0.0.1, and a connection that reads its statistics.

    Attributes:
        port: its TCP port.
        version: its version, from ``INFO server``.
        admin: the statistics connection (its own requests are subtracted from counts).
    """

    port: int
    version: str
    admin: redis.Redis
    _baseline: tuple[int, int]

    host = "127.0.0.1"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def reset_stats(self) -> None:
        """Zero the server's counters (``CONFIG RESETSTAT``)."""
        self.admin.config_resetstat()

    def traffic(self) -> tuple[int, int]:
        """Requests read and commands run since :meth:`reset_stats`, this connection's not."""
        reads, commands = _stats(self.admin)
        return reads - self._baseline[0], commands - self._baseline[1]


def _stats(admin: redis.Redis) -> tuple[int, int]:
    info: dict[str, Any] = admin.info("stats")
    return int(info["total_reads_processed"]), int(info["total_commands_processed"])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _wait_until_up(process: subprocess.Popen[bytes], port: int) -> bool:
    for _ in range(START_POLLS):
        if process.poll() is not None:
            return False
        if _answers(port):
            return True
        time.sleep(POLL_SECONDS)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_SECONDS)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Start ``redis-server`` on 127.0.0.1 for the ``with`` block; stop it after, whatever happens.

    No persistence (``--save ""``, ``--appendonly no``); its files go to a temporary
    directory, removed afterwards. A port found free can be taken before the server binds
    it, so a few ports are tried.

    Raises:
        RedisServerMissingError: the binary is not installed.
        RuntimeError: the server did not start (its log is in the message).
    """
    binary = find_redis_server()
    if binary is None:
        raise RedisServerMissingError(
            f"{REDIS_BINARY} not found on PATH or in {', '.join(SEARCH_DIRS)}; "
            f"install it (apt-get install {REDIS_BINARY})"
        )
    logs: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        for attempt in range(3):
            port = _free_port()
            log_path = Path(workdir) / f"redis-{attempt}.log"
            argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
            argv += ["--appendonly", "no", "--dir", workdir]
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            try:
                if not _wait_until_up(process, port):
                    logs.append(log_path.read_text(encoding="utf-8", errors="replace"))
                    if "address already in use" in logs[-1].lower():
                        continue
                    break
                admin = redis.Redis(
                    host=RedisServer.host, port=port, socket_timeout=ADMIN_TIMEOUT_SECONDS
                )
                try:
                    version = str(admin.info("server")["redis_version"])
                    # What an empty count reads: the INFO request that asks for it.
                    admin.config_resetstat()
                    baseline = _stats(admin)
                    yield RedisServer(port, version, admin, baseline)
                finally:
                    admin.close()
                return
            finally:
                _stop(process)
    raise RuntimeError("redis-server did not start:\n" + "\n---\n".join(logs))


# -- counting round trips ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoundTrips:
    """The Redis traffic of one contender over ``calls`` calls.

    Attributes:
        calls: calls made while counting.
        round_trips: requests the server read (``total_reads_processed``).
        commands: commands the server ran (``total_commands_processed``), those inside Lua
            scripts included.
    """

    calls: int
    round_trips: int
    commands: int

    @property
    def round_trips_per_call(self) -> float:
        """Round trips divided by calls."""
        return self.round_trips / self.calls

    @property
    def commands_per_call(self) -> float:
        """Commands divided by calls."""
        return self.commands / self.calls


RoundTripCounts = dict[tuple[str, str], RoundTrips]
"""Counts by (scenario key, contender name)."""


@dataclass(frozen=True, slots=True)
class RedisReport:
    """What the Redis scenarios add to a report.

    Attributes:
        server_version: the redis-server version.
        calls: calls per contender when counting.
        counts: the counts by (scenario key, contender name).
    """

    server_version: str
    calls: int
    counts: RoundTripCounts

    def get(self, key: str, name: str) -> RoundTrips | None:
        """The counts of contender ``name`` of scenario ``key``, if it was counted."""
        return self.counts.get((key, name))


async def _drive(case: Case, *, is_async: bool, calls: int) -> None:
    """Call a contender ``calls`` times; each call must end as its scenario promises."""
    call, raises = case.call, case.raises
    for _ in range(calls):
        try:
            value = call()
            if is_async:
                value = await value
        except Exception as exc:
            if raises is not None and isinstance(exc, raises):
                exc.__traceback__ = None  # as the timing loops do
                continue
            raise BenchmarkError(f"{case.name}: raised {exc!r} while counting") from exc
        if raises is not None or value != RESULT:
            raise BenchmarkError(f"{case.name}: returned {value!r} while counting")


class _ErrorLog(logging.Handler):
    """Counts the errors a library logs instead of raising them (pybreaker's Redis storage)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


# -- contenders -------------------------------------------------------------------------------


def _checks(*checks: Callable[[], None]) -> Callable[[], None]:
    def check() -> None:
        for one in checks:
            one()

    return check


def _shared_ok(breaker: SharedCircuitBreaker, state: CircuitState) -> Callable[[], None]:
    """A check: the store always answered (nothing was decided locally) and ``state`` holds."""

    def check() -> None:
        status = breaker.store_status()
        if status.fallbacks:
            raise BenchmarkError(
                f"the store failed {status.fallbacks} times, so the breaker decided locally"
            )
        if breaker.state is not state:
            raise BenchmarkError(f"the breaker is {breaker.state.value}, not {state.value}")

    return check


def _local_ok(breaker: CircuitBreaker, state: CircuitState) -> Callable[[], None]:
    def check() -> None:
        if breaker.state is not state:
            raise BenchmarkError(f"the breaker is {breaker.state.value}, not {state.value}")

    return check


def _ran(probe: Probe) -> Callable[[], None]:
    def check() -> None:
        if not probe.calls:
            raise BenchmarkError("the protected function never ran")

    return check


def _trip(fn: Callable[[], object], probe: Probe) -> None:
    """Open a breaker the ordinary way: enough consecutive failures through ``fn``."""
    probe.failing = True
    for _ in range(FAILURE_THRESHOLD):
        try:
            fn()
        except Exception:  # the failures are the point; the last may be a rejection
            continue
    probe.reset()


class RedisBench:
    """The Redis scenarios' contenders, their stores and clients, and their round-trip counts.

    Use through :func:`open_bench`, which starts the server and closes everything after.

    Args:
        server: the running server.
        calls: calls per contender when counting round trips.
    """

    __slots__ = ("_async_store", "_calls", "_pb_client", "_pb_errors", "_server", "_store")

    def __init__(self, server: RedisServer, *, calls: int = ROUND_TRIP_CALLS) -> None:
        if calls < 1:
            raise ValueError(f"RedisBench.calls must be >= 1, got {calls!r}")
        self._server = server
        self._calls = calls
        self._store = RedisStateStore.from_url(server.url, namespace=NAMESPACE, telemetry=False)
        self._async_store = self._new_async_store()
        # As pybreaker's documentation shows it: a plain client, no decode_responses.
        self._pb_client = redis.Redis(host=server.host, port=server.port)
        self._pb_errors = _ErrorLog()
        logging.getLogger("pybreaker").addHandler(self._pb_errors)

    @property
    def server(self) -> RedisServer:
        """The server the contenders talk to."""
        return self._server

    @property
    def calls(self) -> int:
        """Calls per contender when counting round trips."""
        return self._calls

    def _new_async_store(self) -> AsyncRedisStateStore:
        return AsyncRedisStateStore.from_url(self._server.url, namespace=NAMESPACE, telemetry=False)

    def scenarios(self) -> list[Scenario]:
        """Every Redis scenario, in report order (scenarios 9 to 12)."""
        return [
            self.success(),
            self.failure(),
            self.rejection(),
            self.success_async(self._async_store),
        ]

    def close(self) -> None:
        """Close the blocking clients (the server itself is stopped by :func:`redis_server`).

        The timed asyncio store is left alone: its connection belongs to the timing run's
        event loop, which is closed by now and cannot run the close. Its socket closes
        when the connection is collected, at the latest with the process; the server is
        stopped right after this anyway.
        """
        logging.getLogger("pybreaker").removeHandler(self._pb_errors)
        self._store.close()
        self._pb_client.close()

    # -- building blocks ------------------------------------------------------------------

    def _shared(
        self,
        name: str,
        config: CircuitBreakerConfig,
        *,
        staleness: float | None = None,
        store: RedisStateStore | AsyncRedisStateStore | None = None,
    ) -> SharedCircuitBreaker:
        store = self._store if store is None else store
        if staleness is None:
            breaker = CircuitBreaker(name, config, store=store, telemetry=False)
        else:
            breaker = SharedCircuitBreaker(
                name, config, store=store, max_staleness_seconds=staleness, telemetry=False
            )
        if not isinstance(breaker, SharedCircuitBreaker):
            raise BenchmarkError(f"{name}: a store did not make a shared breaker")
        return breaker

    def _pybreaker(
        self, namespace: str | None, *, fail_max: int, reset_timeout: float
    ) -> pybreaker.CircuitBreaker:
        """pybreaker in Redis (under ``namespace``), or in memory when it is ``None``."""
        if namespace is None:
            return pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_timeout)
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, self._pb_client, namespace=f"{NAMESPACE}-{namespace}"
        )
        return pybreaker.CircuitBreaker(
            fail_max=fail_max, reset_timeout=reset_timeout, state_storage=storage
        )

    def _pb_ok(self, breaker: pybreaker.CircuitBreaker, state: str) -> Callable[[], None]:
        """A check: pybreaker logged no Redis error (it falls back silently) and ``state`` holds."""

        def check() -> None:
            if self._pb_errors.count:
                raise BenchmarkError(
                    f"pybreaker logged {self._pb_errors.count} errors: Redis failed it"
                )
            current = breaker.current_state
            if current != state:
                raise BenchmarkError(f"pybreaker is {current}, not {state}")

        return check

    # -- scenario 9: success path -------------------------------------------------------------

    def success(self) -> Scenario:
        """Breaker alone, every call succeeds: shared and local state, ours and pybreaker's."""
        config = CircuitBreakerConfig()
        shared = self._shared("success", config)
        shared_now = self._shared("success-now", config, staleness=0.0)
        local = CircuitBreaker("success-local", config, telemetry=False)

        @otel_resilience.resilient(circuit_breaker=shared, telemetry=False)
        def ours_shared() -> int:
            return RESULT

        @otel_resilience.resilient(circuit_breaker=shared_now, telemetry=False)
        def ours_shared_now() -> int:
            return RESULT

        @otel_resilience.resilient(circuit_breaker=local, telemetry=False)
        def ours_local() -> int:
            return RESULT

        timeout = config.timeout_seconds
        pb_redis = self._pybreaker("success", fail_max=FAILURE_THRESHOLD, reset_timeout=timeout)
        pb_memory = self._pybreaker(None, fail_max=FAILURE_THRESHOLD, reset_timeout=timeout)

        @typed(pb_redis)
        def pybreaker_redis() -> int:
            return RESULT

        @typed(pb_memory)
        def pybreaker_memory() -> int:
            return RESULT

        closed = CircuitState.CLOSED
        return Scenario(
            key=SUCCESS_KEY,
            title=_TITLES[SUCCESS_KEY],
            description=(
                "A breaker alone around a function that returns at once; its state in Redis "
                "or in the process."
            ),
            is_async=False,
            cases=(
                Case(
                    name=SHARED,
                    call=ours_shared,
                    role="ours",
                    check=_shared_ok(shared, closed),
                    note=_SHARED_NOTE,
                ),
                Case(
                    name=SHARED_NOW,
                    call=ours_shared_now,
                    role="ours",
                    check=_shared_ok(shared_now, closed),
                    note=_SHARED_NOW_NOTE,
                ),
                Case(
                    name=LOCAL,
                    call=ours_local,
                    role="ours",
                    check=_local_ok(local, closed),
                    note="CircuitBreaker(name, config): no store",
                ),
                Case(
                    name=PB_REDIS,
                    call=pybreaker_redis,
                    check=self._pb_ok(pb_redis, pybreaker.STATE_CLOSED),
                    note=_PB_REDIS_NOTE + "; reads the state and resets the failure count",
                ),
                Case(
                    name=PB_MEMORY,
                    call=pybreaker_memory,
                    check=self._pb_ok(pb_memory, pybreaker.STATE_CLOSED),
                ),
            ),
        )

    # -- scenario 10: failure path ------------------------------------------------------------

    def failure(self) -> Scenario:
        """Every call raises a counted failure; no breaker ever opens."""
        config = CircuitBreakerConfig(failure_threshold=NEVER_OPEN)
        probes = [Probe() for _ in range(5)]
        for probe in probes:
            probe.failing = True
        shared_probe, now_probe, local_probe, pb_redis_probe, pb_memory_probe = probes
        shared = self._shared("failure", config)
        shared_now = self._shared("failure-now", config, staleness=0.0)
        local = CircuitBreaker("failure-local", config, telemetry=False)

        @otel_resilience.resilient(circuit_breaker=shared, telemetry=False)
        def ours_shared() -> int:
            return shared_probe.hit()

        @otel_resilience.resilient(circuit_breaker=shared_now, telemetry=False)
        def ours_shared_now() -> int:
            return now_probe.hit()

        @otel_resilience.resilient(circuit_breaker=local, telemetry=False)
        def ours_local() -> int:
            return local_probe.hit()

        timeout = config.timeout_seconds
        pb_redis = self._pybreaker("failure", fail_max=NEVER_OPEN, reset_timeout=timeout)
        pb_memory = self._pybreaker(None, fail_max=NEVER_OPEN, reset_timeout=timeout)

        @typed(pb_redis)
        def pybreaker_redis() -> int:
            return pb_redis_probe.hit()

        @typed(pb_memory)
        def pybreaker_memory() -> int:
            return pb_memory_probe.hit()

        closed = CircuitState.CLOSED
        pb_closed = pybreaker.STATE_CLOSED
        return Scenario(
            key=FAILURE_KEY,
            title=_TITLES[FAILURE_KEY],
            description=(
                "Each call raises an exception the breaker counts (caught by the timing loop); "
                f"the thresholds ({NEVER_OPEN:,}) are never reached, so every call reports a "
                "failure and no breaker opens."
            ),
            is_async=False,
            cases=(
                Case(
                    name=SHARED,
                    call=ours_shared,
                    role="ours",
                    raises=TransientError,
                    check=_checks(_ran(shared_probe), _shared_ok(shared, closed)),
                    note="each failure is reported to Redis; the answer refreshes the view",
                ),
                Case(
                    name=SHARED_NOW,
                    call=ours_shared_now,
                    role="ours",
                    raises=TransientError,
                    check=_checks(_ran(now_probe), _shared_ok(shared_now, closed)),
                ),
                Case(
                    name=LOCAL,
                    call=ours_local,
                    role="ours",
                    raises=TransientError,
                    check=_checks(_ran(local_probe), _local_ok(local, closed)),
                ),
                Case(
                    name=PB_REDIS,
                    call=pybreaker_redis,
                    raises=TransientError,
                    check=_checks(_ran(pb_redis_probe), self._pb_ok(pb_redis, pb_closed)),
                    note=(
                        "reads the state, increments the failure count, reads it back to "
                        "compare with fail_max"
                    ),
                ),
                Case(
                    name=PB_MEMORY,
                    call=pybreaker_memory,
                    raises=TransientError,
                    check=_checks(_ran(pb_memory_probe), self._pb_ok(pb_memory, pb_closed)),
                ),
            ),
        )

    # -- scenario 11: open-circuit rejection --------------------------------------------------

    def rejection(self) -> Scenario:
        """Every breaker is open for an hour; each call is rejected without running."""
        config = CircuitBreakerConfig(
            failure_threshold=FAILURE_THRESHOLD, timeout_seconds=OPEN_SECONDS
        )
        probes = [Probe() for _ in range(5)]
        shared_probe, now_probe, local_probe, pb_redis_probe, pb_memory_probe = probes
        shared = self._shared("rejection", config)
        shared_now = self._shared("rejection-now", config, staleness=0.0)
        local = CircuitBreaker("rejection-local", config, telemetry=False)

        @otel_resilience.resilient(circuit_breaker=shared, telemetry=False)
        def ours_shared() -> int:
            return shared_probe.hit()

        @otel_resilience.resilient(circuit_breaker=shared_now, telemetry=False)
        def ours_shared_now() -> int:
            return now_probe.hit()

        @otel_resilience.resilient(circuit_breaker=local, telemetry=False)
        def ours_local() -> int:
            return local_probe.hit()

        _trip(ours_shared, shared_probe)
        _trip(ours_shared_now, now_probe)
        _trip(ours_local, local_probe)

        pb_redis = self._pybreaker(
            "rejection", fail_max=FAILURE_THRESHOLD, reset_timeout=OPEN_SECONDS
        )
        pb_memory = self._pybreaker(None, fail_max=FAILURE_THRESHOLD, reset_timeout=OPEN_SECONDS)

        @typed(pb_redis)
        def pybreaker_redis() -> int:
            return pb_redis_probe.hit()

        @typed(pb_memory)
        def pybreaker_memory() -> int:
            return pb_memory_probe.hit()

        pb_redis.open()
        pb_memory.open()

        opened = CircuitState.OPEN
        pb_open = pybreaker.STATE_OPEN
        return Scenario(
            key=REJECTION_KEY,
            title=_TITLES[REJECTION_KEY],
            description=(
                "The breaker is open for an hour; each call raises the library's open-circuit "
                "error without running the function (caught by the timing loop)."
            ),
            is_async=False,
            cases=(
                Case(
                    name=SHARED,
                    call=ours_shared,
                    role="ours",
                    raises=CircuitOpenError,
                    check=_checks(shared_probe.untouched, _shared_ok(shared, opened)),
                    note="opened by 5 failures; rejects from its cached view of the open period",
                ),
                Case(
                    name=SHARED_NOW,
                    call=ours_shared_now,
                    role="ours",
                    raises=CircuitOpenError,
                    check=_checks(now_probe.untouched, _shared_ok(shared_now, opened)),
                    note="Redis decides every rejection (and its retry_after)",
                ),
                Case(
                    name=LOCAL,
                    call=ours_local,
                    role="ours",
                    raises=CircuitOpenError,
                    check=_checks(local_probe.untouched, _local_ok(local, opened)),
                    note="opened by 5 failures",
                ),
                Case(
                    name=PB_REDIS,
                    call=pybreaker_redis,
                    raises=pybreaker.CircuitBreakerError,
                    check=_checks(pb_redis_probe.untouched, self._pb_ok(pb_redis, pb_open)),
                    note="breaker.open(); reads the state, then the time it opened",
                ),
                Case(
                    name=PB_MEMORY,
                    call=pybreaker_memory,
                    raises=pybreaker.CircuitBreakerError,
                    check=_checks(pb_memory_probe.untouched, self._pb_ok(pb_memory, pb_open)),
                    note="breaker.open()",
                ),
            ),
        )

    # -- scenario 12: success path, async -----------------------------------------------------

    def success_async(self, store: AsyncRedisStateStore) -> Scenario:
        """Await a breaker alone around a coroutine function; state in ``store`` or local."""
        config = CircuitBreakerConfig()
        shared = self._shared("success-async", config, store=store)
        shared_now = self._shared("success-async-now", config, staleness=0.0, store=store)
        local = CircuitBreaker("success-async-local", config, telemetry=False)

        @otel_resilience.resilient(circuit_breaker=shared, telemetry=False)
        async def ours_shared() -> int:
            return RESULT

        @otel_resilience.resilient(circuit_breaker=shared_now, telemetry=False)
        async def ours_shared_now() -> int:
            return RESULT

        @otel_resilience.resilient(circuit_breaker=local, telemetry=False)
        async def ours_local() -> int:
            return RESULT

        closed = CircuitState.CLOSED
        return Scenario(
            key=ASYNC_SUCCESS_KEY,
            title=_TITLES[ASYNC_SUCCESS_KEY],
            description=(
                "Await a breaker alone around a coroutine function that returns at once; its "
                "state in Redis (AsyncRedisStateStore) or in the process. aiobreaker and "
                "purgatory keep no state in Redis, so there is no peer."
            ),
            is_async=True,
            cases=(
                Case(
                    name=SHARED,
                    call=ours_shared,
                    role="ours",
                    check=_shared_ok(shared, closed),
                    note=(
                        "CircuitBreaker(name, config, store=AsyncRedisStateStore.from_url(url, "
                        "telemetry=False)); the driver awaits aacquire() and aflush()"
                    ),
                ),
                Case(
                    name=SHARED_NOW,
                    call=ours_shared_now,
                    role="ours",
                    check=_shared_ok(shared_now, closed),
                    note=_SHARED_NOW_NOTE,
                ),
                Case(
                    name=LOCAL,
                    call=ours_local,
                    role="ours",
                    check=_local_ok(local, closed),
                ),
            ),
        )

    # -- round trips ----------------------------------------------------------------------

    def report(self, results: Iterable[ScenarioResult]) -> RedisReport:
        """Count the Redis traffic of every contender of the Redis scenarios in ``results``.

        Sync contenders are counted on the very objects that were timed. An asyncio client
        belongs to the event loop it first ran in, closed when timing ends, so async
        contenders are counted on twins (same names, same configuration) built with a new
        store in the counting loop.
        """
        chosen = [r.scenario for r in results if r.scenario.key in KEYS]

        async def count_all() -> RoundTripCounts:
            counts: RoundTripCounts = {}
            for scenario in chosen:
                if scenario.is_async:
                    store = self._new_async_store()
                    try:
                        found = await self._count(self.success_async(store))
                    finally:
                        await store.aclose()
                else:
                    found = await self._count(scenario)
                counts.update({(scenario.key, name): trips for name, trips in found.items()})
            return counts

        counts = asyncio.run(count_all())
        return RedisReport(self._server.version, self._calls, counts)

    async def _count(self, scenario: Scenario) -> dict[str, RoundTrips]:
        server = self._server
        is_async = scenario.is_async
        for case in scenario.cases:
            # Connect and load the scripts before counting: a new connection's handshake
            # is not a cost per call.
            await _drive(case, is_async=is_async, calls=1)
        await asyncio.sleep(STALE_WAIT_SECONDS)
        counts = {}
        for case in scenario.cases:
            server.reset_stats()
            await _drive(case, is_async=is_async, calls=self._calls)
            reads, commands = server.traffic()
            counts[case.name] = RoundTrips(self._calls, reads, commands)
        for case in scenario.cases:
            if case.check is not None:
                try:
                    case.check()
                except Exception as exc:
                    raise BenchmarkError(f"{scenario.key} / {case.name}: {exc}") from exc
            # The timing groups must be what the counts say they are.
            waits = counts[case.name].round_trips >= self._calls
            if waits != (case.name in WAITING_ROWS[scenario.key]):
                raise BenchmarkError(
                    f"{scenario.key} / {case.name}: {counts[case.name].round_trips} round trips "
                    f"in {self._calls} calls, against WAITING_ROWS"
                )
        return counts


@contextmanager
def open_bench(*, calls: int = ROUND_TRIP_CALLS) -> Iterator[RedisBench]:
    """Start a server and build the contenders for the ``with`` block; close and stop after.

    Raises:
        RedisServerMissingError: ``redis-server`` is not installed.
    """
    with redis_server() as server:
        bench = RedisBench(server, calls=calls)
        try:
            yield bench
        finally:
            bench.close()


# -- timing in two groups ---------------------------------------------------------------------


def split(scenarios: Iterable[Scenario]) -> list[Scenario]:
    """Split each Redis scenario into its rows that wait for Redis and the others.

    Each part keeps the scenario's title and description; its key is the scenario's with
    ``/cached`` or ``/redis`` after it. Other scenarios pass through. :func:`merge` puts
    the timings back together.
    """
    out: list[Scenario] = []
    for scenario in scenarios:
        waiting = WAITING_ROWS.get(scenario.key)
        if waiting is None:
            out.append(scenario)
            continue
        for part, keep in (("cached", False), ("redis", True)):
            cases = tuple(c for c in scenario.cases if (c.name in waiting) is keep)
            if cases:
                key = f"{scenario.key}{_PART_SEPARATOR}{part}"
                out.append(dataclasses.replace(scenario, key=key, cases=cases))
    return out


def merge(scenarios: Iterable[Scenario], results: Iterable[ScenarioResult]) -> list[ScenarioResult]:
    """The results of :func:`split` scenarios, put back together in ``scenarios``' order.

    Args:
        scenarios: the scenarios as they were before :func:`split`.
        results: the results of the split scenarios.
    """
    by_name: dict[tuple[str, str], CaseResult] = {}
    for result in results:
        key = result.scenario.key.partition(_PART_SEPARATOR)[0]
        for row in result.results:
            by_name[key, row.case.name] = row
    merged = []
    for scenario in scenarios:
        timed = tuple(by_name[scenario.key, case.name] for case in scenario.cases)
        merged.append(ScenarioResult(scenario, timed))
    return merged


# -- reporting --------------------------------------------------------------------------------

ROUND_TRIP_HEADER = [*HEADER, "round trips/call", "Redis commands/call"]
"""The timing columns, then the Redis traffic per call."""


def _per_call(total: int, calls: int) -> str:
    if total % calls == 0:
        return str(total // calls)
    return f"{total / calls:.4f}"


def round_trip_rows(result: ScenarioResult, report: RedisReport) -> list[list[str]]:
    """The timing rows of a Redis scenario with its round trips and commands per call."""
    table = rows(result)
    for line, row in zip(table, result.results, strict=True):
        trips = report.get(result.scenario.key, row.case.name)
        if trips is None:
            line += ["-", "-"]
        else:
            line += [
                _per_call(trips.round_trips, trips.calls),
                _per_call(trips.commands, trips.calls),
            ]
    return table


def count_method(report: RedisReport) -> str:
    """One sentence on how the Redis columns were counted."""
    return (
        f"Round trips and commands per call: counted on redis-server {report.server_version} "
        f"over {report.calls:,} calls per contender after timing, starting from an expired "
        "cache; round trips are the requests the server read, commands include those run "
        "inside Lua scripts."
    )


def format_text(results: Iterable[ScenarioResult], report: RedisReport) -> str:
    """Plain-text tables for the terminal, with the Redis columns."""
    out = [f"\n{count_method(report)}"]
    for result in results:
        scenario = result.scenario
        table = [ROUND_TRIP_HEADER, *round_trip_rows(result, report)]
        widths = [max(len(line[i]) for line in table) for i in range(len(ROUND_TRIP_HEADER))]
        out.append(f"\n== {scenario.title} [{scenario.key}]")
        out.append(f"   {scenario.description}")
        for index, line in enumerate(table):
            cells = [
                line[0].ljust(widths[0]),
                *(cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)),
            ]
            out.append("   " + "  ".join(cells))
            if index == 0:
                out.append("   " + "  ".join("-" * w for w in widths))
        out.extend(f"   note: {r.case.name}: {r.case.note}" for r in result.results if r.case.note)
    return "\n".join(out)


def main() -> None:
    """Start redis-server, time the Redis scenarios, count their round trips, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument(
        "--calls",
        type=int,
        help=(
            f"calls per contender when counting round trips (default {ROUND_TRIP_CALLS:,}, "
            f"{QUICK_ROUND_TRIP_CALLS:,} with --quick)"
        ),
    )
    args = parser.parse_args()
    if args.list:
        for key, title in LISTING:
            print(f"{key:20} {title}")
        return
    settings = settings_from(args)
    calls = args.calls or (QUICK_ROUND_TRIP_CALLS if args.quick else ROUND_TRIP_CALLS)
    try:
        with open_bench(calls=calls) as bench:
            scenarios = select(bench.scenarios(), args.scenario)
            parts = run_scenarios(split(scenarios), settings, progress_to_stderr)
            results = merge(scenarios, parts)
            report = bench.report(results)
    except RedisServerMissingError as error:
        raise SystemExit(f"bench_redis.py: cannot run: {error}") from None
    print(format_text(results, report))


if __name__ == "__main__":
    main()
