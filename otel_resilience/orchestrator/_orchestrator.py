"""The error-recovery orchestrator: classify each failure, spot patterns, choose recovery.

Decisions are synchronous and cheap (:meth:`ErrorRecoveryOrchestrator.assess`), so
pipelines can consult the orchestrator inline when an attempt fails: a HIGH error stops
further retries and trips the component's breaker at once. Actions that do I/O (operator
alerts, custom async actions) run on the orchestrator's event loop after
:meth:`~ErrorRecoveryOrchestrator.start`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import enum
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from otel_resilience._clock import SYSTEM_CLOCK, Clock, wall_time
from otel_resilience._events import (
    LISTENER_ERRORS,
    AlertSent,
    ErrorClassified,
    RecoveryPerformed,
    ResilienceEvent,
    ResilienceListener,
    safe_call,
)
from otel_resilience._validation import check_int, check_number, is_async_callable
from otel_resilience.breaker import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerRegistry,
    CircuitState,
    RegistryFullError,
)
from otel_resilience.orchestrator._context import (
    ActionOutcome,
    ErrorContext,
    RecoveryAction,
    RecoveryPlan,
    action_name,
)
from otel_resilience.orchestrator._failover import FailoverConfig, FailoverState
from otel_resilience.orchestrator._patterns import PatternTracker
from otel_resilience.orchestrator._severity import SeverityClassifier
from otel_resilience.orchestrator._table import DecisionTable

if TYPE_CHECKING:
    from otel_resilience.alerts import AlertSink
    from otel_resilience.events import EventBus
    from otel_resilience.stores import BreakerStateStore

__all__ = [
    "ComponentHealth",
    "ErrorRecoveryOrchestrator",
    "Health",
    "OrchestratorStatus",
    "RecoveryHandler",
]

DEFAULT_MONITOR_INTERVAL = 10.0
"""Seconds between two runs of the background monitor."""
DEFAULT_STOP_RETRIES_SECONDS = 60.0
"""How long a FATAL error stops retries for its component."""
DEFAULT_RECENT_ACTIONS = 100
"""Recent actions kept for :meth:`ErrorRecoveryOrchestrator.status`."""
DEFAULT_FAILING_RATE = 1.0
"""Errors per second from which a component is failing (not merely degraded)."""
_RATE_HISTORY = 6
_MAX_COMPONENTS = 1000

RecoveryHandler: TypeAlias = Callable[[ErrorContext, RecoveryPlan], Any]
"""A custom recovery action: ``handler(context, plan)``, sync or async; its return value
(if a str) becomes the outcome's detail; raising marks the action failed."""

_ORCHESTRATOR_SIDE = frozenset(
    {
        RecoveryAction.CIRCUIT_BREAK,
        RecoveryAction.FAILOVER,
        RecoveryAction.ALERT,
        RecoveryAction.STOP_RETRIES,
    }
)


_OPEN_STATES = (CircuitState.OPEN, CircuitState.FORCED_OPEN)


class Health(enum.Enum):
    """A component's health as the monitor sees it."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentHealth:
    """One component in :class:`OrchestratorStatus`."""

    component: str
    health: Health
    error_rate: float
    """Errors per second over the last monitor interval."""
    trend: float
    """Change of the error rate against the average of the intervals before (per second)."""
    errors: int
    """Errors handled since the start."""
    breaker: CircuitState | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestratorStatus:
    """One report for operators: breakers, patterns, health and recent actions."""

    running: bool
    breakers: Mapping[str, CircuitState]
    patterns: tuple[Any, ...]
    """``PatternStats`` of the patterns seen in the window."""
    health: tuple[ComponentHealth, ...]
    recent_actions: tuple[tuple[float, str, str, bool, str], ...]
    """(timestamp, component, action, ok, detail), newest last."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible data for an operator endpoint."""
        return {
            "running": self.running,
            "breakers": {name: state.value for name, state in self.breakers.items()},
            "patterns": [
                {
                    "fingerprint": p.fingerprint,
                    "count": p.count,
                    "total": p.total,
                }
                for p in self.patterns
            ],
            "health": [
                {
                    "component": h.component,
                    "health": h.health.value,
                    "error_rate": h.error_rate,
                    "trend": h.trend,
                    "errors": h.errors,
                    "breaker": None if h.breaker is None else h.breaker.value,
                }
                for h in self.health
            ],
            "recent_actions": [
                {"timestamp": t, "component": c, "action": a, "ok": ok, "detail": d}
                for t, c, a, ok, d in self.recent_actions
            ],
        }


