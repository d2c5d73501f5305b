"""``otel-resilience demo``: real HTTP traffic through every kind of protection.

A flaky primary service and a healthy secondary run on loopback. Worker threads call
them three ways at once: an httpx client with the resilient transport (retries that honour
``Retry-After``, a breaker per authority, failover to the secondary), functions decorated
with :func:`~otel_resilience.resilient` and a function patched with
:func:`~otel_resilience.wrap` (retry, break and fall back; a legacy quote lookup only
retries and often runs out of attempts; a ledger check's breaker stays open through the
ledger's outage in the first part of the run). The error-recovery
orchestrator watches every failed attempt and alerts on recurring connection errors.
Metrics are served to Prometheus; traces go over OTLP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set. The summary is read back from the metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

from otel_resilience._clock import SYSTEM_CLOCK, Clock, seeded_random, wall_time
from otel_resilience._validation import check_int, check_number
from otel_resilience.cli import _targets
from otel_resilience.cli._service import SCENARIOS, DemoService, Schedule
from otel_resilience.telemetry import names

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_resilience.orchestrator import ErrorRecoveryOrchestrator

__all__ = [
    "DEFAULT_DURATION",
    "DEFAULT_METRICS_PORT",
    "DEFAULT_SEED",
    "DEFAULT_WORKERS",
    "DemoOptions",
    "DemoReport",
    "add_arguments",
    "options_from_args",
    "run_demo",
]

_OWNER = "DemoOptions"

DEFAULT_DURATION = 30.0
"""Seconds the demo runs by default."""

DEFAULT_SEED = 2
"""Random seed of the services' failures and of the jitter."""

DEFAULT_METRICS_PORT = 9464
"""Port of the Prometheus endpoint (OpenTelemetry's registered exporter port)."""

DEFAULT_WORKERS = 3
"""Threads sending traffic at once."""

SAMPLE_INTERVAL = 0.5
"""Seconds between two samples of the call counters (the timeline, the live view)."""

PLAIN_LINE_INTERVAL = 2.0
"""Seconds between two progress lines when the output is not a terminal."""

WORKER_PAUSE = 0.02
"""Seconds a worker pauses between two rounds of calls."""
AUDIT_INTERVAL = 1.0
"""Seconds between two findings of the demo's ledger audit (CRITICAL, observe-only)."""

ALERT_WEBHOOK_TIMEOUT = 0.2
"""Seconds the demo's second alert sink, a webhook nobody listens to, waits."""

EVENT_QUEUE_SIZE = 4
"""Events the demo's audit bus holds; it is never started, so the rest are dropped."""

LEDGER_BREAKER_TIMEOUT = 10.0
"""Seconds the ledger's breaker stays open before it probes again."""

OUTCOMES: Final = ("success", "fallback", "rejected", "failure", "timeout")
"""Call outcomes shown, in this order (``resilience.outcome`` values)."""

_ALERT_LOGGER = "otel_resilience.cli.demo.alerts"

