"""Broken telemetry never changes a protected call, and which listener a strategy gets.

A scripted scenario runs once without telemetry and once with an SDK whose span
processor, span exporter, metric reader, metric exporter or observable callback path
raises. Results, the exceptions callers see (the same objects), the breaker's state and
counters, the sleeps and the fake time must be identical; the adapter's own errors are
logged, at a limited rate.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN

from otel_resilience import (
    AttemptOutcome,
    Bulkhead,
    BulkheadFullError,
    CallOutcome,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerMetrics,
    CircuitOpenError,
    CircuitState,
    Fallback,
    Pipeline,
    ResilienceEvent,
    RetryConfig,
)
from otel_resilience._events import LISTENER_ERRORS
from otel_resilience.backoff import Constant
from otel_resilience.telemetry import OpenTelemetryListener, default_listener, names
from otel_resilience.testing import FakeClock

# -- failing SDK parts --------------------------------------------------------------------


class TelemetryDown(RuntimeError):
    """What every broken SDK part raises."""


class RaisingProcessor(SpanProcessor):
    """A span processor that raises when a span starts, ends, or both."""

    def __init__(self, *, on_start: bool = True, on_end: bool = True) -> None:
        self.raise_on_start = on_start
        self.raise_on_end = on_end
        self.raised = 0

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if self.raise_on_start:
            self.raised += 1
            raise TelemetryDown("on_start")

    def on_end(self, span: ReadableSpan) -> None:
        if self.raise_on_end:
            self.raised += 1
            raise TelemetryDown("on_end")


class RaisingSpanExporter(SpanExporter):
    def __init__(self) -> None:
        self.raised = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.raised += 1
        raise TelemetryDown("export spans")


class RaisingReader(MetricReader):
    """A pull reader whose hand-off of collected metrics raises."""

    def __init__(self) -> None:
        super().__init__()
        self.raised = 0

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        self.raised += 1
        raise TelemetryDown("collect")

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class RaisingMetricExporter(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.raised = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.raised += 1
        raise TelemetryDown("export metrics")

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class ExplodingBreaker(CircuitBreaker):
    """A breaker whose telemetry read-outs raise (the observable callback path)."""

    raised = 0

    def observed_state(self) -> CircuitState:
        ExplodingBreaker.raised += 1
        raise TelemetryDown("observed_state")

    def observed_counts(self) -> Any:
        ExplodingBreaker.raised += 1
        raise TelemetryDown("observed_counts")


class ExplodingBulkhead(Bulkhead):
    """A bulkhead whose gauges raise when read (the drivers never read them)."""

    @property
    def in_flight(self) -> int:
        raise TelemetryDown("in_flight")

    @property
    def queued(self) -> int:
        raise TelemetryDown("queued")

    @property
    def rejections(self) -> int:
        raise TelemetryDown("rejections")


# -- the scenario -----------------------------------------------------------------------


class Unprintable(Exception):
    def __str__(self) -> str:
        raise TelemetryDown("no text")


class Script:
    """A function playing ``(seconds, outcome)`` steps; remembers what it raised."""

    def __init__(self, clock: FakeClock, *steps: tuple[float, object]) -> None:
        self.clock = clock
        self.steps = list(steps)
        self.raised: list[BaseException] = []

    def __call__(self) -> Any:
        seconds, item = self.steps.pop(0)
        self.clock.advance(seconds)
        if isinstance(item, BaseException):
            self.raised.append(item)
            raise item
        return item


@dataclass
class Run:
    """Everything a caller and an operator can see of one scenario run."""

    outcomes: list[tuple[Any, ...]] = field(default_factory=list)
    state: CircuitState | None = None
    metrics: CircuitBreakerMetrics | None = None
    sleeps: list[float] = field(default_factory=list)
    now: float = 0.0


@dataclass
class Setup:
    """How a scenario reports: ``strategy_options`` go to every strategy constructor."""

    strategy_options: dict[str, Any]
    between: Callable[[], object] = lambda: None
    breaker_class: type[CircuitBreaker] = CircuitBreaker
    bulkhead_class: type[Bulkhead] = Bulkhead


def scenario(clock: FakeClock, setup: Setup) -> Run:
    options = setup.strategy_options
    breaker = setup.breaker_class(
        "db",
        CircuitBreakerConfig(
            failure_threshold=2, success_threshold=1, timeout_seconds=10.0, half_open_max_calls=1
        ),
        clock=clock,
        **options,
    )
    bulkhead = setup.bulkhead_class(1, name="pool", **options)
    retrying = Pipeline(
        name="svc",
        retry=RetryConfig(max_attempts=2, backoff=Constant(seconds=0.5)),
        circuit_breaker=breaker,
        bulkhead=bulkhead,
        attempt_timeout=1.0,
        clock=clock,
        **options,
    )
    with_fallback = Pipeline(
        name="svc-fallback",
        fallback=Fallback(value="fallback"),
        circuit_breaker=breaker,
        clock=clock,
        **options,
    )
    run = Run()

    def call(pipeline: Pipeline, *steps: tuple[float, object]) -> None:
        script = Script(clock, *steps)
        try:
            result: tuple[Any, ...] = ("returned", pipeline.call(script))
        except Exception as exc:  # the outcome is what is compared
            result = (
                "raised",
                type(exc),
                # The caller sees the very object the function raised, or a strategy's own.
                bool(script.raised) and exc is script.raised[-1],
                getattr(exc, "__notes__", None),
            )
        # Nothing of the call is left in the caller's OpenTelemetry context.
        run.outcomes.append((*result, trace.get_current_span() is INVALID_SPAN, breaker.state))
        setup.between()

    call(retrying, (0.1, "ok"))
    call(retrying, (0.1, ConnectionError("a")), (0.1, "after a retry"))
    call(retrying, (0.1, ConnectionError("b")), (0.1, ConnectionError("c")))  # opens
    call(retrying, (0.0, "never runs"))  # rejected
    call(with_fallback, (0.0, "never runs"))  # rejected, replaced by the fallback
    clock.advance(10.0)
    call(retrying, (0.2, "trial"))  # closes it
    assert bulkhead.try_acquire()
    call(retrying, (0.0, "never runs"))  # the bulkhead is full
    bulkhead.release()
    call(retrying, (2.0, "late"), (0.1, Unprintable()))  # a timeout, a broken error: opens
    call(with_fallback, (0.3, "never runs"))  # rejected, replaced by the fallback
    run.state = breaker.state
    run.metrics = breaker.metrics
    run.sleeps = list(clock.sleeps)
    run.now = clock.monotonic()
    return run


@pytest.fixture
def reference() -> Run:
    return scenario(FakeClock(), Setup({"telemetry": False}))


@pytest.fixture
def log_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The rate limiter of isolated errors on a fake clock, with nothing logged yet."""
    fake = FakeClock(start=1000.0)
    monkeypatch.setattr(LISTENER_ERRORS, "_clock", fake)
    monkeypatch.setattr(LISTENER_ERRORS, "_last", float("-inf"))
    monkeypatch.setattr(LISTENER_ERRORS, "_suppressed", 0)
    return fake


