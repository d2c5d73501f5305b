"""The error-recovery orchestrator on its own: decisions, patterns, actions, status, monitor.

Every test runs on a FakeClock; async tests run on real event loops. Pipelines that
consult the orchestrator inline are covered in test_orchestrator_pipeline.py, its
telemetry in test_orchestrator_telemetry.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import re
import sys
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from otel_resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitState,
    ErrorContext,
    ErrorRecoveryOrchestrator,
    ErrorSeverity,
    FailoverConfig,
    RecoveryAction,
    RecoveryPlan,
    ResilienceEvent,
)
from otel_resilience._events import ErrorClassified, RecoveryPerformed
from otel_resilience.alerts import Alert, EventBusAlertSink, LoggingAlertSink
from otel_resilience.events import (
    AlertRaised,
    ErrorOccurred,
    EventBus,
    OrchestratorEvent,
    RecoveryActionTaken,
)
from otel_resilience.orchestrator import (
    DEFAULT_RULES,
    ActionOutcome,
    DecisionTable,
    Health,
    PatternTracker,
    SeverityClassifier,
    SeverityRule,
)
from otel_resilience.testing import FakeClock

LOW, MEDIUM, HIGH, CRITICAL, FATAL = (
    ErrorSeverity.LOW,
    ErrorSeverity.MEDIUM,
    ErrorSeverity.HIGH,
    ErrorSeverity.CRITICAL,
    ErrorSeverity.FATAL,
)
RETRY, FALLBACK, CIRCUIT_BREAK, FAILOVER, ALERT, STOP_RETRIES = (
    RecoveryAction.RETRY,
    RecoveryAction.FALLBACK,
    RecoveryAction.CIRCUIT_BREAK,
    RecoveryAction.FAILOVER,
    RecoveryAction.ALERT,
    RecoveryAction.STOP_RETRIES,
)
NOW = 1_700_000_000.0


class Recorder:
    """A listener that keeps every orchestrator event (no call observers)."""

    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def start_call(self, pipeline: str) -> None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


class Counter:
    """A listener that only counts, so that it holds no memory of its own."""

    def __init__(self) -> None:
        self.count = 0

    def start_call(self, pipeline: str) -> None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.count += 1


class RecordingSink:
    """An alert sink that keeps what it received and the thread it ran in."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.threads: list[int] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)
        self.threads.append(threading.get_ident())


class RefusingSink:
    """An alert sink whose receiver is down."""

    async def send(self, alert: Alert) -> None:
        raise ConnectionRefusedError("alert receiver down")


class LedgerCorruptedError(Exception):
    """An application error that must never be retried."""


def context(
    component: str = "payments",
    error_type: str = "TimeoutError",
    *,
    severity: ErrorSeverity | None = None,
    message: str = "upstream timed out",
    **fields: Any,
) -> ErrorContext:
    return ErrorContext(
        component=component,
        operation="charge",
        error_type=error_type,
        message=message,
        severity=severity,
        timestamp=NOW,
        **fields,
    )


def names(actions: tuple[RecoveryAction | str, ...]) -> list[str]:
    return [a.value if isinstance(a, RecoveryAction) else a for a in actions]


def state(breaker: CircuitBreaker) -> CircuitState:
    """The breaker's state, read anew (a plain attribute read would be narrowed by mypy)."""
    return breaker.state


def outcomes(plan: RecoveryPlan) -> list[tuple[str, bool, str]]:
    return [(o.name, o.ok, o.detail) for o in plan.executed]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def orchestrator(clock: FakeClock, recorder: Recorder) -> ErrorRecoveryOrchestrator:
    return ErrorRecoveryOrchestrator(clock=clock, listener=recorder)


async def settle(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition()`` holds (hand-offs only, never timing)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop
    pytest.fail("condition never became true")


# -- the default decision table --------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "actions", "stop_retries", "breaker"),
    [
        (LOW, ["retry"], False, CircuitState.CLOSED),
        (MEDIUM, ["retry", "fallback"], False, CircuitState.CLOSED),
        (HIGH, ["circuit_break", "fallback"], True, CircuitState.OPEN),
        (CRITICAL, ["circuit_break", "fallback", "failover", "alert"], True, CircuitState.OPEN),
        (
            FATAL,
            ["circuit_break", "fallback", "failover", "alert", "stop_retries"],
            True,
            CircuitState.OPEN,
        ),
    ],
    ids=lambda value: getattr(value, "label", None),
)
@pytest.mark.asyncio
async def test_default_table_per_severity(
    orchestrator: ErrorRecoveryOrchestrator,
    severity: ErrorSeverity,
    actions: list[str],
    stop_retries: bool,
    breaker: CircuitState,
) -> None:
    plan = await orchestrator.handle_error(context(severity=severity))

    assert plan.severity is severity
    assert plan.base_severity is severity
    assert not plan.escalated
    assert names(plan.actions) == actions
    assert plan.stop_retries is stop_retries
    assert plan.open_breaker is (breaker is CircuitState.OPEN)
    assert orchestrator.breaker("payments").state is breaker
    # Retry and fallback are the pipeline's part. The orchestrator performs the rest: the
    # immediate actions first, then alerts (which do I/O).
    immediate = [a for a in actions if a in ("circuit_break", "failover", "stop_retries")]
    deferred = [a for a in actions if a == "alert"]
    assert [o.name for o in plan.executed] == immediate + deferred


