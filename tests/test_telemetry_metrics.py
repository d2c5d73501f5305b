"""Metrics of the OpenTelemetry adapter, read back from an in-memory SDK reader.

A scripted scenario on a fake clock drives every instrument in ``names.METRICS``; the
tests check each data point: its attributes (low-cardinality, never a message), its
value, and for durations the FakeClock seconds and the explicit bucket boundaries.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
    Sum,
)

from otel_resilience import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    CircuitState,
    ErrorContext,
    ErrorRecoveryOrchestrator,
    ErrorSeverity,
    Fallback,
    Pipeline,
    ResilienceTimeoutError,
    RetryConfig,
)
from otel_resilience._events import RetryScheduled
from otel_resilience.alerts import Alert
from otel_resilience.backoff import Constant
from otel_resilience.events import EventBus
from otel_resilience.stores import (
    Admission,
    InMemoryStateStore,
    StoreParams,
    StoreUnavailableError,
)
from otel_resilience.telemetry import OpenTelemetryListener, names
from otel_resilience.testing import FakeClock

WaitUntil = Callable[[Callable[[], bool]], None]

PIPELINE = names.ATTR_PIPELINE
OUTCOME = names.ATTR_OUTCOME
ERROR = names.ATTR_ERROR_TYPE
REASON = names.ATTR_REASON
SCOPE = names.ATTR_TIMEOUT_SCOPE
BREAKER = names.ATTR_BREAKER
STATE = names.ATTR_BREAKER_STATE
FROM = names.ATTR_FROM_STATE
TO = names.ATTR_TO_STATE
BULKHEAD = names.ATTR_BULKHEAD
COMPONENT = names.ATTR_COMPONENT
SEVERITY = names.ATTR_ERROR_SEVERITY
ACTION = names.ATTR_RECOVERY_ACTION
SINK = names.ATTR_ALERT_SINK

SECRET = "secret-7f3a"
"""Put in every exception message; must never reach a metric attribute."""

Key = frozenset[tuple[str, Any]]


def key(attributes: Mapping[str, Any]) -> Key:
    return frozenset(attributes.items())


# -- an SDK of our own -----------------------------------------------------------------


class Metrics:
    """An explicit SDK meter provider with an in-memory reader, and the adapter on it."""

    def __init__(self, **listener_options: Any) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        self.listener = OpenTelemetryListener(meter_provider=self.provider, **listener_options)

    def collect(self) -> dict[str, Metric]:
        found: dict[str, Metric] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                assert scope_metrics.scope.name == names.INSTRUMENTATION_SCOPE
                for metric in scope_metrics.metrics:
                    assert metric.name not in found
                    found[metric.name] = metric
        return found


@pytest.fixture
def sdk() -> Iterator[Metrics]:
    metrics = Metrics()
    yield metrics
    metrics.provider.shutdown()


def values(collected: Mapping[str, Metric], metric: names.MetricName) -> dict[Key, float]:
    """The value of every data point of a counter or gauge, by attribute set."""
    found = collected.get(metric.name)
    if found is None:
        return {}
    result: dict[Key, float] = {}
    for point in found.data.data_points:
        assert isinstance(point, NumberDataPoint)
        result[key(point.attributes or {})] = point.value
    return result


def histograms(
    collected: Mapping[str, Metric], metric: names.MetricName
) -> dict[Key, HistogramDataPoint]:
    found = collected.get(metric.name)
    if found is None:
        return {}
    result: dict[Key, HistogramDataPoint] = {}
    for point in found.data.data_points:
        assert isinstance(point, HistogramDataPoint)
        result[key(point.attributes or {})] = point
    return result


def summary(points: Mapping[Key, HistogramDataPoint]) -> dict[Key, tuple[int, float]]:
    """Count and sum (rounded: fake-clock seconds add up in binary) per attribute set."""
    return {k: (p.count, round(p.sum, 9)) for k, p in points.items()}


def taking(clock: FakeClock, seconds: float, *outcomes: object) -> Callable[[], Any]:
    """A function whose calls each take ``seconds`` of fake time and play ``outcomes``."""
    queue = list(outcomes)

    def call() -> Any:
        clock.advance(seconds)
        item = queue.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    return call


def fails(kind: type[Exception], tag: str) -> Exception:
    return kind(f"{SECRET} {tag}")


class RecordingSink:
    """An alert sink that keeps what it received."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class RefusingSink:
    """An alert sink whose receiver is down."""

    async def send(self, alert: Alert) -> None:
        raise ConnectionRefusedError(f"{SECRET} receiver down")


