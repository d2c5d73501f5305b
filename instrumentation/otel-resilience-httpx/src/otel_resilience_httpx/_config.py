"""Configuration of the resilient httpx transport, in code or from the environment."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import httpx

from otel_resilience._validation import check_int, check_number, check_optional_number
from otel_resilience.backoff import Backoff, FullJitter
from otel_resilience.orchestrator import FailoverConfig

__all__ = [
    "DEFAULT_ATTEMPT_TIMEOUT",
    "DEFAULT_BREAKER_TIMEOUT",
    "DEFAULT_FAILURE_STATUSES",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_BREAKERS",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_NAME",
    "DEFAULT_RETRY_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "DEFAULT_TOTAL_TIMEOUT",
    "ENV_PREFIX",
    "HttpResilienceConfig",
    "authority_key",
]

_OWNER = "HttpResilienceConfig"

DEFAULT_NAME = "httpx"
"""Name of the pipelines (the logical span) and prefix of the breakers' names."""
DEFAULT_MAX_ATTEMPTS = 3
"""All attempts of one request, the first included."""
DEFAULT_TOTAL_TIMEOUT: float | None = 30.0
"""Seconds for a whole request, retries and their waits included."""
DEFAULT_ATTEMPT_TIMEOUT: float | None = 10.0
"""Seconds for one attempt."""
DEFAULT_RETRY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Idempotent methods (RFC 9110, section 9.2.2): a resend cannot do harm twice."""
DEFAULT_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses worth another attempt."""
DEFAULT_FAILURE_STATUSES = frozenset({429, *range(500, 600)})
"""Statuses the per-authority circuit breaker counts as failures."""
DEFAULT_FAILURE_THRESHOLD = 5
"""Consecutive failures that open an authority's breaker."""
DEFAULT_BREAKER_TIMEOUT = 30.0
"""Seconds an open breaker waits before it lets a trial request through."""
DEFAULT_MAX_BREAKERS = 100
"""The most authorities with a breaker held at once (the registry evicts CLOSED ones)."""
DEFAULT_MAX_RETRY_AFTER = 60.0
"""A ``Retry-After`` longer than this is cut to this (seconds)."""

ENV_PREFIX = "OTEL_RESILIENCE_HTTPX_"
"""Prefix of the environment variables read by :meth:`HttpResilienceConfig.from_env`."""


def _default_backoff() -> Backoff:
    return FullJitter(initial=0.2, multiplier=2.0, max_delay=5.0)


def authority_key(url: httpx.URL | str) -> str:
    """Return ``scheme://host:port`` for ``url``, the port made explicit.

    A bare ``host:port`` is read as ``http``. This is the key of breakers and of the
    ``failover`` mapping.

    Example:
        >>> authority_key("https://Example.com/path?q=1")
        'https://example.com:443'
        >>> authority_key("127.0.0.1:8080")
        'http://127.0.0.1:8080'
    """
    if isinstance(url, str):
        url = httpx.URL(url if "://" in url else f"http://{url}")
    scheme = url.scheme
    port = url.port
    if port is None:
        port = 443 if scheme == "https" else 80
    host = url.host
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _check_base_url(name: str) -> str:
    try:
        url = httpx.URL(name)
    except (httpx.InvalidURL, TypeError) as error:
        raise ValueError(
            f"{_OWNER}.failover alternates must be base URLs, got {name!r}: {error}"
        ) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"{_OWNER}.failover alternates must be http(s) base URLs like "
            f"'http://127.0.0.1:8081', got {name!r}"
        )
    return name


def _methods(value: object) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(
            f"{_OWNER}.retry_methods must be a collection of method names, "
            f"got {type(value).__name__} {value!r}"
        )
    methods: set[str] = set()
    for method in value:
        if not isinstance(method, str) or not method.strip():
            raise TypeError(f"{_OWNER}.retry_methods must hold method names, got {method!r}")
        methods.add(method.strip().upper())
    return frozenset(methods)