def isolated_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "otel_resilience"]


def tracing_with(*processors: SpanProcessor) -> tuple[TracerProvider, InMemorySpanExporter]:
    """A tracer provider exporting to memory first, then through ``processors``."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for processor in processors:
        provider.add_span_processor(processor)
    return provider, exporter


def metering(*readers: MetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=list(readers), shutdown_on_exit=False)


def adapter(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> dict[str, Any]:
    """Strategy options sharing one adapter on these providers, as an application would."""
    listener = OpenTelemetryListener(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return {"listener": listener}


def test_the_reference_run_exercises_every_path(reference: Run) -> None:
    raised = [outcome[1:3] for outcome in reference.outcomes if outcome[0] == "raised"]
    assert raised == [
        (ConnectionError, True),
        (CircuitOpenError, False),
        (BulkheadFullError, False),
        (Unprintable, True),
    ]
    assert reference.state is CircuitState.OPEN
    assert reference.metrics is not None
    assert (reference.metrics.failures, reference.metrics.rejections) == (5, 3)
    assert reference.sleeps == [0.5, 0.5, 0.5]
    assert all(outcome[-2] for outcome in reference.outcomes)


# -- a broken SDK changes nothing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("on_start", "on_end"),
    [(True, True), (True, False), (False, True)],
    ids=["both", "start", "end"],
)
def test_a_raising_span_processor_changes_nothing(
    reference: Run, caplog: pytest.LogCaptureFixture, on_start: bool, on_end: bool
) -> None:
    broken = RaisingProcessor(on_start=on_start, on_end=on_end)
    provider, _ = tracing_with(broken)
    meters = metering(InMemoryMetricReader())
    setup = Setup(adapter(provider, meters))
    with caplog.at_level(logging.ERROR):
        assert scenario(FakeClock(), setup) == reference
    assert broken.raised >= len(reference.outcomes)


BUG_RECOVERY_END = (
    "BUG: _CallObserver.call_ended ends the recovery (fallback) span inside the same try "
    "as the call span; when a processor's on_end raises for the fallback span, the call "
    "span is never ended, so it is missing from the trace"
)


def test_spans_ended_before_a_raising_processor_are_still_exported() -> None:
    healthy, healthy_spans = tracing_with()
    scenario(FakeClock(), Setup(adapter(healthy)))
    provider, spans = tracing_with(RaisingProcessor(on_start=False, on_end=True))
    scenario(FakeClock(), Setup(adapter(provider)))

    def shape(finished: Sequence[ReadableSpan]) -> list[tuple[str, int]]:
        return [(span.name, len(span.events)) for span in finished]

    assert shape(spans.get_finished_spans()) == shape(healthy_spans.get_finished_spans())


def test_an_attempt_span_whose_end_raises_leaves_the_call_span_whole(clock: FakeClock) -> None:
    provider, spans = tracing_with(RaisingProcessor(on_start=False, on_end=True))
    pipeline = Pipeline(
        name="svc",
        retry=RetryConfig(max_attempts=2, backoff=Constant(seconds=0.0)),
        clock=clock,
        tracer_provider=provider,
    )
    assert pipeline.call(Script(clock, (0.0, ConnectionError("once")), (0.0, "ok"))) == "ok"
    assert [span.name for span in spans.get_finished_spans()] == [
        "svc attempt",
        "svc attempt",
        "svc",
    ]
    assert trace.get_current_span() is INVALID_SPAN


def test_a_fallback_span_whose_end_raises_leaves_the_call_span_whole(clock: FakeClock) -> None:
    provider, spans = tracing_with(RaisingProcessor(on_start=False, on_end=True))
    pipeline = Pipeline(
        name="svc", fallback=Fallback(value="cached"), clock=clock, tracer_provider=provider
    )
    assert pipeline.call(Script(clock, (0.0, KeyError("k")))) == "cached"
    assert trace.get_current_span() is INVALID_SPAN
    assert [span.name for span in spans.get_finished_spans()] == [
        "svc attempt",
        "svc fallback",
        "svc",
    ]


def test_a_raising_span_exporter_changes_nothing(
    reference: Run, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = RaisingSpanExporter()
    provider, _ = tracing_with(SimpleSpanProcessor(exporter))
    with caplog.at_level(logging.ERROR):
        assert scenario(FakeClock(), Setup(adapter(provider))) == reference
    assert exporter.raised > 10


def test_a_metric_reader_raising_on_collect_changes_nothing(reference: Run) -> None:
    good = InMemoryMetricReader()
    broken = RaisingReader()
    provider = metering(good, broken)

    def collect() -> None:
        with pytest.raises(TelemetryDown):
            broken.collect()

    setup = Setup(adapter(meter_provider=provider), between=collect)
    assert scenario(FakeClock(), setup) == reference
    assert broken.raised == len(reference.outcomes)
    # The healthy reader on the same provider still sees every call.
    calls = [value for name, _, value in observed_values(good) if name == names.METRIC_CALLS.name]
    assert sum(calls) == len(reference.outcomes)


def test_a_raising_metric_exporter_changes_nothing(
    reference: Run, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = RaisingMetricExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    provider = metering(reader)
    setup = Setup(adapter(meter_provider=provider), between=reader.force_flush)
    with caplog.at_level(logging.ERROR):
        assert scenario(FakeClock(), setup) == reference
    assert exporter.raised == len(reference.outcomes)
    provider.shutdown()


def test_raising_observable_callbacks_change_nothing_and_are_logged_once(
    reference: Run, caplog: pytest.LogCaptureFixture, log_clock: FakeClock
) -> None:
    reader = InMemoryMetricReader()
    provider = metering(reader)
    ExplodingBreaker.raised = 0
    setup = Setup(
        adapter(meter_provider=provider),
        between=reader.collect,
        breaker_class=ExplodingBreaker,
        bulkhead_class=ExplodingBulkhead,
    )
    with caplog.at_level(logging.ERROR, logger="otel_resilience"):
        assert scenario(FakeClock(), setup) == reference
    assert ExplodingBreaker.raised >= len(reference.outcomes)
    # Dozens of failing callbacks inside one interval: one line.
    logged = isolated_errors(caplog)
    assert len(logged) == 1
    assert "OpenTelemetry observable callback raised" in logged[0].getMessage()
    assert logged[0].exc_info is not None
    assert logged[0].exc_info[0] is TelemetryDown


def test_isolated_errors_are_logged_at_a_limited_rate(
    caplog: pytest.LogCaptureFixture, log_clock: FakeClock
) -> None:
    broken = RaisingProcessor(on_start=False, on_end=True)
    provider, _ = tracing_with(broken)
    clock = FakeClock()
    pipeline = Pipeline(name="svc", clock=clock, tracer_provider=provider)
    with caplog.at_level(logging.ERROR, logger="otel_resilience"):
        for _ in range(10):
            assert pipeline.call(lambda: "ok") == "ok"
        assert len(isolated_errors(caplog)) == 1
        assert "(0 similar errors suppressed)" in isolated_errors(caplog)[0].getMessage()

        log_clock.advance(59.0)
        assert pipeline.call(lambda: "ok") == "ok"
        assert len(isolated_errors(caplog)) == 1  # still within the interval

        log_clock.advance(1.0)
        assert pipeline.call(lambda: "ok") == "ok"
    logged = isolated_errors(caplog)
    assert len(logged) == 2
    # Two span ends raise per call (attempt and call): the first is logged, the next 21
    # (19 more of the first ten calls, 2 of the eleventh) are counted in the second line.
    suppressed = re.search(r"\((\d+) similar errors suppressed\)", logged[1].getMessage())
    assert suppressed is not None
    assert int(suppressed.group(1)) == 2 * 10 - 1 + 2 * 1
    assert broken.raised == 2 * 12


@pytest.mark.asyncio
async def test_a_raising_processor_changes_nothing_for_async_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def outcome(options: dict[str, Any]) -> list[Any]:
        clock = FakeClock()
        pipeline = Pipeline(
            name="svc",
            retry=RetryConfig(max_attempts=2, backoff=Constant(seconds=0.5)),
            attempt_timeout=1.0,
            clock=clock,
            **options,
        )
        failure = ConnectionError("down")
        items: list[object] = [failure, "ok", failure, failure]
        seen: list[Any] = []

        async def work() -> object:
            item = items.pop(0)
            await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop
            if isinstance(item, BaseException):
                raise item
            return item

        seen.append(await pipeline.acall(work))
        with pytest.raises(ConnectionError) as caught:
            await pipeline.acall(work)
        seen.extend([caught.value is failure, clock.sleeps, trace.get_current_span()])
        return seen

    broken = RaisingProcessor()
    provider, _ = tracing_with(broken)
    with caplog.at_level(logging.ERROR):
        assert await outcome({"tracer_provider": provider}) == await outcome({"telemetry": False})
    assert broken.raised > 0


# -- which listener a strategy reports to -------------------------------------------------------


class Recorder:
    """A listener that is its own call observer and records what it is told."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.events: list[ResilienceEvent] = []
        self.ended: list[CallOutcome] = []

    def start_call(self, pipeline: str) -> Recorder:
        self.calls.append(pipeline)
        return self

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)

    def attempt_started(self, attempt: int) -> None:
        pass

    def attempt_ended(
        self, attempt: int, outcome: AttemptOutcome, error: BaseException | None, duration: float
    ) -> None:
        pass

    def call_ended(
        self, outcome: CallOutcome, error: BaseException | None, duration: float
    ) -> None:
        self.ended.append(outcome)