@pytest.mark.asyncio
async def test_high_opens_the_breaker_at_once(orchestrator: ErrorRecoveryOrchestrator) -> None:
    plan = await orchestrator.handle_error(context(severity=HIGH))
    assert outcomes(plan) == [("circuit_break", True, "opened")]
    assert orchestrator.breaker("payments").state is CircuitState.OPEN

    again = await orchestrator.handle_error(context(severity=HIGH))
    assert outcomes(again) == [("circuit_break", True, "breaker open")]


@pytest.mark.asyncio
async def test_critical_runs_the_full_workflow(
    clock: FakeClock, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink()
    bus = EventBus()
    raised: list[AlertRaised] = []
    bus.subscribe(AlertRaised, raised.append)
    await bus.start()
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock,
        listener=recorder,
        failover={"db": FailoverConfig(("db-replica", "db-backup"), healthy_seconds=30.0)},
        alert_sinks=[sink, LoggingAlertSink("tests.alerts"), EventBusAlertSink(bus)],
    )
    assert orchestrator.failover_target("db") == "db"

    with caplog.at_level(logging.WARNING, logger="tests.alerts"):
        plan = await orchestrator.handle_error(
            context("db", "OperationalError", severity=CRITICAL, message="disk full")
        )

    assert outcomes(plan) == [
        ("circuit_break", True, "opened"),
        ("failover", True, "now db-replica"),
        ("alert", True, "sent to 3 sink(s)"),
    ]
    assert orchestrator.breaker("db").state is CircuitState.OPEN
    assert orchestrator.failover_target("db") == "db-replica"
    [alert] = sink.alerts
    assert (alert.severity, alert.component, alert.error_type) == (
        "critical",
        "db",
        "OperationalError",
    )
    assert alert.description == "disk full"
    assert alert.summary.startswith(
        "db/charge: OperationalError on attempt 1 is critical (given in the context)"
    )
    assert dict(alert.annotations) == {"operation": "charge", "attempt": "1"}
    assert alert.status == "firing"
    assert [r.getMessage() for r in caplog.records if r.name == "tests.alerts"] != []
    await bus.stop()
    assert [event.alert for event in raised] == [alert]

    # The next CRITICAL error moves to the next alternate; then none is left.
    second = await orchestrator.handle_error(context("db", "OperationalError", severity=CRITICAL))
    assert ("failover", True, "now db-backup") in outcomes(second)
    third = await orchestrator.handle_error(context("db", "OperationalError", severity=CRITICAL))
    assert ("failover", False, "no alternate left") in outcomes(third)
    assert orchestrator.failover_target("db") == "db-backup"

    # Health brings the component back to its primary.
    state = orchestrator.failover_state("db")
    assert state is not None
    state.report("db", ok=True)
    clock.advance(30.0)
    assert orchestrator.failover_target("db") == "db"


@pytest.mark.asyncio
async def test_critical_without_failover_or_sinks_reports_what_it_could_not_do(
    orchestrator: ErrorRecoveryOrchestrator,
) -> None:
    plan = await orchestrator.handle_error(context(severity=CRITICAL))
    assert outcomes(plan) == [
        ("circuit_break", True, "opened"),
        ("failover", False, "no failover configured"),
        ("alert", False, "no sinks"),
    ]
    assert orchestrator.failover_state("payments") is None
    assert orchestrator.failover_target("payments") == "payments"


@pytest.mark.asyncio
async def test_a_failing_sink_does_not_stop_the_others(
    clock: FakeClock, recorder: Recorder
) -> None:
    sink = RecordingSink()
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock, listener=recorder, alert_sinks=[RefusingSink(), sink]
    )
    plan = await orchestrator.handle_error(context(severity=CRITICAL))
    assert ("alert", False, "RefusingSink: ConnectionRefusedError") in outcomes(plan)
    assert len(sink.alerts) == 1


