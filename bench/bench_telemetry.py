"""Telemetry benchmarks: what spans and metrics add to a breaker + retry success path.

Run by hand: ``uv run --group bench python bench/bench_telemetry.py [--quick]``. Three
settings, sync and async, each with retry (3 attempts) over a breaker and a first attempt
that succeeds:

* **Telemetry off, no SDK.** otel-resilience with its default telemetry (the process-wide
  listener on the global providers, which this process never sets) against the same
  pipeline with ``telemetry=False``.
* **Metrics only.** An SDK ``MeterProvider`` whose ``InMemoryMetricReader`` is collected
  only after timing; no tracing. otel-resilience gets ``meter_provider=``; the peers
  (backoff, tenacity, stamina over a breaker) and a hand-written breaker + retry record the
  same instruments by hand: a call counter, a call-duration histogram and an
  attempt-duration histogram.
* **Metrics and spans.** Add an SDK ``TracerProvider`` whose ``SimpleSpanProcessor``
  hands every span to an exporter that drops it. The peers and the hand-written
  reference add one INTERNAL call span and one child span per attempt, both made current,
  with the pipeline, attempt and outcome attributes otel-resilience sets.

Every contender gets its own providers. They are passed explicitly and never installed as
the global ones, so the first setting stays "no SDK" for the whole process.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiobreaker
import backoff
import circuitbreaker
import pybreaker
import stamina
import tenacity
from bench_sync import ATTEMPTS, FAILURE_THRESHOLD, disable_stamina_hooks, not_open_circuit
from harness import RESULT, BenchmarkError, Case, Decorator, Scenario, main, typed
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.metrics import Counter, Histogram, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider, SpanKind, Status, StatusCode, Tracer

import otel_resilience
from otel_resilience import CircuitBreaker, RetryConfig
from otel_resilience.telemetry import default_listener, names

__all__ = [
    "OPEN_SECONDS",
    "PIPELINE",
    "REFERENCE",
    "DiscardingMeterProvider",
    "DiscardingTracerProvider",
    "HandBreaker",
    "HandInstruments",
    "HandOpenError",
    "NullExporter",
    "Providers",
    "scenarios",
]

PIPELINE = "bench"
"""The pipeline name of every contender: span name, ``resilience.pipeline`` attribute."""

OPEN_SECONDS = 60.0
"""How long the hand-written breaker stays open (the peers' ``recovery_timeout``)."""

_ATTEMPT_NAME = f"{PIPELINE} {names.ATTEMPT_SPAN}"
_SUCCESS = "success"
_FAILURE = "failure"
_REJECTED = "rejected"
_CALL_ATTRIBUTES = {names.ATTR_PIPELINE: PIPELINE}
_SUCCESS_ATTRIBUTES = {names.ATTR_PIPELINE: PIPELINE, names.ATTR_OUTCOME: _SUCCESS}
_HAND_SCOPE = "bench.hand_instrumentation"

# The number of the running attempt, for hand-added attempt spans: the peers' retry loops
# do not tell a wrapped function which attempt it is.
_ATTEMPT: ContextVar[int] = ContextVar("bench_attempt", default=0)

AsyncFn = Callable[[], Coroutine[Any, Any, int]]


# -- SDK set-up, per contender ------------------------------------------------------------


class NullExporter(SpanExporter):
    """Drops every span, counting them and remembering their names for the checks."""

    def __init__(self) -> None:
        self.spans = 0
        self.names: set[str] = set()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Count and drop ``spans``."""
        self.spans += len(spans)
        for span in spans:
            self.names.add(span.name)
        return SpanExportResult.SUCCESS


class DiscardingMeterProvider(NoOpMeterProvider):
    """Instruments that drop every measurement at once.

    It is not the API's own no-op class, so otel-resilience takes it for a real provider
    and does all of its own work; only the SDK's share of the cost is gone.
    """


class DiscardingTracerProvider(NoOpTracerProvider):
    """Spans that record nothing; see :class:`DiscardingMeterProvider`."""


@dataclass(frozen=True, slots=True)
class Providers:
    """One contender's own providers: metrics always, spans when ``tracer_provider`` is set.

    SDK providers come with a metric reader collected only by :meth:`check` and, with
    spans, a :class:`NullExporter`; discarding providers come with neither.
    """

    meter_provider: metrics_api.MeterProvider
    reader: InMemoryMetricReader | None
    tracer_provider: trace_api.TracerProvider | None
    exporter: NullExporter | None

    @classmethod
    def discarding(cls, *, spans: bool) -> Providers:
        """Providers that drop everything: what remains is the contender's own work."""
        return cls(
            DiscardingMeterProvider(), None, DiscardingTracerProvider() if spans else None, None
        )

    @classmethod
    def create(cls, *, spans: bool) -> Providers:
        """Fresh SDK providers; the reader is collected only by :meth:`check`."""
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader])
        if not spans:
            return cls(meter_provider, reader, None, None)
        exporter = NullExporter()
        tracer_provider = TracerProvider()
        # Simple, not batch: each span is exported in the calling thread when it ends, so
        # the export is on the timed path; a BatchSpanProcessor would move it off-thread.
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        return cls(meter_provider, reader, tracer_provider, exporter)

    def tracer(self) -> Tracer:
        """A tracer for hand-added spans."""
        if self.tracer_provider is None:
            raise BenchmarkError("this contender records metrics only")
        return self.tracer_provider.get_tracer(_HAND_SCOPE)

    def recorded(self, metric: names.MetricName) -> int:
        """Measurements of a histogram, or the sum of a counter, over all attribute sets."""
        if self.reader is None:
            raise BenchmarkError("discarding providers keep no metrics")
        data = self.reader.get_metrics_data()
        total = 0
        if data is None:
            return total
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for recorded in scope_metrics.metrics:
                    if recorded.name != metric.name:
                        continue
                    for point in recorded.data.data_points:
                        if isinstance(point, HistogramDataPoint):
                            total += point.count
                        elif isinstance(point, NumberDataPoint):
                            total += int(point.value)
        return total

    def check(self) -> None:
        """Raise unless every call left one call and one attempt duration (and two spans)."""
        calls = self.recorded(names.METRIC_CALL_DURATION)
        attempts = self.recorded(names.METRIC_ATTEMPT_DURATION)
        if calls == 0 or attempts != calls:
            raise BenchmarkError(f"recorded {calls} call and {attempts} attempt durations")
        exporter = self.exporter
        if exporter is None:
            return
        expected = {PIPELINE, _ATTEMPT_NAME}
        if exporter.spans != 2 * calls or exporter.names != expected:
            raise BenchmarkError(
                f"exported {exporter.spans} spans named {sorted(exporter.names)} for "
                f"{calls} calls; expected two per call, named {sorted(expected)}"
            )

    def check_counted(self) -> None:
        """:meth:`check`, and the ``resilience.calls`` counter must agree with the histogram."""
        self.check()
        calls = self.recorded(names.METRIC_CALLS)
        durations = self.recorded(names.METRIC_CALL_DURATION)
        if calls != durations:
            raise BenchmarkError(f"counted {calls} calls but timed {durations}")


