"""An operator alert: what fires, for which component and error type, and since when.

An :class:`Alert` is identified by its name, component and error type: the same trio from
many errors is one alert, whatever their messages. Labels identify and route an alert, so
they stay low-cardinality (severity, component, error class, a few fixed extras chosen by
the developer); free text such as the error message belongs in the annotations, truncated.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Protocol, TypeAlias

from otel_resilience._validation import check_number, check_optional_number
from otel_resilience.telemetry._text import truncate

__all__ = [
    "ALERT_LABELS",
    "DEFAULT_ALERT_NAME",
    "MAX_EXTRA_LABELS",
    "MAX_LABEL_VALUE_BYTES",
    "Alert",
    "WallClock",
    "rfc3339",
]

DEFAULT_ALERT_NAME: Final = "ResilienceCriticalError"
"""The ``alertname`` of an :class:`Alert` when none is given."""

ALERT_LABELS: Final = ("alertname", "severity", "component", "error_type")
"""Labels every alert carries, filled from its fields; extra labels may not reuse them."""

MAX_EXTRA_LABELS: Final = 16
"""Extra labels (and, separately, extra annotations) an alert may carry."""

MAX_LABEL_VALUE_BYTES: Final = 256
"""Longest label value, in UTF-8 bytes: labels are identifiers, never free text."""

_ANNOTATION_FIELDS: Final = ("summary", "description")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OWNER = "Alert"

WallClock: TypeAlias = Callable[[], float]
"""Returns the current wall-clock time in seconds since the epoch (``_clock.wall_time``)."""


def rfc3339(timestamp: float) -> str:
    """Format seconds since the epoch as an RFC 3339 UTC timestamp with milliseconds.

    Example:
        >>> rfc3339(0.0)
        '1970-01-01T00:00:00.000Z'
        >>> rfc3339(1700000000.25)
        '2023-11-14T22:13:20.250Z'
    """
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Pairs(Mapping[str, str]):
    """A read-only, hashable, picklable str-to-str map (``MappingProxyType`` is neither)."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, str]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __reduce__(self) -> tuple[type[_Pairs], tuple[dict[str, str]]]:
        return (_Pairs, (dict(self._data),))

    def __repr__(self) -> str:
        return repr(self._data)


_EMPTY: Final = _Pairs({})


def _check_text(field_name: str, value: object, *, required: bool) -> str:
    if not isinstance(value, str):
        raise TypeError(
            f"{_OWNER}.{field_name} must be a str, got {type(value).__name__} {value!r}"
        )
    if required and not value.strip():
        raise ValueError(f"{_OWNER}.{field_name} must be a non-empty string, got {value!r}")
    return value


def _check_url(field_name: str, value: object) -> str:
    text = _check_text(field_name, value, required=True)
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        parts = None
    # Alertmanager answers 422 to a generatorURL that is not an absolute URI.
    if parts is None or not parts.scheme or not parts.netloc or any(c.isspace() for c in text):
        raise ValueError(
            f"{_OWNER}.{field_name} must be an absolute URL (scheme://host/...), got {text!r}"
        )
    return text


def _check_label_value(field_name: str, value: object) -> str:
    text = _check_text(field_name, value, required=True)
    if len(text.encode("utf-8", "replace")) > MAX_LABEL_VALUE_BYTES:
        raise ValueError(
            f"{_OWNER}.{field_name} must be at most {MAX_LABEL_VALUE_BYTES} UTF-8 bytes "
            f"(labels identify an alert; put free text in annotations), got {text[:40]!r}..."
        )
    return text


def _check_pairs(field_name: str, value: object, *, labels: bool) -> Mapping[str, str]:
    if value is _EMPTY:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{_OWNER}.{field_name} must be a mapping of str to str, "
            f"got {type(value).__name__} {value!r}"
        )
    if len(value) > MAX_EXTRA_LABELS:
        raise ValueError(
            f"{_OWNER}.{field_name} must have at most {MAX_EXTRA_LABELS} entries, got {len(value)}"
        )
    reserved = ALERT_LABELS if labels else _ANNOTATION_FIELDS
    checked: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or _LABEL_NAME.fullmatch(key) is None:
            raise ValueError(
                f"{_OWNER}.{field_name} keys must be label names matching "
                f"[a-zA-Z_][a-zA-Z0-9_]*, got {key!r}"
            )
        if key in reserved or key.startswith("__"):
            raise ValueError(
                f"{_OWNER}.{field_name} may not set {key!r}: it is filled from the alert's "
                f"fields (or reserved)"
            )
        if labels:
            checked[key] = _check_label_value(f"{field_name}[{key!r}]", item)
        else:
            text = _check_text(f"{field_name}[{key!r}]", item, required=False)
            checked[key] = truncate(text)
    return _Pairs(checked) if checked else _EMPTY


