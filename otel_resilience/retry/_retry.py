"""Retry: configuration and the sans-IO decision of whether, and after how long, to retry."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from otel_resilience._clock import SYSTEM_CLOCK, Clock, RandomSource, default_random
from otel_resilience._errors import BulkheadFullError, CircuitOpenError
from otel_resilience._standalone import Standalone
from otel_resilience._testmode import TEST_MODE
from otel_resilience._validation import (
    check_callable,
    check_exception_types,
    check_int,
    check_number,
    check_optional_number,
)
from otel_resilience.backoff import Backoff, FullJitter, RecordingBackoff
from otel_resilience.retry._budget import RetryBudget

if TYPE_CHECKING:
    from otel_resilience._events import ResilienceListener
    from otel_resilience.pipeline import Pipeline

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_RETRY_AFTER",
    "Retry",
    "RetryConfig",
    "read_retry_after",
]

DEFAULT_MAX_ATTEMPTS = 3
"""All calls including the first."""
DEFAULT_MAX_RETRY_AFTER = 60.0
"""A server-directed delay longer than this is cut to this (seconds)."""


_REJECTIONS = (CircuitOpenError, BulkheadFullError)


def _default_backoff() -> Backoff:
    return FullJitter(initial=0.1, multiplier=2.0, max_delay=10.0)


ExceptionFilter: TypeAlias = (
    tuple[type[BaseException], ...] | type[BaseException] | Callable[[BaseException], bool]
)
"""Exception classes, or a predicate over the exception."""


def read_retry_after(error: BaseException | None, result: object) -> float | None:
    """Return the server-directed delay carried by ``error`` or ``result``, in seconds.

    Reads a ``retry_after`` attribute holding seconds (int or float) or a
    :class:`datetime.timedelta`. Negative, NaN or non-numeric values are ignored. This is
    the default ``RetryConfig.retry_after``; the httpx instrumentation supplies its own
    reader for the ``Retry-After`` header.
    """
    carrier = error if error is not None else result
    value = getattr(carrier, "retry_after", None)
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0:
        return None
    return seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    """How a :class:`Retry` decides.

    Attributes:
        max_attempts: all calls including the first (1 means no retry).
        backoff: delay before each retry, from :mod:`otel_resilience.backoff`. Default:
            full jitter from 0.1 s doubling up to 10 s.
        retry_on: exception classes (default ``(Exception,)``) or a predicate. Control
            flow (``CancelledError``, ``KeyboardInterrupt``, ``SystemExit``,
            ``GeneratorExit``) is never retried, whatever this says.
        retry_rejections: whether to retry a call that the pipeline's own circuit breaker
            or bulkhead rejected (:class:`CircuitOpenError`, :class:`BulkheadFullError`).
            Off by default: a rejection is the fail-fast signal, and retrying it defeats
            the breaker. When on, ``CircuitOpenError.retry_after`` is honoured as a
            server-directed delay, so the retry waits exactly until the breaker half-opens.
        retry_on_result: optional predicate; a returned value for which it is true is
            retried like a failure (and returned as is when retries run out).
        deadline_seconds: optional budget of time for the whole call, from its start: no
            sleep extends past it and no attempt starts after it.
        retry_after: reads a server-directed delay from the exception or result; when it
            gives a value, that value (capped by ``max_retry_after``) replaces the backoff.
        max_retry_after: cap on server-directed delays, in seconds.
        budget: an optional :class:`RetryBudget` shared across calls.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: Backoff = field(default_factory=_default_backoff)
    retry_on: ExceptionFilter = (Exception,)
    retry_rejections: bool = False
    retry_on_result: Callable[[Any], bool] | None = None
    deadline_seconds: float | None = None
    retry_after: Callable[[BaseException | None, Any], float | None] = read_retry_after
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    budget: RetryBudget | None = None

    def __post_init__(self) -> None:
        owner = "RetryConfig"
        check_int(owner, "max_attempts", self.max_attempts)
        if not callable(getattr(self.backoff, "delay", None)):
            raise TypeError(
                f"{owner}.backoff must be a backoff strategy with a delay() method, "
                f"got {type(self.backoff).__name__} {self.backoff!r}"
            )
        if isinstance(self.retry_on, type) or not callable(self.retry_on):
            object.__setattr__(
                self, "retry_on", check_exception_types(owner, "retry_on", self.retry_on)
            )
        if self.retry_on_result is not None:
            check_callable(owner, "retry_on_result", self.retry_on_result)
        if not isinstance(self.retry_rejections, bool):
            raise TypeError(
                f"{owner}.retry_rejections must be a bool, got {self.retry_rejections!r}"
            )
        check_optional_number(owner, "deadline_seconds", self.deadline_seconds)
        check_callable(owner, "retry_after", self.retry_after)
        check_number(owner, "max_retry_after", self.max_retry_after, allow_minimum=True)
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            raise TypeError(
                f"{owner}.budget must be a RetryBudget, got {type(self.budget).__name__}"
            )