def strategies(**options: Any) -> Iterator[Callable[[], object]]:
    """Constructors of every strategy that takes telemetry options."""
    yield lambda: Pipeline(**options)
    yield lambda: CircuitBreaker("db", **options)
    yield lambda: Bulkhead(1, **options)


STRATEGY_IDS = ["Pipeline", "CircuitBreaker", "Bulkhead"]


@pytest.mark.parametrize("provider", ["tracer_provider", "meter_provider"])
@pytest.mark.parametrize("index", range(3), ids=STRATEGY_IDS)
def test_a_listener_and_providers_together_are_refused(provider: str, index: int) -> None:
    tracing, _ = tracing_with()
    value = tracing if provider == "tracer_provider" else metering()
    make = list(strategies(listener=Recorder(), **{provider: value}))[index]
    with pytest.raises(TypeError, match="not both"):
        make()


@pytest.mark.parametrize("index", range(3), ids=STRATEGY_IDS)
def test_providers_with_telemetry_off_are_refused(index: int) -> None:
    tracing, _ = tracing_with()
    make = list(strategies(telemetry=False, tracer_provider=tracing))[index]
    with pytest.raises(TypeError, match="telemetry=False"):
        make()


@pytest.mark.parametrize("value", [0, 1, "no", None])
@pytest.mark.parametrize("index", range(3), ids=STRATEGY_IDS)
def test_telemetry_must_be_a_bool(index: int, value: object) -> None:
    make = list(strategies(telemetry=value))[index]
    with pytest.raises(TypeError, match="telemetry must be a bool"):
        make()