@pytest.mark.asyncio
async def test_fatal_stops_retries_for_the_component_for_a_while(
    clock: FakeClock, recorder: Recorder
) -> None:
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock, listener=recorder, stop_retries_seconds=30.0
    )
    plan = await orchestrator.handle_error(context("ledger", severity=FATAL))
    assert ("stop_retries", True, "for 30s") in outcomes(plan)
    assert orchestrator.retries_stopped("ledger")
    assert not orchestrator.retries_stopped("payments")

    later = orchestrator.assess(context("ledger", severity=MEDIUM))
    assert names(later.actions) == ["fallback", "stop_retries"]
    assert later.stop_retries
    assert "retries stopped" in later.severity_reason
    elsewhere = orchestrator.assess(context("payments", severity=MEDIUM))
    assert names(elsewhere.actions) == ["retry", "fallback"]

    clock.advance(29.9)
    assert orchestrator.assess(context("ledger", severity=MEDIUM)).stop_retries
    clock.advance(0.1)
    assert not orchestrator.retries_stopped("ledger")
    after = orchestrator.assess(context("ledger", severity=MEDIUM))
    assert names(after.actions) == ["retry", "fallback"]
    assert not after.stop_retries


# -- patterns ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_sixth_occurrence_in_the_window_escalates_one_level(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock
) -> None:
    for n in range(1, 6):
        plan = await orchestrator.handle_error(context(message=f"request {n} timed out"))
        assert (plan.severity, plan.escalated, plan.pattern_count) == (MEDIUM, False, n)
        clock.advance(1.0)
    assert orchestrator.breaker("payments").state is CircuitState.CLOSED

    sixth = await orchestrator.handle_error(context(message="request 6 timed out"))

    assert (sixth.base_severity, sixth.severity) == (MEDIUM, HIGH)
    assert sixth.escalated
    assert sixth.pattern_count == 6
    assert "escalated from medium after 6 occurrences" in sixth.summary()
    assert names(sixth.actions) == ["circuit_break", "fallback"]
    assert orchestrator.breaker("payments").state is CircuitState.OPEN


def test_the_fingerprint_never_includes_the_message(
    orchestrator: ErrorRecoveryOrchestrator,
) -> None:
    plans = [orchestrator.assess(context(message=f"order {n} failed")) for n in range(6)]
    assert [p.pattern_count for p in plans] == [1, 2, 3, 4, 5, 6]
    assert plans[-1].escalated
    [pattern] = orchestrator.status().patterns
    assert (pattern.fingerprint, pattern.count) == ("payments|TimeoutError", 6)
    assert orchestrator.active_patterns() == 1


def test_component_and_error_type_make_separate_patterns(
    orchestrator: ErrorRecoveryOrchestrator,
) -> None:
    for _ in range(5):
        for component, error_type in (("a", "E1"), ("a", "E2"), ("b", "E1")):
            assert not orchestrator.assess(context(component, error_type)).escalated
    assert orchestrator.active_patterns() == 3


def test_occurrences_outside_the_window_do_not_escalate(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock
) -> None:
    for _ in range(5):
        orchestrator.assess(context())
    clock.advance(orchestrator.patterns.window_seconds)
    plan = orchestrator.assess(context())
    assert not plan.escalated
    assert plan.pattern_count == 1


def test_an_escalated_fatal_stays_fatal(orchestrator: ErrorRecoveryOrchestrator) -> None:
    plans = [orchestrator.assess(context(severity=FATAL)) for _ in range(6)]
    assert plans[-1].escalated
    assert plans[-1].severity is FATAL


def test_a_custom_pattern_tracker(clock: FakeClock, recorder: Recorder) -> None:
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock,
        listener=recorder,
        patterns=PatternTracker(threshold=1, window_seconds=10.0, clock=clock),
    )
    assert not orchestrator.assess(context(severity=LOW)).escalated
    second = orchestrator.assess(context(severity=LOW))
    assert (second.severity, second.escalated) == (MEDIUM, True)


# -- classification ------------------------------------------------------------------------


def test_severity_sources_in_order(orchestrator: ErrorRecoveryOrchestrator) -> None:
    assess = orchestrator.assess
    connection = ConnectionRefusedError("refused")

    def from_error(error: BaseException, **fields: Any) -> ErrorContext:
        return ErrorContext.from_exception(
            error, component="svc", operation="op", timestamp=NOW, **fields
        )

    # The context's own severity wins over the attribute and the rules.
    given = assess(
        from_error(connection, severity=CRITICAL, attributes={"resilience.error.severity": "low"})
    )
    assert (given.severity, given.severity_reason) == (CRITICAL, "given in the context")
    # Then the span attribute, over the rules.
    attribute = assess(from_error(connection, attributes={"resilience.error.severity": "LOW"}))
    assert attribute.severity is LOW
    assert "resilience.error.severity" in attribute.severity_reason
    # Then the rules: connection errors, HTTP statuses.
    assert assess(from_error(connection)).severity is HIGH
    assert (
        assess(from_error(OSError(), attributes={"http.response.status_code": 503})).severity is LOW
    )
    assert (
        assess(from_error(OSError(), attributes={"http.response.status_code": 500})).severity
        is MEDIUM
    )
    # Then the default; an invalid attribute value is ignored, and the reason says so.
    default = assess(from_error(ValueError(), attributes={"resilience.error.severity": "meh"}))
    assert default.severity is MEDIUM
    assert "ignored invalid" in default.severity_reason


