"""Alerts and their sinks: validation, fingerprints, logging, the event bus, webhooks.

HTTP sinks talk to a real HTTP server on loopback (``servers.recording_server``); the
Alertmanager sink's payload and de-duplication are checked here against that server too,
and against the real Alertmanager in ``test_alertmanager.py``.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import importlib
import json
import logging
import math
import pickle
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_resilience.alerts import (
    DEFAULT_ALERT_NAME,
    MAX_EXTRA_LABELS,
    MAX_LABEL_VALUE_BYTES,
    Alert,
    AlertDeliveryError,
    AlertmanagerAlertSink,
    AlertSink,
    EventBusAlertSink,
    LoggingAlertSink,
    WebhookAlertSink,
    alertmanager_payload,
    rfc3339,
)
from otel_resilience.events import AlertRaised, AlertResolved, EventBus
from otel_resilience.orchestrator import ErrorContext, ErrorSeverity, RecoveryAction, RecoveryPlan
from otel_resilience.testing import FakeClock

if TYPE_CHECKING:
    import servers
else:
    # tests/ is not a package for the type checker: imported by name at run time.
    servers = importlib.import_module("tests.servers")

START = 1_700_000_000.0
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback requests from the sinks must not be sent to a proxy from the environment."""
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def server() -> Iterator[servers.RecordingServer]:
    with servers.recording_server() as recorder:
        yield recorder


def make_alert(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "severity": "critical",
        "component": "payments",
        "error_type": "ConnectionError",
        "starts_at": START,
    }
    fields.update(overrides)
    return Alert(**fields)


def make_context(**overrides: Any) -> ErrorContext:
    fields: dict[str, Any] = {
        "component": "payments",
        "operation": "charge",
        "error_type": "ConnectionError",
        "message": "connect to 10.0.0.7:5432 failed for order 81723",
        "severity": ErrorSeverity.CRITICAL,
        "attempt": 2,
        "timestamp": START,
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
    }
    fields.update(overrides)
    return ErrorContext(**fields)


# -- Alert: construction and validation ---------------------------------------------------


def test_defaults_name_summary_and_status() -> None:
    alert = make_alert()
    assert alert.name == DEFAULT_ALERT_NAME == "ResilienceCriticalError"
    assert alert.summary == "critical ConnectionError in payments"
    assert alert.description == ""
    assert alert.ends_at is None
    assert alert.status == "firing"
    assert dict(alert.labels) == {}
    assert dict(alert.annotations) == {}


def test_labels_and_annotations_are_read_only_copies() -> None:
    labels = {"team": "checkout"}
    alert = make_alert(labels=labels, annotations={"runbook_url": "https://runbooks/x"})
    labels["team"] = "changed"
    assert alert.labels["team"] == "checkout"
    with pytest.raises(TypeError):
        alert.labels["team"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        alert.annotations["runbook_url"] = "x"  # type: ignore[index]


def test_alert_is_frozen() -> None:
    alert = make_alert()
    with pytest.raises(AttributeError):
        alert.severity = "low"  # type: ignore[misc]


@pytest.mark.parametrize("field", ["name", "severity", "component", "error_type"])
@pytest.mark.parametrize("value", ["", "   "])
def test_identifying_fields_must_not_be_empty(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"Alert\.{field} must be a non-empty string"):
        make_alert(**{field: value})


@pytest.mark.parametrize("field", ["name", "severity", "component", "error_type", "summary"])
@pytest.mark.parametrize("value", [None, 3, b"bytes", ErrorSeverity.CRITICAL])
def test_text_fields_must_be_str(field: str, value: object) -> None:
    with pytest.raises(TypeError, match=rf"Alert\.{field} must be a str"):
        make_alert(**{field: value})


@pytest.mark.parametrize("field", ["component", "error_type", "severity", "name"])
def test_label_values_longer_than_the_limit_are_rejected(field: str) -> None:
    make_alert(**{field: "x" * MAX_LABEL_VALUE_BYTES})
    with pytest.raises(ValueError, match=rf"Alert\.{field} must be at most 256 UTF-8 bytes"):
        make_alert(**{field: "x" * (MAX_LABEL_VALUE_BYTES + 1)})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (True, TypeError),
        ("1700000000", TypeError),
        (None, TypeError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-1.0, ValueError),
    ],
)
def test_starts_at_must_be_a_finite_non_negative_number(
    value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=r"Alert\.starts_at"):
        make_alert(starts_at=value)