class _Rates:
    """Per-component error counts, turned into rates at each monitor tick."""

    __slots__ = ("pending", "rates", "total")

    def __init__(self) -> None:
        self.pending = 0
        self.total = 0
        self.rates: collections.deque[float] = collections.deque(maxlen=_RATE_HISTORY)


class ErrorRecoveryOrchestrator:
    """Classifies failures by severity and recurring pattern, and chooses the recovery.

    Severity comes, in order, from the span attribute ``resilience.error.severity``, the
    classifier's rules over span attributes and exception types, or MEDIUM; a pattern
    (same component and error type) recurring more than the tracker's threshold within
    its window escalates it one level. The decision table maps the severity to actions:
    by default LOW retry; MEDIUM retry then fallback; HIGH open the component's breaker
    and fall back; CRITICAL and FATAL the full workflow (breaker, fallback, failover,
    operator alert), FATAL also stopping retries for the component.

    Args:
        event_bus: where ``ErrorOccurred`` and ``RecoveryActionTaken`` events go (optional).
        classifier: the severity rules (default :class:`SeverityClassifier`).
        table: the decision table (default :class:`DecisionTable`).
        patterns: the pattern tracker (default :class:`PatternTracker` on ``clock``).
        failover: failover configuration per component.
        alert_sinks: where operator alerts go (logging, event bus, webhook, Alertmanager).
        breaker_config: configuration of the breakers created per component.
        breaker_store: keep those breakers' state in this shared, blocking store (see
            :mod:`otel_resilience.stores`), so a HIGH error that opens a component's
            breaker opens it for every process.
        clock: time source for the monitor, patterns and breakers.
        monitor_interval: seconds between monitor runs.
        stop_retries_seconds: how long a FATAL error stops a component's retries.
        listener: telemetry listener (default: the OpenTelemetry adapter on the global
            providers).
    """

    def __init__(
        self,
        event_bus: EventBus | None = None,
        *,
        classifier: SeverityClassifier | None = None,
        table: DecisionTable | None = None,
        patterns: PatternTracker | None = None,
        failover: Mapping[str, FailoverConfig] | None = None,
        alert_sinks: Sequence[AlertSink] = (),
        breaker_config: CircuitBreakerConfig | None = None,
        breaker_store: BreakerStateStore | None = None,
        clock: Clock | None = None,
        monitor_interval: float = DEFAULT_MONITOR_INTERVAL,
        stop_retries_seconds: float = DEFAULT_STOP_RETRIES_SECONDS,
        recent_actions: int = DEFAULT_RECENT_ACTIONS,
        listener: ResilienceListener | None = None,
    ) -> None:
        owner = "ErrorRecoveryOrchestrator"
        if event_bus is not None and not callable(getattr(event_bus, "publish", None)):
            raise TypeError(f"{owner}.event_bus must have a publish() method")
        self.clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self.event_bus = event_bus
        self.classifier = SeverityClassifier() if classifier is None else classifier
        self.table = DecisionTable() if table is None else table
        self.patterns = PatternTracker(clock=self.clock) if patterns is None else patterns
        for check, name, expected in (
            (self.classifier, "classifier", SeverityClassifier),
            (self.table, "table", DecisionTable),
            (self.patterns, "patterns", PatternTracker),
        ):
            if not isinstance(check, expected):
                raise TypeError(f"{owner}.{name} must be a {expected.__name__}")
        self.monitor_interval = check_number(owner, "monitor_interval", monitor_interval)
        self.stop_retries_seconds = check_number(
            owner, "stop_retries_seconds", stop_retries_seconds
        )
        check_int(owner, "recent_actions", recent_actions)
        self._failover: dict[str, FailoverState] = {}
        for component, config in (failover or {}).items():
            if not isinstance(config, FailoverConfig):
                raise TypeError(f"{owner}.failover[{component!r}] must be a FailoverConfig")
            self._failover[component] = FailoverState(component, config, clock=self.clock)
        self.alert_sinks = tuple(alert_sinks)
        for sink in self.alert_sinks:
            if not callable(getattr(sink, "send", None)):
                raise TypeError(f"{owner}.alert_sinks must have send() methods, got {sink!r}")
        from otel_resilience.telemetry._default import (  # noqa: PLC0415
            resolve_listener,
            track,
        )

        self.listener = resolve_listener(
            owner, listener, telemetry=True, tracer_provider=None, meter_provider=None
        )
        self._breakers = CircuitBreakerRegistry(
            default_config=breaker_config,
            clock=self.clock,
            max_breakers=_MAX_COMPONENTS,
            listener=self.listener,
            store=breaker_store,
        )
        self._actions: dict[str, RecoveryHandler] = {}
        self._stopped: dict[str, float] = {}
        self._rates: dict[str, _Rates] = {}
        self._recent: collections.deque[tuple[float, str, str, bool, str]] = collections.deque(
            maxlen=recent_actions
        )
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[Any] | concurrent.futures.Future[Any]] = set()
        track(self.listener, self)

    # -- components -----------------------------------------------------------------------

    def register_circuit_breaker(
        self, name: str, config: CircuitBreakerConfig | None = None
    ) -> CircuitBreaker:
        """Return the breaker of component ``name``, creating it (with ``config``) if new."""
        return self._breakers.get(name, config)

    def breaker(self, component: str) -> CircuitBreaker:
        """The component's breaker, created with the default configuration when absent."""
        return self._breakers.get(component)

    def register_action(self, name: str, handler: RecoveryHandler) -> None:
        """Make ``name`` a recovery action that the decision table can list."""
        candidate: object = name
        if not isinstance(candidate, str) or not candidate:
            raise ValueError(f"action name must be a non-empty str, got {name!r}")
        if name in {a.value for a in RecoveryAction}:
            raise ValueError(f"{name!r} is a built-in action")
        if not callable(handler):
            raise TypeError(f"action {name!r} handler must be callable, got {handler!r}")
        self._actions[name] = handler

    def failover_target(self, component: str) -> str:
        """Where ``component``'s calls should go now (itself without failover config)."""
        state = self._failover.get(component)
        return component if state is None else state.current()

    def failover_state(self, component: str) -> FailoverState | None:
        """The component's failover state, if it has a :class:`FailoverConfig`."""
        return self._failover.get(component)

    def retries_stopped(self, component: str) -> bool:
        """Whether a FATAL error has stopped the component's retries for now."""
        until = self._stopped.get(component)
        if until is None:
            return False
        if self.clock.monotonic() >= until:
            self._stopped.pop(component, None)
            return False
        return True

    # -- deciding ---------------------------------------------------------------------------

    def assess(self, context: ErrorContext) -> RecoveryPlan:
        """Classify a failure, count its pattern and choose the actions.

        No side effect beyond the pattern count; cheap and synchronous, so pipelines call
        it inline.
        """
        if not isinstance(context, ErrorContext):
            raise TypeError(f"assess() needs an ErrorContext, got {type(context).__name__}")
        if context.severity is not None:
            base, reason = context.severity, "given in the context"
        else:
            base, reason = self.classifier.classify(context)
        hit = self.patterns.record(context.component, context.error_type, base)
        severity = base.escalate() if hit.escalated else base
        actions = tuple(self.table.actions_for(severity))
        if self.retries_stopped(context.component) and RecoveryAction.RETRY in actions:
            actions = (
                *(a for a in actions if a is not RecoveryAction.RETRY),
                RecoveryAction.STOP_RETRIES,
            )
            reason += "; retries stopped for the component"
        plan = RecoveryPlan(
            context=context,
            severity=severity,
            base_severity=base,
            severity_reason=reason,
            escalated=hit.escalated,
            pattern_count=hit.count,
            actions=actions,
        )
        with self._lock:
            rates = self._rates.get(context.component)
            if rates is None and len(self._rates) < _MAX_COMPONENTS:
                rates = self._rates[context.component] = _Rates()
            if rates is not None:
                rates.pending += 1
                rates.total += 1
        self._report(
            ErrorClassified(
                component=context.component,
                error_type=context.error_type,
                severity=severity.label,
                escalated=hit.escalated,
                actions=tuple(action_name(a) for a in actions),
                reason=reason,
            )
        )
        return plan

    def consult(self, context: ErrorContext) -> RecoveryPlan:
        """Decide and perform the immediate actions now; hand the rest to the loop.

        What a pipeline calls when an attempt fails: the breaker trip, failover and
        stopping of retries happen before it returns, so the very next retry decision
        sees them; alerts and custom actions run on the orchestrator's loop.
        """
        plan = self.assess(context)
        # The error first, then what was done about it, so subscribers see cause and effect
        # in order.
        self._publish_error(context)
        executed = self._perform_immediate(plan)
        deferred = [a for a in plan.actions if a is RecoveryAction.ALERT or isinstance(a, str)]
        if deferred:
            self._schedule(self._perform_deferred(plan, deferred))
        return _with_executed(plan, executed)

    def observe(self, context: ErrorContext) -> RecoveryPlan:
        """Track a failure seen elsewhere (e.g. an instrumentation's ERROR span).

        Observe-only: the pattern is counted and CRITICAL or FATAL failures alert, but no
        breaker, failover or retry is touched.
        """
        plan = self.assess(context)
        self._publish_error(context)
        if RecoveryAction.ALERT in plan.actions:
            self._schedule(self._perform_deferred(plan, [RecoveryAction.ALERT]))
        return plan

    async def handle_error(self, context: ErrorContext) -> RecoveryPlan:
        """Decide, perform every orchestrator-side action, and return the plan.

        The returned plan lists what was decided (``actions``) and done (``executed``).
        """
        plan = self.assess(context)
        self._publish_error(context)
        executed = list(self._perform_immediate(plan))
        deferred = [a for a in plan.actions if a is RecoveryAction.ALERT or isinstance(a, str)]
        executed.extend(await self._perform_deferred(plan, deferred))
        return _with_executed(plan, tuple(executed))

    # -- acting -----------------------------------------------------------------------------

    def _perform_immediate(self, plan: RecoveryPlan) -> tuple[ActionOutcome, ...]:
        component = plan.context.component
        outcomes: list[ActionOutcome] = []
        for action in plan.actions:
            if action is RecoveryAction.CIRCUIT_BREAK:
                try:
                    breaker = self.breaker(component)
                except RegistryFullError as exc:
                    # Every held breaker is open: report the action failed rather than
                    # losing the rest of the plan (failover, alerts) to an exception.
                    outcomes.append(self._done(component, action, ok=False, detail=str(exc)))
                    continue
                opened = breaker.trip(f"severity_{plan.severity.label}")
                state = breaker.state
                ok = opened or state in (CircuitState.OPEN, CircuitState.FORCED_OPEN)
                detail = "opened" if opened else f"breaker {state.value}"
                outcomes.append(self._done(component, action, ok=ok, detail=detail))
            elif action is RecoveryAction.FAILOVER:
                state_ = self._failover.get(component)
                if state_ is None:
                    outcomes.append(
                        self._done(component, action, ok=False, detail="no failover configured")
                    )
                    continue
                target = state_.fail_over(f"severity {plan.severity.label}")
                outcomes.append(
                    self._done(
                        component,
                        action,
                        ok=target is not None,
                        detail=f"now {target}" if target else "no alternate left",
                    )
                )
            elif action is RecoveryAction.STOP_RETRIES:
                with self._lock:
                    self._stopped[component] = self.clock.monotonic() + self.stop_retries_seconds
                outcomes.append(
                    self._done(
                        component,
                        action,
                        ok=True,
                        detail=f"for {self.stop_retries_seconds:g}s",
                    )
                )
        return tuple(outcomes)

    async def _perform_deferred(
        self, plan: RecoveryPlan, actions: Sequence[RecoveryAction | str]
    ) -> list[ActionOutcome]:
        outcomes: list[ActionOutcome] = []
        component = plan.context.component
        for action in actions:
            if action is RecoveryAction.ALERT:
                outcomes.append(await self._alert(plan))
                continue
            name = action_name(action)
            handler = self._actions.get(name)
            if handler is None:
                outcomes.append(
                    self._done(component, name, ok=False, detail="no handler registered")
                )
                continue
            try:
                result = handler(plan.context, plan)
                if is_async_callable(handler) or isinstance(result, Awaitable):
                    result = await result
            except Exception as exc:  # noqa: BLE001 - a failing action is reported, not raised
                outcomes.append(
                    self._done(component, name, ok=False, detail=f"{type(exc).__name__}: {exc}")
                )
            else:
                detail = result if isinstance(result, str) else ""
                outcomes.append(self._done(component, name, ok=True, detail=detail))
        return outcomes

    async def _alert(self, plan: RecoveryPlan) -> ActionOutcome:
        from otel_resilience.alerts import Alert  # noqa: PLC0415 - optional part

        context = plan.context
        alert = Alert.from_plan(plan)
        failures = []
        for sink in self.alert_sinks:
            sink_name = type(sink).__name__
            try:
                await sink.send(alert)
            except Exception as exc:  # noqa: BLE001 - one sink failing must not stop others
                failures.append(f"{sink_name}: {type(exc).__name__}")
                self._report(
                    AlertSent(
                        component=context.component,
                        severity=alert.severity,
                        sink=sink_name,
                        ok=False,
                    )
                )
            else:
                self._report(
                    AlertSent(
                        component=context.component,
                        severity=alert.severity,
                        sink=sink_name,
                        ok=True,
                    )
                )
        if not self.alert_sinks:
            return self._done(context.component, RecoveryAction.ALERT, ok=False, detail="no sinks")
        detail = "; ".join(failures) if failures else f"sent to {len(self.alert_sinks)} sink(s)"
        return self._done(context.component, RecoveryAction.ALERT, ok=not failures, detail=detail)

    def _done(
        self, component: str, action: RecoveryAction | str, *, ok: bool, detail: str
    ) -> ActionOutcome:
        outcome = ActionOutcome(action=action, ok=ok, detail=detail)
        with self._lock:
            self._recent.append((wall_time(), component, outcome.name, ok, outcome.detail))
        self._report(
            RecoveryPerformed(component=component, action=outcome.name, ok=ok, detail=detail)
        )
        bus = self.event_bus
        if bus is not None:
            from otel_resilience.events import RecoveryActionTaken  # noqa: PLC0415

            safe_call(
                "event bus",
                bus.publish,
                RecoveryActionTaken(
                    component=component, action=outcome.name, ok=ok, detail=outcome.detail
                ),
            )
        return outcome

    def _publish_error(self, context: ErrorContext) -> None:
        bus = self.event_bus
        if bus is not None:
            from otel_resilience.events import ErrorOccurred  # noqa: PLC0415

            safe_call("event bus", bus.publish, ErrorOccurred(context=context))

    def _report(self, event: ResilienceEvent) -> None:
        listener = self.listener
        if listener is not None:
            safe_call("orchestrator listener", listener.on_event, event)

    def _schedule(self, coroutine: Awaitable[Any]) -> None:
        """Run ``coroutine`` on the orchestrator's loop (from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coroutine.close()  # type: ignore[attr-defined]
            LISTENER_ERRORS.warning(
                "orchestrator not started (await start()): an alert or action was dropped"
            )
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        task: asyncio.Future[Any] | concurrent.futures.Future[Any]
        if running is loop:
            task = loop.create_task(coroutine)  # type: ignore[arg-type]
        else:
            task = asyncio.run_coroutine_threadsafe(coroutine, loop)  # type: ignore[arg-type]
        with self._lock:
            self._tasks.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: Any) -> None:
        with self._lock:
            self._tasks.discard(task)

    # -- running ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background monitor on the running loop (idempotent)."""
        if self._monitor is not None and not self._monitor.done():
            return
        self._loop = asyncio.get_running_loop()
        self._monitor = self._loop.create_task(self._monitor_loop(), name="resilience-monitor")

    async def stop(self) -> None:
        """Stop the monitor and wait for scheduled actions (idempotent; leaves no task)."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
        with self._lock:
            pending = list(self._tasks)
        for task in pending:
            try:
                if isinstance(task, asyncio.Future):
                    await task
                else:
                    await asyncio.wrap_future(task)
            except Exception:  # noqa: BLE001, S110 - their failures were reported already
                pass
        self._loop = None

    @property
    def running(self) -> bool:
        """Whether the monitor runs."""
        return self._monitor is not None and not self._monitor.done()

    async def _monitor_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._next_tick(loop)
            try:
                self.run_monitor_once()
            except Exception:  # noqa: BLE001 - the monitor survives its own failures
                LISTENER_ERRORS.exception("orchestrator monitor")

    async def _next_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait one monitor interval on a timer of the clock.

        A timer rather than ``async_sleep``: a fake clock's sleep moves time by itself, so
        the monitor would race fake time forward whenever the loop is idle. A timer fires
        only when the clock reaches it (on a fake clock, when the test advances time).
        """
        woken: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        timer = self.clock.call_later(self.monitor_interval, wake)
        try:
            await woken
        finally:
            timer.cancel()

    def run_monitor_once(self) -> None:
        """One monitor pass.

        Error rates and trends per component, pattern clean-up, and the health reports
        that bring a failed-over component back to its primary once it is healthy again.
        """
        self.patterns.cleanup()
        with self._lock:
            for rates in self._rates.values():
                rates.rates.append(rates.pending / self.monitor_interval)
                rates.pending = 0
        for component, state in self._failover.items():
            if state.current() != component:
                # The primary gets no traffic while failed over, so "healthy" means: no
                # error in the last interval and its breaker past its open period.
                health = self.health(component)
                healthy = health.error_rate == 0 and health.breaker not in _OPEN_STATES
                state.report(component, healthy)

    # -- reporting ----------------------------------------------------------------------------

    def health(self, component: str) -> ComponentHealth:
        """The component's health: failing with an open breaker or a high error rate."""
        with self._lock:
            rates = self._rates.get(component)
            history = list(rates.rates) if rates is not None else []
            total = rates.total if rates is not None else 0
        rate = history[-1] if history else 0.0
        before = history[:-1]
        trend = rate - (sum(before) / len(before)) if before else 0.0
        breaker_state = (
            self._breakers.get(component).observed_state()
            if (component in self._breakers)
            else None
        )
        if breaker_state in (CircuitState.OPEN, CircuitState.FORCED_OPEN) or (
            rate >= DEFAULT_FAILING_RATE
        ):
            health = Health.FAILING
        elif rate > 0 or trend > 0 or breaker_state is CircuitState.HALF_OPEN:
            health = Health.DEGRADED
        else:
            health = Health.HEALTHY
        return ComponentHealth(
            component=component,
            health=health,
            error_rate=rate,
            trend=trend,
            errors=total,
            breaker=breaker_state,
        )

    def status(self) -> OrchestratorStatus:
        """One report of breakers, patterns, component health and recent actions."""
        breakers = {name: b.observed_state() for name, b in self._breakers.breakers().items()}
        with self._lock:
            components = sorted(set(self._rates) | set(breakers))
            recent = tuple(self._recent)
        return OrchestratorStatus(
            running=self.running,
            breakers=breakers,
            patterns=tuple(self.patterns.snapshot()),
            health=tuple(self.health(c) for c in components),
            recent_actions=recent,
        )

    def active_patterns(self) -> int:
        """Patterns seen within the window (the ``resilience.error_patterns.active`` gauge)."""
        return self.patterns.active()


def _with_executed(plan: RecoveryPlan, executed: tuple[ActionOutcome, ...]) -> RecoveryPlan:
    return RecoveryPlan(
        context=plan.context,
        severity=plan.severity,
        base_severity=plan.base_severity,
        severity_reason=plan.severity_reason,
        escalated=plan.escalated,
        pattern_count=plan.pattern_count,
        actions=plan.actions,
        executed=executed,
    )