def _statuses(name: str, value: object) -> frozenset[int]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(
            f"{_OWNER}.{name} must be a collection of status codes, "
            f"got {type(value).__name__} {value!r}"
        )
    statuses: set[int] = set()
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int):
            raise TypeError(f"{_OWNER}.{name} must hold int status codes, got {status!r}")
        if not 100 <= status <= 599:
            raise ValueError(f"{_OWNER}.{name} must hold status codes 100..599, got {status}")
        statuses.add(status)
    return frozenset(statuses)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResilienceConfig:
    """How the resilient transport protects requests.

    The standard pipeline, from the outside in: total timeout, retry, a circuit breaker
    per authority (scheme, host, port), attempt timeout.

    Attributes:
        name: the pipelines' name (the logical span of a request) and the prefix of the
            breakers' names (``"httpx http://host:port"``).
        max_attempts: attempts of one retryable request, the first included (1: no retry).
        backoff: delay before each retry when the server sends no ``Retry-After``.
        total_timeout: seconds for the whole request, retries and waits included
            (``None``: no limit).
        attempt_timeout: seconds for one attempt (``None``: no limit). Both timeouts also
            cap the httpx connect, read, write and pool timeouts of each attempt.
        retry_methods: methods that are retried (upper case). Default: the idempotent ones.
        retry_statuses: response statuses that are retried. When retries run out, the last
            such response is returned as is.
        failure_statuses: response statuses the breaker counts as failures (transport
            errors always count). Default: 429 and every 5xx.
        failure_threshold: consecutive failures that open an authority's breaker.
        breaker_timeout: seconds an open breaker waits before a trial request.
        max_breakers: the most authorities with a breaker at once.
        max_retry_after: cap on a server's ``Retry-After``, in seconds.
        failover: alternates per authority: keys are ``scheme://host:port`` (or a bare
            ``host:port``, read as http), values a :class:`~otel_resilience.FailoverConfig`
            whose alternates are base URLs (``"http://127.0.0.1:8081"``), tried in order
            while the primary's breaker is open. A sequence of base URLs is accepted too.

    Example:
        >>> config = HttpResilienceConfig(max_attempts=4, failover={
        ...     "api.example.com:443": ["https://api-backup.example.com"]})
        >>> config.failover["http://api.example.com:443"].alternates
        ('https://api-backup.example.com',)
    """

    name: str = DEFAULT_NAME
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: Backoff = field(default_factory=_default_backoff)
    total_timeout: float | None = DEFAULT_TOTAL_TIMEOUT
    attempt_timeout: float | None = DEFAULT_ATTEMPT_TIMEOUT
    retry_methods: frozenset[str] = DEFAULT_RETRY_METHODS
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    failure_statuses: frozenset[int] = DEFAULT_FAILURE_STATUSES
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    breaker_timeout: float = DEFAULT_BREAKER_TIMEOUT
    max_breakers: int = DEFAULT_MAX_BREAKERS
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    failover: Mapping[str, FailoverConfig] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        name: object = self.name
        if not isinstance(name, str) or not name:
            raise TypeError(f"{_OWNER}.name must be a non-empty str, got {self.name!r}")
        check_int(_OWNER, "max_attempts", self.max_attempts)
        if not callable(getattr(self.backoff, "delay", None)):
            raise TypeError(
                f"{_OWNER}.backoff must be a backoff strategy with a delay() method, "
                f"got {type(self.backoff).__name__}"
            )
        total = check_optional_number(_OWNER, "total_timeout", self.total_timeout)
        attempt = check_optional_number(_OWNER, "attempt_timeout", self.attempt_timeout)
        if total is not None and attempt is not None and attempt > total:
            raise ValueError(
                f"{_OWNER}.attempt_timeout must be <= total_timeout, got {attempt:g} > {total:g}"
            )
        object.__setattr__(self, "total_timeout", total)
        object.__setattr__(self, "attempt_timeout", attempt)
        object.__setattr__(self, "retry_methods", _methods(self.retry_methods))
        object.__setattr__(self, "retry_statuses", _statuses("retry_statuses", self.retry_statuses))
        object.__setattr__(
            self, "failure_statuses", _statuses("failure_statuses", self.failure_statuses)
        )
        check_int(_OWNER, "failure_threshold", self.failure_threshold)
        object.__setattr__(
            self, "breaker_timeout", check_number(_OWNER, "breaker_timeout", self.breaker_timeout)
        )
        check_int(_OWNER, "max_breakers", self.max_breakers)
        object.__setattr__(
            self,
            "max_retry_after",
            check_number(_OWNER, "max_retry_after", self.max_retry_after, allow_minimum=True),
        )
        object.__setattr__(self, "failover", self._check_failover(self.failover))

    @staticmethod
    def _check_failover(value: object) -> Mapping[str, FailoverConfig]:
        if not isinstance(value, Mapping):
            raise TypeError(
                f"{_OWNER}.failover must be a mapping of authority to FailoverConfig, "
                f"got {type(value).__name__}"
            )
        checked: dict[str, FailoverConfig] = {}
        for key, given in value.items():
            target = given
            if not isinstance(key, str) or not key:
                raise TypeError(f"{_OWNER}.failover keys must be authorities, got {key!r}")
            try:
                authority = authority_key(key)
            except (httpx.InvalidURL, TypeError) as error:
                raise ValueError(
                    f"{_OWNER}.failover key {key!r} is not an authority: {error}"
                ) from None
            if not isinstance(target, FailoverConfig):
                if isinstance(target, str) or not isinstance(target, Iterable):
                    raise TypeError(
                        f"{_OWNER}.failover[{key!r}] must be a FailoverConfig or a sequence "
                        f"of base URLs, got {type(target).__name__}"
                    )
                target = FailoverConfig(tuple(target))
            for alternate in target.alternates:
                _check_base_url(alternate)
            if authority in checked:
                raise ValueError(f"{_OWNER}.failover names {authority} twice")
            checked[authority] = target
        return MappingProxyType(checked)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> HttpResilienceConfig:
        """Build a config from ``OTEL_RESILIENCE_HTTPX_*`` variables (and ``overrides``).

        Variables (unset or empty ones keep the default): ``_NAME``, ``_MAX_ATTEMPTS``,
        ``_TOTAL_TIMEOUT``, ``_ATTEMPT_TIMEOUT`` (seconds, or ``none``), ``_RETRY_METHODS``
        and ``_RETRY_STATUSES`` and ``_FAILURE_STATUSES`` (comma-separated),
        ``_FAILURE_THRESHOLD``, ``_BREAKER_TIMEOUT``, ``_MAX_BREAKERS``,
        ``_MAX_RETRY_AFTER`` and ``_FAILOVER`` (``authority=alt1|alt2,authority2=alt3``).
        A bad value raises :class:`ValueError` naming the variable.

        Example:
            >>> config = HttpResilienceConfig.from_env(
            ...     {"OTEL_RESILIENCE_HTTPX_MAX_ATTEMPTS": "5",
            ...      "OTEL_RESILIENCE_HTTPX_RETRY_METHODS": "get, post"})
            >>> config.max_attempts, sorted(config.retry_methods)
            (5, ['GET', 'POST'])
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for suffix, (field_name, parse) in _ENV_FIELDS.items():
            variable = ENV_PREFIX + suffix
            raw = env.get(variable, "").strip()
            if not raw:
                continue
            try:
                values[field_name] = parse(raw)
            except (ValueError, TypeError) as error:
                raise ValueError(f"{variable}={raw!r} is invalid: {error}") from None
        values.update(overrides)
        try:
            return cls(**values)  # type: ignore[arg-type]
        except (ValueError, TypeError) as error:
            named = [
                ENV_PREFIX + suffix
                for suffix, (field_name, _) in _ENV_FIELDS.items()
                if field_name in values and f".{field_name} " in f"{error} "
            ]
            if not named:
                raise
            raise type(error)(f"{', '.join(named)}: {error}") from None


def _env_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"expected an integer, got {raw!r}") from None


def _env_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number of seconds, got {raw!r}")
    return value


def _env_optional_float(raw: str) -> float | None:
    if raw.lower() in ("none", "off"):
        return None
    return _env_float(raw)


def _env_list(raw: str) -> list[str]:
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise ValueError(f"expected a comma-separated list without empty items, got {raw!r}")
    return items


def _env_statuses(raw: str) -> frozenset[int]:
    return frozenset(_env_int(item) for item in _env_list(raw))


def _env_failover(raw: str) -> dict[str, FailoverConfig]:
    failover: dict[str, FailoverConfig] = {}
    for item in _env_list(raw):
        authority, sep, alternates = item.partition("=")
        names = [name.strip() for name in alternates.split("|")]
        if not sep or not authority.strip() or not all(names):
            raise ValueError(f"expected authority=alt1|alt2, got {item!r}")
        failover[authority.strip()] = FailoverConfig(tuple(names))
    return failover


_ENV_FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "NAME": ("name", str),
    "MAX_ATTEMPTS": ("max_attempts", _env_int),
    "TOTAL_TIMEOUT": ("total_timeout", _env_optional_float),
    "ATTEMPT_TIMEOUT": ("attempt_timeout", _env_optional_float),
    "RETRY_METHODS": ("retry_methods", _env_list),
    "RETRY_STATUSES": ("retry_statuses", _env_statuses),
    "FAILURE_STATUSES": ("failure_statuses", _env_statuses),
    "FAILURE_THRESHOLD": ("failure_threshold", _env_int),
    "BREAKER_TIMEOUT": ("breaker_timeout", _env_float),
    "MAX_BREAKERS": ("max_breakers", _env_int),
    "MAX_RETRY_AFTER": ("max_retry_after", _env_float),
    "FAILOVER": ("failover", _env_failover),
}
