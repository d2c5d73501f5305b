"""Alerts to Prometheus Alertmanager through its API v2 (``POST /api/v2/alerts``).

Alertmanager treats a firing alert as alive only while clients keep re-sending it: an
alert without ``endsAt`` resolves itself after Alertmanager's ``resolve_timeout`` (five
minutes by default), one with ``endsAt`` at that time. So the sink de-duplicates, but
not for ever: an alert already sent with the same fingerprint and labels is sent again
only once :data:`DEFAULT_RESEND_INTERVAL_SECONDS` have passed, which keeps it alive
without a request per error. Resolving sends the alert with ``endsAt`` set.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

from otel_resilience._clock import SYSTEM_CLOCK, Clock, wall_time
from otel_resilience._validation import check_int, check_number, check_optional_number
from otel_resilience.alerts._alert import Alert, WallClock, rfc3339
from otel_resilience.alerts._sinks import (
    DEFAULT_WEBHOOK_TIMEOUT,
    check_headers,
    check_http_url,
    post_json,
    url_origin,
)

__all__ = [
    "ALERTMANAGER_ALERTS_PATH",
    "DEFAULT_MAX_TRACKED_ALERTS",
    "DEFAULT_RESEND_INTERVAL_SECONDS",
    "AlertmanagerAlertSink",
    "alertmanager_payload",
]

ALERTMANAGER_ALERTS_PATH: Final = "/api/v2/alerts"
"""Where alerts are posted, relative to the Alertmanager base URL."""

DEFAULT_RESEND_INTERVAL_SECONDS: Final = 60.0
"""A firing alert already sent is sent again after this long (Prometheus re-sends every
minute too); keep it well below Alertmanager's ``resolve_timeout``."""

DEFAULT_MAX_TRACKED_ALERTS: Final = 10_000
"""Firing alerts remembered for de-duplication; the least recently sent is forgotten
first (and is then simply sent again at its next occurrence)."""

_OWNER = "AlertmanagerAlertSink"


def alertmanager_payload(alert: Alert, *, ends_at: float | None = None) -> dict[str, object]:
    """Return ``alert`` as one Alertmanager API v2 postable alert.

    ``endsAt`` is the alert's own ``ends_at`` when resolved, else ``ends_at`` if given,
    else absent. ``generatorURL`` is present only when the alert has one.

    Example:
        >>> alert = Alert(
        ...     severity="critical", component="db", error_type="OSError", starts_at=0.0
        ... )
        >>> payload = alertmanager_payload(alert)
        >>> payload["labels"]
        {'alertname': 'ResilienceCriticalError', 'severity': 'critical', 'component': 'db', \
'error_type': 'OSError'}
        >>> payload["startsAt"], "endsAt" in payload
        ('1970-01-01T00:00:00.000Z', False)
    """
    payload: dict[str, object] = {
        "labels": alert.all_labels(),
        "annotations": alert.all_annotations(),
        "startsAt": rfc3339(alert.starts_at),
    }
    end = alert.ends_at if alert.ends_at is not None else ends_at
    if end is not None:
        payload["endsAt"] = rfc3339(end)
    if alert.generator_url is not None:
        payload["generatorURL"] = alert.generator_url
    return payload


class _Sent:
    """What was last sent for one fingerprint, and when (monotonic)."""

    __slots__ = ("alert", "labels", "sent_at")

    def __init__(self, alert: Alert, labels: dict[str, str], sent_at: float) -> None:
        self.alert = alert
        self.labels = labels
        self.sent_at = sent_at


