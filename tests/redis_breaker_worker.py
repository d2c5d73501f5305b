"""A worker process of the multi-process shared-breaker tests (run as a script, not collected).

Usage: ``python tests/redis_breaker_worker.py '<json job>'``. The job names the Redis URL,
the namespace, the breaker and what to do. The worker builds its own
:class:`~otel_resilience.SharedCircuitBreaker` on a :class:`RedisStateStore`, says it is
ready (``INCR`` of the job's ``ready`` key), waits for the start signal (``BLPOP`` on the
``gate`` key) so that every worker starts at once, does its part, says it is done
(``done``), waits until every worker is (``after``), and prints one JSON line: the
transitions its breaker delivered, its rejections, what it was admitted as, and the state
it saw at the end.

Modes:
    ``fail``: ``calls`` calls through ``breaker.call`` that each raise ``ConnectionError``
        (a rejection counts as such).
    ``probe``: one ``acquire``: ``trial`` (a shared half-open lease, held and never
        reported), ``admitted``, or ``rejected``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import redis

from otel_resilience import CircuitBreakerConfig, CircuitOpenError, SharedCircuitBreaker
from otel_resilience.breaker import SHARED_TICKET_BASE
from otel_resilience.stores.redis import RedisStateStore

GATE_TIMEOUT_SECONDS = 60
"""How long a worker waits for the start signal before giving up (a broken test)."""


def main(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job; return what the worker saw."""
    config = CircuitBreakerConfig(**job["config"])
    store = RedisStateStore.from_url(
        job["url"], namespace=job["namespace"], timeout_seconds=5.0, telemetry=False
    )
    breaker = SharedCircuitBreaker(
        job["name"],
        config,
        store=store,
        telemetry=False,
        max_staleness_seconds=job.get("max_staleness_seconds", 0.5),
    )
    transitions: list[list[str]] = []
    breaker.add_listener(
        lambda event: transitions.append([event.previous.value, event.state.value, event.reason])
    )
    control = redis.Redis.from_url(job["url"], socket_timeout=GATE_TIMEOUT_SECONDS + 5)
    control.incr(job["ready"])
    if control.blpop([job["gate"]], timeout=GATE_TIMEOUT_SECONDS) is None:
        raise SystemExit("no start signal")
    rejections = 0
    admitted = None
    if job["mode"] == "fail":

        def down() -> None:
            raise ConnectionError("dependency down")

        for _ in range(job["calls"]):
            try:
                breaker.call(down)
            except CircuitOpenError:
                rejections += 1
            except ConnectionError:
                pass
    else:
        try:
            ticket = breaker.acquire()
        except CircuitOpenError:
            rejections += 1
            admitted = "rejected"
        else:
            admitted = "trial" if ticket <= -SHARED_TICKET_BASE else "admitted"
    # Second barrier: the state every worker sees once all of them are done.
    control.incr(job["done"])
    if control.blpop([job["after"]], timeout=GATE_TIMEOUT_SECONDS) is None:
        raise SystemExit("no end signal")
    result = {
        "transitions": transitions,
        "rejections": rejections,
        "admitted": admitted,
        "state": breaker.state.value,
        "degraded": breaker.store_status().degraded,
    }
    control.close()
    store.close()
    return result


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))  # the parent reads it