# -- the scripted scenario ----------------------------------------------------------------


class Scenario:
    """Pipelines, a breaker and a bulkhead on one fake clock, all reporting to one adapter."""

    def __init__(self, sdk: Metrics, clock: FakeClock) -> None:
        self.sdk = sdk
        self.clock = clock
        listener = sdk.listener
        self.orders = Pipeline(
            name="orders",
            retry=RetryConfig(
                max_attempts=3, backoff=Constant(seconds=0.25), retry_on=ConnectionError
            ),
            clock=clock,
            listener=listener,
        )
        self.prices = Pipeline(
            name="prices",
            attempt_timeout=0.5,
            fallback=Fallback(value="cached"),
            clock=clock,
            listener=listener,
        )
        self.search = Pipeline(
            name="search",
            timeout=1.0,
            retry=RetryConfig(max_attempts=5, backoff=Constant(seconds=0.5)),
            clock=clock,
            listener=listener,
        )
        self.report = Pipeline(
            name="report",
            retry=RetryConfig(max_attempts=5, backoff=Constant(seconds=1.0), deadline_seconds=1.5),
            clock=clock,
            listener=listener,
        )
        self.breaker = CircuitBreaker(
            "db",
            CircuitBreakerConfig(
                failure_threshold=2,
                success_threshold=1,
                timeout_seconds=30.0,
                half_open_max_calls=1,
                ignore_exceptions=(KeyError,),
            ),
            clock=clock,
            listener=listener,
        )
        self.db = Pipeline(name="db", circuit_breaker=self.breaker, clock=clock, listener=listener)

    def retries_and_timeouts(self) -> None:
        """orders: success after a retry, retries exhausted, a non-retryable error;
        prices: an attempt timeout replaced by the fallback; search: a total timeout;
        report: a retry deadline."""
        clock = self.clock
        orders = self.orders
        assert orders.call(taking(clock, 0.1, fails(ConnectionError, "o1"), "ok")) == "ok"
        with pytest.raises(ConnectionError):
            orders.call(taking(clock, 0.1, *[fails(ConnectionError, "o2") for _ in range(3)]))
        with pytest.raises(KeyError):
            orders.call(taking(clock, 0.1, fails(KeyError, "o3")))
        assert self.prices.call(taking(clock, 0.75, "late")) == "cached"
        with pytest.raises(ResilienceTimeoutError):
            self.search.call(taking(clock, 0.6, fails(ConnectionError, "s1")))
        with pytest.raises(ConnectionError):
            self.report.call(taking(clock, 0.0, *[fails(ConnectionError, "r1")] * 2))

    def open_the_breaker(self) -> None:
        """Two failures open it; the third call is rejected."""
        for _ in range(2):
            with pytest.raises(ConnectionError):
                self.db.call(taking(self.clock, 0.0, fails(ConnectionError, "d")))
        assert self.breaker.state is CircuitState.OPEN
        with pytest.raises(CircuitOpenError):
            self.db.call(taking(self.clock, 0.0, "never"))

    def recover(self) -> None:
        """After the open period: a trial success closes it; then an ignored error."""
        self.clock.advance(30.0)
        assert self.db.call(taking(self.clock, 0.0, "ok")) == "ok"
        with pytest.raises(KeyError):
            self.db.call(taking(self.clock, 0.0, fails(KeyError, "d5")))

    def orchestrate(self) -> ErrorRecoveryOrchestrator:
        """An orchestrator on the same adapter. ledger: a connection error (HIGH) trips the
        component's breaker and stops the retries; then a CRITICAL error alerts two sinks,
        one of them down. Keep the result alive until collection (it is observed weakly)."""
        orchestrator = ErrorRecoveryOrchestrator(
            clock=self.clock,
            listener=self.sdk.listener,
            alert_sinks=[RecordingSink(), RefusingSink()],
        )
        ledger = Pipeline(
            name="ledger",
            retry=RetryConfig(max_attempts=3, backoff=Constant(seconds=0.25)),
            clock=self.clock,
            orchestrator=orchestrator,
            listener=self.sdk.listener,
        )
        with pytest.raises(ConnectionError):
            ledger.call(taking(self.clock, 0.0, fails(ConnectionError, "l1")))
        failure = ErrorContext.from_exception(
            fails(OSError, "l2"),
            component="ledger",
            operation="post",
            timestamp=1_700_000_000.0,
            severity=ErrorSeverity.CRITICAL,
        )
        asyncio.run(orchestrator.handle_error(failure))
        return orchestrator