_INSTALL_HINT = (
    "the demo needs httpx, the OpenTelemetry SDK and the otel-resilience-httpx package: "
    "pip install 'otel-resilience[sdk]' otel-resilience-httpx httpx"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """What the demo does; every field has a command-line flag.

    Attributes:
        duration: seconds of traffic.
        scenario: one of ``all``, ``outage``, ``flapping``, ``slow``, ``rate-limited``,
            ``failover``.
        seed: random seed (services' failures, jitter).
        metrics_port: Prometheus endpoint port, ``0`` for a free one; a taken port is
            replaced by a free one.
        service_port: port of the primary service, ``0`` for a free one.
        alertmanager_url: send alerts to this Alertmanager instead of the log.
        redis_url: keep the ledger breaker's state in this Redis (``redis://...``), shared
            by every demo process given the same URL; in memory when omitted.
        live: redraw a live view while running (plain lines when not a terminal).
        workers: threads sending traffic.
    """

    duration: float = DEFAULT_DURATION
    scenario: str = "all"
    seed: int = DEFAULT_SEED
    metrics_port: int = DEFAULT_METRICS_PORT
    service_port: int = 0
    alertmanager_url: str | None = None
    redis_url: str | None = None
    live: bool = True
    workers: int = DEFAULT_WORKERS

    def __post_init__(self) -> None:
        check_number(_OWNER, "duration", self.duration)
        if self.scenario not in SCENARIOS:
            raise ValueError(
                f"{_OWNER}.scenario must be one of {', '.join(SCENARIOS)}, got {self.scenario!r}"
            )
        check_int(_OWNER, "seed", self.seed, minimum=0)
        for name in ("metrics_port", "service_port"):
            port = check_int(_OWNER, name, getattr(self, name), minimum=0)
            if port > 65535:
                raise ValueError(f"{_OWNER}.{name} must be <= 65535, got {port}")
        url = self.alertmanager_url
        if url is not None and not str(url).startswith(("http://", "https://")):
            raise ValueError(f"{_OWNER}.alertmanager_url must be an http(s) URL, got {url!r}")
        url = self.redis_url
        if url is not None and not str(url).startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{_OWNER}.redis_url must be a redis:// URL, got {url!r}")
        if not isinstance(self.live, bool):
            raise TypeError(f"{_OWNER}.live must be a bool, got {self.live!r}")
        check_int(_OWNER, "workers", self.workers)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoReport:
    """What a run did, read back from its own metrics.

    Attributes:
        summary: the final summary, as printed.
        calls: calls by outcome (``resilience.calls``).
        retries: retries scheduled (``resilience.retries``).
        transitions: breaker transitions by ``"from->to"``.
        fallbacks: fallbacks executed (``resilience.fallbacks``).
        failovers: requests the secondary service answered.
        actions: recovery actions by name (``resilience.recovery.actions``).
        alerts: operator alerts sent (``resilience.alerts``).
        critical_errors: errors classified CRITICAL or FATAL (``resilience.errors``).
        bulkhead_rejections: calls the bulkhead refused (``resilience.bulkhead.rejections``).
        events_dropped: events the audit bus dropped.
        metrics_url: where the metrics were served.
        timeline: ``(seconds, cumulative calls by outcome)`` samples over the run.
    """

    summary: str
    calls: Counter[str]
    retries: int
    transitions: Counter[str]
    fallbacks: int
    failovers: int
    actions: Counter[str]
    alerts: int
    metrics_url: str | None
    critical_errors: int = 0
    bulkhead_rejections: int = 0
    events_dropped: int = 0
    timeline: tuple[tuple[float, dict[str, int]], ...] = field(default=())


@dataclass(slots=True)
class _Totals:
    calls: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    transitions: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    critical_errors: int = 0
    bulkhead_rejections: int = 0


def _read_totals(reader: InMemoryMetricReader) -> _Totals:
    """Sum the counters the demo reports, from the in-memory copy of its metrics."""
    totals = _Totals()
    data = reader.get_metrics_data()
    if data is None:
        return totals
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points: Any = getattr(metric.data, "data_points", ())
                for point in points:
                    value = getattr(point, "value", None)
                    if not isinstance(value, int):
                        continue
                    attributes = point.attributes or {}
                    name = metric.name
                    if name == names.METRIC_CALLS.name:
                        totals.calls[str(attributes.get(names.ATTR_OUTCOME))] += value
                    elif name == names.METRIC_RETRIES.name:
                        totals.retries += value
                    elif name == names.METRIC_BREAKER_TRANSITIONS.name:
                        key = (
                            f"{attributes.get(names.ATTR_FROM_STATE)}->"
                            f"{attributes.get(names.ATTR_TO_STATE)}"
                        )
                        totals.transitions[key] += value
                    elif name == names.METRIC_FALLBACKS.name:
                        totals.fallbacks += value
                    elif name == names.METRIC_RECOVERY_ACTIONS.name:
                        totals.actions[str(attributes.get(names.ATTR_RECOVERY_ACTION))] += value
                    elif name == names.METRIC_ALERTS.name:
                        totals.alerts += value
                    elif name == names.METRIC_BULKHEAD_REJECTIONS.name:
                        totals.bulkhead_rejections += value
                    elif name == names.METRIC_ERRORS.name and attributes.get(
                        names.ATTR_ERROR_SEVERITY
                    ) in ("critical", "fatal"):
                        totals.critical_errors += value
    return totals


def _closed_port_url() -> str:
    """A loopback URL nothing listens on: the port is bound, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/alerts"


class _AlertLines(logging.Handler):
    """Keeps the last alert lines for the live view instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage()[:110])
        del self.lines[:-3]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's flags to ``parser``."""
    parser.add_argument(
        "--duration", type=float, default=DEFAULT_DURATION, help="seconds of traffic (30)"
    )
    parser.add_argument(
        "--scenario", choices=SCENARIOS, default="all", help="what goes wrong (all)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help=f"Prometheus endpoint port ({DEFAULT_METRICS_PORT}; 0: any free port)",
    )
    parser.add_argument(
        "--service-port", type=int, default=0, help="port of the flaky service (0: any)"
    )
    parser.add_argument(
        "--alertmanager-url", default=None, help="send alerts to this Alertmanager (API v2)"
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="share the ledger breaker's state through this Redis (needs the redis extra)",
    )
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="threads sending traffic (3)"
    )
    parser.add_argument("--no-live", action="store_true", help="no live view, summary only")


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    """Build :class:`DemoOptions` from parsed flags."""
    return DemoOptions(
        duration=args.duration,
        scenario=args.scenario,
        seed=args.seed,
        metrics_port=args.metrics_port,
        service_port=args.service_port,
        alertmanager_url=args.alertmanager_url,
        redis_url=args.redis_url,
        live=not args.no_live,
        workers=args.workers,
    )


