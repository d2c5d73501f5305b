"""Spans of the OpenTelemetry adapter, read back from an in-memory SDK exporter.

Every test passes its own SDK providers explicitly (the pytest process never sets the
global ones) and runs on a fake clock. The same scenarios go through the sync driver,
the async driver and ``@resilient`` on sync and async functions.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, SpanKind, StatusCode

from otel_resilience import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    Fallback,
    FallbackContext,
    Pipeline,
    ResilienceTimeoutError,
    RetryConfig,
    resilient,
)
from otel_resilience.backoff import Constant
from otel_resilience.telemetry import (
    ATTEMPT_CONTEXT_KEY,
    DEFAULT_MAX_TEXT_BYTES,
    OpenTelemetryListener,
    current_attempt,
    names,
)
from otel_resilience.testing import FakeClock, slow

# -- an SDK of our own, per test -------------------------------------------------------


class Otel:
    """Explicit SDK providers with in-memory export, and the adapter reporting to them."""

    def __init__(self, **listener_options: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        self.listener = OpenTelemetryListener(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            **listener_options,
        )
        self.tracer = self.tracer_provider.get_tracer("tests")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def span(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"{len(found)} spans named {name!r} in {self.spans()}"
        return found[0]

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def otel() -> Iterator[Otel]:
    sdk = Otel()
    yield sdk
    sdk.shutdown()


def attrs(item: ReadableSpan | Event) -> dict[str, Any]:
    return dict(item.attributes or {})


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [attrs(event) for event in span.events if event.name == name]


def span_id(span: ReadableSpan) -> int:
    context = span.context
    assert context is not None
    return int(context.span_id)


def trace_id(span: ReadableSpan) -> int:
    context = span.context
    assert context is not None
    return int(context.trace_id)


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def current_span_id() -> int:
    return trace.get_current_span().get_span_context().span_id


def assert_context_clean() -> None:
    """Nothing of a finished call is left attached to the caller's context."""
    assert trace.get_current_span() is INVALID_SPAN
    assert current_attempt() is None


def retry(attempts: int = 3, delay: float = 0.5) -> RetryConfig:
    return RetryConfig(max_attempts=attempts, backoff=Constant(seconds=delay))


class Probe:
    """The protected function's body: notes what it sees, opens a user span, plays a script.

    Exceptions in the script are raised as the very objects given.
    """

    def __init__(self, otel: Otel, clock: FakeClock, *outcomes: object, seconds: float = 0.0):
        self.tracer = otel.tracer
        self.clock = clock
        self.outcomes = list(outcomes)
        self.seconds = seconds
        self.attempts: list[int | None] = []
        self.current: list[int] = []
        self.user_spans: list[int] = []

    def __call__(self) -> Any:
        self.attempts.append(current_attempt())
        self.current.append(current_span_id())
        with self.tracer.start_as_current_span("user work") as span:
            self.user_spans.append(span.get_span_context().span_id)
        self.clock.advance(self.seconds)
        item = self.outcomes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


# -- four ways to run a pipeline ------------------------------------------------------

Drive = Callable[[Pipeline, Callable[[], Any]], Any]


def via_call(pipeline: Pipeline, body: Callable[[], Any]) -> Any:
    return pipeline.call(body)


def via_acall(pipeline: Pipeline, body: Callable[[], Any]) -> Any:
    async def work() -> Any:
        await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop
        return body()

    return asyncio.run(pipeline.acall(work))


def via_resilient(pipeline: Pipeline, body: Callable[[], Any]) -> Any:
    @resilient(pipeline)
    def work() -> Any:
        return body()

    return work()


def via_resilient_async(pipeline: Pipeline, body: Callable[[], Any]) -> Any:
    @resilient(pipeline)
    async def work() -> Any:
        await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop
        return body()

    return asyncio.run(work())