@pytest.mark.asyncio
async def test_a_custom_rule_maps_an_exception_class_to_fatal(
    clock: FakeClock, recorder: Recorder
) -> None:
    classifier = SeverityClassifier(
        (
            SeverityRule(FATAL, exception_types=(LedgerCorruptedError,), name="ledger corrupted"),
            *DEFAULT_RULES,
        )
    )
    orchestrator = ErrorRecoveryOrchestrator(clock=clock, listener=recorder, classifier=classifier)

    plan = await orchestrator.handle_error(
        ErrorContext.from_exception(
            LedgerCorruptedError("row 17"), component="ledger", operation="post", timestamp=NOW
        )
    )

    assert plan.severity is FATAL
    assert plan.severity_reason == "rule 'ledger corrupted'"
    assert orchestrator.retries_stopped("ledger")
    # The defaults still apply to everything else.
    other = ErrorContext.from_exception(
        ConnectionResetError(), component="ledger", operation="post", timestamp=NOW
    )
    assert orchestrator.assess(other).severity is HIGH


# -- a custom table and custom actions -------------------------------------------------------


def test_a_custom_decision_table(clock: FakeClock, recorder: Recorder) -> None:
    mapping: dict[ErrorSeverity, list[RecoveryAction | str]] = {
        LOW: [RETRY],
        MEDIUM: [FALLBACK],
        HIGH: ["retry", "fallback"],
        CRITICAL: [CIRCUIT_BREAK],
        FATAL: [STOP_RETRIES],
    }
    table = DecisionTable(mapping)
    orchestrator = ErrorRecoveryOrchestrator(clock=clock, listener=recorder, table=table)
    assert orchestrator.table is table

    medium = orchestrator.consult(context("a", severity=MEDIUM))
    assert names(medium.actions) == ["fallback"]
    assert medium.stop_retries  # no retry in the table: the pipeline stops
    high = orchestrator.consult(context("b", severity=HIGH))
    assert names(high.actions) == ["retry", "fallback"]
    assert not high.stop_retries
    assert orchestrator.breaker("b").state is CircuitState.CLOSED


@pytest.mark.asyncio
async def test_custom_sync_and_async_actions_run_in_table_order(
    clock: FakeClock, recorder: Recorder
) -> None:
    seen: list[tuple[str, str, ErrorSeverity]] = []

    def page_oncall(ctx: ErrorContext, plan: RecoveryPlan) -> str:
        seen.append(("page_oncall", ctx.component, plan.severity))
        return "paged the payments rota"

    async def warm_cache(ctx: ErrorContext, plan: RecoveryPlan) -> None:
        await clock.async_sleep(0)
        seen.append(("warm_cache", ctx.component, plan.severity))

    def flaky(ctx: ErrorContext, plan: RecoveryPlan) -> str:
        raise RuntimeError("pager service down")

    table = DecisionTable.DEFAULT.with_actions(
        HIGH, [CIRCUIT_BREAK, "page_oncall", "flaky", "warm_cache", "unregistered", FALLBACK]
    )
    orchestrator = ErrorRecoveryOrchestrator(clock=clock, listener=recorder, table=table)
    orchestrator.register_action("page_oncall", page_oncall)
    orchestrator.register_action("flaky", flaky)
    orchestrator.register_action("warm_cache", warm_cache)

    plan = await orchestrator.handle_error(context(severity=HIGH))

    assert outcomes(plan) == [
        ("circuit_break", True, "opened"),
        ("page_oncall", True, "paged the payments rota"),
        ("flaky", False, "RuntimeError: pager service down"),
        ("warm_cache", True, ""),
        ("unregistered", False, "no handler registered"),
    ]
    assert seen == [("page_oncall", "payments", HIGH), ("warm_cache", "payments", HIGH)]
    performed = [(e.action, e.ok) for e in recorder.of(RecoveryPerformed)]
    assert performed == [(o.name, o.ok) for o in plan.executed]