class AlertmanagerAlertSink:
    """Sends alerts to Prometheus Alertmanager (API v2), de-duplicated and resolvable.

    Each alert becomes one postable alert: labels ``alertname``, ``severity``,
    ``component``, ``error_type`` and the alert's extra labels; annotations ``summary``,
    ``description`` and the extras; ``startsAt``; ``endsAt`` once resolved (or
    ``resolve_timeout`` ahead while firing, if set); ``generatorURL`` if set.

    De-duplication: a firing alert whose fingerprint is already firing with the same
    labels is not sent again until ``resend_interval`` seconds (injected clock) have
    passed since it was last sent. When the labels change (an escalated severity), the
    new alert is sent at once and the previous label set is resolved in the same request,
    so Alertmanager does not show both. A failed request is forgotten, so the next
    occurrence tries again. Sending a resolved alert (or calling :meth:`resolve`) always
    posts, and forgets the fingerprint.

    Thread-safe; a lock guards only the de-duplication table, never the request.

    Args:
        base_url: Alertmanager's URL, such as ``http://127.0.0.1:9093`` (with its route
            prefix, if it has one).
        timeout: seconds to wait to connect and for each read (> 0).
        resolve_timeout: if set, firing alerts carry ``endsAt`` this many seconds ahead,
            so Alertmanager resolves them by itself if this process stops re-sending
            (dies). Must exceed ``resend_interval``. ``None`` leaves it to
            Alertmanager's own ``resolve_timeout``.
        resend_interval: seconds before a firing alert is sent again (> 0).
        headers: extra request headers, for example ``Authorization``.
        clock: the monotonic clock for the re-send interval.
        wall_clock: the wall clock for ``endsAt`` (seconds since the epoch).
        max_tracked: firing alerts remembered for de-duplication (>= 1).
    """

    __slots__ = (
        "_clock",
        "_headers",
        "_lock",
        "_max_tracked",
        "_resend_interval",
        "_resolve_timeout",
        "_sent",
        "_suppressed",
        "_timeout",
        "_url",
        "_wall_clock",
    )

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_WEBHOOK_TIMEOUT,
        resolve_timeout: float | None = None,
        resend_interval: float = DEFAULT_RESEND_INTERVAL_SECONDS,
        headers: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        wall_clock: WallClock | None = None,
        max_tracked: int = DEFAULT_MAX_TRACKED_ALERTS,
    ) -> None:
        base = check_http_url(_OWNER, "base_url", base_url)
        if "?" in base or "#" in base:
            raise ValueError(f"{_OWNER}.base_url must not have a query or fragment")
        self._url = base.rstrip("/") + ALERTMANAGER_ALERTS_PATH
        self._timeout = check_number(_OWNER, "timeout", timeout)
        self._resend_interval = check_number(_OWNER, "resend_interval", resend_interval)
        self._resolve_timeout = check_optional_number(_OWNER, "resolve_timeout", resolve_timeout)
        if self._resolve_timeout is not None and self._resolve_timeout <= self._resend_interval:
            raise ValueError(
                f"{_OWNER}.resolve_timeout must exceed resend_interval "
                f"({self._resolve_timeout:g} <= {self._resend_interval:g}): the alert "
                f"would resolve itself between two re-sends"
            )
        self._headers = check_headers(_OWNER, "headers", headers)
        self._max_tracked = check_int(_OWNER, "max_tracked", max_tracked)
        if clock is not None and not callable(getattr(clock, "monotonic", None)):
            raise TypeError(f"{_OWNER}.clock must be a Clock, got {type(clock).__name__}")
        if wall_clock is not None and not callable(wall_clock):
            raise TypeError(f"{_OWNER}.wall_clock must be callable, got {wall_clock!r}")
        self._clock: Clock = SYSTEM_CLOCK if clock is None else clock
        self._wall_clock: WallClock = wall_time if wall_clock is None else wall_clock
        self._lock = threading.Lock()
        self._sent: OrderedDict[str, _Sent] = OrderedDict()
        self._suppressed = 0

    @property
    def url(self) -> str:
        """The full URL alerts are posted to (``.../api/v2/alerts``)."""
        return self._url

    @property
    def suppressed(self) -> int:
        """How many firing alerts were not sent because they were sent recently."""
        return self._suppressed

    def firing(self) -> tuple[str, ...]:
        """Return the fingerprints of the alerts sent as firing and not resolved since."""
        with self._lock:
            return tuple(self._sent)

    async def send(self, alert: Alert) -> None:
        """Post ``alert``, unless the same firing alert went out within the re-send interval.

        Raises:
            AlertDeliveryError: Alertmanager answered with a non-2xx status or could not
                be reached.
        """
        if alert.ends_at is not None:
            await self._send_resolved(alert)
            return
        fingerprint = alert.fingerprint
        labels = alert.all_labels()
        now = self._clock.monotonic()
        with self._lock:
            previous = self._sent.get(fingerprint)
            if (
                previous is not None
                and previous.labels == labels
                and now - previous.sent_at < self._resend_interval
            ):
                self._suppressed += 1
                return
            entry = _Sent(alert, labels, now)
            self._sent[fingerprint] = entry
            self._sent.move_to_end(fingerprint)
            while len(self._sent) > self._max_tracked:
                self._sent.popitem(last=False)
        wall_now = self._wall_clock()
        ends_at = None if self._resolve_timeout is None else wall_now + self._resolve_timeout
        batch = [alertmanager_payload(alert, ends_at=ends_at)]
        if previous is not None and previous.labels != labels:
            batch.append(alertmanager_payload(previous.alert.resolved(wall_now)))
        try:
            await self._post(batch)
        except BaseException:
            with self._lock:
                # Forget the attempt (unless a newer send replaced it) so that the next
                # occurrence is not suppressed by a request that never arrived.
                if self._sent.get(fingerprint) is entry:
                    if previous is None:
                        del self._sent[fingerprint]
                    else:
                        self._sent[fingerprint] = previous
            raise

    async def resolve(self, alert: Alert, *, at: float | None = None) -> None:
        """Post ``alert`` resolved at ``at`` (default: now, from the wall clock).

        Raises:
            AlertDeliveryError: as for :meth:`send`.
        """
        if alert.ends_at is None:
            alert = alert.resolved(self._wall_clock() if at is None else at)
        await self._send_resolved(alert)

    async def _send_resolved(self, alert: Alert) -> None:
        fingerprint = alert.fingerprint
        with self._lock:
            previous = self._sent.pop(fingerprint, None)
        batch = [alertmanager_payload(alert)]
        if previous is not None and previous.labels != alert.all_labels():
            # The label set Alertmanager holds differs (escalated since): resolve that one.
            ends_at = self._wall_clock() if alert.ends_at is None else alert.ends_at
            batch.append(alertmanager_payload(previous.alert.resolved(ends_at)))
        try:
            await self._post(batch)
        except BaseException:
            with self._lock:
                if previous is not None:
                    self._sent.setdefault(fingerprint, previous)
            raise

    async def _post(self, batch: list[dict[str, object]]) -> None:
        await asyncio.to_thread(
            post_json,
            "Alertmanager",
            self._url,
            batch,
            headers=self._headers,
            timeout=self._timeout,
        )

    def __repr__(self) -> str:
        return f"AlertmanagerAlertSink({url_origin(self._url)!r})"