def _no_sdk() -> None:
    """Raise if the global providers record: the telemetry-off rows would be meaningless."""
    if default_listener().enabled():
        raise BenchmarkError("a global OpenTelemetry SDK is set up in the benchmark process")


# -- hand-added OpenTelemetry for the peers ------------------------------------------------


class HandInstruments:
    """The instruments an application adds by hand, named as otel-resilience names them.

    ``call``/``attempt`` (metrics only) and ``traced_call``/``traced_attempt`` (metrics and
    spans) are decorators: the call decorator goes outside the peer's retry decorator, the
    attempt decorator between the retry and the breaker, so each attempt is measured with
    the breaker's decision in it, as otel-resilience measures it. Their ``a``-prefixed
    twins do the same for coroutine functions.
    """

    def __init__(self, providers: Providers, open_error: type[BaseException]) -> None:
        self.providers = providers
        self.open_error = open_error
        meter = providers.meter_provider.get_meter(_HAND_SCOPE)
        buckets = list(names.DURATION_BUCKETS)
        self.calls: Counter = meter.create_counter(
            names.METRIC_CALLS.name,
            unit=names.METRIC_CALLS.unit,
            description=names.METRIC_CALLS.description,
        )
        self.call_duration: Histogram = meter.create_histogram(
            names.METRIC_CALL_DURATION.name,
            unit=names.METRIC_CALL_DURATION.unit,
            description=names.METRIC_CALL_DURATION.description,
            explicit_bucket_boundaries_advisory=buckets,
        )
        self.attempt_duration: Histogram = meter.create_histogram(
            names.METRIC_ATTEMPT_DURATION.name,
            unit=names.METRIC_ATTEMPT_DURATION.unit,
            description=names.METRIC_ATTEMPT_DURATION.description,
            explicit_bucket_boundaries_advisory=buckets,
        )

    def failed_call(self, started: float, error: BaseException) -> str:
        """Record a call that ended with ``error`` (off the timed path); return its outcome."""
        outcome = _REJECTED if isinstance(error, self.open_error) else _FAILURE
        self.call_duration.record(
            time.monotonic() - started, {names.ATTR_PIPELINE: PIPELINE, names.ATTR_OUTCOME: outcome}
        )
        self.calls.add(
            1,
            {
                names.ATTR_PIPELINE: PIPELINE,
                names.ATTR_OUTCOME: outcome,
                names.ATTR_ERROR_TYPE: type(error).__qualname__,
            },
        )
        return outcome

    def failed_attempt(self, started: float, error: BaseException) -> str:
        """Record an attempt that raised ``error``; return its outcome."""
        outcome = _REJECTED if isinstance(error, self.open_error) else _FAILURE
        self.attempt_duration.record(
            time.monotonic() - started, {names.ATTR_PIPELINE: PIPELINE, names.ATTR_OUTCOME: outcome}
        )
        return outcome

    # -- metrics only ---------------------------------------------------------------------

    def call(self, fn: Callable[[], int]) -> Callable[[], int]:
        """Count and time every call of ``fn``."""
        calls, duration = self.calls, self.call_duration

        def metered_call() -> int:
            started = time.monotonic()
            try:
                result = fn()
            except Exception as exc:
                self.failed_call(started, exc)
                raise
            duration.record(time.monotonic() - started, _SUCCESS_ATTRIBUTES)
            calls.add(1, _SUCCESS_ATTRIBUTES)
            return result

        return metered_call

    def attempt(self, fn: Callable[[], int]) -> Callable[[], int]:
        """Time every attempt of ``fn``."""
        duration = self.attempt_duration

        def metered_attempt() -> int:
            started = time.monotonic()
            try:
                result = fn()
            except Exception as exc:
                self.failed_attempt(started, exc)
                raise
            duration.record(time.monotonic() - started, _SUCCESS_ATTRIBUTES)
            return result

        return metered_attempt

    def acall(self, fn: AsyncFn) -> AsyncFn:
        """:meth:`call` for a coroutine function."""
        calls, duration = self.calls, self.call_duration

        async def metered_call() -> int:
            started = time.monotonic()
            try:
                result = await fn()
            except Exception as exc:
                self.failed_call(started, exc)
                raise
            duration.record(time.monotonic() - started, _SUCCESS_ATTRIBUTES)
            calls.add(1, _SUCCESS_ATTRIBUTES)
            return result

        return metered_call

    def aattempt(self, fn: AsyncFn) -> AsyncFn:
        """:meth:`attempt` for a coroutine function."""
        duration = self.attempt_duration

        async def metered_attempt() -> int:
            started = time.monotonic()
            try:
                result = await fn()
            except Exception as exc:
                self.failed_attempt(started, exc)
                raise
            duration.record(time.monotonic() - started, _SUCCESS_ATTRIBUTES)
            return result

        return metered_attempt

    # -- metrics and spans ----------------------------------------------------------------
    # start_as_current_span, as the OpenTelemetry docs show it: the span is current inside
    # the block, and an exception leaving the block is recorded and sets the ERROR status.

    def traced_call(self, fn: Callable[[], int]) -> Callable[[], int]:
        """:meth:`call` plus a current INTERNAL span per call."""
        calls, duration, tracer = self.calls, self.call_duration, self.providers.tracer()

        def traced_call() -> int:
            started = time.monotonic()
            token = _ATTEMPT.set(0)
            try:
                with tracer.start_as_current_span(
                    PIPELINE, kind=SpanKind.INTERNAL, attributes=_CALL_ATTRIBUTES
                ) as span:
                    try:
                        result = fn()
                    except Exception as exc:
                        span.set_attribute(names.ATTR_ERROR_TYPE, type(exc).__qualname__)
                        span.set_attribute(names.ATTR_OUTCOME, self.failed_call(started, exc))
                        raise
                    span.set_attribute(names.ATTR_OUTCOME, _SUCCESS)
            finally:
                _ATTEMPT.reset(token)
            duration.record(time.monotonic() - started, _SUCCESS_ATTRIBUTES)
            calls.add(1, _SUCCESS_ATTRIBUTES)
            return result

        return traced_call

    def traced_attempt(self, fn: Callable[[], int]) -> Callable[[], int]:
        """:meth:`attempt` plus a current child span per attempt."""
        duration, tracer = self.attempt_duration, self.providers.tracer()

        def traced_attempt() -> int:
            number = _ATTEMPT.get() + 1
            _ATTEMPT.set(number)
            started = time.monotonic()
            with tracer.start_as_current_span(
                _ATTEMPT_NAME,
                kind=SpanKind.INTERNAL,
                attributes={names.ATTR_PIPELINE: PIPELINE, names.ATTR_ATTEMPT: number},
            ) as span:
                try:
                    result = fn()
                except Exception as exc:
                    span.set_attribute(names.ATTR_ERROR_TYPE, type(exc).__qualname__)
                    span.set_attribute(names.ATTR_OUTCOME, self.failed_attempt(started, exc))
                    raise
                span.set_attribute(names.ATTR_OUTCOME, _SUCCESS)
                duration.record(time.monotonic() - started, _SUCCESS_ATTRIBUTES)
            return result

        return traced_attempt

    def atraced_call(self, fn: AsyncFn) -> AsyncFn:
        """:meth:`traced_call` for a coroutine function."""
        calls, duration, tracer = self.calls, self.call_duration, self.providers.tracer()

        async def traced_call() -> int:
            started = time.monotonic()
            token = _ATTEMPT.set(0)
            try:
                with tracer.start_as_current_span(
                    PIPELINE, kind=SpanKind.INTERNAL, attributes=_CALL_ATTRIBUTES
                ) as span:
                    try:
                        result = await fn()
                    except Exception as exc:
                        span.set_attribute(names.ATTR_ERROR_TYPE, type(exc).__qualname__)
                        span.set_attribute(names.ATTR_OUTCOME, self.failed_call(started, exc))
                        raise
                    span.set_attribute(names.ATTR_OUTCOME, _SUCCESS)
            finally:
                _ATTEMPT.reset(token)
            duration.record(time.monotonic() - started, _SUCCESS_ATTRIBUTES)
            calls.add(1, _SUCCESS_ATTRIBUTES)
            return result

        return traced_call

    def atraced_attempt(self, fn: AsyncFn) -> AsyncFn:
        """:meth:`traced_attempt` for a coroutine function."""
        duration, tracer = self.attempt_duration, self.providers.tracer()

        async def traced_attempt() -> int:
            number = _ATTEMPT.get() + 1
            _ATTEMPT.set(number)
            started = time.monotonic()
            with tracer.start_as_current_span(
                _ATTEMPT_NAME,
                kind=SpanKind.INTERNAL,
                attributes={names.ATTR_PIPELINE: PIPELINE, names.ATTR_ATTEMPT: number},
            ) as span:
                try:
                    result = await fn()
                except Exception as exc:
                    span.set_attribute(names.ATTR_ERROR_TYPE, type(exc).__qualname__)
                    span.set_attribute(names.ATTR_OUTCOME, self.failed_attempt(started, exc))
                    raise
                span.set_attribute(names.ATTR_OUTCOME, _SUCCESS)
                duration.record(time.monotonic() - started, _SUCCESS_ATTRIBUTES)
            return result

        return traced_attempt