@pytest.mark.parametrize(
    ("value", "error"),
    [(False, TypeError), ("5", TypeError), (math.nan, ValueError), (math.inf, ValueError)],
)
def test_ends_at_is_validated(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"Alert\.ends_at"):
        make_alert(ends_at=value)


def test_ends_at_before_starts_at_is_impossible() -> None:
    with pytest.raises(ValueError, match=r"Alert\.ends_at must not be before starts_at"):
        make_alert(ends_at=START - 1)
    assert make_alert(ends_at=START).status == "resolved"


def test_integer_timestamps_become_floats() -> None:
    alert = make_alert(starts_at=10, ends_at=20)
    assert isinstance(alert.starts_at, float)
    assert isinstance(alert.ends_at, float)


@pytest.mark.parametrize("key", ["alertname", "severity", "component", "error_type", "__meta"])
def test_extra_labels_may_not_override_the_identifying_ones(key: str) -> None:
    with pytest.raises(ValueError, match=rf"Alert\.labels may not set '{key}'"):
        make_alert(labels={key: "x"})


@pytest.mark.parametrize("key", ["summary", "description"])
def test_extra_annotations_may_not_override_summary_or_description(key: str) -> None:
    with pytest.raises(ValueError, match=rf"Alert\.annotations may not set '{key}'"):
        make_alert(annotations={key: "x"})


@pytest.mark.parametrize("key", ["", "1team", "team-name", "dotted.key", "ünï", 7])
def test_label_names_must_be_prometheus_label_names(key: object) -> None:
    with pytest.raises(ValueError, match=r"Alert\.labels keys must be label names"):
        make_alert(labels={key: "x"})
    with pytest.raises(ValueError, match=r"Alert\.annotations keys must be label names"):
        make_alert(annotations={key: "x"})


def test_label_values_must_be_short_non_empty_str() -> None:
    with pytest.raises(TypeError, match=r"Alert\.labels\['team'\] must be a str"):
        make_alert(labels={"team": 3})
    with pytest.raises(ValueError, match=r"Alert\.labels\['team'\] must be a non-empty"):
        make_alert(labels={"team": ""})
    with pytest.raises(ValueError, match=r"put free text in annotations"):
        make_alert(labels={"team": "y" * (MAX_LABEL_VALUE_BYTES + 1)})


def test_labels_and_annotations_must_be_mappings_of_bounded_size() -> None:
    with pytest.raises(TypeError, match=r"Alert\.labels must be a mapping"):
        make_alert(labels=[("team", "x")])
    with pytest.raises(TypeError, match=r"Alert\.annotations must be a mapping"):
        make_alert(annotations="runbook")
    too_many = {f"k{index}": "v" for index in range(MAX_EXTRA_LABELS + 1)}
    make_alert(labels=dict(list(too_many.items())[:MAX_EXTRA_LABELS]))
    with pytest.raises(ValueError, match=r"Alert\.labels must have at most 16 entries"):
        make_alert(labels=too_many)


def test_long_text_is_truncated_to_one_kib() -> None:
    message = "é" * 5000
    alert = make_alert(summary="s" * 5000, description=message, annotations={"details": message})
    for text in (alert.summary, alert.description, alert.annotations["details"]):
        assert len(text.encode("utf-8")) <= 1024
        assert text.endswith("...")


@pytest.mark.parametrize(
    "url", ["http://jaeger:16686/trace/1", "https://grafana.example.com/d/x?var=1"]
)
def test_generator_url_accepts_absolute_urls(url: str) -> None:
    assert make_alert(generator_url=url).generator_url == url


# Alertmanager answers 422 "generatorURL in body must be of type uri" to these.
@pytest.mark.parametrize("url", ["", "not a url", "/relative", "http://[::1", "http://h/a b"])
def test_generator_url_rejects_what_alertmanager_rejects(url: str) -> None:
    with pytest.raises(ValueError, match=r"Alert\.generator_url"):
        make_alert(generator_url=url)


def test_generator_url_must_be_a_str() -> None:
    with pytest.raises(TypeError, match=r"Alert\.generator_url"):
        make_alert(generator_url=42)


# -- fingerprints ----------------------------------------------------------------------------