@contextmanager
def busy_bulkhead(
    sdk: Metrics, clock: FakeClock, wait_until: WaitUntil
) -> Iterator[tuple[Bulkhead, Pipeline]]:
    """A bulkhead with one call running and one queued, in real threads, until exit."""
    bulkhead = Bulkhead(1, max_queue=1, name="pool", listener=sdk.listener)
    pipeline = Pipeline(name="pool", bulkhead=bulkhead, clock=clock, listener=sdk.listener)
    release = threading.Event()
    results: list[object] = []

    def hold() -> str:
        release.wait(10.0)  # safety bound only: the test sets it
        return "done"

    def run() -> None:
        results.append(pipeline.call(hold))

    first = threading.Thread(target=run)
    first.start()
    wait_until(lambda: bulkhead.in_flight == 1)
    second = threading.Thread(target=run)
    second.start()
    wait_until(lambda: bulkhead.queued == 1)
    try:
        yield bulkhead, pipeline
    finally:
        release.set()
        first.join(10.0)
        second.join(10.0)
    assert results == ["done", "done"]


# -- every instrument ---------------------------------------------------------------------


class DownStore(InMemoryStateStore):
    """A real in-memory store that answers nothing, as a store whose server is down."""

    def acquire(self, name: str, params: StoreParams) -> Admission:
        raise StoreUnavailableError("store down")


_SDK_TYPE = {
    "counter": Sum,
    "observable_counter": Sum,
    "histogram": Histogram,
    "observable_gauge": Gauge,
}


def test_every_instrument_in_names_is_exported_as_declared(
    sdk: Metrics, clock: FakeClock, wait_until: WaitUntil
) -> None:
    scenario = Scenario(sdk, clock)
    scenario.retries_and_timeouts()
    scenario.open_the_breaker()
    scenario.recover()
    orchestrator = scenario.orchestrate()
    bus = EventBus(name="bus", queue_size=1, telemetry=False)
    sdk.listener.track(bus)
    bus.subscribe(RetryScheduled, lambda event: None)
    for attempt in (1, 2):
        bus.publish(RetryScheduled(pipeline="p", attempt=attempt, delay=0.0, error_type=None))
    # A shared breaker whose store is down decides locally (degraded, one fallback).
    shared = CircuitBreaker("inventory", store=DownStore(), clock=clock, listener=sdk.listener)
    assert shared.call(lambda: "local") == "local"
    with busy_bulkhead(sdk, clock, wait_until) as (_, pool):
        with pytest.raises(BulkheadFullError):
            pool.call(lambda: "never")
        collected = sdk.collect()
    del orchestrator
    for metric_name in (names.METRIC_BREAKER_STORE_DEGRADED, names.METRIC_BREAKER_STORE_FALLBACKS):
        (point,) = collected[metric_name.name].data.data_points
        assert getattr(point, "value", None) == 1, metric_name.name

    assert set(collected) == {metric.name for metric in names.METRICS}
    for metric in names.METRICS:
        exported = collected[metric.name]
        assert exported.unit == metric.unit, metric.name
        assert exported.description == metric.description, metric.name
        data = exported.data
        assert isinstance(data, _SDK_TYPE[metric.kind]), metric.name
        if isinstance(data, Sum):
            assert data.is_monotonic, metric.name
            assert data.aggregation_temporality is AggregationTemporality.CUMULATIVE
        assert data.data_points, metric.name
        for point in data.data_points:
            attributes = dict(point.attributes or {})
            # Only the declared, low-cardinality attributes; never a message.
            assert set(attributes) <= set(metric.attributes), (metric.name, attributes)
            assert all(SECRET not in str(value) for value in attributes.values())
            if isinstance(point, HistogramDataPoint):
                assert tuple(point.explicit_bounds) == names.DURATION_BUCKETS, metric.name
                assert len(point.bucket_counts) == len(names.DURATION_BUCKETS) + 1