class _LoopThread:
    """An event loop in a daemon thread: the orchestrator's alerts run there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="demo-orchestrator", daemon=True
        )
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _start_telemetry(options: DemoOptions, reader: InMemoryMetricReader, out: TextIO) -> Any:
    from otel_resilience.telemetry.sdk import configure_telemetry  # noqa: PLC0415

    def configure(port: int) -> Any:
        return configure_telemetry(
            service_name="otel-resilience-demo",
            prometheus_port=port,
            traces="auto",
            set_global=False,
            metric_readers=[reader],
        )

    try:
        return configure(options.metrics_port)
    except OSError as error:
        if options.metrics_port == 0:
            raise
        print(
            f"metrics port {options.metrics_port} is not available ({error.strerror}); "
            "serving metrics on a free port instead",
            file=out,
        )
        return configure(0)


def run_demo(options: DemoOptions, out: TextIO, clock: Clock = SYSTEM_CLOCK) -> DemoReport:
    """Run the demo, show it on ``out``, and return what happened.

    Raises:
        RuntimeError: a package the demo needs is missing (the message says which).
    """
    try:
        import httpx  # noqa: PLC0415 - optional: only the demo needs it
        from opentelemetry.sdk.metrics.export import (  # noqa: PLC0415
            InMemoryMetricReader,
        )
        from otel_resilience_httpx import (  # noqa: PLC0415
            HttpResilienceConfig,
            ResilientTransport,
        )
    except ImportError as error:
        raise RuntimeError(f"{_INSTALL_HINT} ({error})") from None

    from otel_resilience import (  # noqa: PLC0415 - the package imports this module's package
        AlertmanagerAlertSink,
        AlertSink,
        Bulkhead,
        CircuitBreaker,
        CircuitBreakerConfig,
        ErrorRecoveryOrchestrator,
        FailoverConfig,
        Fallback,
        LoggingAlertSink,
        RetryConfig,
        WebhookAlertSink,
        resilient,
        unwrap,
        wrap,
    )
    from otel_resilience.backoff import Exponential  # noqa: PLC0415
    from otel_resilience.events import EventBus  # noqa: PLC0415
    from otel_resilience.orchestrator import (  # noqa: PLC0415
        DEFAULT_RULES,
        DecisionTable,
        ErrorContext,
        ErrorSeverity,
        PatternTracker,
        RecoveryAction,
        SeverityClassifier,
        SeverityRule,
    )
    from otel_resilience.telemetry._default import listener_for  # noqa: PLC0415

    rng = seeded_random(options.seed)
    schedule = Schedule(options.scenario, options.duration)
    reader = InMemoryMetricReader()
    telemetry = _start_telemetry(options, reader, out)
    tracer_provider = telemetry.tracer_provider
    meter_provider = telemetry.meter_provider
    providers: dict[str, Any] = {
        "tracer_provider": tracer_provider,
        "meter_provider": meter_provider,
    }
    primary = DemoService("primary", schedule, clock, rng, options.service_port)
    secondary = DemoService("secondary", schedule, clock, rng)

    alert_lines = _AlertLines()
    alert_logger = logging.getLogger(_ALERT_LOGGER)
    alert_logger.propagate = False
    alert_logger.addHandler(alert_lines)
    sink: AlertSink
    if options.alertmanager_url is not None:
        sink = AlertmanagerAlertSink(options.alertmanager_url, clock=clock)
    else:
        sink = LoggingAlertSink(alert_logger)
    table = DecisionTable()
    # An unreachable dependency pages someone here, so a short run shows alerts too.
    table = table.with_actions(
        ErrorSeverity.HIGH, [*table.actions_for(ErrorSeverity.HIGH), RecoveryAction.ALERT]
    )
    listener = listener_for(tracer_provider, meter_provider)
    # An audit bus that is never started: its small queues fill and the drops are counted.
    bus = EventBus(name="demo-audit", queue_size=EVENT_QUEUE_SIZE, telemetry=False)
    listener.track(bus)
    bus.subscribe(object, lambda event: None)
    classifier = SeverityClassifier(
        [
            SeverityRule(
                severity=ErrorSeverity.CRITICAL,
                exception_types=(_targets.CorruptedResponseError,),
                name="corrupted response",
            ),
            *DEFAULT_RULES,
        ]
    )
    orchestrator = ErrorRecoveryOrchestrator(
        bus,
        # The webhook nobody listens to makes alert delivery and recovery actions fail.
        alert_sinks=[sink, WebhookAlertSink(_closed_port_url(), timeout=ALERT_WEBHOOK_TIMEOUT)],
        classifier=classifier,
        table=table,
        patterns=PatternTracker(window_seconds=10.0, threshold=2, clock=clock),
        clock=clock,
        listener=listener,
    )
    loop = _LoopThread()
    stop = threading.Event()
    workers: list[threading.Thread] = []
    client: httpx.Client | None = None
    bare: httpx.Client | None = None
    wrapped_target = f"{_targets.__name__}:recommend"
    wrapped = False
    try:
        loop.run(orchestrator.start())
        primary.start()
        secondary.start()
        base = primary.base_url
        client = httpx.Client(
            transport=ResilientTransport(
                config=HttpResilienceConfig(
                    name="httpx",
                    max_attempts=3,
                    backoff=Exponential(initial=0.02, multiplier=2.0, max_delay=0.2),
                    total_timeout=2.0,
                    attempt_timeout=0.2,
                    failure_threshold=3,
                    breaker_timeout=1.0,
                    max_retry_after=0.3,
                    failover={base: FailoverConfig((secondary.base_url,))},
                ),
                clock=clock,
                orchestrator=orchestrator,
                **providers,
            )
        )
        bare = httpx.Client()
        http = bare

        def cached_price(context: Any) -> object:
            return {"service": "cache", "price": None, "error": type(context.error).__name__}

        pricing_breaker = CircuitBreaker(
            "pricing",
            CircuitBreakerConfig(
                failure_threshold=5, success_threshold=2, timeout_seconds=1.0, half_open_max_calls=1
            ),
            clock=clock,
            rng=rng,
            **providers,
        )

        @resilient(
            name="pricing",
            fallback=Fallback(handler=cached_price),
            retry=RetryConfig(
                max_attempts=3,
                backoff=Exponential(initial=0.02, multiplier=2.0, max_delay=0.2),
                max_retry_after=0.3,
            ),
            circuit_breaker=pricing_breaker,
            attempt_timeout=0.2,
            clock=clock,
            orchestrator=orchestrator,
            component="pricing",
            **providers,
        )
        def price(item: int) -> object:
            return _targets.get_json(http, f"{base}/pricing/{item}")

        recommendations_breaker = CircuitBreaker(
            "recommendations",
            CircuitBreakerConfig(failure_threshold=4, timeout_seconds=1.0, half_open_max_calls=1),
            clock=clock,
            rng=rng,
            **providers,
        )
        wrap(
            wrapped_target,
            name="recommendations",
            fallback=Fallback(value=[]),
            retry=RetryConfig(max_attempts=2, backoff=Exponential(initial=0.02, max_delay=0.1)),
            circuit_breaker=recommendations_breaker,
            clock=clock,
            orchestrator=orchestrator,
            component="recommendations",
            **providers,
        )
        wrapped = True
        reports_breaker = CircuitBreaker(
            "reports",
            CircuitBreakerConfig(failure_threshold=3, timeout_seconds=2.0, half_open_max_calls=1),
            clock=clock,
            rng=rng,
            **providers,
        )
        reports_pool = Bulkhead(1, max_queue=1, queue_timeout=0.05, name="reports", **providers)

        @resilient(
            name="reports",
            fallback=Fallback(value=None),
            retry=RetryConfig(max_attempts=2, backoff=Exponential(initial=0.02, max_delay=0.05)),
            circuit_breaker=reports_breaker,
            bulkhead=reports_pool,
            attempt_timeout=0.1,
            clock=clock,
            orchestrator=orchestrator,
            component="reports",
            **providers,
        )
        def report(item: int) -> object:
            return _targets.report(http, base, item)

        # Retry only, no breaker: most calls run out of retries and fall back, all run.
        @resilient(
            name="quotes",
            fallback=Fallback(value=None),
            retry=RetryConfig(max_attempts=2, backoff=Exponential(initial=0.02, max_delay=0.05)),
            clock=clock,
            **providers,
        )
        def quote(item: int) -> object:
            return _targets.quote(http, base, item)

        # A long breaker timeout: it stays open through the ledger's outage, probing rarely.
        # Its state is shared (through Redis with --redis-url, so several demo processes
        # trip and probe it together; else in memory).
        ledger_breaker = CircuitBreaker(
            "ledger",
            CircuitBreakerConfig(
                failure_threshold=2, timeout_seconds=LEDGER_BREAKER_TIMEOUT, half_open_max_calls=1
            ),
            clock=clock,
            rng=rng,
            store=_ledger_store(options, clock),
            **providers,
        )

        @resilient(
            name="ledger",
            fallback=Fallback(value=None),
            circuit_breaker=ledger_breaker,
            clock=clock,
            component="ledger",
            **providers,
        )
        def ledger(item: int) -> object:
            return _targets.ledger(http, base, item)

        transport: Any = client._transport
        breakers: list[tuple[str, Callable[[], str]]] = [
            ("httpx", lambda: transport.resilience.breaker(base).state.value),
            ("pricing", lambda: pricing_breaker.state.value),
            ("recommendations", lambda: recommendations_breaker.state.value),
            ("reports", lambda: reports_breaker.state.value),
            ("ledger", lambda: ledger_breaker.state.value),
        ]

        def work(index: int) -> None:
            item = index
            while not stop.is_set():
                item += options.workers
                try:
                    client.get(f"{base}/inventory/{item}", timeout=2.0)
                except (httpx.HTTPError, ConnectionError, TimeoutError):
                    pass  # counted by the pipeline's metrics; the view shows the outcomes
                except Exception:  # noqa: BLE001, S110 - CircuitOpenError and the like: counted too
                    pass
                price(item)
                _targets.recommend(http, base)
                report(item)
                quote(item)
                ledger(item)
                clock.wait(stop, WORKER_PAUSE)

        def audit() -> None:
            # A ledger audit that keeps finding corrupted entries, reported observe-only
            # (as another instrumentation's ERROR span would be): a steady source of
            # CRITICAL errors and alerts that trips no breaker.
            while not stop.is_set():
                orchestrator.observe(
                    ErrorContext.from_exception(
                        _targets.CorruptedResponseError("audit: ledger checksum mismatch"),
                        component="ledger-audit",
                        operation="audit",
                        timestamp=wall_time(),
                    )
                )
                clock.wait(stop, AUDIT_INTERVAL)

        for index in range(options.workers):
            thread = threading.Thread(target=work, args=(index,), name=f"demo-worker-{index}")
            workers.append(thread)
        workers.append(threading.Thread(target=audit, name="demo-auditor"))
        view = _View(out, options, schedule, primary, breakers, alert_lines, telemetry)
        view.header()
        started = clock.monotonic()
        for thread in workers:
            thread.start()
        timeline: list[tuple[float, dict[str, int]]] = [(0.0, dict.fromkeys(OUTCOMES, 0))]
        while True:
            elapsed = clock.monotonic() - started
            if elapsed >= options.duration:
                break
            clock.wait(stop, min(SAMPLE_INTERVAL, options.duration - elapsed))
            elapsed = clock.monotonic() - started
            totals = _read_totals(reader)
            timeline.append((elapsed, {o: totals.calls[o] for o in OUTCOMES}))
            view.update(elapsed, totals, orchestrator)
        stop.set()
        for thread in workers:
            thread.join()
        elapsed = clock.monotonic() - started
        loop.run(orchestrator.stop())
        totals = _read_totals(reader)
        timeline.append((elapsed, {o: totals.calls[o] for o in OUTCOMES}))
        view.finish()
        failovers = secondary.hits[200]
        summary = _summary(
            options, elapsed, totals, failovers, breakers, sink, telemetry.metrics_url, bus.dropped
        )
        print(summary, file=out)
        return DemoReport(
            summary=summary,
            calls=totals.calls,
            retries=totals.retries,
            transitions=totals.transitions,
            fallbacks=totals.fallbacks,
            failovers=failovers,
            actions=totals.actions,
            alerts=totals.alerts,
            metrics_url=telemetry.metrics_url,
            critical_errors=totals.critical_errors,
            bulkhead_rejections=totals.bulkhead_rejections,
            events_dropped=bus.dropped,
            timeline=tuple(timeline),
        )
    finally:
        stop.set()
        for thread in workers:
            if thread.is_alive():
                thread.join()
        if wrapped:
            unwrap(wrapped_target)
        if client is not None:
            client.close()
        if bare is not None:
            bare.close()
        primary.close()
        secondary.close()
        if orchestrator.running:
            loop.run(orchestrator.stop())
        loop.close()
        alert_logger.removeHandler(alert_lines)
        telemetry.shutdown()


def _ledger_store(options: DemoOptions, clock: Clock) -> Any:
    """The ledger breaker's state store: Redis at ``redis_url``, else in memory."""
    if options.redis_url is None:
        from otel_resilience.stores import InMemoryStateStore  # noqa: PLC0415

        return InMemoryStateStore(clock=clock)
    try:
        from otel_resilience.stores.redis import RedisStateStore  # noqa: PLC0415
    except ImportError as error:
        raise RuntimeError(
            f"--redis-url needs the redis extra: pip install 'otel-resilience[redis]' ({error})"
        ) from None
    return RedisStateStore.from_url(options.redis_url, clock=clock)


