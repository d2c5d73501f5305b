"""The demo's flaky HTTP services: a primary that follows a scenario, a healthy secondary.

Both are :class:`http.server.ThreadingHTTPServer` instances on loopback, each served by a
daemon thread. The primary's behaviour changes over time (healthy, flapping, slow,
rate-limited, outage, failover) following a :class:`Schedule` read on the demo's clock.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from otel_resilience._clock import Clock, RandomSource

__all__ = [
    "LEDGER_OUTAGE_SHARE",
    "PHASE_WEIGHTS",
    "QUOTES_ERROR_SHARE",
    "SCENARIOS",
    "DemoService",
    "Phase",
    "Schedule",
]

SCENARIOS: Final = ("all", "outage", "flapping", "slow", "rate-limited", "failover")
"""Every value of ``--scenario``; ``all`` plays the others one after the other."""

PHASE_WEIGHTS: Final = {
    "healthy": 1.0,
    "flapping": 2.0,
    "slow": 2.0,
    "rate-limited": 2.0,
    "outage": 3.0,
    "failover": 3.0,
    "recovery": 2.0,
}
"""Relative length of each phase; the phases of a run share its duration in proportion."""

SINGLE_SCENARIO_WEIGHT: Final = 3.0
"""Weight of the one troubled phase when a single scenario is chosen."""

HEALTHY_ERROR_RATE: Final = 0.03
"""Share of requests a healthy primary still fails (500): retries absorb them."""

FLAP_PERIOD_SECONDS: Final = 0.5
"""A flapping primary alternates between up and down this often."""

SLOW_SHARE: Final = 0.6
"""Share of requests a slow primary answers late."""

SLOW_DELAY_SECONDS: Final = 0.3
"""How late: longer than the demo's attempt timeouts, so the slow answers time out."""

RATE_LIMITED_SHARE: Final = 0.5
"""Share of requests a rate-limited primary refuses with 429."""

RETRY_AFTER_SECONDS: Final = 1
"""The ``Retry-After`` a rate-limited primary sends (the clients cap it lower)."""

REPORTS_PATH: Final = "/reports"
"""A batch endpoint of the primary that is degraded in every phase."""

REPORTS_SLOW_SHARE: Final = 0.5
"""Share of report requests the primary answers late, whatever the phase."""

REPORTS_CORRUPT_SHARE: Final = 0.25
"""Share of report requests answered with a truncated (corrupted) body."""

QUOTES_PATH: Final = "/quotes"
"""A legacy endpoint of the primary that fails most requests in every phase."""

QUOTES_ERROR_SHARE: Final = 0.7
"""Share of quote requests the primary refuses (503): callers often run out of retries."""

LEDGER_PATH: Final = "/ledger"
"""An endpoint of the primary that is down for the first part of every run."""

LEDGER_OUTAGE_SHARE: Final = 0.4
"""Share of the run, from its start, during which the ledger endpoint drops connections."""

CORRUPTED: Final = -1
"""Status :meth:`DemoService.answer` reads as "200 with a corrupted body"."""


@dataclass(frozen=True, slots=True)
class Phase:
    """One stretch of a run: what the primary does from ``start`` to ``end`` (seconds)."""

    name: str
    start: float
    end: float