DRIVERS = pytest.mark.parametrize(
    "drive",
    [via_call, via_acall, via_resilient, via_resilient_async],
    ids=["call", "acall", "resilient", "resilient-async"],
)


# -- the shape of a call ------------------------------------------------------------------


@DRIVERS
def test_a_call_that_succeeds_after_retries(drive: Drive, clock: FakeClock, otel: Otel) -> None:
    first, second = ConnectionError("first"), TimeoutError("second")
    probe = Probe(otel, clock, first, second, "ok", seconds=0.1)
    pipeline = Pipeline(name="inventory", retry=retry(), clock=clock, listener=otel.listener)

    assert drive(pipeline, probe) == "ok"

    call = otel.span("inventory")
    attempts = otel.named(f"inventory {names.ATTEMPT_SPAN}")
    users = otel.named("user work")
    assert [attrs(a)[names.ATTR_ATTEMPT] for a in attempts] == [1, 2, 3]
    assert call.kind is SpanKind.INTERNAL
    assert all(a.kind is SpanKind.INTERNAL for a in attempts)
    assert call.instrumentation_scope is not None
    assert call.instrumentation_scope.name == names.INSTRUMENTATION_SCOPE
    # One trace: the call is its root, attempts are its children, user spans theirs.
    assert call.parent is None
    assert {trace_id(s) for s in [call, *attempts, *users]} == {trace_id(call)}
    assert [parent_id(a) for a in attempts] == [span_id(call)] * 3
    assert [parent_id(u) for u in users] == [span_id(a) for a in attempts]
    assert probe.user_spans == [span_id(u) for u in users]
    # Inside the function, the attempt span is current and its number is in the context.
    assert probe.current == [span_id(a) for a in attempts]
    assert probe.attempts == [1, 2, 3]

    # Failed attempts are errors; the call, which succeeded for its caller, is not.
    for attempt, error in zip(attempts[:2], (first, second), strict=True):
        assert attempt.status.status_code is StatusCode.ERROR
        assert attrs(attempt)[names.ATTR_ERROR_TYPE] == type(error).__qualname__
        assert attrs(attempt)[names.ATTR_OUTCOME] == "failure"
        assert events(attempt, "exception") == [
            {
                names.ATTR_EXCEPTION_TYPE: type(error).__qualname__,
                names.ATTR_ERROR_MESSAGE: str(error),
            }
        ]
    assert attempts[2].status.status_code is StatusCode.UNSET
    assert attrs(attempts[2])[names.ATTR_OUTCOME] == "success"
    assert names.ATTR_ERROR_TYPE not in attrs(attempts[2])
    assert call.status.status_code is StatusCode.UNSET
    assert attrs(call) == {names.ATTR_PIPELINE: "inventory", names.ATTR_OUTCOME: "success"}

    assert events(call, names.EVENT_RETRY_SCHEDULED) == [
        {names.ATTR_ATTEMPT: 1, names.ATTR_DELAY: 0.5, names.ATTR_ERROR_TYPE: "ConnectionError"},
        {names.ATTR_ATTEMPT: 2, names.ATTR_DELAY: 0.5, names.ATTR_ERROR_TYPE: "TimeoutError"},
    ]
    assert events(call, names.EVENT_RETRY_EXHAUSTED) == []
    assert_context_clean()


@DRIVERS
def test_a_call_that_fails_finally(drive: Drive, clock: FakeClock, otel: Otel) -> None:
    last = ConnectionError("third")
    probe = Probe(otel, clock, ConnectionError("first"), ConnectionError("second"), last)
    pipeline = Pipeline(name="inventory", retry=retry(), clock=clock, listener=otel.listener)

    with pytest.raises(ConnectionError) as caught:
        drive(pipeline, probe)

    assert caught.value is last
    call = otel.span("inventory")
    attempts = otel.named("inventory attempt")
    assert [a.status.status_code for a in attempts] == [StatusCode.ERROR] * 3
    assert call.status.status_code is StatusCode.ERROR
    assert attrs(call) == {
        names.ATTR_PIPELINE: "inventory",
        names.ATTR_OUTCOME: "failure",
        names.ATTR_ERROR_TYPE: "ConnectionError",
    }
    assert len(events(call, names.EVENT_RETRY_SCHEDULED)) == 2
    assert events(call, names.EVENT_RETRY_EXHAUSTED) == [
        {names.ATTR_ATTEMPT: 3, names.ATTR_REASON: "max_attempts"}
    ]
    assert_context_clean()