class RetryState:
    """Per-call retry bookkeeping, owned by one call (never shared)."""

    __slots__ = ("attempt", "deadline", "previous_delay")

    def __init__(self, deadline: float | None) -> None:
        self.attempt = 1
        self.previous_delay = 0.0
        self.deadline = deadline


class Retry(Standalone):
    """Retries a failed call, sans-IO: it says "retry after d seconds" or "give up".

    The pipeline drivers do the sleeping and calling. Used alone, ``call``, ``acall``
    and decorator use (``@Retry(config)``) run it through the same drivers.

    Args:
        config: the :class:`RetryConfig` (default: ``RetryConfig()``).
        clock: time source for deadlines and sleeps (default: the system clock).
        rng: random source for jitter (default: a new ``random.Random``).
        name: the name telemetry reports for a pipeline made of this retry alone.
        listener: telemetry listener for such a pipeline.

    Example:
        >>> from otel_resilience import Retry, RetryConfig
        >>> from otel_resilience.testing import FakeClock
        >>> clock = FakeClock()
        >>> calls = []
        >>> def flaky():
        ...     calls.append(clock.monotonic())
        ...     if len(calls) < 3:
        ...         raise ConnectionError("not yet")
        ...     return "ok"
        >>> Retry(RetryConfig(max_attempts=3), clock=clock).call(flaky)
        'ok'
        >>> len(calls)
        3
    """

    __slots__ = (
        "_classify",
        "_pipeline",
        "_plain",
        "_record",
        "_retry_types",
        "clock",
        "config",
        "listener",
        "name",
        "rng",
    )

    def __init__(
        self,
        config: RetryConfig | None = None,
        *,
        clock: Clock | None = None,
        rng: RandomSource | None = None,
        name: str = "retry",
        listener: ResilienceListener | None = None,
    ) -> None:
        if config is None:
            config = RetryConfig()
        elif not isinstance(config, RetryConfig):
            raise TypeError(f"Retry.config must be a RetryConfig, got {type(config).__name__}")
        self.config = config
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self.rng: RandomSource = rng if rng is not None else default_random()
        self.name = name
        self.listener = listener
        retry_on = config.retry_on
        # Exception classes are matched with one isinstance; a predicate is called.
        self._retry_types: tuple[type[BaseException], ...] | None = (
            retry_on if isinstance(retry_on, tuple) else None
        )
        self._classify: Callable[[BaseException], bool] | None = (
            None if isinstance(retry_on, tuple) else retry_on  # type: ignore[assignment]
        )
        backoff = config.backoff
        self._record = backoff.record if isinstance(backoff, RecordingBackoff) else None
        self._pipeline: Pipeline | None = None
        # The plain case, decided by fast_delay: exception classes, the default reader of
        # server-directed delays, no shared budget.
        self._plain = (
            self._retry_types is not None
            and config.retry_after is read_retry_after
            and config.budget is None
        )

    def _build_pipeline(self) -> Pipeline:
        from otel_resilience.pipeline import Pipeline  # noqa: PLC0415 - import cycle

        return Pipeline(name=self.name, retry=self, clock=self.clock, listener=self.listener)

    @property
    def adaptive(self) -> bool:
        """Whether the backoff learns from outcomes (the drivers then report every attempt)."""
        return self._record is not None

    def start(self, started_at: float) -> RetryState:
        """Return the state of a call that started at clock time ``started_at``.

        The drivers create it lazily, at the first failure, so a call that succeeds at once
        allocates nothing. (They count the call against the budget at its start.)
        """
        seconds = self.config.deadline_seconds
        return RetryState(None if seconds is None else started_at + seconds)

    def observe(self, *, success: bool) -> None:
        """Feed an attempt's outcome to an adaptive backoff (no-op for the others)."""
        if self._record is not None:
            self._record(success)

    def is_retryable_error(self, error: BaseException) -> bool:
        """Whether ``error`` may be retried (control flow never is; rejections on request)."""
        if not isinstance(error, Exception):
            return False
        if isinstance(error, _REJECTIONS) and not self.config.retry_rejections:
            return False
        types = self._retry_types
        if types is not None:
            return isinstance(error, types)
        return bool(self._classify(error))  # type: ignore[misc]

    def is_retryable_result(self, result: object) -> bool:
        """Whether a returned value asks for a retry."""
        predicate = self.config.retry_on_result
        return predicate is not None and bool(predicate(result))

    def fast_delay(self, attempt: int, previous_delay: float, error: BaseException) -> float | None:
        """The delay before the next attempt when the plain rules settle it, else ``None``.

        The plain rules: a retry configured with exception classes, the default
        ``retry_after`` reader and no budget, an error of those classes carrying no
        server-directed delay, and attempts left. Anything else (giving up included) is
        ``None``: ask :meth:`decide`, which has the whole decision. It changes no state and
        ignores deadlines (the drivers' fast path has none).
        """
        if (
            not self._plain
            or TEST_MODE.enabled
            or attempt >= self.config.max_attempts
            or not isinstance(error, self._retry_types)  # type: ignore[arg-type]
            or isinstance(error, _REJECTIONS)
            or getattr(error, "retry_after", None) is not None
        ):
            return None
        return self.config.backoff.delay(attempt, self.rng, previous_delay)

    def decide(
        self,
        state: RetryState,
        error: BaseException | None,
        result: object,
        now: float,
    ) -> float | str:
        """Decide after attempt ``state.attempt`` failed with ``error`` (or ``result``).

        The whole sans-IO retry decision in one call (it sits on the failure path of every
        protected call). Returns the delay in seconds before the next attempt, and moves
        ``state`` to it; or the reason for giving up: ``"not_retryable"``,
        ``"max_attempts"``, ``"deadline"`` or ``"budget"``. ``now`` is read only against
        a deadline.
        """
        if error is not None and state.deadline is None:
            delay = self.fast_delay(state.attempt, state.previous_delay, error)
            if delay is not None:
                state.previous_delay = delay
                state.attempt += 1
                return delay
        config = self.config
        if error is not None:
            if not self.is_retryable_error(error):
                return "not_retryable"
        elif not self.is_retryable_result(result):
            return "not_retryable"
        limit = config.max_attempts
        testing = TEST_MODE.enabled
        if testing and TEST_MODE.attempts < limit:
            limit = TEST_MODE.attempts
        if state.attempt >= limit:
            return "max_attempts"
        reader = config.retry_after
        if reader is read_retry_after:
            # The default reader, short-cut for the usual error that carries no delay.
            carrier = error if error is not None else result
            server_delay = (
                None
                if getattr(carrier, "retry_after", None) is None
                else read_retry_after(error, result)
            )
        else:
            server_delay = reader(error, result)
        if server_delay is not None:
            delay = min(server_delay, config.max_retry_after)
        else:
            delay = config.backoff.delay(state.attempt, self.rng, state.previous_delay)
        if testing:
            delay = 0.0
        if state.deadline is not None and now + delay >= state.deadline:
            return "deadline"
        if config.budget is not None and not config.budget.try_spend():
            return "budget"
        state.previous_delay = delay
        state.attempt += 1
        return delay

    def __repr__(self) -> str:
        return f"Retry({self.config!r}, name={self.name!r})"