class Schedule:
    """The phases of a run, laid out over ``duration`` seconds.

    Args:
        scenario: one of :data:`SCENARIOS`.
        duration: length of the run in seconds.
    """

    __slots__ = ("duration", "phases")

    def __init__(self, scenario: str, duration: float) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
        names: Sequence[str]
        if scenario == "all":
            names = tuple(PHASE_WEIGHTS)
            weights = [PHASE_WEIGHTS[name] for name in names]
        else:
            names = ("healthy", scenario, "recovery")
            weights = [PHASE_WEIGHTS["healthy"], SINGLE_SCENARIO_WEIGHT, PHASE_WEIGHTS["recovery"]]
        total = sum(weights)
        phases: list[Phase] = []
        start = 0.0
        for name, weight in zip(names, weights, strict=True):
            end = start + duration * weight / total
            phases.append(Phase(name, start, end))
            start = end
        self.duration = duration
        self.phases: tuple[Phase, ...] = tuple(phases)

    def at(self, elapsed: float) -> Phase:
        """Return the phase running ``elapsed`` seconds into the run (the last one after)."""
        for phase in self.phases:
            if elapsed < phase.end:
                return phase
        return self.phases[-1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: DemoService


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.service.answer(self)

    def log_message(self, format: str, *args: object) -> None:
        # Request lines would scroll the live view away.
        return


class DemoService:
    """A loopback HTTP service; the primary follows ``schedule``, the secondary is healthy.

    Args:
        role: ``"primary"`` or ``"secondary"``.
        schedule: the phases of the run (ignored by a secondary).
        clock: where the elapsed time is read from.
        rng: chance, for the share of failing or slow requests.
        port: port to listen on, ``0`` for a free one.
    """

    def __init__(
        self,
        role: str,
        schedule: Schedule,
        clock: Clock,
        rng: RandomSource,
        port: int = 0,
    ) -> None:
        self.role = role
        self.schedule = schedule
        self.clock = clock
        self.rng = rng
        self.started = clock.monotonic()
        self.hits: Counter[int] = Counter()
        """Responses by status (0: connection dropped without a response)."""
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.service = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"demo-{role}",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        """Serve in a daemon thread; the schedule's clock starts now."""
        self.started = self.clock.monotonic()
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def phase(self) -> Phase:
        """Return the phase the primary is in now."""
        return self.schedule.at(self.clock.monotonic() - self.started)

    def _chance(self) -> float:
        with self._lock:
            return self.rng.random()

    def _decide(self, path: str) -> tuple[int, float]:
        """Return ``(status, delay)``; status 0 drops the connection."""
        if self.role != "primary":
            return 200, 0.0
        if path.startswith(REPORTS_PATH):
            # Degraded from the start, so timeouts, a full bulkhead and corrupted answers
            # show up in the first seconds of any scenario.
            chance = self._chance()
            if chance < REPORTS_CORRUPT_SHARE:
                return CORRUPTED, 0.0
            return 200, (SLOW_DELAY_SECONDS if chance < REPORTS_SLOW_SHARE else 0.0)
        if path.startswith(QUOTES_PATH):
            return (503 if self._chance() < QUOTES_ERROR_SHARE else 200), 0.0
        if path.startswith(LEDGER_PATH):
            # Down long enough for a breaker to stay open through several probes.
            elapsed = self.clock.monotonic() - self.started
            return (0 if elapsed < self.schedule.duration * LEDGER_OUTAGE_SHARE else 200), 0.0
        phase = self.phase()
        name = phase.name
        if name == "flapping":
            down = int((self.clock.monotonic() - self.started) / FLAP_PERIOD_SECONDS) % 2 == 0
            return (503 if down else 200), 0.0
        if name == "slow":
            return 200, (SLOW_DELAY_SECONDS if self._chance() < SLOW_SHARE else 0.0)
        if name == "rate-limited":
            return (429 if self._chance() < RATE_LIMITED_SHARE else 200), 0.0
        if name == "outage":
            return 0, 0.0
        if name == "failover":
            return 503, 0.0
        return (500 if self._chance() < HEALTHY_ERROR_RATE else 200), 0.0

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one request as the current phase dictates."""
        status, delay = self._decide(handler.path)
        corrupted = status == CORRUPTED
        if corrupted:
            status = 200
        with self._lock:
            self.hits[status] += 1
        if delay:
            self.clock.sleep(delay)
        if status == 0:
            # An outage: the connection closes before any response byte.
            handler.close_connection = True
            return
        body = f'{{"service": "{self.role}", "status": {status}}}'.encode()
        if corrupted:
            body = body[: len(body) // 2]
        try:
            handler.send_response(status)
            if status == 429:
                handler.send_header("Retry-After", str(RETRY_AFTER_SECONDS))
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            return  # the client gave up (attempt timeout) before the answer