@DRIVERS
def test_a_fallback_is_a_recovery_span_and_the_call_is_no_error(
    drive: Drive, clock: FakeClock, otel: Otel
) -> None:
    inside: list[int] = []

    def cached(context: FallbackContext) -> str:
        inside.append(current_span_id())
        return f"cached after {context.attempts}"

    probe = Probe(otel, clock, ConnectionError("a"), ConnectionError("b"))
    pipeline = Pipeline(
        name="prices",
        fallback=Fallback(handler=cached),
        retry=retry(attempts=2),
        clock=clock,
        listener=otel.listener,
    )

    assert drive(pipeline, probe) == "cached after 2"

    call = otel.span("prices")
    recovery = otel.span(f"prices {names.RECOVERY_FALLBACK}")
    assert recovery.kind is SpanKind.INTERNAL
    assert attrs(recovery) == {
        names.ATTR_PIPELINE: "prices",
        names.ATTR_RECOVERY_ACTION: names.RECOVERY_FALLBACK,
        names.ATTR_ERROR_TYPE: "ConnectionError",
    }
    assert parent_id(recovery) == span_id(call)
    assert trace_id(recovery) == trace_id(call)
    assert recovery.status.status_code is StatusCode.UNSET
    assert inside == [span_id(recovery)]  # the handler runs inside the recovery span
    assert call.status.status_code is StatusCode.UNSET
    assert attrs(call) == {names.ATTR_PIPELINE: "prices", names.ATTR_OUTCOME: "fallback"}
    assert [a.status.status_code for a in otel.named("prices attempt")] == [StatusCode.ERROR] * 2
    assert_context_clean()


def test_a_fallback_that_raises_fails_its_span_and_the_call(clock: FakeClock, otel: Otel) -> None:
    missing = LookupError("no cache either")

    def cached(context: FallbackContext) -> str:
        raise missing

    pipeline = Pipeline(
        name="prices", fallback=Fallback(handler=cached), clock=clock, listener=otel.listener
    )
    with pytest.raises(LookupError) as caught:
        pipeline.call(Probe(otel, clock, ConnectionError("down")))

    assert caught.value is missing
    recovery = otel.span("prices fallback")
    assert recovery.status.status_code is StatusCode.ERROR
    assert attrs(recovery)[names.ATTR_ERROR_TYPE] == "LookupError"
    call = otel.span("prices")
    assert call.status.status_code is StatusCode.ERROR
    assert attrs(call)[names.ATTR_ERROR_TYPE] == "LookupError"
    assert attrs(call)[names.ATTR_OUTCOME] == "failure"
    assert_context_clean()


def test_a_resilient_function_names_its_spans_after_itself(clock: FakeClock, otel: Otel) -> None:
    @resilient(
        retry=retry(),
        clock=clock,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    )
    def fetch(key: str) -> str:
        return key.upper()

    assert fetch("a") == "A"
    name = fetch.__qualname__
    call = otel.span(name)
    attempt = otel.span(f"{name} attempt")
    assert parent_id(attempt) == span_id(call)
    assert attrs(call)[names.ATTR_PIPELINE] == name


def test_the_call_span_joins_the_trace_current_at_the_call(clock: FakeClock, otel: Otel) -> None:
    pipeline = Pipeline(name="inner", clock=clock, listener=otel.listener)
    with otel.tracer.start_as_current_span("request"):
        pipeline.call(lambda: "ok")
    request = otel.span("request")
    call = otel.span("inner")
    assert parent_id(call) == span_id(request)
    assert trace_id(call) == trace_id(request)