@pytest.mark.parametrize(
    ("name", "handler", "error"),
    [
        ("", lambda c, p: None, ValueError),
        (None, lambda c, p: None, ValueError),
        ("alert", lambda c, p: None, ValueError),
        ("page", "not callable", TypeError),
    ],
)
def test_register_action_validation(
    orchestrator: ErrorRecoveryOrchestrator, name: Any, handler: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        orchestrator.register_action(name, handler)


# -- assess, consult, observe, handle_error -----------------------------------------------------


def test_assess_decides_without_acting(
    orchestrator: ErrorRecoveryOrchestrator, recorder: Recorder
) -> None:
    plan = orchestrator.assess(context(severity=CRITICAL))
    assert names(plan.actions) == ["circuit_break", "fallback", "failover", "alert"]
    assert plan.executed == ()
    assert "payments" not in orchestrator.status().breakers
    assert orchestrator.status().recent_actions == ()
    [classified] = recorder.of(ErrorClassified)
    assert classified == ErrorClassified(
        component="payments",
        error_type="TimeoutError",
        severity="critical",
        escalated=False,
        actions=("circuit_break", "fallback", "failover", "alert"),
        reason="given in the context",
    )


def test_assess_and_handle_error_take_only_error_contexts(
    orchestrator: ErrorRecoveryOrchestrator,
) -> None:
    with pytest.raises(TypeError, match="ErrorContext"):
        orchestrator.assess(ValueError("x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ErrorContext"):
        asyncio.run(orchestrator.handle_error({"component": "x"}))  # type: ignore[arg-type]


def test_consult_without_a_running_loop_acts_now_and_drops_the_alert(
    clock: FakeClock, recorder: Recorder
) -> None:
    sink = RecordingSink()
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock,
        listener=recorder,
        alert_sinks=[sink],
        failover={"db": FailoverConfig(("db-replica",))},
    )
    plan = orchestrator.consult(context("db", severity=CRITICAL))
    assert outcomes(plan) == [
        ("circuit_break", True, "opened"),
        ("failover", True, "now db-replica"),
    ]
    assert orchestrator.failover_target("db") == "db-replica"
    assert sink.alerts == []  # not started: nowhere to send it from


@pytest.mark.asyncio
async def test_consult_hands_alerts_and_custom_actions_to_the_loop(
    clock: FakeClock, recorder: Recorder
) -> None:
    sink = RecordingSink()
    ran: list[str] = []

    async def notify(ctx: ErrorContext, plan: RecoveryPlan) -> None:
        ran.append(ctx.component)

    table = DecisionTable.DEFAULT.with_actions(CRITICAL, [CIRCUIT_BREAK, ALERT, "notify"])
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock, listener=recorder, alert_sinks=[sink], table=table
    )
    orchestrator.register_action("notify", notify)
    await orchestrator.start()

    plan = orchestrator.consult(context(severity=CRITICAL))
    assert outcomes(plan) == [("circuit_break", True, "opened")]
    assert sink.alerts == []  # not yet: the loop has not run

    await orchestrator.stop()  # waits for what was scheduled
    assert len(sink.alerts) == 1
    assert ran == ["payments"]
    done = [(t[2], t[3]) for t in orchestrator.status().recent_actions]
    assert done == [("circuit_break", True), ("alert", True), ("notify", True)]


@pytest.mark.asyncio
async def test_observe_only_counts_and_alerts(clock: FakeClock, recorder: Recorder) -> None:
    sink = RecordingSink()
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock,
        listener=recorder,
        alert_sinks=[sink],
        failover={"db": FailoverConfig(("db-replica",))},
    )
    await orchestrator.start()

    high = orchestrator.observe(context("db", "ConnectionError", severity=HIGH))
    critical = orchestrator.observe(context("db", "DiskFull", severity=CRITICAL))
    await orchestrator.stop()

    assert high.executed == critical.executed == ()
    assert "db" not in orchestrator.status().breakers
    assert orchestrator.failover_target("db") == "db"
    assert orchestrator.active_patterns() == 2
    [alert] = sink.alerts
    assert (alert.error_type, alert.severity) == ("DiskFull", "critical")


def test_register_circuit_breaker_returns_the_components_breaker(
    orchestrator: ErrorRecoveryOrchestrator,
) -> None:
    config = CircuitBreakerConfig(failure_threshold=2, timeout_seconds=5.0)
    breaker = orchestrator.register_circuit_breaker("payments", config)
    assert breaker.name == "payments"
    assert breaker.config == config
    assert orchestrator.register_circuit_breaker("payments") is breaker
    assert orchestrator.breaker("payments") is breaker
    with pytest.raises(ValueError, match="different config"):
        orchestrator.register_circuit_breaker("payments", CircuitBreakerConfig())
    # Created with the default configuration when absent.
    assert orchestrator.breaker("search").config == CircuitBreakerConfig()


def test_breakers_use_the_configured_default(clock: FakeClock, recorder: Recorder) -> None:
    config = CircuitBreakerConfig(timeout_seconds=5.0)
    orchestrator = ErrorRecoveryOrchestrator(clock=clock, listener=recorder, breaker_config=config)
    orchestrator.consult(context(severity=HIGH))
    breaker = orchestrator.breaker("payments")
    assert breaker.config == config
    assert state(breaker) is CircuitState.OPEN
    clock.advance(5.0)
    assert state(breaker) is CircuitState.HALF_OPEN