def test_fingerprint_is_a_stable_hash_of_name_component_and_error_type() -> None:
    identity = b'["ResilienceCriticalError", "payments", "ConnectionError"]'
    expected = hashlib.sha256(identity).hexdigest()[:16]
    assert make_alert().fingerprint == expected


def test_fingerprint_ignores_severity_text_labels_and_times() -> None:
    base = make_alert()
    other = make_alert(
        severity="fatal",
        summary="different",
        description="another message",
        labels={"team": "x"},
        annotations={"runbook_url": "y"},
        starts_at=START + 100,
        ends_at=START + 200,
    )
    assert base.fingerprint == other.fingerprint


@pytest.mark.parametrize(
    "change",
    [{"name": "Other"}, {"component": "inventory"}, {"error_type": "TimeoutError"}],
)
def test_fingerprint_changes_with_each_identifying_label(change: dict[str, str]) -> None:
    assert make_alert().fingerprint != make_alert(**change).fingerprint


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("ab", "c"), ("a", "bc")),
        (("a\x00b", "c"), ("a", "b\x00c")),
        (('a", "b', "c"), ("a", 'b", "c')),
    ],
)
def test_fingerprint_fields_cannot_run_into_each_other(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    one = make_alert(component=first[0], error_type=first[1])
    other = make_alert(component=second[0], error_type=second[1])
    assert one.fingerprint != other.fingerprint


@given(
    component=st.text(min_size=1, max_size=20).filter(str.strip),
    error_type=st.text(min_size=1, max_size=20).filter(str.strip),
    severity=st.sampled_from(["low", "medium", "high", "critical", "fatal"]),
    description=st.text(max_size=50),
)
def test_fingerprint_depends_on_identity_only(
    component: str, error_type: str, severity: str, description: str
) -> None:
    first = make_alert(component=component, error_type=error_type)
    second = make_alert(
        component=component, error_type=error_type, severity=severity, description=description
    )
    assert first.fingerprint == second.fingerprint
    assert len(first.fingerprint) == 16
    int(first.fingerprint, 16)


# -- resolution and serialisation ------------------------------------------------------------


def test_resolved_returns_a_resolved_copy() -> None:
    alert = make_alert()
    resolved = alert.resolved(START + 30)
    assert resolved.ends_at == START + 30
    assert resolved.status == "resolved"
    assert alert.ends_at is None
    assert resolved.fingerprint == alert.fingerprint
    assert resolved.starts_at == alert.starts_at


def test_resolved_before_the_start_resolves_at_the_start() -> None:
    assert make_alert().resolved(START - 50).ends_at == START


@pytest.mark.parametrize("value", [math.nan, True, "now"])
def test_resolved_validates_its_time(value: object) -> None:
    with pytest.raises((TypeError, ValueError), match=r"Alert\.resolved\.at"):
        make_alert().resolved(value)  # type: ignore[arg-type]


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(START + 0.1234) == "2023-11-14T22:13:20.123Z"


@given(st.floats(min_value=0.0, max_value=4e9, allow_nan=False))
def test_rfc3339_round_trips_to_the_millisecond(timestamp: float) -> None:
    text = rfc3339(timestamp)
    assert text.endswith("Z")
    parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None
    assert abs(parsed.timestamp() - timestamp) < 0.001


def test_to_dict_is_json_and_complete() -> None:
    alert = make_alert(
        description="boom",
        labels={"team": "checkout"},
        annotations={"runbook_url": "https://runbooks/payments"},
        generator_url="http://jaeger/trace/1",
    )
    data = json.loads(json.dumps(alert.to_dict()))
    assert data == {
        "name": "ResilienceCriticalError",
        "status": "firing",
        "fingerprint": alert.fingerprint,
        "severity": "critical",
        "component": "payments",
        "error_type": "ConnectionError",
        "summary": "critical ConnectionError in payments",
        "description": "boom",
        "labels": {"team": "checkout"},
        "annotations": {"runbook_url": "https://runbooks/payments"},
        "starts_at": "2023-11-14T22:13:20.000Z",
        "ends_at": None,
        "generator_url": "http://jaeger/trace/1",
    }
    resolved = alert.resolved(START + 60).to_dict()
    assert resolved["status"] == "resolved"
    assert resolved["ends_at"] == "2023-11-14T22:14:20.000Z"


def test_alert_pickles_hashes_and_compares() -> None:
    alert = make_alert(labels={"team": "checkout"}, annotations={"runbook_url": "r"})
    copy = pickle.loads(pickle.dumps(alert))
    assert copy == alert
    assert hash(copy) == hash(alert)
    assert copy.labels == {"team": "checkout"}
    assert make_alert(labels={"team": "other"}) != alert
    assert len({alert, copy, make_alert()}) == 2


def test_all_labels_and_annotations() -> None:
    alert = make_alert(description="why", labels={"team": "t"}, annotations={"runbook_url": "r"})
    assert alert.all_labels() == {
        "alertname": "ResilienceCriticalError",
        "severity": "critical",
        "component": "payments",
        "error_type": "ConnectionError",
        "team": "t",
    }
    assert alert.all_annotations() == {
        "summary": "critical ConnectionError in payments",
        "description": "why",
        "runbook_url": "r",
    }
    assert "description" not in make_alert().all_annotations()


# -- building alerts from the orchestrator's types -------------------------------------------


def test_from_context_keeps_the_message_out_of_the_labels() -> None:
    context = make_context()
    alert = Alert.from_context(context, labels={"team": "checkout"})
    assert alert.all_labels() == {
        "alertname": "ResilienceCriticalError",
        "severity": "critical",
        "component": "payments",
        "error_type": "ConnectionError",
        "team": "checkout",
    }
    assert all(context.message not in value for value in alert.all_labels().values())
    assert alert.description == context.message
    assert dict(alert.annotations) == {
        "operation": "charge",
        "attempt": "2",
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
    }
    assert alert.starts_at == START
    assert alert.ends_at is None


def test_from_context_severity_choices() -> None:
    unclassified = make_context(severity=None, trace_id=None, span_id=None)
    assert Alert.from_context(unclassified).severity == "critical"
    assert Alert.from_context(unclassified, severity=ErrorSeverity.FATAL).severity == "fatal"
    assert Alert.from_context(unclassified, severity="page").severity == "page"
    assert Alert.from_context(make_context(severity=ErrorSeverity.HIGH)).severity == "high"
    assert "trace_id" not in Alert.from_context(unclassified).annotations


def test_from_context_user_annotations_win() -> None:
    alert = Alert.from_context(make_context(), annotations={"operation": "refund"})
    assert alert.annotations["operation"] == "refund"


def test_from_plan_uses_the_final_severity_and_the_plan_summary() -> None:
    plan = RecoveryPlan(
        context=make_context(severity=None),
        severity=ErrorSeverity.FATAL,
        base_severity=ErrorSeverity.CRITICAL,
        severity_reason="attribute resilience.error.severity",
        escalated=True,
        pattern_count=7,
        actions=(RecoveryAction.CIRCUIT_BREAK, RecoveryAction.ALERT),
    )
    alert = Alert.from_plan(plan, generator_url="http://jaeger/trace/" + TRACE_ID)
    assert alert.severity == "fatal"
    assert alert.summary == plan.summary()
    assert alert.generator_url == "http://jaeger/trace/" + TRACE_ID
    assert alert.fingerprint == Alert.from_context(plan.context).fingerprint


# -- every sink is an AlertSink ------------------------------------------------------------


def test_sinks_satisfy_the_protocol() -> None:
    sinks: list[AlertSink] = [
        LoggingAlertSink(),
        EventBusAlertSink(EventBus()),
        WebhookAlertSink("http://127.0.0.1:9/hook"),
        AlertmanagerAlertSink("http://127.0.0.1:9093"),
    ]
    for sink in sinks:
        assert isinstance(sink, AlertSink)
    assert not isinstance(object(), AlertSink)


# -- LoggingAlertSink -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_logging_sink_logs_firing_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    alert = make_alert(description="peer reset")
    with caplog.at_level(logging.DEBUG, logger="otel_resilience.alerts"):
        await LoggingAlertSink().send(alert)
    [record] = caplog.records
    assert record.name == "otel_resilience.alerts"
    assert record.levelno == logging.WARNING
    assert record.alert is alert  # type: ignore[attr-defined]
    message = record.getMessage()
    assert "ResilienceCriticalError firing" in message
    assert "(critical): critical ConnectionError in payments [" in message
    assert "component=payments" in message
    assert "error_type=ConnectionError" in message
    assert alert.fingerprint in message
    assert message.endswith(": peer reset")


@pytest.mark.asyncio
async def test_logging_sink_logs_resolved_at_its_own_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = LoggingAlertSink("ops.alerts", logging.ERROR, resolved_level=logging.WARNING)
    with caplog.at_level(logging.DEBUG, logger="ops.alerts"):
        await sink.send(make_alert())
        await sink.send(make_alert().resolved(START + 1))
    assert [(r.name, r.levelno) for r in caplog.records] == [
        ("ops.alerts", logging.ERROR),
        ("ops.alerts", logging.WARNING),
    ]
    assert "resolved" in caplog.records[1].getMessage()


@pytest.mark.asyncio
async def test_logging_sink_skips_disabled_levels(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test_alerts.quiet")
    sink = LoggingAlertSink(logger)
    assert sink.logger is logger
    with caplog.at_level(logging.ERROR, logger="test_alerts.quiet"):
        await sink.send(make_alert())
    assert caplog.records == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"logger": 3}, TypeError, "LoggingAlertSink.logger"),
        ({"level": True}, TypeError, "LoggingAlertSink.level"),
        ({"level": "WARNING"}, TypeError, "LoggingAlertSink.level"),
        ({"level": -1}, ValueError, "LoggingAlertSink.level"),
        ({"resolved_level": 2.5}, TypeError, "LoggingAlertSink.resolved_level"),
    ],
)
def test_logging_sink_validation(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        LoggingAlertSink(**kwargs)


# -- EventBusAlertSink ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_event_bus_sink_publishes_raised_and_resolved() -> None:
    bus = EventBus()
    seen: list[object] = []
    bus.subscribe(AlertRaised, seen.append)
    bus.subscribe(AlertResolved, seen.append)
    await bus.start()
    sink = EventBusAlertSink(bus)
    assert sink.bus is bus
    alert = make_alert()
    try:
        await sink.send(alert)
        await sink.send(alert.resolved(START + 5))
    finally:
        await bus.stop()
    assert len(seen) == 2
    raised, resolved = sorted(seen, key=lambda event: type(event).__name__)
    assert isinstance(raised, AlertRaised)
    assert raised.alert is alert
    assert isinstance(resolved, AlertResolved)
    assert resolved.alert.ends_at == START + 5


class _Publisher:
    def __init__(self) -> None:
        self.events: list[object] = []

    def publish(self, event: object) -> None:
        self.events.append(event)


@pytest.mark.asyncio
async def test_event_bus_sink_works_with_any_publisher() -> None:
    publisher = _Publisher()
    await EventBusAlertSink(publisher).send(make_alert())
    [event] = publisher.events
    assert isinstance(event, AlertRaised)


class _FailingPublisher:
    def publish(self, event: object) -> None:
        raise RuntimeError("bus down")


@pytest.mark.asyncio
async def test_event_bus_sink_lets_publish_errors_through() -> None:
    with pytest.raises(RuntimeError, match="bus down"):
        await EventBusAlertSink(_FailingPublisher()).send(make_alert())


def test_event_bus_sink_needs_a_publish_method() -> None:
    with pytest.raises(TypeError, match=r"EventBusAlertSink\.bus must have a publish"):
        EventBusAlertSink(object())  # type: ignore[arg-type]


# -- WebhookAlertSink --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_webhook_posts_the_alert_as_json(server: servers.RecordingServer) -> None:
    sink = WebhookAlertSink(server.url("/hooks/alerts"), headers={"Authorization": "Bearer t"})
    alert = make_alert(description="peer reset")
    await sink.send(alert)
    await sink.send(alert.resolved(START + 9))
    first, second = server.received()
    assert first.method == "POST"
    assert first.path == "/hooks/alerts"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Authorization"] == "Bearer t"
    assert first.json() == alert.to_dict()
    assert second.json()["status"] == "resolved"


@pytest.mark.asyncio
async def test_webhook_sends_any_text_as_json(server: servers.RecordingServer) -> None:
    # A lone surrogate (from a file name decoded with surrogateescape) must not break
    # the encoding; non-ASCII text arrives intact.
    alert = make_alert(description="caf\u00e9 \udcff \u2603")
    await WebhookAlertSink(server.url()).send(alert)
    [request] = server.received()
    assert request.body.isascii()
    assert request.json()["description"] == "caf\u00e9 \udcff \u2603"


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_webhook_accepts_any_2xx(server: servers.RecordingServer, status: int) -> None:
    server.status = status
    await WebhookAlertSink(server.url()).send(make_alert())
    assert len(server.received()) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, 401, 404, 500, 503])