def test_nested_pipelines_nest_their_spans_and_attempt_numbers(
    clock: FakeClock, otel: Otel
) -> None:
    inner_seen: list[int | None] = []
    outer_seen: list[int | None] = []
    inner_failures = [ConnectionError("inner")]
    outer_failures = [ConnectionError("outer")]
    inner = Pipeline(name="inner", retry=retry(), clock=clock, listener=otel.listener)
    outer = Pipeline(name="outer", retry=retry(), clock=clock, listener=otel.listener)

    def inner_body() -> str:
        inner_seen.append(current_attempt())
        if inner_failures:
            raise inner_failures.pop()
        return "inner ok"

    def outer_body() -> str:
        outer_seen.append(current_attempt())
        if outer_failures:
            raise outer_failures.pop()
        result = inner.call(inner_body)
        outer_seen.append(current_attempt())  # restored once the inner call is over
        return result

    assert outer.call(outer_body) == "inner ok"

    assert outer_seen == [1, 2, 2]
    assert inner_seen == [1, 2]
    outer_attempts = otel.named("outer attempt")
    inner_call = otel.span("inner")
    assert parent_id(inner_call) == span_id(outer_attempts[1])
    assert [parent_id(a) for a in otel.named("inner attempt")] == [span_id(inner_call)] * 2
    assert len({trace_id(s) for s in otel.spans()}) == 1
    assert_context_clean()


def test_the_attempt_number_is_an_opentelemetry_context_value(clock: FakeClock, otel: Otel) -> None:
    seen: list[object] = []
    pipeline = Pipeline(name="svc", retry=retry(), clock=clock, listener=otel.listener)
    failures = [ConnectionError("once")]

    def body() -> str:
        seen.append(otel_context.get_value(ATTEMPT_CONTEXT_KEY))
        if failures:
            raise failures.pop()
        return "ok"

    assert current_attempt() is None
    pipeline.call(body)
    assert seen == [1, 2]
    assert current_attempt() is None


# -- strategy events on the span current when they happen ----------------------------------


def test_breaker_transitions_land_on_the_attempt_span_where_they_happen(
    clock: FakeClock, otel: Otel
) -> None:
    breaker = CircuitBreaker(
        "db",
        CircuitBreakerConfig(
            failure_threshold=2, success_threshold=1, timeout_seconds=30.0, half_open_max_calls=1
        ),
        clock=clock,
        listener=otel.listener,
    )
    pipeline = Pipeline(
        name="db",
        retry=retry(delay=1.0),
        circuit_breaker=breaker,
        clock=clock,
        listener=otel.listener,
    )
    with pytest.raises(CircuitOpenError):
        pipeline.call(Probe(otel, clock, ConnectionError("a"), ConnectionError("b")))

    first, second, rejected = otel.named("db attempt")
    assert events(first, names.EVENT_BREAKER_TRANSITION) == []
    assert events(second, names.EVENT_BREAKER_TRANSITION) == [
        {
            names.ATTR_BREAKER: "db",
            names.ATTR_FROM_STATE: "closed",
            names.ATTR_TO_STATE: "open",
            names.ATTR_REASON: "failure_threshold",
        }
    ]
    # The third attempt was refused: the function never ran, and its span says why.
    assert attrs(rejected)[names.ATTR_OUTCOME] == "rejected"
    assert attrs(rejected)[names.ATTR_ERROR_TYPE] == "CircuitOpenError"
    assert rejected.status.status_code is StatusCode.ERROR
    assert events(rejected, names.EVENT_REJECTED) == [{names.ATTR_ERROR_TYPE: "CircuitOpenError"}]
    assert len(otel.named("user work")) == 2
    call = otel.span("db")
    assert attrs(call)[names.ATTR_OUTCOME] == "rejected"
    assert attrs(call)[names.ATTR_ERROR_TYPE] == "CircuitOpenError"
    assert call.status.status_code is StatusCode.ERROR
    assert events(call, names.EVENT_BREAKER_TRANSITION) == []

    otel.exporter.clear()
    clock.advance(30.0)
    assert pipeline.call(lambda: "recovered") == "recovered"
    trial = otel.span("db attempt")
    assert [
        (e[names.ATTR_FROM_STATE], e[names.ATTR_TO_STATE], e[names.ATTR_REASON])
        for e in events(trial, names.EVENT_BREAKER_TRANSITION)
    ] == [("open", "half_open", "open_timeout"), ("half_open", "closed", "trial_success")]
    assert_context_clean()