# -- the hand-written reference --------------------------------------------------------------


class HandOpenError(Exception):
    """Raised by the hand-written reference while its breaker is open."""


class HandBreaker:
    """A consecutive-failure breaker written inline: about the least a safe breaker does.

    Closed, a success reads one attribute and takes no lock. Failures and the reset after
    a failure take a lock. After :data:`OPEN_SECONDS` open it lets calls through again,
    and the first success closes it.
    """

    __slots__ = ("failures", "lock", "opened_at")

    def __init__(self) -> None:
        self.failures = 0
        self.opened_at: float | None = None
        self.lock = threading.Lock()

    def allow(self) -> bool:
        """Whether a call may run now."""
        opened_at = self.opened_at
        return opened_at is None or time.monotonic() - opened_at >= OPEN_SECONDS

    def succeeded(self) -> None:
        """A call succeeded: forget earlier failures (a no-op in the usual case)."""
        if self.failures:
            with self.lock:
                self.failures = 0
                self.opened_at = None

    def failed(self) -> None:
        """A call failed: open after :data:`FAILURE_THRESHOLD` in a row."""
        with self.lock:
            self.failures += 1
            if self.failures >= FAILURE_THRESHOLD:
                self.opened_at = time.monotonic()


def _full_jitter(attempt: int) -> float:
    """The wait before retry ``attempt + 1``: full jitter from 0.1 s doubling, capped at 10 s."""
    return random.uniform(0, min(10.0, 0.1 * 2 ** (attempt - 1)))


