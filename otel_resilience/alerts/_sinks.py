"""Where alerts go: the sink protocol, and sinks for logging, the event bus and webhooks.

A sink is anything with ``async send(alert)``. A resolved alert (``ends_at`` set, see
:meth:`Alert.resolved`) goes through the same ``send``. Sinks may raise; the
orchestrator calls each sink in isolation, so a failing sink neither stops the others
nor changes a recovery decision.

HTTP sinks use only the standard library: :mod:`urllib.request` in a worker thread, so a
slow receiver never blocks the event loop. Redirects are not followed (a POST turned into
a GET would lose the alert), and error messages name only the receiver's scheme, host and
port, because webhook URLs often carry a secret in their path or query.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from otel_resilience._validation import check_int, check_number
from otel_resilience.alerts._alert import Alert

if TYPE_CHECKING:
    import email.message

__all__ = [
    "DEFAULT_WEBHOOK_TIMEOUT",
    "AlertDeliveryError",
    "AlertSink",
    "EventBusAlertSink",
    "EventPublisher",
    "LoggingAlertSink",
    "WebhookAlertSink",
]

DEFAULT_WEBHOOK_TIMEOUT: Final = 5.0
"""Seconds an HTTP sink waits to connect and for each read before the delivery fails."""

_MAX_ERROR_BODY_BYTES: Final = 512
_MAX_RESPONSE_BYTES: Final = 65536
_DEFAULT_LOGGER: Final = "otel_resilience.alerts"


@runtime_checkable
class AlertSink(Protocol):
    """Receives alerts: firing ones, and resolved ones (``alert.ends_at`` set).

    ``send`` may raise (an unreachable receiver, a rejected payload); the caller decides
    what a failure means. The orchestrator isolates each sink.
    """

    async def send(self, alert: Alert) -> None:
        """Deliver ``alert``."""


class AlertDeliveryError(Exception):
    """An HTTP sink could not deliver an alert.

    Attributes:
        sink: which kind of sink failed (``"webhook"``, ``"Alertmanager"``).
        origin: the receiver's scheme, host and port (never its path or credentials).
        status: the HTTP status of a non-2xx answer, or ``None`` when no answer came
            (connection refused, timeout, DNS).
        detail: the start of the answer's body, or why no answer came.
    """

    def __init__(self, sink: str, origin: str, status: int | None, detail: str) -> None:
        self.sink = sink
        self.origin = origin
        self.status = status
        self.detail = detail
        if status is None:
            message = f"{sink} at {origin} unreachable: {detail}"
        else:
            message = f"{sink} at {origin} answered HTTP {status}"
            if detail:
                message = f"{message}: {detail}"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[AlertDeliveryError], tuple[str, str, int | None, str]]:
        return (type(self), (self.sink, self.origin, self.status, self.detail))


# -- HTTP plumbing shared with the Alertmanager sink ------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turns every redirect into an error: a redirected POST would be resent as a GET."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: email.message.Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def check_http_url(owner: str, field: str, value: object) -> str:
    """Return ``value`` if it is an absolute ``http`` or ``https`` URL with a host."""
    if not isinstance(value, str):
        raise TypeError(f"{owner}.{field} must be a str URL, got {type(value).__name__} {value!r}")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{owner}.{field} must be an http:// or https:// URL with a host")
    if any(char in value for char in "\r\n\t "):
        raise ValueError(f"{owner}.{field} must not contain whitespace")
    try:
        _ = parts.port  # a bad port raises here, not at the first alert
    except ValueError:
        raise ValueError(f"{owner}.{field} has an invalid port") from None
    return value


def url_origin(url: str) -> str:
    """Return ``scheme://host[:port]`` of ``url``: safe to log (no credentials, no path)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"