def test_calls_by_outcome_and_error_type(sdk: Metrics, clock: FakeClock) -> None:
    scenario = Scenario(sdk, clock)
    scenario.retries_and_timeouts()
    scenario.open_the_breaker()
    scenario.recover()

    assert values(sdk.collect(), names.METRIC_CALLS) == {
        key({PIPELINE: "orders", OUTCOME: "success"}): 1,
        key({PIPELINE: "orders", OUTCOME: "failure", ERROR: "ConnectionError"}): 1,
        key({PIPELINE: "orders", OUTCOME: "failure", ERROR: "KeyError"}): 1,
        key({PIPELINE: "prices", OUTCOME: "fallback"}): 1,
        key({PIPELINE: "search", OUTCOME: "timeout", ERROR: "ResilienceTimeoutError"}): 1,
        key({PIPELINE: "report", OUTCOME: "failure", ERROR: "ConnectionError"}): 1,
        key({PIPELINE: "db", OUTCOME: "failure", ERROR: "ConnectionError"}): 2,
        key({PIPELINE: "db", OUTCOME: "rejected", ERROR: "CircuitOpenError"}): 1,
        key({PIPELINE: "db", OUTCOME: "success"}): 1,
        key({PIPELINE: "db", OUTCOME: "failure", ERROR: "KeyError"}): 1,
    }


def test_call_durations_are_fake_clock_seconds_in_the_declared_buckets(
    sdk: Metrics, clock: FakeClock
) -> None:
    Scenario(sdk, clock).retries_and_timeouts()
    points = histograms(sdk.collect(), names.METRIC_CALL_DURATION)

    # orders: 0.1 + 0.25 wait + 0.1 = 0.45; 3 x 0.1 + 2 x 0.25 = 0.8 and 0.1;
    # prices: one 0.75 attempt; search: one 0.6 attempt; report: 0 + 1.0 wait + 0.
    assert summary(points) == {
        key({PIPELINE: "orders", OUTCOME: "success"}): (1, 0.45),
        key({PIPELINE: "orders", OUTCOME: "failure"}): (2, 0.9),
        key({PIPELINE: "prices", OUTCOME: "fallback"}): (1, 0.75),
        key({PIPELINE: "search", OUTCOME: "timeout"}): (1, 0.6),
        key({PIPELINE: "report", OUTCOME: "failure"}): (1, 1.0),
    }
    for point in points.values():
        assert tuple(point.explicit_bounds) == names.DURATION_BUCKETS
    success = points[key({PIPELINE: "orders", OUTCOME: "success"})]
    expected = [0] * (len(names.DURATION_BUCKETS) + 1)
    expected[bisect.bisect_left(names.DURATION_BUCKETS, 0.45)] = 1  # the (0.25, 0.5] bucket
    assert list(success.bucket_counts) == expected
    assert success.min == pytest.approx(0.45)
    assert success.max == pytest.approx(0.45)


def test_attempts_and_their_durations(sdk: Metrics, clock: FakeClock) -> None:
    Scenario(sdk, clock).retries_and_timeouts()
    collected = sdk.collect()

    assert values(collected, names.METRIC_ATTEMPTS) == {
        key({PIPELINE: "orders", OUTCOME: "success"}): 1,
        key({PIPELINE: "orders", OUTCOME: "failure", ERROR: "ConnectionError"}): 4,
        key({PIPELINE: "orders", OUTCOME: "failure", ERROR: "KeyError"}): 1,
        key({PIPELINE: "prices", OUTCOME: "timeout", ERROR: "ResilienceTimeoutError"}): 1,
        key({PIPELINE: "search", OUTCOME: "failure", ERROR: "ConnectionError"}): 1,
        key({PIPELINE: "report", OUTCOME: "failure", ERROR: "ConnectionError"}): 2,
    }
    assert summary(histograms(collected, names.METRIC_ATTEMPT_DURATION)) == {
        key({PIPELINE: "orders", OUTCOME: "success"}): (1, 0.1),
        key({PIPELINE: "orders", OUTCOME: "failure"}): (5, 0.5),
        key({PIPELINE: "prices", OUTCOME: "timeout"}): (1, 0.75),
        key({PIPELINE: "search", OUTCOME: "failure"}): (1, 0.6),
        key({PIPELINE: "report", OUTCOME: "failure"}): (2, 0.0),
    }