@pytest.mark.asyncio
async def test_a_full_breaker_registry_fails_the_action_not_the_plan(
    clock: FakeClock, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    orchestrator = ErrorRecoveryOrchestrator(clock=clock, listener=recorder)
    monkeypatch.setattr(orchestrator._breakers, "_max", 2)
    for component in ("a", "b"):
        await orchestrator.handle_error(context(component, severity=HIGH))

    plan = await orchestrator.handle_error(context("c", severity=CRITICAL))

    [breaker, failover, alert] = plan.executed
    assert (breaker.name, breaker.ok) == ("circuit_break", False)
    assert "registry is full" in breaker.detail
    assert (failover.name, alert.name) == ("failover", "alert")


@pytest.mark.asyncio
async def test_events_go_to_the_event_bus(clock: FakeClock, recorder: Recorder) -> None:
    bus = EventBus()
    received: list[OrchestratorEvent] = []

    async def handler(event: OrchestratorEvent) -> None:
        received.append(event)

    bus.subscribe(OrchestratorEvent, handler)
    await bus.start()
    orchestrator = ErrorRecoveryOrchestrator(bus, clock=clock, listener=recorder)
    assert orchestrator.event_bus is bus

    ctx = context(severity=HIGH)
    await orchestrator.handle_error(ctx)
    await bus.stop()

    assert received == [
        ErrorOccurred(context=ctx),
        RecoveryActionTaken(component="payments", action="circuit_break", ok=True, detail="opened"),
    ]


@pytest.mark.asyncio
async def test_failing_bus_and_listener_do_not_change_the_decision(clock: FakeClock) -> None:
    class BrokenBus:
        def publish(self, event: object) -> None:
            raise RuntimeError("bus broken")

    class BrokenListener:
        def start_call(self, pipeline: str) -> None:
            raise RuntimeError("listener broken")

        def on_event(self, event: ResilienceEvent) -> None:
            raise RuntimeError("listener broken")

    orchestrator = ErrorRecoveryOrchestrator(
        BrokenBus(),  # type: ignore[arg-type]
        clock=clock,
        listener=BrokenListener(),
    )
    plan = await orchestrator.handle_error(context(severity=HIGH))
    assert outcomes(plan) == [("circuit_break", True, "opened")]


def test_concurrent_assessments_add_up(orchestrator: ErrorRecoveryOrchestrator) -> None:
    threads, errors = 8, 500
    start = threading.Barrier(threads, timeout=10.0)

    def work(n: int) -> None:
        start.wait()
        for i in range(errors):
            orchestrator.assess(context(f"c{n % 2}", message=f"{n}-{i}", severity=LOW))

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10.0)
    totals = {p.fingerprint: p.total for p in orchestrator.status().patterns}
    assert totals == {"c0|TimeoutError": 2000, "c1|TimeoutError": 2000}
    assert sum(h.errors for h in orchestrator.status().health) == threads * errors


# -- status and health ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_status_reports_breakers_patterns_health_and_recent_actions(
    clock: FakeClock, recorder: Recorder
) -> None:
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock, listener=recorder, recent_actions=3, monitor_interval=10.0
    )
    await orchestrator.handle_error(context("db", "ConnectionError", severity=HIGH))
    for _ in range(3):
        await orchestrator.handle_error(context("cache", "TimeoutError", severity=FATAL))
    orchestrator.assess(context("search", "TimeoutError", severity=LOW))

    status = orchestrator.status()
    assert not status.running
    assert status.breakers == {"db": CircuitState.OPEN, "cache": CircuitState.OPEN}
    assert {(p.fingerprint, p.count) for p in status.patterns} == {
        ("db|ConnectionError", 1),
        ("cache|TimeoutError", 3),
        ("search|TimeoutError", 1),
    }
    # Bounded: only the last three actions are kept, newest last.
    assert [(c, a) for _, c, a, _, _ in status.recent_actions] == [
        ("cache", "failover"),
        ("cache", "stop_retries"),
        ("cache", "alert"),
    ]
    health = {h.component: h for h in status.health}
    assert set(health) == {"db", "cache", "search"}
    assert health["db"].breaker is CircuitState.OPEN
    assert health["search"].breaker is None
    assert health["cache"].errors == 3

    data = status.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["breakers"] == {"db": "open", "cache": "open"}
    assert {h["component"]: h["health"] for h in data["health"]} == {
        "cache": "failing",
        "db": "failing",
        "search": "healthy",
    }
    assert len(data["recent_actions"]) == 3


