"""A pipeline: strategies composed in one fixed, documented order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from otel_resilience._clock import SYSTEM_CLOCK, Clock
from otel_resilience._validation import check_number, is_async_callable
from otel_resilience.breaker import CircuitBreaker
from otel_resilience.bulkhead import Bulkhead
from otel_resilience.fallback import Fallback
from otel_resilience.retry import Retry, RetryConfig
from otel_resilience.telemetry._default import resolve_listener
from otel_resilience.timeout import Timeout

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from otel_resilience._events import CallObserver, ResilienceListener
    from otel_resilience.orchestrator import ErrorRecoveryOrchestrator
    from otel_resilience.retry import RetryBudget

__all__ = ["Pipeline"]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


def _as_timeout(owner: str, field: str, value: Timeout | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, Timeout):
        return value.seconds
    return check_number(owner, field, value)


def _check_type(field: str, value: object, expected: type) -> None:
    if value is not None and not isinstance(value, expected):
        raise TypeError(
            f"Pipeline.{field} must be a {expected.__name__}, got {type(value).__name__}"
        )


class Pipeline:
    """Strategies composed in one fixed order, run by the sync or the async driver.

    From the outside in::

        fallback -> total timeout -> retry -> circuit breaker -> attempt timeout
                 -> bulkhead -> your function

    So the fallback sees the final outcome after every retry; the total timeout bounds
    everything including retry sleeps; each retry attempt asks the breaker for a permit
    (a rejection is the attempt's outcome); the attempt timeout bounds one attempt and
    counts as a breaker failure; the bulkhead limits concurrency of the calls that
    actually run. A bulkhead rejection releases the breaker permit without counting:
    local overload says nothing about the dependency's health. Every slot is optional.

    Args:
        name: the pipeline's name in telemetry (the logical span name, the ``pipeline``
            attribute). Keep it low-cardinality.
        fallback: a :class:`Fallback`.
        timeout: a total timeout for the call (a :class:`Timeout` or seconds).
        retry: a :class:`Retry`, or a :class:`RetryConfig` (then run on this pipeline's
            clock).
        circuit_breaker: a :class:`CircuitBreaker` (share one instance between pipelines
            that call the same dependency).
        attempt_timeout: a timeout per attempt (a :class:`Timeout` or seconds).
        bulkhead: a :class:`Bulkhead`.
        clock: time source for timeouts, durations and sleeps; by default the clock of the
            retry, else of the breaker, else the system clock.
        listener: the telemetry listener. Default: the OpenTelemetry adapter on the global
            providers (which records nothing until an SDK is set up).
        tracer_provider: report to these OpenTelemetry providers instead of the global
            ones (not with ``listener``).
        meter_provider: as ``tracer_provider``.
        telemetry: ``False`` switches reporting off for this pipeline.
        orchestrator: an :class:`~otel_resilience.ErrorRecoveryOrchestrator` consulted
            inline when an attempt fails: its decision can stop further retries and open
            the breaker at once. Without a ``circuit_breaker``, the pipeline uses the
            orchestrator's breaker of ``component``.
        component: what failures are attributed to (default: ``name``).

    Example:
        >>> from otel_resilience import CircuitBreaker, Pipeline, RetryConfig
        >>> from otel_resilience.testing import FakeClock
        >>> clock = FakeClock()
        >>> pipeline = Pipeline(
        ...     name="inventory",
        ...     retry=RetryConfig(max_attempts=3),
        ...     circuit_breaker=CircuitBreaker("inventory", clock=clock),
        ...     clock=clock,
        ... )
        >>> pipeline.call(lambda: 42)
        42
    """

    __slots__ = (
        "attempt_timeout",
        "awaits_breaker",
        "budget",
        "bulkhead",
        "checks_result",
        "circuit_breaker",
        "clock",
        "component",
        "fallback",
        "fast",
        "gated",
        "listener",
        "listener_enabled",
        "name",
        "observes_outcomes",
        "orchestrator",
        "passthrough",
        "retry",
        "start_call",
        "timed",
        "timeout",
    )

    def __init__(
        self,
        *,
        name: str = "pipeline",
        fallback: Fallback | None = None,
        timeout: Timeout | float | None = None,
        retry: Retry | RetryConfig | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        attempt_timeout: Timeout | float | None = None,
        bulkhead: Bulkhead | None = None,
        clock: Clock | None = None,
        listener: ResilienceListener | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        telemetry: bool = True,
        orchestrator: ErrorRecoveryOrchestrator | None = None,
        component: str | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"Pipeline.name must be a str, got {type(name).__name__} {name!r}")
        if not name:
            raise ValueError("Pipeline.name must not be empty")
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(
                f"Pipeline.clock must implement the Clock protocol, got {type(clock).__name__}"
            )
        listener = resolve_listener(
            "Pipeline",
            listener,
            telemetry=telemetry,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        if listener is not None and not (
            callable(getattr(listener, "start_call", None))
            and callable(getattr(listener, "on_event", None))
        ):
            raise TypeError(
                "Pipeline.listener must implement ResilienceListener (start_call, on_event), "
                f"got {type(listener).__name__}"
            )
        _check_type("fallback", fallback, Fallback)
        _check_type("circuit_breaker", circuit_breaker, CircuitBreaker)
        _check_type("bulkhead", bulkhead, Bulkhead)
        if retry is not None and not isinstance(retry, Retry | RetryConfig):
            raise TypeError(
                f"Pipeline.retry must be a Retry or RetryConfig, got {type(retry).__name__}"
            )
        if clock is None:
            if isinstance(retry, Retry):
                clock = retry.clock
            elif circuit_breaker is not None:
                clock = circuit_breaker.clock
            else:
                clock = SYSTEM_CLOCK
        if isinstance(retry, RetryConfig):
            retry = Retry(retry, clock=clock, name=name)
        checked: object = component
        if checked is not None and (not isinstance(checked, str) or not checked):
            raise TypeError(f"Pipeline.component must be a non-empty str, got {component!r}")
        owner: str = name if component is None else component
        if orchestrator is not None:
            if not callable(getattr(orchestrator, "consult", None)):
                raise TypeError(
                    "Pipeline.orchestrator must be an ErrorRecoveryOrchestrator, "
                    f"got {type(orchestrator).__name__}"
                )
            if circuit_breaker is None:
                # The orchestrator keeps one breaker per component: use it.
                circuit_breaker = orchestrator.breaker(owner)
        self.name = name
        self.fallback = fallback
        self.timeout = _as_timeout("Pipeline", "timeout", timeout)
        self.retry: Retry | None = retry
        self.circuit_breaker = circuit_breaker
        self.attempt_timeout = _as_timeout("Pipeline", "attempt_timeout", attempt_timeout)
        self.bulkhead = bulkhead
        self.clock: Clock = clock
        self.listener = listener
        self.orchestrator = orchestrator
        self.component = owner
        # An optional listener method: while it says False, the drivers skip events.
        self.listener_enabled: Callable[[], bool] | None = getattr(listener, "enabled", None)
        # Bound once: the drivers call it on every protected call.
        self.start_call: Callable[[str], CallObserver | None] | None = (
            None if listener is None else listener.start_call
        )
        # A listener idle until OpenTelemetry's global providers are set: while both are
        # unset, the drivers read the two globals instead of calling start_call.
        self.gated = bool(getattr(listener, "idle_until_global_providers", False))
        self.budget: RetryBudget | None = retry.config.budget if retry is not None else None
        # Flags the drivers read so the success path skips what is not configured.
        self.checks_result = (retry is not None and retry.config.retry_on_result is not None) or (
            fallback is not None and fallback.on_result is not None
        )
        self.observes_outcomes = retry is not None and retry.adaptive
        # Whether the driver must read the clock at the start of every call.
        self.timed = (
            self.timeout is not None
            or self.attempt_timeout is not None
            or (circuit_breaker is not None and circuit_breaker.needs_duration)
            or (retry is not None and retry.config.deadline_seconds is not None)
        )

        # A breaker whose state lives in an asyncio store: the async driver awaits it.
        self.awaits_breaker = circuit_breaker is not None and circuit_breaker.asynchronous
        # The drivers' fast path: only a breaker and/or a retry (without deadline, budget or
        # adaptive backoff), so the success path needs no clock read and no allocation.
        self.fast = not (
            self.timed
            or self.awaits_breaker
            or self.budget is not None
            or bulkhead is not None
            or self.checks_result
            or self.observes_outcomes
        )
        # A rejection may propagate from the breaker untouched when nothing would act on it.
        self.passthrough = fallback is None and (retry is None or not retry.config.retry_rejections)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` through the pipeline (sync driver)."""
        from otel_resilience.pipeline._sync import run_sync  # noqa: PLC0415 - import cycle

        if is_async_callable(fn):
            raise TypeError(f"pipeline {self.name!r}: call() got a coroutine function; use acall()")
        self.check_sync_use()
        return run_sync(self, fn, *args, **kwargs)

    def check_sync_use(self) -> None:
        """Raise ``TypeError`` if the sync driver cannot run this pipeline.

        A breaker whose state lives in an asyncio store can only be awaited. Checked by
        ``call()`` and when a sync function or generator is decorated, never per call.
        """
        if self.awaits_breaker:
            raise TypeError(
                f"pipeline {self.name!r}: its circuit breaker keeps its state in an asyncio "
                "store; call it from async code (acall, a coroutine function)"
            )

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` through the pipeline (async driver)."""
        from otel_resilience.pipeline._async import run_async  # noqa: PLC0415 - import cycle

        return await run_async(self, fn, *args, **kwargs)

    def __call__(self, fn: F) -> F:
        """Decorate ``fn`` (sync, async, generator, method): same as ``resilient(self)``."""
        from otel_resilience.middleware import resilient  # noqa: PLC0415 - import cycle

        return resilient(self)(fn)

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}"]
        for slot in ("fallback", "timeout", "retry", "circuit_breaker", "attempt_timeout"):
            value = getattr(self, slot)
            if value is not None:
                parts.append(f"{slot}={value!r}")
        if self.bulkhead is not None:
            parts.append(f"bulkhead={self.bulkhead!r}")
        return f"Pipeline({', '.join(parts)})"