def _hand_metered(
    instruments: HandInstruments, target: Callable[[], int], *, count_calls: bool
) -> Callable[[], int]:
    """Breaker + retry written by hand, with the three instruments recorded inline."""
    breaker = HandBreaker()
    calls = instruments.calls if count_calls else None
    call_duration = instruments.call_duration
    attempt_duration = instruments.attempt_duration

    def hand_written() -> int:
        started = time.monotonic()
        for attempt in range(1, ATTEMPTS + 1):
            begun = time.monotonic()
            error: Exception
            if breaker.allow():
                try:
                    result = target()
                except Exception as exc:
                    breaker.failed()
                    error = exc
                else:
                    breaker.succeeded()
                    now = time.monotonic()
                    attempt_duration.record(now - begun, _SUCCESS_ATTRIBUTES)
                    call_duration.record(now - started, _SUCCESS_ATTRIBUTES)
                    if calls is not None:
                        calls.add(1, _SUCCESS_ATTRIBUTES)
                    return result
            else:
                error = HandOpenError(PIPELINE)
            instruments.failed_attempt(begun, error)
            if isinstance(error, HandOpenError) or attempt == ATTEMPTS:
                instruments.failed_call(started, error)
                raise error
            time.sleep(_full_jitter(attempt))
        raise AssertionError("unreachable")

    return hand_written