async def test_webhook_error_status_raises_naming_it(
    server: servers.RecordingServer, status: int
) -> None:
    server.status = status
    server.answer = b"invalid alert payload\n"
    sink = WebhookAlertSink(server.url("/secret-token-123/hook?key=abc"))
    with pytest.raises(AlertDeliveryError) as caught:
        await sink.send(make_alert())
    error = caught.value
    assert error.status == status
    assert error.sink == "webhook"
    assert error.origin == f"http://127.0.0.1:{server.port}"
    assert error.detail == "invalid alert payload"
    assert f"answered HTTP {status}: invalid alert payload" in str(error)
    # Webhook URLs carry secrets in their path and query: never in the error.
    assert "secret-token" not in str(error)
    assert "key=abc" not in str(error)
    assert "secret-token" not in repr(sink)


@pytest.mark.asyncio
async def test_webhook_does_not_follow_redirects(server: servers.RecordingServer) -> None:
    server.status = 307
    with pytest.raises(AlertDeliveryError) as caught:
        await WebhookAlertSink(server.url("/hook")).send(make_alert())
    assert caught.value.status == 307
    assert [request.path for request in server.received()] == ["/hook"]


@pytest.mark.asyncio
async def test_webhook_unreachable_raises_without_status() -> None:
    port = servers.free_port()  # nothing listens there
    with pytest.raises(AlertDeliveryError, match="unreachable") as caught:
        await WebhookAlertSink(f"http://127.0.0.1:{port}/hook").send(make_alert())
    assert caught.value.status is None
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.asyncio
async def test_webhook_timeout_raises_without_status(server: servers.RecordingServer) -> None:
    server.hold.clear()  # the server reads the request and never answers in time
    try:
        with pytest.raises(AlertDeliveryError, match="unreachable") as caught:
            await WebhookAlertSink(server.url(), timeout=0.2).send(make_alert())
    finally:
        server.hold.set()
    assert caught.value.status is None