def check_headers(owner: str, field: str, value: object) -> dict[str, str]:
    """Return ``value`` as a dict of HTTP header names to values (``None``: no headers)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{owner}.{field} must be a mapping of str to str, got {type(value).__name__}"
        )
    headers: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not isinstance(item, str):
            raise TypeError(f"{owner}.{field} must map str to str, got {name!r}: {item!r}")
        if not name or any(char in name for char in ":\r\n ") or any(c in item for c in "\r\n"):
            # A line break would let a value inject further headers.
            raise ValueError(f"{owner}.{field} has an invalid header {name!r}")
        headers[name] = item
    return headers


def post_json(
    sink: str, url: str, payload: object, *, headers: Mapping[str, str], timeout: float
) -> int:
    """POST ``payload`` as JSON to ``url`` and return the 2xx status (blocking).

    Raises:
        AlertDeliveryError: on a non-2xx answer or when no answer came.
    """
    # ASCII JSON: a lone surrogate from a decoded file name is escaped, not an encode error.
    body = json.dumps(payload, separators=(",", ":")).encode("ascii")
    request = urllib.request.Request(  # noqa: S310 - the URL was checked to be http(s)
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    # An opener per request: it reads the proxy settings from the environment as they are
    # now, and alerts are rare enough for the cost not to matter.
    opener = urllib.request.build_opener(_NoRedirects())
    try:
        with opener.open(request, timeout=timeout) as response:
            status: int = response.status
            response.read(_MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as error:
        with error:
            detail = _body_excerpt(error)
        raise AlertDeliveryError(sink, url_origin(url), error.code, detail) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise AlertDeliveryError(sink, url_origin(url), None, str(reason)) from error
    if not 200 <= status < 300:
        raise AlertDeliveryError(sink, url_origin(url), status, "")
    return status


def _body_excerpt(error: urllib.error.HTTPError) -> str:
    try:
        raw = error.read(_MAX_ERROR_BODY_BYTES)
    except OSError:
        return ""
    return " ".join(raw.decode("utf-8", "replace").split())


# -- sinks -------------------------------------------------------------------------------


class LoggingAlertSink:
    """Writes alerts to a :mod:`logging` logger.

    Firing alerts are logged at ``level``, resolved ones at ``resolved_level``. Each
    record carries the alert as ``record.alert`` (through ``extra``) for structured log
    handlers.

    Example:
        >>> import asyncio
        >>> sink = LoggingAlertSink("payments.alerts")
        >>> alert = Alert(
        ...     severity="critical", component="db", error_type="OSError", starts_at=0.0
        ... )
        >>> asyncio.run(sink.send(alert))

    Args:
        logger: a logger, or a logger name; default ``"otel_resilience.alerts"``.
        level: the level of firing alerts.
        resolved_level: the level of resolved alerts.
    """

    __slots__ = ("_level", "_logger", "_resolved_level")

    def __init__(
        self,
        logger: logging.Logger | str | None = None,
        level: int = logging.WARNING,
        *,
        resolved_level: int = logging.INFO,
    ) -> None:
        if logger is None:
            logger = logging.getLogger(_DEFAULT_LOGGER)
        elif isinstance(logger, str):
            logger = logging.getLogger(logger)
        elif not isinstance(logger, logging.Logger):
            raise TypeError(
                "LoggingAlertSink.logger must be a logging.Logger, a logger name or None, "
                f"got {type(logger).__name__}"
            )
        self._logger = logger
        self._level = check_int("LoggingAlertSink", "level", level, minimum=0)
        self._resolved_level = check_int(
            "LoggingAlertSink", "resolved_level", resolved_level, minimum=0
        )

    @property
    def logger(self) -> logging.Logger:
        """The logger alerts are written to."""
        return self._logger

    async def send(self, alert: Alert) -> None:
        """Log ``alert``: one line with its status, name, severity, component and summary."""
        level = self._level if alert.ends_at is None else self._resolved_level
        if not self._logger.isEnabledFor(level):
            return
        self._logger.log(
            level,
            "alert %s %s (%s): %s [component=%s, error_type=%s, fingerprint=%s]%s",
            alert.name,
            alert.status,
            alert.severity,
            alert.summary,
            alert.component,
            alert.error_type,
            alert.fingerprint,
            f": {alert.description}" if alert.description else "",
            extra={"alert": alert},
        )

    def __repr__(self) -> str:
        return f"LoggingAlertSink(logger={self._logger.name!r})"


class EventPublisher(Protocol):
    """What :class:`EventBusAlertSink` needs from an event bus: a plain ``publish``."""

    def publish(self, event: Any, /) -> object:
        """Hand ``event`` to the bus's subscribers (fire and forget)."""


class EventBusAlertSink:
    """Publishes each alert on an event bus.

    A firing alert becomes ``AlertRaised``, a resolved one (``ends_at`` set)
    ``AlertResolved``. The events come from :mod:`otel_resilience.events`; subscribers
    receive the alert as the event's ``alert`` field.

    Args:
        bus: the :class:`~otel_resilience.events.EventBus` (or any object with a plain
            ``publish(event)`` method).
    """

    __slots__ = ("_bus",)

    def __init__(self, bus: EventPublisher) -> None:
        publish = getattr(bus, "publish", None)
        if not callable(publish):
            raise TypeError(
                f"EventBusAlertSink.bus must have a publish(event) method, got {type(bus).__name__}"
            )
        self._bus = bus

    @property
    def bus(self) -> EventPublisher:
        """The bus events are published on."""
        return self._bus

    async def send(self, alert: Alert) -> None:
        """Publish ``AlertRaised(alert=alert)`` or ``AlertResolved(alert=alert)``."""
        # Imported here: the event bus imports the alert types, not the other way round.
        from otel_resilience.events import AlertRaised, AlertResolved  # noqa: PLC0415

        event = AlertRaised(alert=alert) if alert.ends_at is None else AlertResolved(alert=alert)
        self._bus.publish(event)

    def __repr__(self) -> str:
        return f"EventBusAlertSink(bus={type(self._bus).__name__})"


class WebhookAlertSink:
    """POSTs each alert as one JSON object (:meth:`Alert.to_dict`) to a URL.

    The request runs in a worker thread (:func:`asyncio.to_thread`) with the standard
    library's HTTP client. Any 2xx answer is success; any other status, a redirect, a
    timeout or a connection failure raises :class:`AlertDeliveryError`.

    Args:
        url: the receiver, ``http://`` or ``https://``.
        timeout: seconds to wait to connect and for each read (> 0).
        headers: extra request headers, for example ``Authorization``.
    """

    __slots__ = ("_headers", "_timeout", "_url")

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_WEBHOOK_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._url = check_http_url("WebhookAlertSink", "url", url)
        self._timeout = check_number("WebhookAlertSink", "timeout", timeout)
        self._headers = check_headers("WebhookAlertSink", "headers", headers)

    @property
    def url(self) -> str:
        """The receiver's URL."""
        return self._url

    async def send(self, alert: Alert) -> None:
        """POST ``alert.to_dict()`` as JSON; raise :class:`AlertDeliveryError` on failure."""
        await asyncio.to_thread(
            post_json,
            "webhook",
            self._url,
            alert.to_dict(),
            headers=self._headers,
            timeout=self._timeout,
        )

    def __repr__(self) -> str:
        return f"WebhookAlertSink({url_origin(self._url)!r})"