def _hand_traced(
    instruments: HandInstruments, target: Callable[[], int], *, count_calls: bool
) -> Callable[[], int]:
    """:func:`_hand_metered` plus the call span and one child span per attempt."""
    breaker = HandBreaker()
    calls = instruments.calls if count_calls else None
    call_duration = instruments.call_duration
    attempt_duration, tracer = instruments.attempt_duration, instruments.providers.tracer()

    def hand_written() -> int:
        started = time.monotonic()
        with tracer.start_as_current_span(
            PIPELINE, kind=SpanKind.INTERNAL, attributes=_CALL_ATTRIBUTES
        ) as call_span:
            for attempt in range(1, ATTEMPTS + 1):
                begun = time.monotonic()
                error: Exception
                with tracer.start_as_current_span(
                    _ATTEMPT_NAME,
                    kind=SpanKind.INTERNAL,
                    attributes={names.ATTR_PIPELINE: PIPELINE, names.ATTR_ATTEMPT: attempt},
                ) as span:
                    if breaker.allow():
                        try:
                            result = target()
                        except Exception as exc:
                            breaker.failed()
                            error = exc
                        else:
                            breaker.succeeded()
                            span.set_attribute(names.ATTR_OUTCOME, _SUCCESS)
                            now = time.monotonic()
                            attempt_duration.record(now - begun, _SUCCESS_ATTRIBUTES)
                            call_span.set_attribute(names.ATTR_OUTCOME, _SUCCESS)
                            call_duration.record(now - started, _SUCCESS_ATTRIBUTES)
                            if calls is not None:
                                calls.add(1, _SUCCESS_ATTRIBUTES)
                            return result
                    else:
                        error = HandOpenError(PIPELINE)
                    span.set_attribute(names.ATTR_ERROR_TYPE, type(error).__qualname__)
                    span.set_attribute(names.ATTR_OUTCOME, instruments.failed_attempt(begun, error))
                    span.record_exception(error)
                    span.set_status(Status(StatusCode.ERROR))
                if isinstance(error, HandOpenError) or attempt == ATTEMPTS:
                    call_span.set_attribute(names.ATTR_ERROR_TYPE, type(error).__qualname__)
                    instruments.failed_call(started, error)
                    raise error  # leaving the block records it on the call span
                time.sleep(_full_jitter(attempt))
        raise AssertionError("unreachable")

    return hand_written