def test_a_transition_outside_any_call_lands_on_the_callers_span(
    clock: FakeClock, otel: Otel
) -> None:
    breaker = CircuitBreaker("db", clock=clock, listener=otel.listener)
    with otel.tracer.start_as_current_span("operator"):
        assert breaker.trip()
    breaker.reset()  # no span current: recorded nowhere, and no error
    operator = otel.span("operator")
    assert events(operator, names.EVENT_BREAKER_TRANSITION) == [
        {
            names.ATTR_BREAKER: "db",
            names.ATTR_FROM_STATE: "closed",
            names.ATTR_TO_STATE: "open",
            names.ATTR_REASON: "manual",
        }
    ]
    assert [s.name for s in otel.spans()] == ["operator"]


def test_a_bulkhead_rejection_marks_the_attempt_span(clock: FakeClock, otel: Otel) -> None:
    bulkhead = Bulkhead(1, name="pool", listener=otel.listener)
    pipeline = Pipeline(name="pool", bulkhead=bulkhead, clock=clock, listener=otel.listener)
    assert bulkhead.try_acquire()
    try:
        with pytest.raises(BulkheadFullError):
            pipeline.call(lambda: "never")
    finally:
        bulkhead.release()

    attempt = otel.span("pool attempt")
    assert attrs(attempt)[names.ATTR_OUTCOME] == "rejected"
    assert attrs(attempt)[names.ATTR_ERROR_TYPE] == "BulkheadFullError"
    assert events(attempt, names.EVENT_REJECTED) == [{names.ATTR_ERROR_TYPE: "BulkheadFullError"}]
    assert attrs(otel.span("pool"))[names.ATTR_OUTCOME] == "rejected"


def test_an_attempt_timeout_is_an_event_on_the_attempt_span(clock: FakeClock, otel: Otel) -> None:
    pipeline = Pipeline(name="slow", attempt_timeout=0.5, clock=clock, listener=otel.listener)
    with pytest.raises(ResilienceTimeoutError):
        pipeline.call(slow(clock, 1.0, lambda: "late"))

    attempt = otel.span("slow attempt")
    assert events(attempt, names.EVENT_TIMEOUT) == [{names.ATTR_TIMEOUT_SCOPE: "attempt"}]
    assert attrs(attempt)[names.ATTR_OUTCOME] == "timeout"
    assert attempt.status.status_code is StatusCode.ERROR
    call = otel.span("slow")
    assert attrs(call)[names.ATTR_OUTCOME] == "timeout"
    assert attrs(call)[names.ATTR_ERROR_TYPE] == "ResilienceTimeoutError"
    assert call.status.status_code is StatusCode.ERROR


