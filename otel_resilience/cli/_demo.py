"""``otel-resilience demo``: a flaky dependency behind a breaker + retry pipeline.

The dependency is simulated in-process: healthy, then an outage, then recovering. Calls
go through ``resilient(...)`` with a retry (exponential backoff with jitter) inside a
fallback and over a circuit breaker, on the real clock with short durations, so the run
takes a few seconds and shows every behaviour: retries that save a call, the breaker
opening, fast rejections, the half-open trial and the close.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from typing import TextIO

from otel_resilience._clock import SYSTEM_CLOCK, Clock, RandomSource, seeded_random
from otel_resilience._events import (
    CallRejected,
    CircuitStateChanged,
    FallbackExecuted,
    ResilienceEvent,
    RetryExhausted,
    RetryScheduled,
)
from otel_resilience.backoff import Exponential
from otel_resilience.breaker import CircuitBreaker, CircuitBreakerConfig
from otel_resilience.fallback import Fallback, FallbackContext
from otel_resilience.middleware import resilient
from otel_resilience.pipeline import Pipeline
from otel_resilience.retry import RetryConfig

__all__ = ["DemoOptions", "add_arguments", "run_demo"]


class DependencyDownError(ConnectionError):
    """The simulated dependency failed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """What the demo does; every field has a command-line flag."""

    calls: int = 60
    seed: int = 2
    interval: float = 0.05
    """Seconds between calls."""


NOISE = 0.1
"""Share of calls that fail at random outside the outage (retries usually save them)."""


class FlakyDependency:
    """A dependency that is healthy, then down, then healthy again, with some noise."""

    def __init__(self, calls: int, rng: RandomSource) -> None:
        self.rng = rng
        self.outage = range(calls // 4, calls // 2)
        self.call_index = 0
        self.invocations = 0

    def fetch(self, item: int) -> str:
        self.invocations += 1
        down = self.call_index in self.outage
        if down or self.rng.random() < NOISE:
            raise DependencyDownError("upstream unavailable")
        return f"item-{item}"


class _Narrator:
    """Turns engine events into lines of the demo's story."""

    def __init__(self, out: TextIO, started: float, clock: Clock) -> None:
        self.out = out
        self.started = started
        self.clock = clock
        self.counts: Counter[str] = Counter()

    def start_call(self, pipeline: str) -> None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.counts[type(event).__name__] += 1
        at = self.clock.monotonic() - self.started
        if isinstance(event, CircuitStateChanged):
            print(
                f"  [{at:6.2f}s] breaker {event.breaker!r}: {event.previous.value} -> "
                f"{event.state.value} ({event.reason})",
                file=self.out,
            )
        elif isinstance(event, RetryScheduled):
            print(
                f"  [{at:6.2f}s]   retry after attempt {event.attempt} "
                f"({event.error_type}), waiting {event.delay * 1000:.0f} ms",
                file=self.out,
            )
        elif isinstance(event, RetryExhausted | CallRejected | FallbackExecuted):
            pass  # summarised per call below


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's flags to ``parser``."""
    defaults = DemoOptions()
    parser.add_argument("--calls", type=int, default=defaults.calls, help="calls to make")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument(
        "--interval", type=float, default=defaults.interval, help="seconds between calls"
    )


def run_demo(options: DemoOptions, out: TextIO, clock: Clock = SYSTEM_CLOCK) -> Counter[str]:
    """Run the demo, print the story to ``out``, and return the count of call outcomes."""
    if options.calls < 1:
        raise ValueError(f"--calls must be >= 1, got {options.calls}")
    if options.interval < 0:
        raise ValueError(f"--interval must be >= 0, got {options.interval}")
    rng = seeded_random(options.seed)
    dependency = FlakyDependency(options.calls, rng)
    narrator = _Narrator(out, clock.monotonic(), clock)
    breaker = CircuitBreaker(
        "inventory",
        CircuitBreakerConfig(
            failure_threshold=4, success_threshold=2, timeout_seconds=0.5, half_open_max_calls=1
        ),
        clock=clock,
        rng=rng,
        listener=narrator,
    )

    def cached(context: FallbackContext) -> str:
        return f"cached ({type(context.error).__name__})"

    pipeline = Pipeline(
        name="inventory.fetch",
        fallback=Fallback(handler=cached),
        retry=RetryConfig(
            max_attempts=3,
            backoff=Exponential(initial=0.01, multiplier=2.0, max_delay=0.1),
            retry_on=(DependencyDownError,),
        ),
        circuit_breaker=breaker,
        clock=clock,
        listener=narrator,
    )
    fetch = resilient(pipeline)(dependency.fetch)
    outcomes: Counter[str] = Counter()
    print(
        f"otel-resilience demo: {options.calls} calls to a flaky 'inventory' service "
        f"(outage on calls {dependency.outage.start}-{dependency.outage.stop - 1})",
        file=out,
    )
    for index in range(options.calls):
        dependency.call_index = index
        before = dependency.invocations
        value = fetch(index)
        tries = dependency.invocations - before
        if tries == 0:
            category, detail = "rejected", "breaker open: fallback without calling"
        elif value.startswith("cached"):
            plural = "s" if tries > 1 else ""
            category, detail = "fallback", f"failed {tries} attempt{plural}: fallback"
        elif tries == 1:
            category, detail = "ok", "ok"
        else:
            category, detail = "ok after retry", f"ok after {tries} attempts"
        outcomes[category] += 1
        print(
            f"call {index:3d}: {value:<28} {detail}  [breaker {breaker.state.value}]",
            file=out,
        )
        clock.sleep(options.interval)
    metrics = breaker.metrics
    print("\nsummary", file=out)
    for kind, count in sorted(outcomes.items()):
        print(f"  {kind:<22} {count}", file=out)
    print(
        f"  dependency invocations {dependency.invocations}\n"
        f"  breaker: {metrics.calls} calls, {metrics.failures} failures, "
        f"{metrics.rejections} rejections, now {metrics.state.value}\n"
        f"  retries scheduled      {narrator.counts['RetryScheduled']}\n"
        f"  transitions            {narrator.counts['CircuitStateChanged']}",
        file=out,
    )
    return outcomes