def test_the_default_is_the_process_wide_adapter() -> None:
    assert Pipeline().listener is default_listener()
    assert default_listener() is default_listener()


def test_telemetry_false_means_no_listener() -> None:
    assert Pipeline(telemetry=False).listener is None


def test_explicit_providers_get_an_adapter_of_their_own(clock: FakeClock) -> None:
    provider, spans = tracing_with()
    reader = InMemoryMetricReader()
    pipeline = Pipeline(
        name="svc", clock=clock, tracer_provider=provider, meter_provider=metering(reader)
    )
    assert isinstance(pipeline.listener, OpenTelemetryListener)
    assert pipeline.listener is not default_listener()
    pipeline.call(lambda: "ok")
    assert [span.name for span in spans.get_finished_spans()] == ["svc attempt", "svc"]
    assert reader.get_metrics_data() is not None


def observed_values(reader: InMemoryMetricReader) -> set[tuple[str, tuple[Any, ...], Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        (metric.name, tuple(sorted((point.attributes or {}).items())), point.value)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
        if isinstance(point, NumberDataPoint)
    }


def test_a_breaker_with_explicit_providers_is_observed(clock: FakeClock) -> None:
    reader = InMemoryMetricReader()
    breaker = CircuitBreaker("db", clock=clock, meter_provider=metering(reader))
    breaker.force_open()
    state = ((names.ATTR_BREAKER, "db"), (names.ATTR_BREAKER_STATE, "forced_open"))
    assert (names.METRIC_BREAKER_STATE.name, state, 1) in observed_values(reader)


def test_strategies_given_the_same_meter_provider_are_all_observed(clock: FakeClock) -> None:
    reader = InMemoryMetricReader()
    provider = metering(reader)
    first = Pipeline(name="first", clock=clock, meter_provider=provider)
    second = Pipeline(name="second", clock=clock, meter_provider=provider)
    breaker = CircuitBreaker("db", clock=clock, meter_provider=provider)
    bulkhead = Bulkhead(2, name="pool", meter_provider=provider)
    first.call(lambda: "ok")
    second.call(lambda: "ok")
    breaker.force_open()
    assert bulkhead.try_acquire()
    seen = observed_values(reader)
    bulkhead.release()
    for pipeline in ("first", "second"):
        calls = ((names.ATTR_OUTCOME, "success"), (names.ATTR_PIPELINE, pipeline))
        assert (names.METRIC_CALLS.name, calls, 1) in seen
    state = ((names.ATTR_BREAKER, "db"), (names.ATTR_BREAKER_STATE, "forced_open"))
    assert (names.METRIC_BREAKER_STATE.name, state, 1) in seen
    assert (names.METRIC_BULKHEAD_IN_FLIGHT.name, ((names.ATTR_BULKHEAD, "pool"),), 1) in seen


def test_an_explicit_listener_is_used_as_given(clock: FakeClock) -> None:
    recorder = Recorder()
    breaker = CircuitBreaker(
        "db", CircuitBreakerConfig(failure_threshold=1), clock=clock, listener=recorder
    )
    pipeline = Pipeline(name="svc", circuit_breaker=breaker, clock=clock, listener=recorder)
    assert pipeline.listener is recorder
    with pytest.raises(ConnectionError):
        pipeline.call(Script(clock, (0.0, ConnectionError("down"))))
    assert recorder.calls == ["svc"]
    assert recorder.ended == [CallOutcome.FAILURE]
    assert [type(event).__name__ for event in recorder.events] == ["CircuitStateChanged"]


def test_an_explicit_listener_wins_over_telemetry_false() -> None:
    recorder = Recorder()
    assert Pipeline(listener=recorder, telemetry=False).listener is recorder


def test_a_bulkhead_rejection_reaches_a_plain_listener_but_not_the_adapter(
    clock: FakeClock,
) -> None:
    recorder = Recorder()
    plain = Bulkhead(1, name="plain", listener=recorder)
    assert plain.try_acquire()
    with pytest.raises(BulkheadFullError):
        Pipeline(bulkhead=plain, clock=clock, telemetry=False).call(lambda: None)
    assert len(recorder.events) == 1
    # The adapter counts rejections from the bulkhead itself, so it asks for no events.
    assert OpenTelemetryListener.wants_rejections is False


def test_a_span_processor_raising_on_start_does_not_stop_the_metrics(clock: FakeClock) -> None:
    provider, _ = tracing_with(RaisingProcessor(on_start=True, on_end=False))
    reader = InMemoryMetricReader()
    pipeline = Pipeline(name="svc", clock=clock, **adapter(provider, metering(reader)))
    assert pipeline.call(lambda: "ok") == "ok"
    calls = ((names.ATTR_OUTCOME, "success"), (names.ATTR_PIPELINE, "svc"))
    assert (names.METRIC_CALLS.name, calls, 1) in observed_values(reader)
