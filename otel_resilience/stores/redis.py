"""Redis state stores: circuit breakers shared across processes and hosts (``redis`` extra).

:class:`RedisStateStore` (blocking, :class:`redis.Redis`) and
:class:`AsyncRedisStateStore` (asyncio, :class:`redis.asyncio.Redis`) keep each shared
breaker's state in Redis. Every operation is one Lua script, so it is atomic fleet-wide
and costs one round trip; the scripts run on Redis server time, never on a client's
clock. A breaker ``name`` owns the keys ``{namespace}:{{name}}`` (a hash),
``...:trials`` (half-open leases) and ``...:ring`` (a count window), all in the cluster
slot of the name and all expiring ``key_ttl_seconds`` after their last use.

Needs Redis 5 or later (the scripts read TIME, then write). Redis is a dependency too,
and treated as one: the connection is made on first use; a store built with
:meth:`RedisStateStore.from_url` has short socket timeouts and no retries; and a local
circuit breaker around Redis itself (``outage_breaker``) stops sending to a Redis that
failed, so that while it is down or hanging each operation fails at once with
:class:`~otel_resilience.stores.StoreUnavailableError` and the shared breaker decides
from its local state.

Malformed data in a breaker's keys never crashes an operation: the script resets the
keys to a fresh CLOSED state and says what it found, and the store logs it (rate-limited)
as a :class:`~otel_resilience.stores.StoreDataError` message naming the key, the field
and the value.

Example:
    >>> from otel_resilience import CircuitBreaker, CircuitBreakerConfig
    >>> from otel_resilience.stores.redis import RedisStateStore
    >>> store = RedisStateStore.from_url("redis://localhost:6379/0")
    >>> breaker = CircuitBreaker("payments", CircuitBreakerConfig(), store=store)
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self, TypeVar

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from otel_resilience._clock import SYSTEM_CLOCK, Clock
from otel_resilience._errors import CircuitOpenError
from otel_resilience._events import _RateLimitedLog
from otel_resilience._validation import check_number
from otel_resilience.breaker import CircuitBreaker, CircuitBreakerConfig, CircuitState
from otel_resilience.stores import _redis_scripts as scripts
from otel_resilience.stores._protocol import (
    Admission,
    Command,
    Outcome,
    Report,
    StoreDataError,
    StoreParams,
    StoreUnavailableError,
    StoreView,
)

if TYPE_CHECKING:
    from types import TracebackType

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_OUTAGE_CONFIG",
    "DEFAULT_STORE_RECOVERY_SECONDS",
    "DEFAULT_STORE_TIMEOUT_SECONDS",
    "STORE_ERROR_LOG_INTERVAL_SECONDS",
    "AsyncRedisStateStore",
    "RedisStateStore",
]

DEFAULT_NAMESPACE: Final = "otel_resilience"
"""The first part of every key: ``otel_resilience:{name}``."""

DEFAULT_STORE_TIMEOUT_SECONDS: Final = 0.25
"""How long one operation may wait for Redis (socket timeouts; the async store also
bounds the whole operation): a hanging Redis delays a protected call by at most this."""

DEFAULT_STORE_RECOVERY_SECONDS: Final = 5.0
"""How long the breaker around Redis stays open after a failure before it tries again."""

DEFAULT_OUTAGE_CONFIG: Final = CircuitBreakerConfig(
    failure_threshold=1,
    success_threshold=1,
    timeout_seconds=DEFAULT_STORE_RECOVERY_SECONDS,
    half_open_max_calls=1,
)
"""The breaker around Redis: open at the first failure, one probe after
:data:`DEFAULT_STORE_RECOVERY_SECONDS`, closed again by one success."""

STORE_ERROR_LOG_INTERVAL_SECONDS: Final = 60.0
"""Malformed-data errors are logged at most once per this many seconds per store."""

MAX_CACHED_NAMES: Final = 4096
"""Breaker names whose keys a store keeps built (beyond it the cache starts over)."""

MAX_CACHED_PARAMS: Final = 64
"""Parameter sets whose script arguments a store keeps built."""

_logger = logging.getLogger(__name__)

# Outcome and command codes as script arguments, built once.
_OUTCOME_ARGS: Final = tuple(str(int(outcome)) for outcome in Outcome)
_COMMAND_ARGS: Final = tuple(str(int(command)) for command in Command)

_T = TypeVar("_T")


class _RedisStore:
    """What both Redis stores share: keys, arguments, the outage breaker, error handling.

    The I/O (one script call per operation) is the subclasses' business.
    """

    __slots__ = (
        "_acquire",
        "_args",
        "_client",
        "_command",
        "_keys",
        "_label",
        "_namespace",
        "_outage",
        "_owns_client",
        "_problems",
        "_read",
        "_report",
        "_timeout",
    )

    _connect: ClassVar[Callable[..., Any]]
    """Builds a client from a URL (``redis.Redis.from_url`` or the asyncio one)."""

    def __init__(
        self,
        *,
        namespace: str,
        timeout_seconds: float,
        clock: Clock | None,
        outage_config: CircuitBreakerConfig | None,
        telemetry: bool,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        owns_client: bool,
    ) -> None:
        owner = type(self).__name__
        if not isinstance(namespace, str):
            raise TypeError(
                f"{owner}.namespace must be a str, got {type(namespace).__name__} {namespace!r}"
            )
        if not namespace or "{" in namespace or "}" in namespace:
            # A brace in the namespace would become the keys' hash tag instead of the name.
            raise ValueError(
                f"{owner}.namespace must be non-empty and free of '{{' and '}}', got {namespace!r}"
            )
        self._timeout = check_number(owner, "timeout_seconds", timeout_seconds)
        if outage_config is None:
            outage_config = DEFAULT_OUTAGE_CONFIG
        elif not isinstance(outage_config, CircuitBreakerConfig):
            raise TypeError(
                f"{owner}.outage_config must be a CircuitBreakerConfig, "
                f"got {type(outage_config).__name__}"
            )
        clock = SYSTEM_CLOCK if clock is None else clock
        self._namespace = namespace
        self._label = f"Redis state store {namespace!r}"
        self._outage = CircuitBreaker(
            f"state-store:{namespace}",
            outage_config,
            clock=clock,
            telemetry=telemetry,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        self._owns_client = owns_client
        self._problems = _RateLimitedLog(STORE_ERROR_LOG_INTERVAL_SECONDS, clock)
        self._keys: dict[str, tuple[str, str, str]] = {}
        # Keyed by id(): the cached params object is held, so its id cannot be reused.
        self._args: dict[int, tuple[StoreParams, tuple[str, ...]]] = {}

    def _bind(self, client: Any, *, owns_client: bool, **options: Any) -> None:
        """Check the client, set up the shared parts, and register the four scripts."""
        _check_client_timeout(type(self).__name__, client)
        _RedisStore.__init__(self, owns_client=owns_client, **options)
        self._client = client
        # register_script hashes the source locally; nothing is sent until first use,
        # then EVALSHA (with a SCRIPT LOAD after a NOSCRIPT reply).
        self._acquire = client.register_script(scripts.ACQUIRE_SCRIPT)
        self._report = client.register_script(scripts.REPORT_SCRIPT)
        self._command = client.register_script(scripts.COMMAND_SCRIPT)
        self._read = client.register_script(scripts.READ_SCRIPT)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_seconds: float = DEFAULT_STORE_TIMEOUT_SECONDS,
        clock: Clock | None = None,
        outage_config: CircuitBreakerConfig | None = None,
        telemetry: bool = True,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> Self:
        """A store with its own client for ``url`` (``redis://host:port/db``).

        The client's connect and read timeouts are ``timeout_seconds`` and redis-py's
        retries are off, so a dead or hanging Redis fails an operation within about
        ``timeout_seconds``. ``close()`` (``aclose()`` for the asyncio store) closes it.
        """
        timeout = check_number(cls.__name__, "timeout_seconds", timeout_seconds)
        store = cls.__new__(cls)
        store._bind(
            cls._connect(url, **_client_options(timeout)),
            owns_client=True,
            namespace=namespace,
            timeout_seconds=timeout,
            clock=clock,
            outage_config=outage_config,
            telemetry=telemetry,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        return store

    def _report_args(
        self,
        params: StoreParams,
        token: int,
        outcome: Outcome,
        open_seconds: float,
        *,
        trial: bool,
    ) -> tuple[str, ...]:
        return (
            *self._params(params),
            str(token),
            _OUTCOME_ARGS[outcome],
            self._seconds(open_seconds, "open_seconds"),
            "1" if trial else "0",
        )

    def _command_args(
        self, params: StoreParams, command: Command, reason: str, open_seconds: float
    ) -> tuple[str, ...]:
        if not isinstance(reason, str):
            raise TypeError(f"command reason must be a str, got {reason!r}")
        return (
            *self._params(params),
            _COMMAND_ARGS[command],
            reason,
            self._seconds(open_seconds, "open_seconds"),
        )

    # -- inspection -----------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        """The first part of every key this store writes."""
        return self._namespace

    @property
    def timeout_seconds(self) -> float:
        """How long one operation may wait for Redis."""
        return self._timeout

    @property
    def outage_breaker(self) -> CircuitBreaker:
        """The local breaker around Redis itself, named ``state-store:{namespace}``."""
        return self._outage

    @property
    def available(self) -> bool:
        """Whether operations are sent to Redis (the breaker around it is not open)."""
        state = self._outage.state
        return state is not CircuitState.OPEN and state is not CircuitState.FORCED_OPEN

    # -- shared steps ---------------------------------------------------------------------

    def keys(self, name: str) -> tuple[str, str, str]:
        """The hash, trials and ring keys of breaker ``name``.

        Raises:
            ValueError: ``name`` is empty or holds ``{`` or ``}`` (it is the hash tag).
        """
        keys = self._keys.get(name)
        if keys is None:
            keys = scripts.breaker_keys(self._namespace, name)
            if len(self._keys) >= MAX_CACHED_NAMES:
                self._keys.clear()
            self._keys[name] = keys
        return keys

    def _params(self, params: StoreParams) -> tuple[str, ...]:
        cached = self._args.get(id(params))
        if cached is not None and cached[0] is params:
            return cached[1]
        if not isinstance(params, StoreParams):
            raise TypeError(f"params must be StoreParams, got {type(params).__name__}")
        args = scripts.params_args(params)
        if len(self._args) >= MAX_CACHED_PARAMS:
            self._args.clear()
        self._args[id(params)] = (params, args)
        return args

    def _permit(self, operation: str) -> int:
        """A ticket of the breaker around Redis, or ``StoreUnavailableError`` at once."""
        try:
            return self._outage.acquire()
        except CircuitOpenError as error:
            retry = error.retry_after
            when = "" if retry is None else f"; next attempt in {retry:.3f}s"
            raise StoreUnavailableError(
                f"{self._label}: {operation} not sent: Redis failed recently{when}"
            ) from error

    def _failed(self, ticket: int, operation: str, error: BaseException) -> None:
        """Count ``error`` against Redis; raise ``StoreUnavailableError`` for an Exception."""
        self._outage.on_error(ticket, error)  # control flow only gives the ticket back
        if isinstance(error, Exception):
            detail = str(error) or type(error).__name__
            if len(detail) > 200:
                detail = detail[:197] + "..."
            raise StoreUnavailableError(
                f"{self._label}: {operation} failed: {type(error).__name__}: {detail}"
            ) from error

    def _check_problem(self, keys: tuple[str, str, str], reply: list[Any]) -> None:
        if reply[0] and self._problems._allow():
            _logger.error("%s", StoreDataError(scripts.problem_message(keys, reply)))

    @staticmethod
    def _seconds(value: float, what: str) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{what} must be a number of seconds, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{what} must be finite and >= 0, got {value!r}")
        return repr(float(value))


def _check_client_timeout(owner: str, client: Any) -> None:
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        raise TypeError(
            f"{owner}.client must be a redis client with a connection pool, "
            f"got {type(client).__name__}"
        )
    if kwargs.get("socket_timeout") is None:
        raise ValueError(
            f"{owner}.client has socket_timeout=None: a hanging Redis would hang every "
            "protected call; set socket_timeout (and socket_connect_timeout), or use "
            f"{owner}.from_url"
        )


def _client_options(timeout: float) -> dict[str, Any]:
    # Retries are the breaker's job (and the fallback's); redis-py's own would multiply
    # the time a dead Redis costs a protected call.
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "health_check_interval": 0,
    }


class RedisStateStore(_RedisStore):
    """Shared breaker state in Redis, for breakers used from threads (blocking I/O).

    Implements :class:`~otel_resilience.stores.BreakerStateStore`. Thread-safe: the
    client's connection pool serves any number of threads.

    Args:
        client: a :class:`redis.Redis` whose pool has a ``socket_timeout`` (not
            connected here; the first operation connects). Prefer :meth:`from_url`, which
            also turns redis-py's retries off.
        namespace: the first part of every key (no ``{`` or ``}``).
        timeout_seconds: with :meth:`from_url`, the client's connect and read timeouts.
            A client passed in keeps its own socket timeouts, which then bound each
            operation: keep them short.
        clock: the time source of the breaker around Redis (Redis time is the server's).
        outage_config: that breaker's configuration (:data:`DEFAULT_OUTAGE_CONFIG`).
        telemetry: whether that breaker reports its transitions (global providers, or the
            two below).
        tracer_provider: explicit OpenTelemetry providers for that breaker.
        meter_provider: as ``tracer_provider``.

    Raises:
        ValueError: the client has no socket timeout, or a bad namespace or timeout.

    Example:
        >>> store = RedisStateStore.from_url("redis://localhost:6379/0", namespace="shop")
        >>> store.keys("payments")
        ('shop:{payments}', 'shop:{payments}:trials', 'shop:{payments}:ring')
    """

    __slots__ = ()

    _connect = redis.Redis.from_url

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_seconds: float = DEFAULT_STORE_TIMEOUT_SECONDS,
        clock: Clock | None = None,
        outage_config: CircuitBreakerConfig | None = None,
        telemetry: bool = True,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._bind(
            client,
            owns_client=False,
            namespace=namespace,
            timeout_seconds=timeout_seconds,
            clock=clock,
            outage_config=outage_config,
            telemetry=telemetry,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )

    @property
    def client(self) -> redis.Redis:
        """The Redis client."""
        client: redis.Redis = self._client
        return client

    def _run(
        self,
        script: Any,
        decode: Callable[[list[Any]], _T],
        operation: str,
        keys: tuple[str, str, str],
        args: tuple[str, ...],
    ) -> _T:
        ticket = self._permit(operation)
        try:
            reply: list[Any] = script(keys, args)
            # Inside: a reply that does not decode is Redis failing us, like an error.
            answer = decode(reply)
        except BaseException as error:
            self._failed(ticket, operation, error)
            raise
        self._outage.on_result(ticket, None)
        self._check_problem(keys, reply)
        return answer

    # -- the protocol ---------------------------------------------------------------------

    def acquire(self, name: str, params: StoreParams) -> Admission:
        """Ask for a permit (see :meth:`~otel_resilience.stores.BreakerStateStore.acquire`).

        Raises:
            StoreUnavailableError: Redis failed or timed out, now or recently.
        """
        args = self._params(params)
        return self._run(self._acquire, scripts.decode_admission, "acquire", self.keys(name), args)

    def report(
        self,
        name: str,
        params: StoreParams,
        token: int,
        outcome: Outcome,
        open_seconds: float,
        *,
        trial: bool,
    ) -> Report:
        """Report an outcome (see :meth:`~otel_resilience.stores.BreakerStateStore.report`).

        Raises:
            StoreUnavailableError: Redis failed or timed out, now or recently.
        """
        keys = self.keys(name)
        args = self._report_args(params, token, outcome, open_seconds, trial=trial)
        return self._run(self._report, scripts.decode_report, "report", keys, args)

    def command(
        self, name: str, params: StoreParams, command: Command, reason: str, open_seconds: float
    ) -> Report:
        """Apply a command (see :meth:`~otel_resilience.stores.BreakerStateStore.command`).

        Raises:
            StoreUnavailableError: Redis failed or timed out, now or recently.
        """
        keys = self.keys(name)
        args = self._command_args(params, command, reason, open_seconds)
        return self._run(self._command, scripts.decode_command, "command", keys, args)

    def read(self, name: str, params: StoreParams) -> StoreView:
        """The current state (see :meth:`~otel_resilience.stores.BreakerStateStore.read`).

        Raises:
            StoreUnavailableError: Redis failed or timed out, now or recently.
        """
        args = self._params(params)
        return self._run(self._read, scripts.decode_view, "read", self.keys(name), args)

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client if this store made it (:meth:`from_url`).

        A client passed in is left to its owner.
        """
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisStateStore(namespace={self._namespace!r}, available={self.available})"


class AsyncRedisStateStore(_RedisStore):
    """Shared breaker state in Redis, for breakers used from asyncio.

    Implements :class:`~otel_resilience.stores.AsyncBreakerStateStore`. Each operation
    is also bounded by ``asyncio.timeout(timeout_seconds)``, whatever the client's own
    socket timeouts. Use one store per event loop (as its client).

    Args:
        client: a :class:`redis.asyncio.Redis` whose pool has a ``socket_timeout``.
        namespace: as for :class:`RedisStateStore`.
        timeout_seconds: the time budget of one operation.
        clock: as for :class:`RedisStateStore`.
        outage_config: as for :class:`RedisStateStore`.
        telemetry: as for :class:`RedisStateStore`.
        tracer_provider: as for :class:`RedisStateStore`.
        meter_provider: as for :class:`RedisStateStore`.

    Raises:
        ValueError: the client has no socket timeout, or a bad namespace or timeout.
    """

    __slots__ = ()

    _connect = redis.asyncio.Redis.from_url

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_seconds: float = DEFAULT_STORE_TIMEOUT_SECONDS,
        clock: Clock | None = None,
        outage_config: CircuitBreakerConfig | None = None,
        telemetry: bool = True,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._bind(
            client,
            owns_client=False,
            namespace=namespace,
            timeout_seconds=timeout_seconds,
            clock=clock,
            outage_config=outage_config,
            telemetry=telemetry,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )

    @property
    def client(self) -> redis.asyncio.Redis:
        """The Redis client."""
        client: redis.asyncio.Redis = self._client
        return client

    async def _run(
        self,
        script: Any,
        decode: Callable[[list[Any]], _T],
        operation: str,
        keys: tuple[str, str, str],
        args: tuple[str, ...],
    ) -> _T:
        ticket = self._permit(operation)
        try:
            async with asyncio.timeout(self._timeout):
                reply: list[Any] = await script(keys, args)
            answer = decode(reply)
        except BaseException as error:
            self._failed(ticket, operation, error)
            raise
        self._outage.on_result(ticket, None)
        self._check_problem(keys, reply)
        return answer

    # -- the protocol ---------------------------------------------------------------------

    async def acquire(self, name: str, params: StoreParams) -> Admission:
        """As :meth:`RedisStateStore.acquire`."""
        args = self._params(params)
        keys = self.keys(name)
        return await self._run(self._acquire, scripts.decode_admission, "acquire", keys, args)

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
        """As :meth:`RedisStateStore.report`."""
        keys = self.keys(name)
        args = self._report_args(params, token, outcome, open_seconds, trial=trial)
        return await self._run(self._report, scripts.decode_report, "report", keys, args)

    async def command(
        self, name: str, params: StoreParams, command: Command, reason: str, open_seconds: float
    ) -> Report:
        """As :meth:`RedisStateStore.command`."""
        keys = self.keys(name)
        args = self._command_args(params, command, reason, open_seconds)
        return await self._run(self._command, scripts.decode_command, "command", keys, args)

    async def read(self, name: str, params: StoreParams) -> StoreView:
        """As :meth:`RedisStateStore.read`."""
        args = self._params(params)
        return await self._run(self._read, scripts.decode_view, "read", self.keys(name), args)

    # -- lifetime -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the client if this store made it (:meth:`from_url`)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncRedisStateStore(namespace={self._namespace!r}, available={self.available})"