def _ahand_metered(instruments: HandInstruments, target: AsyncFn, *, count_calls: bool) -> AsyncFn:
    """:func:`_hand_metered` for a coroutine function."""
    breaker = HandBreaker()
    calls = instruments.calls if count_calls else None
    call_duration = instruments.call_duration
    attempt_duration = instruments.attempt_duration

    async def hand_written() -> int:
        started = time.monotonic()
        for attempt in range(1, ATTEMPTS + 1):
            begun = time.monotonic()
            error: Exception
            if breaker.allow():
                try:
                    result = await target()
                except Exception as exc:
                    breaker.failed()
                    error = exc
                else:
                    breaker.succeeded()
                    now = time.monotonic()
                    attempt_duration.record(now - begun, _SUCCESS_ATTRIBUTES)
                    call_duration.record(now - started, _SUCCESS_ATTRIBUTES)
                    if calls is not None:
                        calls.add(1, _SUCCESS_ATTRIBUTES)
                    return result
            else:
                error = HandOpenError(PIPELINE)
            instruments.failed_attempt(begun, error)
            if isinstance(error, HandOpenError) or attempt == ATTEMPTS:
                instruments.failed_call(started, error)
                raise error
            await asyncio.sleep(_full_jitter(attempt))
        raise AssertionError("unreachable")

    return hand_written


def _ahand_traced(instruments: HandInstruments, target: AsyncFn, *, count_calls: bool) -> AsyncFn:
    """:func:`_hand_traced` for a coroutine function."""
    breaker = HandBreaker()
    calls = instruments.calls if count_calls else None
    call_duration = instruments.call_duration
    attempt_duration, tracer = instruments.attempt_duration, instruments.providers.tracer()

    async def hand_written() -> int:
        started = time.monotonic()
        with tracer.start_as_current_span(
            PIPELINE, kind=SpanKind.INTERNAL, attributes=_CALL_ATTRIBUTES
        ) as call_span:
            for attempt in range(1, ATTEMPTS + 1):
                begun = time.monotonic()
                error: Exception
                with tracer.start_as_current_span(
                    _ATTEMPT_NAME,
                    kind=SpanKind.INTERNAL,
                    attributes={names.ATTR_PIPELINE: PIPELINE, names.ATTR_ATTEMPT: attempt},
                ) as span:
                    if breaker.allow():
                        try:
                            result = await target()
                        except Exception as exc:
                            breaker.failed()
                            error = exc
                        else:
                            breaker.succeeded()
                            span.set_attribute(names.ATTR_OUTCOME, _SUCCESS)
                            now = time.monotonic()
                            attempt_duration.record(now - begun, _SUCCESS_ATTRIBUTES)
                            call_span.set_attribute(names.ATTR_OUTCOME, _SUCCESS)
                            call_duration.record(now - started, _SUCCESS_ATTRIBUTES)
                            if calls is not None:
                                calls.add(1, _SUCCESS_ATTRIBUTES)
                            return result
                    else:
                        error = HandOpenError(PIPELINE)
                    span.set_attribute(names.ATTR_ERROR_TYPE, type(error).__qualname__)
                    span.set_attribute(names.ATTR_OUTCOME, instruments.failed_attempt(begun, error))
                    span.record_exception(error)
                    span.set_status(Status(StatusCode.ERROR))
                if isinstance(error, HandOpenError) or attempt == ATTEMPTS:
                    call_span.set_attribute(names.ATTR_ERROR_TYPE, type(error).__qualname__)
                    instruments.failed_call(started, error)
                    raise error  # leaving the block records it on the call span
                await asyncio.sleep(_full_jitter(attempt))
        raise AssertionError("unreachable")

    return hand_written


# -- contenders ---------------------------------------------------------------------------


def _target() -> Callable[[], int]:
    def target() -> int:
        return RESULT

    return target


def _atarget() -> AsyncFn:
    async def target() -> int:
        return RESULT

    return target


def _is_open_circuit(open_error: type[BaseException]) -> Callable[[BaseException], bool]:
    """backoff's ``giveup``: true gives up, so it is true for the open-circuit error only."""

    def give_up(exc: BaseException) -> bool:
        return isinstance(exc, open_error)

    return give_up


def _backoff(open_error: type[BaseException]) -> Decorator:
    return typed(
        backoff.on_exception(
            backoff.expo,
            Exception,
            max_tries=ATTEMPTS,
            giveup=_is_open_circuit(open_error),
            factor=0.1,
            max_value=10,
        )
    )


def _tenacity(open_error: type[BaseException]) -> Decorator:
    return typed(
        tenacity.retry(
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=10),
            retry=tenacity.retry_if_not_exception_type(open_error),
            reraise=True,
        )
    )


def _stamina(open_error: type[BaseException]) -> Decorator:
    return typed(
        stamina.retry(
            on=not_open_circuit(open_error), attempts=ATTEMPTS, wait_initial=0.1, wait_max=10
        )
    )