def _summary(
    options: DemoOptions,
    elapsed: float,
    totals: _Totals,
    failovers: int,
    breakers: list[tuple[str, Callable[[], str]]],
    sink: object,
    metrics_url: str | None,
    events_dropped: int,
) -> str:
    calls = totals.calls
    outcomes = ", ".join(f"{o} {calls[o]}" for o in OUTCOMES if calls[o])
    transitions = ", ".join(f"{k} {v}" for k, v in sorted(totals.transitions.items()))
    actions = ", ".join(f"{k} {v}" for k, v in sorted(totals.actions.items()))
    states = ", ".join(f"{name} {state()}" for name, state in breakers)
    lines = [
        f"summary: {elapsed:.1f} s, scenario {options.scenario}, seed {options.seed}, "
        f"{options.workers} workers",
        f"  calls                {sum(calls.values()):>6}  ({outcomes or 'none'})",
        f"  retries              {totals.retries:>6}",
        f"  breaker transitions  {sum(totals.transitions.values()):>6}  ({transitions or 'none'})",
        f"  fallbacks            {totals.fallbacks:>6}",
        f"  failover             {failovers:>6}  requests answered by the secondary",
        f"  recovery actions     {sum(totals.actions.values()):>6}  ({actions or 'none'})",
        f"  alerts               {totals.alerts:>6}  (to {type(sink).__name__} and a webhook)",
        f"  critical errors      {totals.critical_errors:>6}  (corrupted responses)",
        f"  bulkhead rejections  {totals.bulkhead_rejections:>6}",
        f"  events dropped       {events_dropped:>6}  (audit bus)",
        f"  breakers now         {states}",
        f"  metrics              {metrics_url or 'not served'}",
    ]
    return "\n".join(lines)


