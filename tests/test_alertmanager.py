"""The real Prometheus Alertmanager receives, de-duplicates and resolves our alerts.

Each test starts its own Alertmanager (Debian package ``prometheus-alertmanager``) on
loopback and checks the outcome through Alertmanager's own API (``GET /api/v2/alerts``)
and metrics. Without the binary the tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from otel_resilience import CircuitState, Pipeline, RetryConfig
from otel_resilience._clock import wall_time
from otel_resilience.alerts import (
    Alert,
    AlertDeliveryError,
    AlertmanagerAlertSink,
    rfc3339,
)
from otel_resilience.backoff import Constant
from otel_resilience.orchestrator import (
    ErrorContext,
    ErrorRecoveryOrchestrator,
    ErrorSeverity,
    SeverityClassifier,
    SeverityRule,
)
from otel_resilience.testing import FakeClock

if TYPE_CHECKING:
    import servers
else:
    # tests/ is not a package for the type checker: imported by name at run time.
    servers = importlib.import_module("tests.servers")

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
RECEIVED = "alertmanager_alerts_received_total"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback requests from the sink must not be sent to a proxy from the environment."""
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def am(tmp_path: Path) -> Iterator[servers.Alertmanager]:
    with servers.alertmanager(tmp_path) as server:
        yield server


def critical_alert(**overrides: Any) -> Alert:
    # Wall-clock times: Alertmanager compares startsAt and endsAt with its own clock.
    context = ErrorContext.from_exception(
        ConnectionRefusedError("connect to 10.0.0.7:5432 refused (order 81723)"),
        component="payments-db",
        operation="charge",
        timestamp=wall_time() - 5.0,
        attempt=3,
        severity=ErrorSeverity.CRITICAL,
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
    )
    alert = Alert.from_context(
        context,
        labels={"team": "checkout"},
        generator_url=f"http://127.0.0.1:16686/trace/{TRACE_ID}",
    )
    return dataclasses.replace(alert, **overrides)


def active_alerts(am: servers.Alertmanager) -> list[dict[str, Any]]:
    return [item for item in am.alerts() if item["status"]["state"] == "active"]


def received(am: servers.Alertmanager, status: str) -> float:
    return am.metric(RECEIVED, status=status, version="v2")