def test_retries_their_delays_and_why_they_gave_up(sdk: Metrics, clock: FakeClock) -> None:
    Scenario(sdk, clock).retries_and_timeouts()
    collected = sdk.collect()

    assert values(collected, names.METRIC_RETRIES) == {
        key({PIPELINE: "orders", ERROR: "ConnectionError"}): 3,
        key({PIPELINE: "report", ERROR: "ConnectionError"}): 1,
    }
    delays = histograms(collected, names.METRIC_RETRY_DELAY)
    assert summary(delays) == {
        key({PIPELINE: "orders"}): (3, 0.75),
        key({PIPELINE: "report"}): (1, 1.0),
    }
    assert all(tuple(p.explicit_bounds) == names.DURATION_BUCKETS for p in delays.values())
    # A first attempt that is not retryable gives up nothing: no retry was configured to run.
    assert values(collected, names.METRIC_RETRY_EXHAUSTED) == {
        key({PIPELINE: "orders", REASON: "max_attempts"}): 1,
        key({PIPELINE: "search", REASON: "total_timeout"}): 1,
        key({PIPELINE: "report", REASON: "deadline"}): 1,
    }


def test_fallbacks_and_timeouts_by_scope(sdk: Metrics, clock: FakeClock) -> None:
    Scenario(sdk, clock).retries_and_timeouts()
    collected = sdk.collect()

    assert values(collected, names.METRIC_FALLBACKS) == {
        key({PIPELINE: "prices", ERROR: "ResilienceTimeoutError"}): 1,
    }
    assert values(collected, names.METRIC_TIMEOUTS) == {
        key({PIPELINE: "prices", SCOPE: "attempt"}): 1,
        key({PIPELINE: "search", SCOPE: "total"}): 1,
    }


# -- the orchestrator -------------------------------------------------------------------


def test_orchestrator_errors_actions_alerts_and_patterns(sdk: Metrics, clock: FakeClock) -> None:
    orchestrator = Scenario(sdk, clock).orchestrate()
    collected = sdk.collect()

    assert values(collected, names.METRIC_ERRORS) == {
        key({COMPONENT: "ledger", ERROR: "ConnectionError", SEVERITY: "high"}): 1,
        key({COMPONENT: "ledger", ERROR: "OSError", SEVERITY: "critical"}): 1,
    }
    assert values(collected, names.METRIC_RECOVERY_ACTIONS) == {
        key({COMPONENT: "ledger", ACTION: "circuit_break", OUTCOME: "success"}): 2,
        key({COMPONENT: "ledger", ACTION: "failover", OUTCOME: "failure"}): 1,
        key({COMPONENT: "ledger", ACTION: "alert", OUTCOME: "failure"}): 1,
    }
    assert values(collected, names.METRIC_ALERTS) == {
        key(
            {COMPONENT: "ledger", SEVERITY: "critical", SINK: "RecordingSink", OUTCOME: "success"}
        ): 1,
        key(
            {COMPONENT: "ledger", SEVERITY: "critical", SINK: "RefusingSink", OUTCOME: "failure"}
        ): 1,
    }
    assert values(collected, names.METRIC_ERROR_PATTERNS_ACTIVE) == {key({}): 2}
    # The retry gave up at once: the orchestrator stopped it after the first attempt.
    assert values(collected, names.METRIC_RETRY_EXHAUSTED) == {
        key({PIPELINE: "ledger", REASON: "orchestrator"}): 1
    }
    assert (
        values(collected, names.METRIC_BREAKER_STATE)[key({BREAKER: "ledger", STATE: "open"})] == 1
    )

    clock.advance(orchestrator.patterns.window_seconds)
    assert values(sdk.collect(), names.METRIC_ERROR_PATTERNS_ACTIVE) == {key({}): 0}


# -- breakers ---------------------------------------------------------------------------


def states(current: str, breaker: str = "db") -> dict[Key, float]:
    return {
        key({BREAKER: breaker, STATE: state.value}): 1 if state.value == current else 0
        for state in CircuitState
    }


def transition(previous: str, state: str) -> Key:
    return key({BREAKER: "db", FROM: previous, TO: state})