class _SeverityLike(Protocol):
    @property
    def label(self) -> str: ...


class _ContextLike(Protocol):
    """The parts of an ``ErrorContext`` an alert is built from."""

    @property
    def component(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def error_type(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def severity(self) -> _SeverityLike | None: ...
    @property
    def attempt(self) -> int: ...
    @property
    def timestamp(self) -> float: ...
    @property
    def trace_id(self) -> str | None: ...
    @property
    def span_id(self) -> str | None: ...


class _PlanLike(Protocol):
    """The parts of a ``RecoveryPlan`` an alert is built from."""

    @property
    def context(self) -> _ContextLike: ...
    @property
    def severity(self) -> _SeverityLike: ...
    def summary(self) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """An operator alert, firing while ``ends_at`` is ``None`` and resolved after.

    The labels sent to a receiver are ``alertname`` (``name``), ``severity``,
    ``component`` and ``error_type``, plus the extra ``labels``; the annotations are
    ``summary`` and ``description`` plus the extra ``annotations``. Text fields that
    end up in annotations are truncated to 1 KiB; label values longer than
    :data:`MAX_LABEL_VALUE_BYTES` are rejected, since a label that long is free text.

    Two alerts with the same :attr:`fingerprint` (name, component and error type) are
    the same alert: sinks de-duplicate on it, and resolving one resolves the other.

    Example:
        >>> alert = Alert(
        ...     severity="critical",
        ...     component="payments",
        ...     error_type="ConnectionError",
        ...     starts_at=1700000000.0,
        ... )
        >>> alert.summary
        'critical ConnectionError in payments'
        >>> alert.status
        'firing'
        >>> alert.resolved(1700000060.0).status
        'resolved'

    Attributes:
        name: the alert's name, sent as the ``alertname`` label.
        severity: severity label, such as ``"critical"`` (an ``ErrorSeverity`` label).
        component: the failing component (low-cardinality: a service or dependency name).
        error_type: the exception class name (never the message).
        summary: one line for operators; defaults to ``"<severity> <error_type> in
            <component>"``.
        description: longer text, such as the error message (truncated to 1 KiB).
        labels: extra low-cardinality labels (a read-only mapping; at most
            :data:`MAX_EXTRA_LABELS`), for routing: team, environment, service.
        annotations: extra annotations (read-only), such as ``runbook_url``.
        starts_at: when the alert started firing, in seconds since the epoch.
        ends_at: when it was resolved, in seconds since the epoch; ``None`` while firing.
        generator_url: optional link back to what caused the alert (a trace, a dashboard).
    """

    name: str = DEFAULT_ALERT_NAME
    severity: str
    component: str
    error_type: str
    summary: str = ""
    description: str = ""
    labels: Mapping[str, str] = field(default=_EMPTY)
    annotations: Mapping[str, str] = field(default=_EMPTY)
    starts_at: float
    ends_at: float | None = None
    generator_url: str | None = None

    def __post_init__(self) -> None:
        _check_label_value("name", self.name)
        _check_label_value("severity", self.severity)
        _check_label_value("component", self.component)
        _check_label_value("error_type", self.error_type)
        summary = _check_text("summary", self.summary, required=False)
        description = _check_text("description", self.description, required=False)
        if not summary.strip():
            summary = f"{self.severity} {self.error_type} in {self.component}"
        starts_at = check_number(_OWNER, "starts_at", self.starts_at, allow_minimum=True)
        ends_at = check_optional_number(_OWNER, "ends_at", self.ends_at, allow_minimum=True)
        if ends_at is not None and ends_at < starts_at:
            raise ValueError(
                f"{_OWNER}.ends_at must not be before starts_at, got {ends_at!r} < {starts_at!r}"
            )
        if self.generator_url is not None:
            _check_url("generator_url", self.generator_url)
        # Frozen: normalised values are stored through object.__setattr__, once, here.
        object.__setattr__(self, "summary", truncate(summary))
        object.__setattr__(self, "description", truncate(description))
        object.__setattr__(self, "labels", _check_pairs("labels", self.labels, labels=True))
        object.__setattr__(
            self, "annotations", _check_pairs("annotations", self.annotations, labels=False)
        )
        object.__setattr__(self, "starts_at", starts_at)
        object.__setattr__(self, "ends_at", ends_at)

    @property
    def fingerprint(self) -> str:
        """A stable hash of the identifying labels: name, component and error type.

        The same in every process and run (not Python's salted ``hash``); severity and
        extra labels are not part of it, so an escalated alert is still the same alert.
        """
        # A JSON list is unambiguous whatever characters the three values contain.
        identity = json.dumps([self.name, self.component, self.error_type])
        return hashlib.sha256(identity.encode("ascii")).hexdigest()[:16]

    @property
    def status(self) -> str:
        """``"firing"`` while ``ends_at`` is ``None``, else ``"resolved"``."""
        return "firing" if self.ends_at is None else "resolved"

    def all_labels(self) -> dict[str, str]:
        """Return every label a receiver gets: the identifying four and the extras."""
        return {
            "alertname": self.name,
            "severity": self.severity,
            "component": self.component,
            "error_type": self.error_type,
            **self.labels,
        }

    def all_annotations(self) -> dict[str, str]:
        """Return every annotation: ``summary``, ``description`` (if any) and the extras."""
        annotations = {"summary": self.summary}
        if self.description:
            annotations["description"] = self.description
        annotations.update(self.annotations)
        return annotations

    def resolved(self, at: float) -> Alert:
        """Return a copy resolved at ``at`` (seconds since the epoch).

        A time before ``starts_at`` (a wall clock stepped back) resolves at ``starts_at``.
        """
        ends_at = check_number(_OWNER, "resolved.at", at, allow_minimum=True)
        return replace(self, ends_at=max(ends_at, self.starts_at))

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict: the generic webhook payload of one alert.

        Timestamps are RFC 3339 strings; ``ends_at`` is ``None`` while firing.
        """
        return {
            "name": self.name,
            "status": self.status,
            "fingerprint": self.fingerprint,
            "severity": self.severity,
            "component": self.component,
            "error_type": self.error_type,
            "summary": self.summary,
            "description": self.description,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "starts_at": rfc3339(self.starts_at),
            "ends_at": None if self.ends_at is None else rfc3339(self.ends_at),
            "generator_url": self.generator_url,
        }

    @classmethod
    def from_context(
        cls,
        context: _ContextLike,
        *,
        severity: _SeverityLike | str | None = None,
        summary: str | None = None,
        name: str = DEFAULT_ALERT_NAME,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        generator_url: str | None = None,
    ) -> Alert:
        """Build the alert for an ``ErrorContext``, firing since the error's timestamp.

        The labels come from the context's component and error type; the message,
        operation, attempt and trace and span ids go to the annotations (``description``,
        ``operation``, ``attempt``, ``trace_id``, ``span_id``), never to labels.

        Args:
            context: the error (an ``ErrorContext``).
            severity: the severity to report (an ``ErrorSeverity`` or its label); by
                default the context's own, or ``"critical"`` when it is unclassified.
            summary: one line for operators; the default names severity, error and
                component.
            name: the ``alertname``.
            labels: extra low-cardinality labels.
            annotations: extra annotations; they win over the ones taken from the context.
            generator_url: optional link back (a trace or dashboard URL).
        """
        chosen = context.severity if severity is None else severity
        if chosen is None:
            label = "critical"
        elif isinstance(chosen, str):
            label = chosen
        else:
            label = chosen.label
        notes = {"operation": context.operation, "attempt": str(context.attempt)}
        if context.trace_id is not None:
            notes["trace_id"] = context.trace_id
        if context.span_id is not None:
            notes["span_id"] = context.span_id
        if annotations:
            notes.update(annotations)
        return cls(
            name=name,
            severity=label,
            component=context.component,
            error_type=context.error_type,
            summary=summary or "",
            description=context.message,
            labels=labels if labels is not None else _EMPTY,
            annotations=notes,
            starts_at=context.timestamp,
            generator_url=generator_url,
        )

    @classmethod
    def from_plan(
        cls,
        plan: _PlanLike,
        *,
        name: str = DEFAULT_ALERT_NAME,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        generator_url: str | None = None,
    ) -> Alert:
        """Build the alert for a ``RecoveryPlan``: its final severity and its summary.

        See :meth:`from_context` for what goes where.
        """
        return cls.from_context(
            plan.context,
            severity=plan.severity,
            summary=plan.summary(),
            name=name,
            labels=labels,
            annotations=annotations,
            generator_url=generator_url,
        )