@pytest.mark.asyncio
async def test_critical_alert_is_active_in_alertmanager(am: servers.Alertmanager) -> None:
    alert = critical_alert()
    sink = AlertmanagerAlertSink(am.base_url)
    await sink.send(alert)

    servers.poll(lambda: len(active_alerts(am)) == 1, what="the alert to become active")
    [held] = am.alerts()
    assert held["labels"] == {
        "alertname": "ResilienceCriticalError",
        "severity": "critical",
        "component": "payments-db",
        "error_type": "ConnectionRefusedError",
        "team": "checkout",
    }
    assert held["annotations"] == {
        "summary": "critical ConnectionRefusedError in payments-db",
        "description": "connect to 10.0.0.7:5432 refused (order 81723)",
        "operation": "charge",
        "attempt": "3",
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
    }
    assert held["startsAt"] == rfc3339(alert.starts_at)
    assert held["generatorURL"] == f"http://127.0.0.1:16686/trace/{TRACE_ID}"
    assert held["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []}
    assert held["receivers"] == [{"name": "null"}]
    # No message text in labels: Alertmanager's identity of the alert is low-cardinality.
    assert all("81723" not in value for value in held["labels"].values())
    assert received(am, "firing") == 1


@pytest.mark.asyncio
async def test_repeated_alert_is_deduplicated_until_the_resend_interval(
    am: servers.Alertmanager, clock: FakeClock
) -> None:
    sink = AlertmanagerAlertSink(am.base_url, clock=clock, resend_interval=60.0)
    alert = critical_alert()
    for _ in range(5):
        await sink.send(alert)
        clock.advance(10)
    servers.poll(lambda: len(active_alerts(am)) == 1, what="the alert to become active")
    assert received(am, "firing") == 1
    assert sink.suppressed == 4

    clock.advance(10)  # 60 s since the first send: re-sent to keep it alive
    await sink.send(alert)
    assert received(am, "firing") == 2
    assert len(am.alerts()) == 1  # the same alert, refreshed, not a second one


@pytest.mark.asyncio
async def test_resolution_removes_the_alert(am: servers.Alertmanager) -> None:
    sink = AlertmanagerAlertSink(am.base_url)
    alert = critical_alert()
    await sink.send(alert)
    servers.poll(lambda: len(active_alerts(am)) == 1, what="the alert to become active")

    await sink.resolve(alert)
    servers.poll(lambda: am.alerts() == [], what="the resolved alert to leave the list")
    assert received(am, "resolved") == 1
    assert sink.firing() == ()


@pytest.mark.asyncio
async def test_escalation_leaves_only_the_escalated_alert(am: servers.Alertmanager) -> None:
    sink = AlertmanagerAlertSink(am.base_url)
    await sink.send(critical_alert())
    servers.poll(lambda: len(active_alerts(am)) == 1, what="the critical alert")

    await sink.send(critical_alert(severity="fatal"))
    servers.poll(
        lambda: [item["labels"]["severity"] for item in am.alerts()] == ["fatal"],
        what="only the fatal alert to remain",
    )


@pytest.mark.asyncio
async def test_resolve_timeout_reaches_alertmanager_as_ends_at(
    am: servers.Alertmanager,
) -> None:
    now = wall_time()
    sink = AlertmanagerAlertSink(
        am.base_url, resend_interval=1.0, resolve_timeout=120.0, wall_clock=lambda: now
    )
    await sink.send(critical_alert())
    servers.poll(lambda: len(active_alerts(am)) == 1, what="the alert to become active")
    [held] = am.alerts()
    assert held["endsAt"] == rfc3339(now + 120.0)


@pytest.mark.asyncio
async def test_webhook_receiver_gets_firing_and_resolved(tmp_path: Path) -> None:
    with (
        servers.recording_server() as receiver,
        servers.alertmanager(tmp_path, webhook_url=receiver.url("/alertmanager-hook")) as am,
    ):
        sink = AlertmanagerAlertSink(am.base_url)
        alert = critical_alert()
        await sink.send(alert)
        [firing] = receiver.wait_for(1, what="firing notifications")
        assert firing.path == "/alertmanager-hook"
        notification = firing.json()
        assert notification["status"] == "firing"
        assert notification["receiver"] == "webhook"
        [delivered] = notification["alerts"]
        assert delivered["labels"]["severity"] == "critical"
        assert delivered["labels"]["component"] == "payments-db"
        assert delivered["annotations"]["summary"] == alert.summary

        await sink.resolve(alert)
        servers.poll(
            lambda: any(item.json()["status"] == "resolved" for item in receiver.received()),
            what="the resolved notification",
        )


@pytest.mark.asyncio
async def test_stopped_alertmanager_is_a_delivery_error(tmp_path: Path) -> None:
    with servers.alertmanager(tmp_path) as am:
        sink = AlertmanagerAlertSink(am.base_url, timeout=2.0)
    with pytest.raises(AlertDeliveryError, match="unreachable") as caught:
        await sink.send(critical_alert())
    assert caught.value.status is None
    assert sink.firing() == ()


# -- the server helpers themselves ------------------------------------------------------------


def test_find_binary_looks_on_path_then_in_the_system_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = tmp_path / "sbin" / "fake-daemon"
    daemon.parent.mkdir()
    daemon.write_text("#!/bin/sh\n", encoding="utf-8")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(servers, "SEARCH_DIRS", (str(daemon.parent),))
    assert servers.find_binary("fake-daemon") is None  # not executable yet
    daemon.chmod(0o755)
    assert servers.find_binary("missing", "fake-daemon") == str(daemon)
    monkeypatch.setenv("PATH", str(daemon.parent))
    assert servers.find_binary("fake-daemon") == str(daemon)
    assert servers.find_binary("missing-too") is None


def test_require_binary_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no-such-server not found .*apt-get install"):
        servers.require_binary("no-such-server")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"required under CI=true"):
        servers.require_binary("no-such-server", package="no-such-package")
    assert servers.require_binary("sh") == servers.find_binary("sh")


class LedgerCorrupted(Exception):
    """An error the test's severity rule maps to CRITICAL."""


@pytest.mark.asyncio
async def test_orchestrated_pipeline_failure_reaches_alertmanager(
    am: servers.Alertmanager,
) -> None:
    """End to end: a protected call fails with an error mapped to CRITICAL; the pipeline
    consults the orchestrator inline, which opens the breaker, stops the retries and sends
    the operator alert that Alertmanager then shows through its own API."""
    orchestrator = ErrorRecoveryOrchestrator(
        classifier=SeverityClassifier(
            (SeverityRule(ErrorSeverity.CRITICAL, exception_types=(LedgerCorrupted,)),)
        ),
        alert_sinks=[AlertmanagerAlertSink(am.base_url)],
    )
    await orchestrator.start()
    try:
        pipeline = Pipeline(
            name="ledger.write",
            component="ledger",
            retry=RetryConfig(max_attempts=5, backoff=Constant(seconds=0)),
            orchestrator=orchestrator,
        )
        calls: list[int] = []

        async def write() -> None:
            calls.append(1)
            raise LedgerCorrupted("checksum mismatch in block 7")

        with pytest.raises(LedgerCorrupted):
            await pipeline.acall(write)
        assert calls == [1]  # CRITICAL: no retry
        assert orchestrator.breaker("ledger").state is CircuitState.OPEN
    finally:
        await orchestrator.stop()  # waits for the alert to be delivered
    alerts = am.alerts()
    assert len(alerts) == 1
    labels = alerts[0]["labels"]
    assert labels["severity"] == "critical"
    assert labels["component"] == "ledger"
    assert labels["error_type"] == "LedgerCorrupted"
    assert alerts[0]["status"]["state"] == "active"
