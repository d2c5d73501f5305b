"""The resilient transports against a real loopback HTTP server."""

from __future__ import annotations

import email.utils
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from otel_resilience_httpx import (
    AsyncResilientTransport,
    HttpResilience,
    HttpResilienceConfig,
    ResilientTransport,
    instrument_client,
    uninstrument_client,
)

from otel_resilience import CircuitOpenError, CircuitState
from otel_resilience.backoff import Constant
from otel_resilience.telemetry import names
from otel_resilience.testing import FakeClock

if TYPE_CHECKING:
    import httpx_loopback
elif "httpx_loopback" in sys.modules:
    httpx_loopback = sys.modules["httpx_loopback"]
else:
    # The tests folder is no package: load the helper by path, once.
    _spec = importlib.util.spec_from_file_location(
        "httpx_loopback", Path(__file__).with_name("httpx_loopback.py")
    )
    httpx_loopback = importlib.util.module_from_spec(_spec)
    sys.modules["httpx_loopback"] = httpx_loopback
    _spec.loader.exec_module(httpx_loopback)

Hang = httpx_loopback.Hang
Reply = httpx_loopback.Reply
Reset = httpx_loopback.Reset
ScriptedServer = httpx_loopback.ScriptedServer

WALL = 1_700_000_000.0


@pytest.fixture
def server() -> Iterator[httpx_loopback.ScriptedServer]:
    with httpx_loopback.serve() as running:
        yield running


@pytest.fixture
def other() -> Iterator[httpx_loopback.ScriptedServer]:
    with httpx_loopback.serve() as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def config(**overrides: object) -> HttpResilienceConfig:
    values: dict[str, object] = {"backoff": Constant(seconds=0.5), "attempt_timeout": 5.0}
    values.update(overrides)
    return HttpResilienceConfig(**values)  # type: ignore[arg-type]


def client(clock: FakeClock, **overrides: object) -> httpx.Client:
    transport = ResilientTransport(
        config=config(**overrides), clock=clock, wall_clock=lambda: WALL, tracer_provider=None
    )
    return httpx.Client(transport=transport)