def _circuit() -> Decorator:
    return typed(circuitbreaker.circuit(failure_threshold=FAILURE_THRESHOLD, recovery_timeout=60))


def _pybreaker() -> Decorator:
    return typed(pybreaker.CircuitBreaker(fail_max=FAILURE_THRESHOLD, reset_timeout=60))


def _aiobreaker() -> Decorator:
    return typed(
        aiobreaker.CircuitBreaker(
            fail_max=FAILURE_THRESHOLD, timeout_duration=timedelta(seconds=OPEN_SECONDS)
        )
    )


def _ours(providers: Providers, *, is_async: bool) -> Callable[[], Any]:
    """otel-resilience given the contender's providers, on the pipeline and the breaker."""
    breaker = CircuitBreaker(
        PIPELINE, tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
    )
    decorate = otel_resilience.resilient(
        name=PIPELINE,
        retry=RetryConfig(max_attempts=ATTEMPTS),
        circuit_breaker=breaker,
        tracer_provider=providers.tracer_provider,
        meter_provider=providers.meter_provider,
    )
    return decorate(_atarget() if is_async else _target())


@dataclass(frozen=True, slots=True)
class _Peer:
    """A peer stack: its name, retry decorator, breaker decorator and open-circuit error."""

    name: str
    retry: Callable[[type[BaseException]], Decorator]
    breaker: Callable[[], Decorator]
    open_error: type[BaseException]


_SYNC_PEERS = (
    _Peer("backoff + circuitbreaker", _backoff, _circuit, circuitbreaker.CircuitBreakerError),
    _Peer("tenacity + pybreaker", _tenacity, _pybreaker, pybreaker.CircuitBreakerError),
    _Peer("stamina + circuitbreaker", _stamina, _circuit, circuitbreaker.CircuitBreakerError),
)
# pybreaker runs coroutines only through tornado; tenacity's async stack uses aiobreaker.
_ASYNC_PEERS = (
    _Peer("backoff + circuitbreaker", _backoff, _circuit, circuitbreaker.CircuitBreakerError),
    _Peer("tenacity + aiobreaker", _tenacity, _aiobreaker, aiobreaker.CircuitBreakerError),
    _Peer("stamina + circuitbreaker", _stamina, _circuit, circuitbreaker.CircuitBreakerError),
)


def _peer_case(peer: _Peer, *, spans: bool, is_async: bool) -> Case:
    """A peer stack with the instruments (and spans) added by hand around it."""
    providers = Providers.create(spans=spans)
    hand = HandInstruments(providers, peer.open_error)
    retry, breaker = peer.retry(peer.open_error), peer.breaker()
    call: Callable[[], Any]
    if is_async and spans:
        call = hand.atraced_call(retry(hand.atraced_attempt(breaker(_atarget()))))
    elif is_async:
        call = hand.acall(retry(hand.aattempt(breaker(_atarget()))))
    elif spans:
        call = hand.traced_call(retry(hand.traced_attempt(breaker(_target()))))
    else:
        call = hand.call(retry(hand.attempt(breaker(_target()))))
    return Case(name=peer.name, call=call, check=providers.check_counted)


REFERENCE = "hand-written breaker + retry"
"""The row the telemetry targets judge otel-resilience against."""

_DISCARDING_NOTE = (
    "the API's no-op providers under another name: nothing is recorded, the row is the "
    "contender's own telemetry work"
)


def _reference_case(
    *, spans: bool, is_async: bool, count_calls: bool = True, discard: bool = False
) -> Case:
    """The hand-written reference, optionally without ``calls.add()`` or on no-op providers."""
    providers = Providers.discarding(spans=spans) if discard else Providers.create(spans=spans)
    hand = HandInstruments(providers, HandOpenError)
    call: Callable[[], Any]
    if is_async:
        build_async = _ahand_traced if spans else _ahand_metered
        call = build_async(hand, _atarget(), count_calls=count_calls)
    else:
        build = _hand_traced if spans else _hand_metered
        call = build(hand, _target(), count_calls=count_calls)
    if discard:
        return Case(
            name="hand-written, discarding providers",
            call=call,
            role="reference",
            note=_DISCARDING_NOTE,
        )
    if count_calls:
        return Case(
            name=REFERENCE,
            call=call,
            role="reference",
            check=providers.check_counted,
            note="a plain function: lock-free closed check, retry loop, the same telemetry inline",
        )
    return Case(
        name="hand-written, no call counter",
        call=call,
        role="reference",
        check=providers.check,
        note="the same without calls.add(): the call-duration histogram counts calls too",
    )