def breaker_calls(success: int, failure: int, ignored: int) -> dict[Key, float]:
    return {
        key({BREAKER: "db", OUTCOME: "success"}): success,
        key({BREAKER: "db", OUTCOME: "failure"}): failure,
        key({BREAKER: "db", OUTCOME: "ignored"}): ignored,
    }


def test_breaker_state_transitions_calls_and_rejections(sdk: Metrics, clock: FakeClock) -> None:
    scenario = Scenario(sdk, clock)
    collected = sdk.collect()
    assert values(collected, names.METRIC_BREAKER_STATE) == states("closed")
    assert values(collected, names.METRIC_BREAKER_CALLS) == breaker_calls(0, 0, 0)
    assert values(collected, names.METRIC_BREAKER_REJECTIONS) == {key({BREAKER: "db"}): 0}

    scenario.open_the_breaker()
    collected = sdk.collect()
    assert values(collected, names.METRIC_BREAKER_STATE) == states("open")
    assert values(collected, names.METRIC_BREAKER_TRANSITIONS) == {transition("closed", "open"): 1}
    assert values(collected, names.METRIC_BREAKER_CALLS) == breaker_calls(0, 2, 0)
    assert values(collected, names.METRIC_BREAKER_REJECTIONS) == {key({BREAKER: "db"}): 1}

    scenario.recover()
    collected = sdk.collect()
    assert values(collected, names.METRIC_BREAKER_STATE) == states("closed")
    assert values(collected, names.METRIC_BREAKER_TRANSITIONS) == {
        transition("closed", "open"): 1,
        transition("open", "half_open"): 1,
        transition("half_open", "closed"): 1,
    }
    assert values(collected, names.METRIC_BREAKER_CALLS) == breaker_calls(1, 2, 1)
    assert values(collected, names.METRIC_BREAKER_REJECTIONS) == {key({BREAKER: "db"}): 1}


def test_an_open_breaker_past_its_open_period_reads_half_open_without_moving(
    sdk: Metrics, clock: FakeClock
) -> None:
    scenario = Scenario(sdk, clock)
    scenario.open_the_breaker()
    clock.advance(30.0)

    collected = sdk.collect()
    assert values(collected, names.METRIC_BREAKER_STATE) == states("half_open")
    # Collection moved nothing: no transition happened, so none was counted.
    assert values(collected, names.METRIC_BREAKER_TRANSITIONS) == {transition("closed", "open"): 1}

    assert scenario.breaker.state is CircuitState.HALF_OPEN  # reading the state moves it
    assert values(sdk.collect(), names.METRIC_BREAKER_TRANSITIONS) == {
        transition("closed", "open"): 1,
        transition("open", "half_open"): 1,
    }


def test_operator_states_are_reported_too(sdk: Metrics, clock: FakeClock) -> None:
    breaker = CircuitBreaker("db", clock=clock, listener=sdk.listener)
    breaker.force_open()
    assert values(sdk.collect(), names.METRIC_BREAKER_STATE) == states("forced_open")
    breaker.disable()
    assert values(sdk.collect(), names.METRIC_BREAKER_STATE) == states("disabled")
    assert values(sdk.collect(), names.METRIC_BREAKER_TRANSITIONS) == {
        transition("closed", "forced_open"): 1,
        transition("forced_open", "disabled"): 1,
    }


def test_breakers_are_observed_weakly_and_separately(sdk: Metrics, clock: FakeClock) -> None:
    kept = CircuitBreaker("kept", clock=clock, listener=sdk.listener)
    dropped = CircuitBreaker("dropped", clock=clock, listener=sdk.listener)
    dropped.force_open()
    assert values(sdk.collect(), names.METRIC_BREAKER_STATE) == {
        **states("closed", breaker="kept"),
        **states("forced_open", breaker="dropped"),
    }
    del dropped
    gc.collect()
    assert kept.state is CircuitState.CLOSED
    assert values(sdk.collect(), names.METRIC_BREAKER_STATE) == states("closed", breaker="kept")


def test_track_takes_only_observable_components(sdk: Metrics) -> None:
    with pytest.raises(TypeError, match="CircuitBreaker, Bulkhead, EventBus or orchestrator"):
        sdk.listener.track(object())


def test_a_breaker_without_telemetry_is_not_observed(sdk: Metrics, clock: FakeClock) -> None:
    CircuitBreaker("quiet", clock=clock, telemetry=False).force_open()
    assert values(sdk.collect(), names.METRIC_BREAKER_STATE) == {}