def test_health_from_error_rates_and_breakers_after_monitor_runs(
    orchestrator: ErrorRecoveryOrchestrator,
) -> None:
    interval = orchestrator.monitor_interval
    # LOW errors leave breakers alone, so only the rates decide.
    for _ in range(int(2 * interval)):  # 2 errors per second: failing
        orchestrator.assess(context("busy", severity=LOW))
    orchestrator.assess(context("flaky", severity=LOW))  # 0.1 per second: degraded
    orchestrator.assess(context("calm", severity=LOW))
    before = orchestrator.health("busy")
    assert (before.health, before.error_rate) == (Health.HEALTHY, 0.0)  # no monitor run yet

    orchestrator.run_monitor_once()
    busy = orchestrator.health("busy")
    assert busy.health is Health.FAILING
    assert busy.error_rate == pytest.approx(2.0)
    assert orchestrator.health("flaky").health is Health.DEGRADED
    assert orchestrator.health("flaky").error_rate == pytest.approx(1 / interval)

    # The next interval: "calm" had no more errors, "flaky" had more than before.
    for _ in range(3):
        orchestrator.assess(context("flaky", severity=LOW))
    orchestrator.run_monitor_once()
    calm = orchestrator.health("calm")
    assert (calm.health, calm.error_rate, calm.errors) == (Health.HEALTHY, 0.0, 1)
    assert calm.trend == pytest.approx(-1 / interval)
    flaky = orchestrator.health("flaky")
    assert flaky.trend == pytest.approx(2 / interval)
    assert flaky.health is Health.DEGRADED

    # An open breaker is failing whatever the rate.
    orchestrator.consult(context("calm", severity=HIGH))
    assert orchestrator.health("calm").health is Health.FAILING
    unknown = orchestrator.health("never-failed")
    assert (unknown.health, unknown.errors, unknown.breaker) == (Health.HEALTHY, 0, None)


# -- start, stop and the monitor ----------------------------------------------------------------


def _tasks() -> set[asyncio.Task[Any]]:
    """The loop's tasks other than the test's own."""
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current}


@pytest.mark.asyncio
async def test_start_and_stop_are_idempotent_and_leave_no_task(
    orchestrator: ErrorRecoveryOrchestrator,
) -> None:
    await orchestrator.stop()  # before start: nothing to do
    await orchestrator.start()
    await orchestrator.start()
    assert orchestrator.running
    assert len(_tasks()) == 1
    await orchestrator.stop()
    await orchestrator.stop()
    assert not orchestrator.status().running
    assert _tasks() == set()

    await orchestrator.start()  # and again
    assert orchestrator.running
    await orchestrator.stop()
    assert _tasks() == set()


@pytest.mark.asyncio
async def test_the_monitor_runs_on_the_clock_and_survives_its_own_errors(
    orchestrator: ErrorRecoveryOrchestrator,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs: list[float] = []
    real = orchestrator.run_monitor_once

    def once_broken() -> None:
        runs.append(clock.monotonic())
        if len(runs) == 1:
            raise RuntimeError("monitor bug")
        real()

    monkeypatch.setattr(orchestrator, "run_monitor_once", once_broken)
    await orchestrator.start()
    for _ in range(10):
        await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop
    assert runs == []  # the monitor waits on the clock, which did not move
    assert clock.monotonic() == 0.0

    clock.advance(orchestrator.monitor_interval)
    await settle(lambda: len(runs) == 1)
    assert orchestrator.running  # it survived

    orchestrator.assess(context(severity=LOW))
    clock.advance(orchestrator.monitor_interval)
    await settle(lambda: len(runs) == 2)
    assert orchestrator.health("payments").error_rate == pytest.approx(0.1)
    assert runs == [10.0, 20.0]
    await orchestrator.stop()
    assert _tasks() == set()


def test_the_monitor_brings_a_failed_over_component_back_to_its_primary(
    clock: FakeClock, recorder: Recorder
) -> None:
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock,
        listener=recorder,
        failover={"db": FailoverConfig(("db-replica",), healthy_seconds=30.0)},
        breaker_config=CircuitBreakerConfig(timeout_seconds=25.0),
        monitor_interval=10.0,
    )
    orchestrator.consult(context("db", severity=CRITICAL))
    assert orchestrator.failover_target("db") == "db-replica"

    def tick() -> str:
        clock.advance(10.0)
        orchestrator.run_monitor_once()
        return orchestrator.failover_target("db")

    assert tick() == "db-replica"  # t=10: an error in the interval
    assert tick() == "db-replica"  # t=20: no error, but the breaker is still open
    assert tick() == "db-replica"  # t=30: healthy from now on
    assert tick() == "db-replica"
    assert tick() == "db-replica"  # t=50: healthy for 20s only
    assert tick() == "db"  # t=60: healthy for 30s: back to the primary

    # A new error while failed over starts the healthy period again.
    orchestrator.consult(context("db", severity=CRITICAL))
    assert orchestrator.failover_target("db") == "db-replica"
    orchestrator.breaker("db").reset()
    assert tick() == "db-replica"  # the error counts in this interval
    orchestrator.consult(context("db", "OtherError", severity=LOW))
    assert tick() == "db-replica"  # another one: still unhealthy
    assert [tick() for _ in range(3)] == ["db-replica", "db-replica", "db-replica"]
    assert tick() == "db"