@pytest.mark.asyncio
async def test_an_async_attempt_timeout_is_an_event_on_the_attempt_span(
    clock: FakeClock, otel: Otel
) -> None:
    async def late() -> str:
        return "late"

    pipeline = Pipeline(name="slow", attempt_timeout=0.5, clock=clock, listener=otel.listener)
    with pytest.raises(ResilienceTimeoutError):
        await pipeline.acall(slow(clock, 1.0, late))

    attempt = otel.span("slow attempt")
    assert events(attempt, names.EVENT_TIMEOUT) == [{names.ATTR_TIMEOUT_SCOPE: "attempt"}]
    assert attrs(attempt)[names.ATTR_OUTCOME] == "timeout"
    assert attrs(otel.span("slow"))[names.ATTR_OUTCOME] == "timeout"
    assert_context_clean()


def test_a_total_timeout_is_an_event_on_the_call_span(clock: FakeClock, otel: Otel) -> None:
    pipeline = Pipeline(
        name="search", timeout=1.0, retry=retry(attempts=5), clock=clock, listener=otel.listener
    )
    probe = Probe(otel, clock, *[ConnectionError("down")] * 5, seconds=0.4)
    with pytest.raises(ResilienceTimeoutError) as caught:
        pipeline.call(probe)

    assert caught.value.scope == "total"
    call = otel.span("search")
    assert events(call, names.EVENT_TIMEOUT) == [{names.ATTR_TIMEOUT_SCOPE: "total"}]
    assert attrs(call)[names.ATTR_OUTCOME] == "timeout"
    assert call.status.status_code is StatusCode.ERROR


# -- the exception event -----------------------------------------------------------------