# -- bulkheads --------------------------------------------------------------------------


def test_bulkhead_in_flight_queued_and_rejections(
    sdk: Metrics, clock: FakeClock, wait_until: WaitUntil
) -> None:
    pool = {BULKHEAD: "pool"}
    with busy_bulkhead(sdk, clock, wait_until) as (bulkhead, pipeline):
        collected = sdk.collect()
        assert values(collected, names.METRIC_BULKHEAD_IN_FLIGHT) == {key(pool): 1}
        assert values(collected, names.METRIC_BULKHEAD_QUEUED) == {key(pool): 1}
        assert values(collected, names.METRIC_BULKHEAD_REJECTIONS) == {key(pool): 0}

        with pytest.raises(BulkheadFullError):
            pipeline.call(lambda: "never")
        assert bulkhead.rejections == 1

    collected = sdk.collect()
    assert values(collected, names.METRIC_BULKHEAD_IN_FLIGHT) == {key(pool): 0}
    assert values(collected, names.METRIC_BULKHEAD_QUEUED) == {key(pool): 0}
    assert values(collected, names.METRIC_BULKHEAD_REJECTIONS) == {key(pool): 1}
    assert values(collected, names.METRIC_CALLS) == {
        key({PIPELINE: "pool", OUTCOME: "success"}): 2,
        key({PIPELINE: "pool", OUTCOME: "rejected", ERROR: "BulkheadFullError"}): 1,
    }
    assert (
        values(collected, names.METRIC_ATTEMPTS)[
            key({PIPELINE: "pool", OUTCOME: "rejected", ERROR: "BulkheadFullError"})
        ]
        == 1
    )


# -- switches ---------------------------------------------------------------------------


def test_traces_off_still_counts(clock: FakeClock) -> None:
    sdk = Metrics(traces=False)
    pipeline = Pipeline(name="svc", clock=clock, listener=sdk.listener)
    assert pipeline.call(taking(clock, 0.2, "ok")) == "ok"
    collected = sdk.collect()
    assert values(collected, names.METRIC_CALLS) == {key({PIPELINE: "svc", OUTCOME: "success"}): 1}
    assert summary(histograms(collected, names.METRIC_CALL_DURATION)) == {
        key({PIPELINE: "svc", OUTCOME: "success"}): (1, 0.2)
    }
    sdk.provider.shutdown()


def test_counts_add_up_across_threads(sdk: Metrics, clock: FakeClock) -> None:
    threads, calls = 4, 250
    pipeline = Pipeline(name="svc", clock=clock, listener=sdk.listener)
    start = threading.Barrier(threads, timeout=10.0)

    def work() -> None:
        start.wait()
        for n in range(calls):
            if n % 5 == 0:
                with pytest.raises(ConnectionError):
                    pipeline.call(taking(clock, 0.0, fails(ConnectionError, "t")))
            else:
                pipeline.call(taking(clock, 0.0, "ok"))

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10.0)
    assert values(sdk.collect(), names.METRIC_CALLS) == {
        key({PIPELINE: "svc", OUTCOME: "success"}): threads * calls * 4 // 5,
        key({PIPELINE: "svc", OUTCOME: "failure", ERROR: "ConnectionError"}): threads * calls // 5,
    }


def test_a_rejected_result_is_counted_without_an_error_type(sdk: Metrics, clock: FakeClock) -> None:
    pipeline = Pipeline(
        name="svc",
        retry=RetryConfig(
            max_attempts=2, backoff=Constant(seconds=0.5), retry_on_result=lambda r: r is None
        ),
        clock=clock,
        listener=sdk.listener,
    )
    assert pipeline.call(taking(clock, 0.0, None, None)) is None  # returned as is, at last
    collected = sdk.collect()
    assert values(collected, names.METRIC_RETRIES) == {key({PIPELINE: "svc"}): 1}
    assert values(collected, names.METRIC_ATTEMPTS) == {
        key({PIPELINE: "svc", OUTCOME: "failure"}): 2
    }
    assert values(collected, names.METRIC_CALLS) == {key({PIPELINE: "svc", OUTCOME: "failure"}): 1}
    assert values(collected, names.METRIC_RETRY_EXHAUSTED) == {
        key({PIPELINE: "svc", REASON: "max_attempts"}): 1
    }