def test_run_monitor_once_cleans_up_idle_patterns(
    orchestrator: ErrorRecoveryOrchestrator, clock: FakeClock
) -> None:
    orchestrator.assess(context())
    assert len(orchestrator.patterns) == 1
    clock.advance(orchestrator.patterns.ttl_seconds + 1.0)
    orchestrator.run_monitor_once()
    assert len(orchestrator.patterns) == 0
    assert orchestrator.status().patterns == ()


# -- memory --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_memory_stays_flat_over_100_000_errors_with_unique_messages(
    clock: FakeClock,
) -> None:
    tracker = PatternTracker(clock=clock, max_patterns=64, history_size=256)
    orchestrator = ErrorRecoveryOrchestrator(
        clock=clock, listener=Counter(), patterns=tracker, recent_actions=32
    )
    padding = "x" * 200

    async def handle(first: int, count: int) -> None:
        for n in range(first, first + count):
            # Mostly ten components and five error types; every 97th error type is new,
            # so the pattern table hits its cap and evicts.
            error_type = f"Unique{n}Error" if n % 97 == 0 else f"Error{n % 5}"
            ctx = context(f"svc{n % 10}", error_type, message=f"request {n} failed {padding}")
            if n % 41 == 0:
                await orchestrator.handle_error(ctx)
            else:
                orchestrator.assess(ctx)
            if n % 1000 == 0:
                clock.advance(1.0)
            if n % 10_000 == 0:
                orchestrator.run_monitor_once()

    await handle(0, 10_000)  # warm up: every pattern, breaker and bounded deque filled
    gc.collect()
    blocks = sys.getallocatedblocks()
    await handle(10_000, 80_000)
    gc.collect()
    # Keeping each error would take several blocks apiece (80,000 x context, message, ...).
    assert sys.getallocatedblocks() - blocks < 20_000

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await handle(90_000, 10_000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 10,000 messages of 220 bytes alone would be over 2 MB.
    assert grown < 128 * 1024

    assert len(tracker) == 64
    assert tracker.evictions > 0
    assert len(tracker.history()) == 256
    status = orchestrator.status()
    assert len(status.recent_actions) == 32
    assert len(status.health) == 10
    assert sum(h.errors for h in status.health) == 100_000
    assert len(status.breakers) == 10


# -- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "field"),
    [
        ({"monitor_interval": 0}, ValueError, "monitor_interval"),
        ({"monitor_interval": -1.0}, ValueError, "monitor_interval"),
        ({"monitor_interval": math.nan}, ValueError, "monitor_interval"),
        ({"monitor_interval": True}, TypeError, "monitor_interval"),
        ({"monitor_interval": "10"}, TypeError, "monitor_interval"),
        ({"stop_retries_seconds": math.inf}, ValueError, "stop_retries_seconds"),
        ({"stop_retries_seconds": 0}, ValueError, "stop_retries_seconds"),
        ({"recent_actions": 0}, ValueError, "recent_actions"),
        ({"recent_actions": 1.5}, TypeError, "recent_actions"),
        ({"classifier": DEFAULT_RULES}, TypeError, "classifier"),
        ({"table": {}}, TypeError, "table"),
        ({"patterns": object()}, TypeError, "patterns"),
        ({"failover": {"db": ("db-b",)}}, TypeError, "failover"),
        ({"alert_sinks": [object()]}, TypeError, "alert_sinks"),
    ],
)
def test_constructor_validation_names_the_field(
    options: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=re.escape(f"ErrorRecoveryOrchestrator.{field}")):
        ErrorRecoveryOrchestrator(**options)


def test_event_bus_needs_publish() -> None:
    with pytest.raises(TypeError, match="event_bus"):
        ErrorRecoveryOrchestrator(object())  # type: ignore[arg-type]


def test_action_outcomes_are_typed(orchestrator: ErrorRecoveryOrchestrator) -> None:
    plan = orchestrator.consult(context(severity=HIGH))
    [outcome] = plan.executed
    assert outcome == ActionOutcome(action=CIRCUIT_BREAK, ok=True, detail="opened")


@pytest.mark.asyncio
async def test_a_breaker_store_shares_what_the_orchestrators_of_two_processes_open(
    clock: FakeClock, recorder: Recorder
) -> None:
    from otel_resilience import SharedCircuitBreaker  # noqa: PLC0415
    from otel_resilience.stores import InMemoryStateStore  # noqa: PLC0415

    store = InMemoryStateStore(clock=clock)
    here, there = (
        ErrorRecoveryOrchestrator(clock=clock, listener=recorder, breaker_store=store)
        for _ in range(2)
    )
    await here.handle_error(context(severity=HIGH))  # opens "payments" here...
    breaker = there.breaker("payments")
    assert isinstance(breaker, SharedCircuitBreaker)
    assert breaker.state is CircuitState.OPEN  # ...and so for the other process too
