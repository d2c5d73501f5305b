"""Operator alerts: the :class:`Alert` value and the sinks that deliver it.

Sinks: :class:`LoggingAlertSink` (a logger), :class:`EventBusAlertSink` (the event bus),
:class:`WebhookAlertSink` (a generic JSON POST) and :class:`AlertmanagerAlertSink`
(Prometheus Alertmanager, API v2). See ``docs/alerts.md``.
"""

from __future__ import annotations

from otel_resilience.alerts._alert import (
    ALERT_LABELS,
    DEFAULT_ALERT_NAME,
    MAX_EXTRA_LABELS,
    MAX_LABEL_VALUE_BYTES,
    Alert,
    WallClock,
    rfc3339,
)
from otel_resilience.alerts._alertmanager import (
    ALERTMANAGER_ALERTS_PATH,
    DEFAULT_MAX_TRACKED_ALERTS,
    DEFAULT_RESEND_INTERVAL_SECONDS,
    AlertmanagerAlertSink,
    alertmanager_payload,
)
from otel_resilience.alerts._sinks import (
    DEFAULT_WEBHOOK_TIMEOUT,
    AlertDeliveryError,
    AlertSink,
    EventBusAlertSink,
    EventPublisher,
    LoggingAlertSink,
    WebhookAlertSink,
)

__all__ = [
    "ALERTMANAGER_ALERTS_PATH",
    "ALERT_LABELS",
    "DEFAULT_ALERT_NAME",
    "DEFAULT_MAX_TRACKED_ALERTS",
    "DEFAULT_RESEND_INTERVAL_SECONDS",
    "DEFAULT_WEBHOOK_TIMEOUT",
    "MAX_EXTRA_LABELS",
    "MAX_LABEL_VALUE_BYTES",
    "Alert",
    "AlertDeliveryError",
    "AlertSink",
    "AlertmanagerAlertSink",
    "EventBusAlertSink",
    "EventPublisher",
    "LoggingAlertSink",
    "WallClock",
    "WebhookAlertSink",
    "alertmanager_payload",
    "rfc3339",
]
