"""The circuit breaker's configuration: a frozen, validated dataclass and its defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from otel_resilience._validation import (
    check_callable,
    check_exception_types,
    check_int,
    check_number,
    check_optional_number,
    check_ratio,
)

if TYPE_CHECKING:
    from otel_resilience.backoff import Backoff

__all__ = [
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_HALF_OPEN_MAX_CALLS",
    "DEFAULT_MINIMUM_CALLS",
    "DEFAULT_PROBE_LEASE_SECONDS",
    "DEFAULT_RECORD_EXCEPTIONS",
    "DEFAULT_SUCCESS_THRESHOLD",
    "DEFAULT_TIMEOUT_SECONDS",
    "MAX_SLIDING_WINDOW_SIZE",
    "CircuitBreakerConfig",
    "ExceptionFilter",
]

DEFAULT_FAILURE_THRESHOLD = 5
"""Consecutive failures that open a closed breaker."""

DEFAULT_SUCCESS_THRESHOLD = 3
"""Successful trial calls that close a half-open breaker."""

DEFAULT_TIMEOUT_SECONDS = 60.0
"""How long an opened breaker stays open before it admits trial calls."""

DEFAULT_HALF_OPEN_MAX_CALLS = 5
"""Trial calls a half-open breaker lets run at the same time."""

DEFAULT_RECORD_EXCEPTIONS: tuple[type[BaseException], ...] = (Exception,)
"""Exceptions that count as failures unless ignored: every ordinary exception."""

DEFAULT_MINIMUM_CALLS = 10
"""Calls the sliding window must hold before its rates can open the breaker."""

DEFAULT_PROBE_LEASE_SECONDS = 60.0
"""How long a trial call may hold its half-open slot before the slot is reclaimed."""

MAX_SLIDING_WINDOW_SIZE = 1_000_000
"""Largest count window accepted (one byte per call: one megabyte at most)."""

ExceptionFilter: TypeAlias = tuple[type[BaseException], ...] | Callable[[BaseException], bool]
"""Exception classes (matched with ``isinstance``) or a predicate over the exception."""

_OWNER = "CircuitBreakerConfig"


def _check_filter(field: str, value: object, *, record: bool) -> ExceptionFilter:
    # A class is callable too, so classes and containers are tested before predicates.
    if isinstance(value, type | tuple | list | set | frozenset):
        types = check_exception_types(_OWNER, field, value)
        if record:
            for cls in types:
                if not issubclass(cls, Exception):
                    raise TypeError(
                        f"{_OWNER}.{field} must contain Exception subclasses: "
                        f"{cls.__name__} is control flow and is never counted"
                    )
        return types
    if callable(value):
        return cast("Callable[[BaseException], bool]", value)
    raise TypeError(
        f"{_OWNER}.{field} must be exception classes or a predicate, "
        f"got {type(value).__name__} {value!r}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerConfig:
    """How a :class:`~otel_resilience.CircuitBreaker` decides to open and close.

    A closed breaker opens when ``failure_threshold`` failures happen in a row, or, with a
    sliding window, when the failure rate or the slow-call rate over the window reaches its
    threshold once the window holds ``minimum_calls`` calls. After the open duration
    (``timeout_seconds``, or ``open_backoff``) it is half-open: up to
    ``half_open_max_calls`` trial calls run at once; ``success_threshold`` trial successes
    close it and any trial failure opens it again.

    An exception is classified in this order: control flow (anything that is not an
    :class:`Exception`) is never counted; a match of ``ignore_exceptions`` counts as
    neither success nor failure; a match of ``record_exceptions`` is a failure; any other
    exception counts as a **success** (as in Resilience4j: the dependency answered, the
    caller's code failed). A returned value is a failure when ``record_result`` says so.

    Every numeric field rejects bools, strings, NaN and infinity; errors name the field.

    Attributes:
        failure_threshold: consecutive failures that open a closed breaker (>= 1).
        success_threshold: trial successes that close a half-open breaker (>= 1).
        timeout_seconds: seconds an opened breaker stays open before it turns half-open
            (> 0). Unused when ``open_backoff`` is set.
        half_open_max_calls: trial calls admitted at the same time when half-open (>= 1).
        record_exceptions: exception classes, or a predicate, that count as failures.
            Only :class:`Exception` subclasses are accepted.
        ignore_exceptions: exception classes, or a predicate, that count as nothing and
            give back a half-open slot. Wins over ``record_exceptions``.
        failure_rate_threshold: failure ratio in ``(0, 1]`` over the sliding window that
            opens the breaker; needs a window.
        minimum_calls: calls the window must hold before rates are evaluated (>= 1; at most
            ``sliding_window_size`` with a count window).
        sliding_window_size: count window: the last N calls (1 to
            :data:`MAX_SLIDING_WINDOW_SIZE`).
        sliding_window_seconds: time window: the calls of the last N seconds, kept in ten
            buckets (see :class:`~otel_resilience.breaker._window.TimeWindow`).
        slow_call_duration_seconds: a call taking at least this long is slow (> 0). Set
            together with ``slow_call_rate_threshold``.
        slow_call_rate_threshold: slow-call ratio in ``(0, 1]`` over the window that opens
            the breaker; needs a window and ``slow_call_duration_seconds``.
        record_result: predicate over a returned value; ``True`` means the call failed.
        probe_lease_seconds: seconds a trial call may hold its half-open slot; after
            that the slot is reclaimed and the trial's late result ignored (> 0, or
            ``None`` for no lease).
        open_backoff: when set, the n-th consecutive opening (without a close in between)
            lasts ``open_backoff.delay(n, rng, previous)`` seconds instead of
            ``timeout_seconds``. Called while the breaker's state lock is held, so it
            must be a fast, pure computation (every strategy in
            :mod:`otel_resilience.backoff` is).

    Example:
        >>> config = CircuitBreakerConfig(
        ...     failure_rate_threshold=0.5, sliding_window_size=20, minimum_calls=10
        ... )
        >>> config.failure_threshold
        5
    """

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    half_open_max_calls: int = DEFAULT_HALF_OPEN_MAX_CALLS
    record_exceptions: ExceptionFilter = DEFAULT_RECORD_EXCEPTIONS
    ignore_exceptions: ExceptionFilter = ()
    failure_rate_threshold: float | None = None
    minimum_calls: int = DEFAULT_MINIMUM_CALLS
    sliding_window_size: int | None = None
    sliding_window_seconds: float | None = None
    slow_call_duration_seconds: float | None = None
    slow_call_rate_threshold: float | None = None
    record_result: Callable[[Any], bool] | None = None
    probe_lease_seconds: float | None = DEFAULT_PROBE_LEASE_SECONDS
    open_backoff: Backoff | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalised values are stored this way
        check_int(_OWNER, "failure_threshold", self.failure_threshold)
        check_int(_OWNER, "success_threshold", self.success_threshold)
        set_(self, "timeout_seconds", check_number(_OWNER, "timeout_seconds", self.timeout_seconds))
        check_int(_OWNER, "half_open_max_calls", self.half_open_max_calls)
        set_(
            self,
            "record_exceptions",
            _check_filter("record_exceptions", self.record_exceptions, record=True),
        )
        set_(
            self,
            "ignore_exceptions",
            _check_filter("ignore_exceptions", self.ignore_exceptions, record=False),
        )
        set_(
            self,
            "failure_rate_threshold",
            check_ratio(_OWNER, "failure_rate_threshold", self.failure_rate_threshold),
        )
        check_int(_OWNER, "minimum_calls", self.minimum_calls)
        if self.sliding_window_size is not None:
            check_int(_OWNER, "sliding_window_size", self.sliding_window_size)
            if self.sliding_window_size > MAX_SLIDING_WINDOW_SIZE:
                raise ValueError(
                    f"{_OWNER}.sliding_window_size must be <= {MAX_SLIDING_WINDOW_SIZE}, "
                    f"got {self.sliding_window_size}"
                )
        set_(
            self,
            "sliding_window_seconds",
            check_optional_number(_OWNER, "sliding_window_seconds", self.sliding_window_seconds),
        )
        set_(
            self,
            "slow_call_duration_seconds",
            check_optional_number(
                _OWNER, "slow_call_duration_seconds", self.slow_call_duration_seconds
            ),
        )
        set_(
            self,
            "slow_call_rate_threshold",
            check_ratio(_OWNER, "slow_call_rate_threshold", self.slow_call_rate_threshold),
        )
        if self.record_result is not None:
            check_callable(_OWNER, "record_result", self.record_result)
        set_(
            self,
            "probe_lease_seconds",
            check_optional_number(_OWNER, "probe_lease_seconds", self.probe_lease_seconds),
        )
        if self.open_backoff is not None and not callable(
            getattr(self.open_backoff, "delay", None)
        ):
            raise TypeError(
                f"{_OWNER}.open_backoff must have a delay(retry, rng, previous) method, "
                f"got {type(self.open_backoff).__name__} {self.open_backoff!r}"
            )
        self._check_combinations()

    def _check_combinations(self) -> None:
        if self.sliding_window_size is not None and self.sliding_window_seconds is not None:
            raise ValueError(
                f"{_OWNER}.sliding_window_size and {_OWNER}.sliding_window_seconds are "
                "exclusive: choose a count window or a time window"
            )
        if (self.slow_call_duration_seconds is None) != (self.slow_call_rate_threshold is None):
            raise ValueError(
                f"{_OWNER}.slow_call_duration_seconds and {_OWNER}.slow_call_rate_threshold "
                "must be set together (slow-call detection needs both)"
            )
        for field in ("failure_rate_threshold", "slow_call_rate_threshold"):
            if getattr(self, field) is not None and not self.has_window:
                raise ValueError(
                    f"{_OWNER}.{field} needs a sliding window: set sliding_window_size "
                    "or sliding_window_seconds"
                )
        if self.sliding_window_size is not None and self.minimum_calls > self.sliding_window_size:
            raise ValueError(
                f"{_OWNER}.minimum_calls ({self.minimum_calls}) must be <= "
                f"sliding_window_size ({self.sliding_window_size}), or rates would never "
                "be evaluated"
            )

    @property
    def has_window(self) -> bool:
        """Whether a sliding window (count or time) is configured."""
        return self.sliding_window_size is not None or self.sliding_window_seconds is not None

    @property
    def detects_slow_calls(self) -> bool:
        """Whether slow-call detection is configured (calls need their duration)."""
        return self.slow_call_duration_seconds is not None