class Unprintable(Exception):
    """An exception whose ``str()`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def exception_event(otel: Otel, pipeline_name: str) -> dict[str, Any]:
    found = events(otel.span(f"{pipeline_name} attempt"), "exception")
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize(
    "char", ["x", "\u00e9", "\u20ac", "\U0001f600"], ids=["1B", "2B", "3B", "4B"]
)
def test_exception_messages_are_cut_to_1024_bytes(char: str, clock: FakeClock, otel: Otel) -> None:
    message = char * 3000
    pipeline = Pipeline(name="svc", clock=clock, listener=otel.listener)
    with pytest.raises(ValueError):
        pipeline.call(Probe(otel, clock, ValueError(message)))

    text = exception_event(otel, "svc")[names.ATTR_ERROR_MESSAGE]
    size = len(text.encode("utf-8"))
    assert DEFAULT_MAX_TEXT_BYTES == 1024
    # Cut at a character boundary, marked, and as long as the limit allows.
    assert DEFAULT_MAX_TEXT_BYTES - len(char.encode("utf-8")) < size <= DEFAULT_MAX_TEXT_BYTES
    assert text.endswith("...")
    assert message.startswith(text[:-3])


def test_a_message_within_the_limit_is_kept_whole(clock: FakeClock, otel: Otel) -> None:
    message = "\u00e9" * (DEFAULT_MAX_TEXT_BYTES // 2)  # exactly 1024 bytes
    pipeline = Pipeline(name="svc", clock=clock, listener=otel.listener)
    with pytest.raises(ValueError):
        pipeline.call(Probe(otel, clock, ValueError(message)))
    assert exception_event(otel, "svc")[names.ATTR_ERROR_MESSAGE] == message


def test_max_text_bytes_sets_the_limit(clock: FakeClock) -> None:
    otel = Otel(max_text_bytes=16)
    pipeline = Pipeline(name="svc", clock=clock, listener=otel.listener)
    with pytest.raises(ValueError):
        pipeline.call(Probe(otel, clock, ValueError("\u00e9" * 10)))
    # 13 bytes of room before the marker: six 2-byte characters, the split one dropped.
    assert exception_event(otel, "svc")[names.ATTR_ERROR_MESSAGE] == "\u00e9" * 6 + "..."
    otel.shutdown()


def test_an_unprintable_exception_is_described_and_the_call_behaves(
    clock: FakeClock, otel: Otel
) -> None:
    first, last = Unprintable(), Unprintable()
    pipeline = Pipeline(name="svc", retry=retry(attempts=2), clock=clock, listener=otel.listener)
    with pytest.raises(Unprintable) as caught:
        pipeline.call(Probe(otel, clock, first, last))

    assert caught.value is last
    attempts = otel.named("svc attempt")
    assert len(attempts) == 2  # the first failure was retried as usual
    for attempt in attempts:
        assert events(attempt, "exception") == [
            {
                names.ATTR_EXCEPTION_TYPE: "Unprintable",
                names.ATTR_ERROR_MESSAGE: "<unprintable Unprintable>",
            }
        ]
        assert attempt.status.status_code is StatusCode.ERROR
    assert attrs(otel.span("svc"))[names.ATTR_ERROR_TYPE] == "Unprintable"
    assert_context_clean()


def test_no_stacktrace_by_default(clock: FakeClock, otel: Otel) -> None:
    pipeline = Pipeline(name="svc", clock=clock, listener=otel.listener)
    with pytest.raises(ConnectionError):
        pipeline.call(Probe(otel, clock, ConnectionError("down")))
    assert "exception.stacktrace" not in exception_event(otel, "svc")


def test_record_exception_stacktrace_adds_the_traceback(clock: FakeClock) -> None:
    otel = Otel(record_exception_stacktrace=True)
    pipeline = Pipeline(name="svc", clock=clock, listener=otel.listener)
    with pytest.raises(ConnectionError):
        pipeline.call(Probe(otel, clock, ConnectionError("down")))
    event = exception_event(otel, "svc")
    stacktrace = event["exception.stacktrace"]
    assert stacktrace.startswith("Traceback")
    assert "in __call__" in stacktrace  # the frame of the protected function
    assert "ConnectionError: down" in stacktrace
    assert event[names.ATTR_ERROR_MESSAGE] == "down"
    otel.shutdown()


def test_an_unprintable_exception_with_stacktraces_still_ends_its_attempt_span(
    clock: FakeClock,
) -> None:
    otel = Otel(record_exception_stacktrace=True)
    failure = Unprintable()
    pipeline = Pipeline(name="svc", clock=clock, listener=otel.listener)
    try:
        with pytest.raises(Unprintable) as caught:
            pipeline.call(Probe(otel, clock, failure))
        assert caught.value is failure
        event = exception_event(otel, "svc")
        assert event[names.ATTR_ERROR_MESSAGE] == "<unprintable Unprintable>"
        assert "exception.stacktrace" in event
    finally:
        otel.shutdown()


def test_messages_are_cut_with_stacktraces_too(clock: FakeClock) -> None:
    otel = Otel(record_exception_stacktrace=True)
    pipeline = Pipeline(name="svc", clock=clock, listener=otel.listener)
    try:
        with pytest.raises(ValueError):
            pipeline.call(Probe(otel, clock, ValueError("x" * 5000)))
        text = exception_event(otel, "svc")[names.ATTR_ERROR_MESSAGE]
        assert len(text.encode("utf-8")) <= DEFAULT_MAX_TEXT_BYTES
    finally:
        otel.shutdown()


# -- what gets no spans -------------------------------------------------------------------


def test_traces_false_records_no_spans(clock: FakeClock) -> None:
    otel = Otel(traces=False)
    pipeline = Pipeline(name="svc", retry=retry(), clock=clock, listener=otel.listener)
    seen: list[int] = []
    failures = [ConnectionError("once")]

    def body() -> str:
        seen.append(current_span_id())
        if failures:
            raise failures.pop()
        return "ok"

    assert pipeline.call(body) == "ok"
    assert otel.spans() == []
    assert seen == [0, 0]  # no span current inside the function
    otel.shutdown()


def test_telemetry_false_records_no_spans(clock: FakeClock, otel: Otel) -> None:
    breaker = CircuitBreaker("db", clock=clock, telemetry=False)
    pipeline = Pipeline(name="svc", circuit_breaker=breaker, clock=clock, telemetry=False)
    with otel.tracer.start_as_current_span("request"):
        assert pipeline.call(lambda: "ok") == "ok"
        breaker.trip()
    assert [s.name for s in otel.spans()] == ["request"]
    assert otel.span("request").events == ()


# -- concurrency: every call keeps its own trace ----------------------------------------------


@pytest.mark.asyncio
async def test_concurrent_tasks_keep_their_own_traces(clock: FakeClock, otel: Otel) -> None:
    tasks = 5
    pipeline = Pipeline(name="svc", retry=retry(delay=0.0), clock=clock, listener=otel.listener)
    arrived = 0
    all_in = asyncio.Event()
    seen: dict[int, list[tuple[int | None, int]]] = {n: [] for n in range(tasks)}
    failed: set[int] = set()

    async def body(n: int) -> int:
        nonlocal arrived
        seen[n].append((current_attempt(), current_span_id()))
        if n not in failed:  # every task fails once, after all tasks are inside
            failed.add(n)
            arrived += 1
            if arrived == tasks:
                all_in.set()
            await all_in.wait()
            raise ConnectionError(f"task {n}")
        await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop
        seen[n].append((current_attempt(), current_span_id()))
        return n

    results = await asyncio.gather(*(pipeline.acall(body, n) for n in range(tasks)))

    assert results == list(range(tasks))
    calls = otel.named("svc")
    attempts = otel.named("svc attempt")
    assert len(calls) == tasks
    assert len(attempts) == 2 * tasks
    assert len({trace_id(c) for c in calls}) == tasks
    by_id = {span_id(a): a for a in attempts}
    call_of_trace = {trace_id(c): c for c in calls}
    for n in range(tasks):
        numbers = [attempt for attempt, _ in seen[n]]
        assert numbers == [1, 2, 2]
        spans = [by_id[current] for _, current in seen[n]]
        # Each task saw only attempt spans of its own call, in its own trace.
        assert len({trace_id(s) for s in spans}) == 1
        own_call = call_of_trace[trace_id(spans[0])]
        assert all(parent_id(s) == span_id(own_call) for s in spans)
        assert [attrs(s)[names.ATTR_ATTEMPT] for s in spans] == [1, 2, 2]
    assert_context_clean()


def test_concurrent_threads_keep_their_own_traces(clock: FakeClock, otel: Otel) -> None:
    threads = 4
    pipeline = Pipeline(name="svc", clock=clock, listener=otel.listener)
    barrier = threading.Barrier(threads, timeout=10.0)
    seen: dict[int, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def body(n: int) -> None:
        barrier.wait()  # every thread is inside its call at once
        span = trace.get_current_span().get_span_context()
        seen[n] = (span.trace_id, span.span_id)

    def run(n: int) -> None:
        try:
            pipeline.call(body, n)
            assert_context_clean()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10.0)
    assert errors == []
    attempts = {span_id(a): a for a in otel.named("svc attempt")}
    calls = {span_id(c): c for c in otel.named("svc")}
    assert len(calls) == threads
    assert len({t for t, _ in seen.values()}) == threads
    for trace_of_call, current in seen.values():
        attempt = attempts[current]
        assert trace_id(attempt) == trace_of_call
        call_id = parent_id(attempt)
        assert call_id is not None
        assert trace_id(calls[call_id]) == trace_of_call


@pytest.mark.asyncio
async def test_a_cancelled_call_ends_its_spans_and_restores_the_context(
    clock: FakeClock, otel: Otel
) -> None:
    entered = asyncio.Event()
    never = asyncio.Event()

    async def body() -> None:
        entered.set()
        await never.wait()

    pipeline = Pipeline(name="svc", retry=retry(), clock=clock, listener=otel.listener)
    task = asyncio.ensure_future(pipeline.acall(body))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert len(otel.named("svc attempt")) == 1  # never retried
    assert attrs(otel.span("svc"))[names.ATTR_OUTCOME] == "cancelled"
    assert_context_clean()