def test_delivery_error_pickles() -> None:
    error = AlertDeliveryError("webhook", "http://h:1", 500, "boom")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.sink, copy.origin, copy.status, copy.detail) == (
        "webhook",
        "http://h:1",
        500,
        "boom",
    )
    assert str(copy) == str(error)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (None, TypeError),
        (b"http://h", TypeError),
        ("ftp://example.com/x", ValueError),
        ("file:///etc/passwd", ValueError),
        ("http://", ValueError),
        ("/relative/path", ValueError),
        ("http://host:99999/", ValueError),
        ("http://host/a b", ValueError),
        ("http://host/\r\nX-Injected: 1", ValueError),
    ],
)
def test_webhook_url_validation(url: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"WebhookAlertSink\.url"):
        WebhookAlertSink(url)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (True, TypeError),
        ("5", TypeError),
    ],
)
def test_webhook_timeout_validation(timeout: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"WebhookAlertSink\.timeout"):
        WebhookAlertSink("http://h/hook", timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ([("A", "b")], TypeError),
        ({"A": 1}, TypeError),
        ({"X-Bad": "a\r\nInjected: yes"}, ValueError),
        ({"Bad Name": "x"}, ValueError),
        ({"": "x"}, ValueError),
    ],
)
def test_webhook_header_validation(headers: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"WebhookAlertSink\.headers"):
        WebhookAlertSink("http://h/hook", headers=headers)  # type: ignore[arg-type]