def test_503_is_retried_after_the_backoff(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    server.push(Reply(503, b"busy"))
    with client(clock) as http:
        response = http.get(f"{server.url}/items")
    assert (response.status_code, response.text) == (200, "ok")
    assert server.count == 2
    assert clock.sleeps == [0.5]


def test_last_retryable_response_is_returned_when_retries_run_out(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    server.default = Reply(503, b"still busy", {"X-Attempt": "last"})
    with client(clock, max_attempts=3) as http:
        response = http.get(f"{server.url}/items")
    assert response.status_code == 503
    assert response.text == "still busy"
    assert response.headers["X-Attempt"] == "last"
    assert server.count == 3
    assert clock.sleeps == [0.5, 0.5]


def test_non_retried_status_is_returned_at_once(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    server.push(Reply(404, b"missing"))
    with client(clock) as http:
        response = http.get(f"{server.url}/nothing")
    assert (response.status_code, server.count) == (404, 1)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("2", 2.0),
        (email.utils.formatdate(WALL + 7.0, usegmt=True), 7.0),
        (email.utils.formatdate(WALL - 30.0, usegmt=True), 0.0),
        ("3600", 10.0),  # capped by max_retry_after
        ("whenever", 0.5),  # unreadable: the backoff applies
    ],
)
def test_retry_after_is_honoured_in_both_forms_and_capped(
    server: httpx_loopback.ScriptedServer, clock: FakeClock, retry_after: str, expected: float
) -> None:
    server.push(Reply(429, b"slow down", {"Retry-After": retry_after}))
    with client(clock, max_retry_after=10.0) as http:
        response = http.get(f"{server.url}/items")
    assert response.status_code == 200
    # A zero wait is no sleep at all.
    assert clock.sleeps == ([expected] if expected else [])
    assert server.count == 2


def test_connection_reset_is_retried(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    server.push(Reset())
    with client(clock) as http:
        response = http.get(f"{server.url}/items")
    assert response.status_code == 200
    assert server.count == 2


def test_resets_exhaust_retries_and_raise_the_transport_error(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    server.default = Reset()
    with client(clock, max_attempts=2) as http, pytest.raises(httpx.TransportError) as caught:
        http.get(f"{server.url}/items")
    assert server.count == 2
    assert any("2 attempts" in note for note in getattr(caught.value, "__notes__", []))


def test_slow_response_times_out_the_attempt_and_is_retried(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    # The attempt timeout becomes the socket's read timeout (the fake clock stands still,
    # so the whole 0.2 s is left): a real, tiny socket timeout is the point here.
    server.push(Hang())
    with client(clock, attempt_timeout=0.2) as http:
        response = http.get(f"{server.url}/slow")
    assert response.status_code == 200
    assert server.count == 2


def test_caller_timeout_is_kept_when_tighter(clock: FakeClock) -> None:
    seen: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200)

    transport = ResilientTransport(httpx.MockTransport(handler), config=config(), clock=clock)
    with httpx.Client(transport=transport, timeout=httpx.Timeout(1.0, read=30.0)) as http:
        http.get("http://example.test/")
    assert seen == [{"connect": 1.0, "read": 5.0, "write": 1.0, "pool": 1.0}]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_methods_are_not_retried(
    server: httpx_loopback.ScriptedServer, clock: FakeClock, method: str
) -> None:
    server.default = Reply(503, b"busy")
    with client(clock) as http:
        response = http.request(method, f"{server.url}/orders", content=b"{}")
    assert response.status_code == 503
    assert server.count == 1
    assert clock.sleeps == []


def test_post_is_retried_when_configured(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    server.push(Reply(503))
    with client(clock, retry_methods={"GET", "POST"}) as http:
        response = http.post(f"{server.url}/orders", content=b"{}")
    assert (response.status_code, server.count) == (200, 2)


def test_post_reset_is_not_retried(server: httpx_loopback.ScriptedServer, clock: FakeClock) -> None:
    server.push(Reset())
    with client(clock) as http, pytest.raises(httpx.TransportError):
        http.post(f"{server.url}/orders", content=b"{}")
    assert server.count == 1


def test_breakers_are_per_authority(
    server: httpx_loopback.ScriptedServer,
    other: httpx_loopback.ScriptedServer,
    clock: FakeClock,
) -> None:
    server.default = Reply(500, b"broken")
    transport = ResilientTransport(
        config=config(max_attempts=1, failure_threshold=2, breaker_timeout=30.0), clock=clock
    )
    with httpx.Client(transport=transport) as http:
        assert http.get(f"{server.url}/a").status_code == 500
        assert http.get(f"{server.url}/b").status_code == 500
        with pytest.raises(CircuitOpenError) as caught:
            http.get(f"{server.url}/c")
        assert server.count == 2  # the open breaker kept the third request off the wire
        assert caught.value.breaker_name == f"httpx {server.url}"
        assert http.get(f"{other.url}/a").status_code == 200
        resilience = transport.resilience
        assert resilience.breaker(server.url).state is CircuitState.OPEN
        assert resilience.breaker(other.url).state is CircuitState.CLOSED
        # After the breaker's timeout one trial goes through and closes it again.
        server.default = Reply(200)
        clock.advance(30.0)
        assert http.get(f"{server.url}/d").status_code == 200


def test_408_is_retried_but_not_counted_by_the_breaker(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    server.default = Reply(408)
    transport = ResilientTransport(config=config(max_attempts=2, failure_threshold=1), clock=clock)
    with httpx.Client(transport=transport) as http:
        assert http.get(server.url).status_code == 408
    assert server.count == 2
    assert transport.resilience.breaker(server.url).state is CircuitState.CLOSED


def test_failover_to_the_alternate_while_the_primary_breaker_is_open(
    server: httpx_loopback.ScriptedServer,
    other: httpx_loopback.ScriptedServer,
    clock: FakeClock,
) -> None:
    server.default = Reset()
    transport = ResilientTransport(
        config=config(
            max_attempts=3,
            failure_threshold=2,
            failover={server.url: [f"{other.url}/v2"]},
        ),
        clock=clock,
    )
    with httpx.Client(transport=transport) as http:
        # Two resets open the primary's breaker; the third attempt is refused, so the
        # call moves to the alternate.
        response = http.get(f"{server.url}/items?page=2")
        assert response.status_code == 200
        assert server.count == 2
        # While the primary stays open, requests go straight to the alternate.
        assert http.get(f"{server.url}/more").status_code == 200
    assert server.count == 2
    port = other.server_address[1]
    assert [(seen.path, seen.host) for seen in other.seen] == [
        ("/v2/items?page=2", f"127.0.0.1:{port}"),
        ("/v2/more", f"127.0.0.1:{port}"),
    ]


def test_failover_gives_up_with_the_primary_rejection_when_every_breaker_is_open(
    server: httpx_loopback.ScriptedServer,
    other: httpx_loopback.ScriptedServer,
    clock: FakeClock,
) -> None:
    server.default = Reply(503)
    other.default = Reply(503)
    transport = ResilientTransport(
        config=config(max_attempts=1, failure_threshold=1, failover={server.url: [other.url]}),
        clock=clock,
    )
    with httpx.Client(transport=transport) as http:
        assert http.get(server.url).status_code == 503  # opens the primary's breaker
        assert http.get(server.url).status_code == 503  # from the alternate; opens it
        with pytest.raises(CircuitOpenError) as caught:
            http.get(server.url)
    assert caught.value.breaker_name == f"httpx {server.url}"
    assert (server.count, other.count) == (1, 1)


def test_breakers_are_shared_through_one_resilience(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    server.default = Reply(503)
    shared = HttpResilience(config(max_attempts=1, failure_threshold=1), clock=clock)
    with (
        httpx.Client(transport=ResilientTransport(resilience=shared)) as first,
        httpx.Client(transport=ResilientTransport(resilience=shared)) as second,
    ):
        assert first.get(server.url).status_code == 503
        with pytest.raises(CircuitOpenError):
            second.get(server.url)


def test_instrument_client_wraps_and_unwraps_an_existing_client(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    server.default = Reply(503)
    with httpx.Client(mounts={"http://other.test": httpx.HTTPTransport()}) as http:
        original = http._transport
        instrument_client(http, config=config(max_attempts=2), clock=clock)
        instrument_client(http, config=config(max_attempts=5), clock=clock)  # idempotent
        assert isinstance(http._transport, ResilientTransport)
        assert all(isinstance(t, ResilientTransport) for t in http._mounts.values())
        assert http.get(server.url).status_code == 503
        assert server.count == 2
        uninstrument_client(http)
        assert http._transport is original
        assert http.get(server.url).status_code == 503
        assert server.count == 3


def test_transport_arguments_are_checked() -> None:
    shared = HttpResilience()
    with pytest.raises(ValueError, match="either resilience or config"):
        ResilientTransport(resilience=shared, config=HttpResilienceConfig())
    with pytest.raises(TypeError, match=r"ResilientTransport\.transport"):
        ResilientTransport(httpx.AsyncHTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"AsyncResilientTransport\.transport"):
        AsyncResilientTransport(httpx.HTTPTransport())  # type: ignore[arg-type]


# --- async -------------------------------------------------------------------------------


def async_client(clock: FakeClock, **overrides: object) -> httpx.AsyncClient:
    transport = AsyncResilientTransport(
        config=config(**overrides), clock=clock, wall_clock=lambda: WALL
    )
    return httpx.AsyncClient(transport=transport)


@pytest.mark.asyncio
async def test_async_503_then_reset_then_success(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    server.push(Reply(503, headers={"Retry-After": "3"}), Reset())
    async with async_client(clock) as http:
        response = await http.get(f"{server.url}/items")
    assert response.status_code == 200
    assert server.count == 3
    assert clock.sleeps == [3.0, 0.5]


@pytest.mark.asyncio
async def test_async_last_response_returned_and_post_not_retried(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    server.default = Reply(502, b"bad gateway")
    async with async_client(clock, max_attempts=2) as http:
        got = await http.get(server.url)
        assert (got.status_code, got.text) == (502, "bad gateway")
        assert server.count == 2
        posted = await http.post(server.url, content=b"x")
    assert posted.status_code == 502
    assert server.count == 3


@pytest.mark.asyncio
async def test_async_slow_response_is_retried(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    server.push(Hang())
    async with async_client(clock, attempt_timeout=0.2) as http:
        response = await http.get(f"{server.url}/slow")
    assert (response.status_code, server.count) == (200, 2)


@pytest.mark.asyncio
async def test_async_failover_and_per_authority_breakers(
    server: httpx_loopback.ScriptedServer,
    other: httpx_loopback.ScriptedServer,
    clock: FakeClock,
) -> None:
    server.default = Reply(500)
    transport = AsyncResilientTransport(
        config=config(max_attempts=1, failure_threshold=1, failover={server.url: [other.url]}),
        clock=clock,
    )
    async with httpx.AsyncClient(transport=transport) as http:
        assert (await http.get(f"{server.url}/x")).status_code == 500
        assert (await http.get(f"{server.url}/y")).status_code == 200
    assert [seen.path for seen in other.seen] == ["/y"]
    assert transport.resilience.breaker(server.url).state is CircuitState.OPEN


def test_orchestrator_reads_the_status_from_the_attempt_span(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415

    from otel_resilience import ErrorRecoveryOrchestrator  # noqa: PLC0415

    provider = TracerProvider()  # a recording span, so the status attribute is there
    orchestrator = ErrorRecoveryOrchestrator(clock=clock)
    server.push(Reply(503), Reply(500))
    transport = ResilientTransport(
        config=config(max_attempts=3),
        clock=clock,
        tracer_provider=provider,
        orchestrator=orchestrator,
    )
    with httpx.Client(transport=transport) as http:
        assert http.get(server.url).status_code == 200
    assert server.count == 3
    patterns = {p.fingerprint for p in orchestrator.status().patterns}
    # Component = the authority; 503 (LOW) and 500 (MEDIUM) both let the retry go on.
    assert patterns == {f"{server.url}|UnhealthyStatusError"}
    provider.shutdown()


def test_breakers_report_to_explicit_providers() -> None:
    """With explicit providers, the per-authority breakers are observed there too."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    transport = ResilientTransport(
        httpx.MockTransport(lambda request: httpx.Response(200)), meter_provider=provider
    )
    with httpx.Client(transport=transport) as client:
        assert client.get("http://inventory.internal/items").status_code == 200
    data = reader.get_metrics_data()
    assert data is not None
    breakers = {
        (point.attributes or {}).get(names.ATTR_BREAKER)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == names.METRIC_BREAKER_STATE.name
        for point in metric.data.data_points
    }
    assert any("inventory.internal" in str(name) for name in breakers), breakers


def test_transports_of_two_processes_share_one_breaker_per_authority_through_a_store(
    server: httpx_loopback.ScriptedServer, clock: FakeClock
) -> None:
    from otel_resilience import SharedCircuitBreaker  # noqa: PLC0415
    from otel_resilience.breaker import DEFAULT_MAX_STALENESS_SECONDS  # noqa: PLC0415
    from otel_resilience.stores import InMemoryStateStore  # noqa: PLC0415

    store = InMemoryStateStore(clock=clock)
    server.default = Reply(500, b"broken")
    settings = config(max_attempts=1, failure_threshold=2, breaker_timeout=30.0)
    # Two HttpResilience objects stand for two processes; the store is what they share.
    first, second = (HttpResilience(settings, clock=clock, store=store) for _ in range(2))
    with (
        httpx.Client(transport=ResilientTransport(resilience=first)) as a,
        httpx.Client(transport=ResilientTransport(resilience=second)) as b,
    ):
        assert a.get(f"{server.url}/a").status_code == 500
        assert b.get(f"{server.url}/b").status_code == 500  # the second failure, elsewhere
        breaker = first.breaker(server.url)
        assert isinstance(breaker, SharedCircuitBreaker)
        # Opened by one failure here and one there: "a" learns it at its next store
        # answer, at the latest once its cached view is max_staleness_seconds old.
        clock.advance(DEFAULT_MAX_STALENESS_SECONDS)
        with pytest.raises(CircuitOpenError):
            a.get(f"{server.url}/c")
        assert server.count == 2
        assert breaker.state is CircuitState.OPEN