class _View:
    """The live view: an ANSI redraw on a terminal, periodic plain lines otherwise."""

    def __init__(
        self,
        out: TextIO,
        options: DemoOptions,
        schedule: Schedule,
        primary: DemoService,
        breakers: list[tuple[str, Callable[[], str]]],
        alerts: _AlertLines,
        telemetry: Any,
    ) -> None:
        self.out = out
        self.options = options
        self.schedule = schedule
        self.primary = primary
        self.breakers = breakers
        self.alerts = alerts
        self.telemetry = telemetry
        isatty = getattr(out, "isatty", None)
        self.tty = bool(isatty is not None and isatty())
        self.drawn = 0
        self.last_line = -PLAIN_LINE_INTERVAL

    def header(self) -> None:
        phases = " -> ".join(p.name for p in self.schedule.phases)
        print(
            f"otel-resilience demo: {self.options.duration:g} s, scenario "
            f"{self.options.scenario} ({phases})\n"
            f"  primary {self.primary.base_url}; metrics "
            f"{self.telemetry.metrics_url or 'not served'}",
            file=self.out,
        )
        self.out.flush()

    def update(
        self, elapsed: float, totals: _Totals, orchestrator: ErrorRecoveryOrchestrator
    ) -> None:
        if not self.options.live:
            return
        calls = totals.calls
        outcomes = "  ".join(f"{o} {calls[o]}" for o in OUTCOMES)
        states = "  ".join(f"{name}: {state()}" for name, state in self.breakers)
        phase = self.primary.phase().name
        if not self.tty:
            if elapsed - self.last_line < PLAIN_LINE_INTERVAL:
                return
            self.last_line = elapsed
            print(
                f"[{elapsed:5.1f}s] {phase:<12} calls: {outcomes} | retries {totals.retries}"
                f" | breakers {states} | actions {sum(totals.actions.values())}"
                f" | alerts {totals.alerts}",
                file=self.out,
            )
            self.out.flush()
            return
        share = min(elapsed / self.options.duration, 1.0)
        bar = "#" * int(share * 30)
        recent = orchestrator.status().recent_actions[-3:]
        lines = [
            f"\x1b[1m[{bar:<30}] {elapsed:5.1f}/{self.options.duration:g}s\x1b[0m  phase: {phase}",
            f"  calls     {outcomes}",
            f"  retries   {totals.retries}   fallbacks {totals.fallbacks}"
            f"   transitions {sum(totals.transitions.values())}",
            f"  breakers  {states}",
            f"  recovery  {', '.join(f'{k} {v}' for k, v in sorted(totals.actions.items()))}",
            *(f"    {component}: {action} {detail}" for _, component, action, _, detail in recent),
            f"  alerts    {totals.alerts}",
            *(f"    {line}" for line in self.alerts.lines),
        ]
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self.drawn = len(lines)

    def finish(self) -> None:
        if self.tty and self.drawn:
            self.out.write("\n")