def _telemetry_cases(*, spans: bool, is_async: bool) -> tuple[Case, ...]:
    """otel-resilience, the peers with hand-added telemetry, and the reference rows."""
    providers = Providers.create(spans=spans)
    wiring = "tracer_provider=tp, meter_provider=mp" if spans else "meter_provider=mp"
    return (
        Case(
            name="otel-resilience",
            call=_ours(providers, is_async=is_async),
            role="ours",
            check=providers.check_counted,
            note=f"{wiring} on the pipeline and the breaker",
        ),
        *(
            _peer_case(peer, spans=spans, is_async=is_async)
            for peer in (_ASYNC_PEERS if is_async else _SYNC_PEERS)
        ),
        _reference_case(spans=spans, is_async=is_async),
        _reference_case(spans=spans, is_async=is_async, count_calls=False),
        Case(
            name="otel-resilience, discarding providers",
            call=_ours(Providers.discarding(spans=spans), is_async=is_async),
            role="reference",
            note=_DISCARDING_NOTE,
        ),
        _reference_case(spans=spans, is_async=is_async, discard=True),
    )


# -- scenarios --------------------------------------------------------------------------------


def telemetry_off(*, is_async: bool) -> Scenario:
    """Default telemetry with no SDK set up, against telemetry switched off."""
    _no_sdk()
    target = _atarget if is_async else _target
    retry = RetryConfig(max_attempts=ATTEMPTS)
    default = otel_resilience.resilient(
        name=PIPELINE, retry=retry, circuit_breaker=CircuitBreaker(PIPELINE)
    )(target())
    off = otel_resilience.resilient(
        name=PIPELINE,
        retry=retry,
        circuit_breaker=CircuitBreaker(PIPELINE, telemetry=False),
        telemetry=False,
    )(target())
    pipeline_off = otel_resilience.resilient(
        name=PIPELINE, retry=retry, circuit_breaker=CircuitBreaker(PIPELINE), telemetry=False
    )(target())
    kind = "async" if is_async else "sync"
    return Scenario(
        key=f"telemetry_off_{kind}",
        title=f"6. Telemetry off, no SDK ({kind})",
        description=(
            "Breaker + retry success path as in scenario "
            f"{2 if is_async else 1}; the process never sets a global OpenTelemetry provider."
        ),
        is_async=is_async,
        cases=(
            Case(
                name="otel-resilience default",
                call=default,
                role="ours",
                check=_no_sdk,
                note="telemetry on by default: the process-wide listener on the global providers",
            ),
            Case(
                name="otel-resilience telemetry=False",
                call=off,
                role="ours",
                note="telemetry=False on the pipeline and the breaker: no listener at all",
            ),
            Case(
                name="otel-resilience telemetry=False on the pipeline only",
                call=pipeline_off,
                role="ours",
                note="the breaker keeps the default listener",
            ),
        ),
    )


def metrics_only(*, is_async: bool) -> Scenario:
    """An SDK MeterProvider, no tracing: our metrics against the same ones added by hand."""
    kind = "async" if is_async else "sync"
    return Scenario(
        key=f"metrics_{kind}",
        title=f"7. Metrics only ({kind})",
        description=(
            "Breaker + retry success path, recording metrics into an SDK MeterProvider "
            "(InMemoryMetricReader, collected after timing); no TracerProvider."
        ),
        is_async=is_async,
        cases=_telemetry_cases(spans=False, is_async=is_async),
    )


def metrics_and_spans(*, is_async: bool) -> Scenario:
    """Add an SDK TracerProvider: a call span and an attempt span per call, plus the metrics."""
    kind = "async" if is_async else "sync"
    return Scenario(
        key=f"metrics_spans_{kind}",
        title=f"8. Metrics and spans ({kind})",
        description=(
            "As scenario 7, plus an SDK TracerProvider with SimpleSpanProcessor(NullExporter): "
            "each call makes a call span and one attempt span, ended and exported in the "
            "calling thread."
        ),
        is_async=is_async,
        cases=_telemetry_cases(spans=True, is_async=is_async),
    )


def scenarios() -> list[Scenario]:
    """Every telemetry scenario, sync then async for each, in report order."""
    disable_stamina_hooks()
    return [
        scenario
        for build in (telemetry_off, metrics_only, metrics_and_spans)
        for scenario in (build(is_async=False), build(is_async=True))
    ]


if __name__ == "__main__":
    main(scenarios, __doc__ or "")