# -- AlertmanagerAlertSink against a recording server -----------------------------------------


class WallClock:
    """A settable wall clock (seconds since the epoch)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def alertmanager_sink(
    server: servers.RecordingServer, clock: FakeClock, **kwargs: Any
) -> AlertmanagerAlertSink:
    return AlertmanagerAlertSink(
        server.url(), clock=clock, wall_clock=WallClock(START + 100), **kwargs
    )


@pytest.mark.asyncio
async def test_alertmanager_payload_shape(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    sink = alertmanager_sink(server, clock)
    assert sink.url == server.url("/api/v2/alerts")
    alert = make_alert(
        description="peer reset",
        labels={"team": "checkout"},
        annotations={"runbook_url": "https://runbooks/payments"},
        generator_url="http://jaeger/trace/1",
    )
    await sink.send(alert)
    [request] = server.received()
    assert request.method == "POST"
    assert request.path == "/api/v2/alerts"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == [
        {
            "labels": {
                "alertname": "ResilienceCriticalError",
                "severity": "critical",
                "component": "payments",
                "error_type": "ConnectionError",
                "team": "checkout",
            },
            "annotations": {
                "summary": "critical ConnectionError in payments",
                "description": "peer reset",
                "runbook_url": "https://runbooks/payments",
            },
            "startsAt": "2023-11-14T22:13:20.000Z",
            "generatorURL": "http://jaeger/trace/1",
        }
    ]


def test_alertmanager_payload_function() -> None:
    alert = make_alert()
    assert "endsAt" not in alertmanager_payload(alert)
    assert alertmanager_payload(alert, ends_at=START + 1)["endsAt"] == rfc3339(START + 1)
    resolved = alert.resolved(START + 2)
    assert alertmanager_payload(resolved, ends_at=START + 1)["endsAt"] == rfc3339(START + 2)
    assert "generatorURL" not in alertmanager_payload(alert)


@pytest.mark.asyncio
async def test_alertmanager_sink_deduplicates_within_the_resend_interval(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    sink = alertmanager_sink(server, clock, resend_interval=60.0)
    alert = make_alert()
    await sink.send(alert)
    clock.advance(30)
    await sink.send(make_alert(description="another message, same alert"))
    clock.advance(29.9)
    await sink.send(alert)
    assert len(server.received()) == 1
    assert sink.suppressed == 2
    assert sink.firing() == (alert.fingerprint,)
    clock.advance(0.1)  # 60 s since the first send: re-sent to keep it alive
    await sink.send(alert)
    assert len(server.received()) == 2
    clock.advance(59)
    await sink.send(alert)
    assert len(server.received()) == 2


@pytest.mark.asyncio
async def test_alertmanager_sink_sends_distinct_alerts(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    sink = alertmanager_sink(server, clock)
    await sink.send(make_alert())
    await sink.send(make_alert(component="inventory"))
    await sink.send(make_alert(error_type="TimeoutError"))
    assert len(server.received()) == 3
    assert len(sink.firing()) == 3


@pytest.mark.asyncio
async def test_alertmanager_sink_escalation_sends_at_once_and_resolves_the_old_labels(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    sink = alertmanager_sink(server, clock)
    await sink.send(make_alert(severity="critical"))
    clock.advance(1)
    await sink.send(make_alert(severity="fatal"))
    first, second = server.received()
    [fatal, old] = second.json()
    assert fatal["labels"]["severity"] == "fatal"
    assert "endsAt" not in fatal
    assert old["labels"]["severity"] == "critical"
    assert old["endsAt"] == rfc3339(START + 100)
    assert first.json()[0]["labels"]["severity"] == "critical"
    assert sink.suppressed == 0


@pytest.mark.asyncio
async def test_alertmanager_sink_resolve_sends_ends_at_now_and_forgets(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    sink = alertmanager_sink(server, clock)
    alert = make_alert()
    await sink.send(alert)
    await sink.resolve(alert)
    assert sink.firing() == ()
    resolved = server.received()[1].json()
    assert resolved == [
        {
            "labels": alert.all_labels(),
            "annotations": alert.all_annotations(),
            "startsAt": rfc3339(START),
            "endsAt": rfc3339(START + 100),
        }
    ]
    await sink.send(alert)  # fires again at once: the resolution reset the de-duplication
    assert len(server.received()) == 3


@pytest.mark.asyncio
async def test_alertmanager_sink_resolve_at_and_resolved_alerts(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    sink = alertmanager_sink(server, clock)
    alert = make_alert()
    await sink.resolve(alert, at=START + 7)
    await sink.send(alert.resolved(START + 8))
    await sink.resolve(alert.resolved(START + 9), at=START + 99)  # already resolved: kept
    ends = [request.json()[0]["endsAt"] for request in server.received()]
    assert ends == [rfc3339(START + 7), rfc3339(START + 8), rfc3339(START + 9)]


@pytest.mark.asyncio
async def test_alertmanager_sink_resolving_after_escalation_resolves_both(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    sink = alertmanager_sink(server, clock)
    await sink.send(make_alert(severity="fatal"))
    await sink.resolve(make_alert(severity="critical"))
    severities = {item["labels"]["severity"] for item in server.received()[1].json()}
    assert severities == {"critical", "fatal"}


@pytest.mark.asyncio
async def test_alertmanager_sink_resolve_timeout_sets_ends_at_ahead(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    sink = alertmanager_sink(server, clock, resolve_timeout=300.0)
    await sink.send(make_alert())
    [item] = server.received()[0].json()
    assert item["endsAt"] == rfc3339(START + 100 + 300)


@pytest.mark.asyncio
async def test_alertmanager_sink_failed_send_is_not_remembered(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    server.statuses = [500]
    server.answer = b"store failed"
    sink = alertmanager_sink(server, clock)
    with pytest.raises(AlertDeliveryError, match=r"Alertmanager at .* answered HTTP 500"):
        await sink.send(make_alert())
    assert sink.firing() == ()
    await sink.send(make_alert())  # not suppressed by the failed attempt
    assert len(server.received()) == 2
    assert sink.firing() == (make_alert().fingerprint,)


@pytest.mark.asyncio
async def test_alertmanager_sink_failed_resend_keeps_the_earlier_send(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    sink = alertmanager_sink(server, clock)
    await sink.send(make_alert())
    clock.advance(60)
    server.statuses = [503]
    with pytest.raises(AlertDeliveryError):
        await sink.send(make_alert())
    assert sink.firing() == (make_alert().fingerprint,)
    await sink.send(make_alert())  # still due: the failed re-send did not count
    assert len(server.received()) == 3


@pytest.mark.asyncio
async def test_alertmanager_sink_failed_resolve_keeps_it_firing(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    sink = alertmanager_sink(server, clock)
    await sink.send(make_alert())
    server.statuses = [500]
    with pytest.raises(AlertDeliveryError):
        await sink.resolve(make_alert())
    assert sink.firing() == (make_alert().fingerprint,)


@pytest.mark.asyncio
async def test_alertmanager_sink_tracks_a_bounded_number_of_alerts(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    sink = alertmanager_sink(server, clock, max_tracked=2)
    for component in ("a", "b", "c"):
        await sink.send(make_alert(component=component))
    assert sink.firing() == (
        make_alert(component="b").fingerprint,
        make_alert(component="c").fingerprint,
    )
    await sink.send(make_alert(component="a"))  # forgotten, so sent again
    assert len(server.received()) == 4


def test_alertmanager_sink_concurrent_sends_post_once(
    server: servers.RecordingServer, clock: FakeClock
) -> None:
    sink = alertmanager_sink(server, clock)
    alert = make_alert()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            barrier.wait()
            asyncio.run(sink.send(alert))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(server.received()) == 1
    assert sink.suppressed == 7


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"base_url": "ftp://am"}, ValueError, "base_url"),
        ({"base_url": "http://am/?x=1"}, ValueError, "base_url must not have a query"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"resend_interval": 0}, ValueError, "resend_interval"),
        ({"resend_interval": True}, TypeError, "resend_interval"),
        ({"resolve_timeout": math.nan}, ValueError, "resolve_timeout"),
        ({"resolve_timeout": 60.0}, ValueError, "resolve_timeout must exceed resend_interval"),
        ({"resolve_timeout": 30.0, "resend_interval": 40.0}, ValueError, "resolve_timeout"),
        ({"max_tracked": 0}, ValueError, "max_tracked"),
        ({"max_tracked": 1.5}, TypeError, "max_tracked"),
        ({"clock": object()}, TypeError, "clock"),
        ({"wall_clock": 5}, TypeError, "wall_clock"),
        ({"headers": {"A": "b\nc"}}, ValueError, "headers"),
    ],
)
def test_alertmanager_sink_validation(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    arguments: dict[str, Any] = {"base_url": "http://127.0.0.1:9093", **kwargs}
    with pytest.raises(error, match=rf"AlertmanagerAlertSink\.{match}"):
        AlertmanagerAlertSink(**arguments)


def test_alertmanager_sink_url_keeps_a_route_prefix() -> None:
    sink = AlertmanagerAlertSink("https://ops.example.com/alertmanager/")
    assert sink.url == "https://ops.example.com/alertmanager/api/v2/alerts"
    assert repr(sink) == "AlertmanagerAlertSink('https://ops.example.com')"
