"""What failed, what to do about it, and what was done: the orchestrator's data types.

:class:`ErrorContext` describes one failure (built from an exception or from a span's
attributes), :class:`RecoveryAction` names the recoveries, and :class:`RecoveryPlan` is the
orchestrator's answer: the severity, why, and the actions chosen and performed.

Everything here is a frozen, validated value; text copied from exceptions is truncated,
attribute maps are bounded, and the serialised forms (``to_dict``) hold only JSON types.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from otel_resilience._validation import check_int, check_number
from otel_resilience.orchestrator._severity import AttributeValue, ErrorSeverity
from otel_resilience.telemetry._text import DEFAULT_MAX_TEXT_BYTES, error_message, truncate

__all__ = [
    "MAX_CONTEXT_ATTRIBUTES",
    "MAX_NAME_BYTES",
    "ActionOutcome",
    "ErrorContext",
    "RecoveryAction",
    "RecoveryActionName",
    "RecoveryPlan",
    "action_name",
    "select_attributes",
]

MAX_CONTEXT_ATTRIBUTES: Final = 64
"""Most span attributes one :class:`ErrorContext` keeps."""

MAX_NAME_BYTES: Final = 256
"""``component``, ``operation`` and ``error_type`` are cut to this many UTF-8 bytes."""

_CTX = "ErrorContext"
_PLAN = "RecoveryPlan"
_OUTCOME = "ActionOutcome"
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")


def _type_name(value: object) -> str:
    return type(value).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- attributes --------------------------------------------------------------------------


class _Attributes(Mapping[str, AttributeValue]):
    """A read-only, hashable, picklable attribute map (``MappingProxyType`` is neither)."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, AttributeValue]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> AttributeValue:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key``, or ``default`` when absent."""
        return self._data.get(key, default)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Attributes):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __reduce__(self) -> tuple[type[_Attributes], tuple[dict[str, AttributeValue]]]:
        return (_Attributes, (dict(self._data),))

    def __repr__(self) -> str:
        return repr(self._data)


_NO_ATTRIBUTES: Final = _Attributes({})


def _primitive(value: object) -> AttributeValue | None:
    """``value`` as an exact str, bool, int or finite float, or ``None`` if it is none."""
    # Subclasses (enum members, numpy-like scalars) become their plain base type, so
    # equality, hashing and serialisation behave; long strings are cut like messages.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        return truncate(str.__str__(value))
    return None


def _check_attributes(value: object) -> _Attributes:
    if value is None:
        return _NO_ATTRIBUTES
    if isinstance(value, _Attributes):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{_CTX}.attributes must be a mapping of str to str, bool, int or float, "
            f"got {_type_name(value)} {value!r}"
        )
    if len(value) > MAX_CONTEXT_ATTRIBUTES:
        raise ValueError(
            f"{_CTX}.attributes must hold at most {MAX_CONTEXT_ATTRIBUTES} entries, "
            f"got {len(value)} (select_attributes() keeps the first ones)"
        )
    data: dict[str, AttributeValue] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{_CTX}.attributes keys must be non-empty str, got {key!r}")
        primitive = _primitive(item)
        if primitive is None:
            if isinstance(item, float):
                raise ValueError(f"{_CTX}.attributes[{key!r}] must be finite, got {item!r}")
            raise TypeError(
                f"{_CTX}.attributes[{key!r}] must be a str, bool, int or float, "
                f"got {_type_name(item)} {item!r}"
            )
        data[key] = primitive
    return _Attributes(data) if data else _NO_ATTRIBUTES


def select_attributes(
    source: Mapping[str, object] | None, keys: Iterable[str] | None = None
) -> dict[str, AttributeValue]:
    """Return the attributes of ``source`` an :class:`ErrorContext` can keep.

    For building a context from a span's attributes: values that are not a str, bool,
    int or finite float (sequences, for example) are dropped, long strings are cut, and
    at most :data:`MAX_CONTEXT_ATTRIBUTES` entries are kept, in order. With ``keys``,
    only those keys are considered, in that order.

    Example:
        >>> select_attributes({"http.response.status_code": 503, "tags": ("a", "b")})
        {'http.response.status_code': 503}
    """
    selected: dict[str, AttributeValue] = {}
    if not source:
        return selected
    pairs: Iterable[tuple[object, object]] = (
        source.items() if keys is None else ((key, source.get(key)) for key in keys)
    )
    for key, value in pairs:
        if len(selected) >= MAX_CONTEXT_ATTRIBUTES:
            break
        if not isinstance(key, str) or not key:
            continue
        primitive = _primitive(value)
        if primitive is not None:
            selected[key] = primitive
    return selected


# -- the error context -------------------------------------------------------------------


def _check_name(field_name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{_CTX}.{field_name} must be a str, got {_type_name(value)} {value!r}")
    if not value.strip():
        raise ValueError(f"{_CTX}.{field_name} must not be empty")
    return truncate(str.__str__(value), MAX_NAME_BYTES)


def _check_id(field_name: str, value: object, pattern: re.Pattern[str], digits: int) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(
            f"{_CTX}.{field_name} must be a str of {digits} lower-case hex digits or None, "
            f"got {_type_name(value)} {value!r}"
        )
    if pattern.fullmatch(value) is None:
        raise ValueError(
            f"{_CTX}.{field_name} must be {digits} lower-case hex digits, got {value!r}"
        )
    if value.count("0") == digits:
        raise ValueError(f"{_CTX}.{field_name} must not be all zeros (the invalid id)")


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorContext:
    """One failure, as the orchestrator sees it.

    Build it with :meth:`from_exception` when you hold the exception, or directly from a
    span (``error_type`` from ``error.type``, attributes through
    :func:`select_attributes`). Validated at construction; errors name the field.

    Attributes:
        component: what failed: a pipeline, breaker or service name (non-empty). With
            ``error_type`` it forms the pattern fingerprint.
        operation: what it was doing: the function or span name (non-empty).
        error_type: the exception's class name (``error.type``), never the message.
        message: the exception's text, cut to 1 KiB (never a metric attribute).
        severity: the severity, or ``None`` when not classified yet. A severity set
            here wins over every attribute and rule.
        attempt: the 1-based attempt that failed.
        timestamp: when, in seconds since the epoch, from the caller's wall clock.
        trace_id: the failing span's trace id: 32 lower-case hex digits, or ``None``.
        span_id: the failing span's id: 16 lower-case hex digits, or ``None`` (needs
            ``trace_id``).
        attributes: selected span attributes (read-only; str, bool, int or finite float
            values; at most :data:`MAX_CONTEXT_ATTRIBUTES`; strings cut to 1 KiB).
        exception: the exception itself when known; not compared, not shown, never
            serialised.

    ``component``, ``operation`` and ``error_type`` longer than :data:`MAX_NAME_BYTES`
    are cut, so a context built from any span is valid.

    Example:
        >>> ctx = ErrorContext.from_exception(
        ...     ConnectionResetError("peer reset"), component="payments",
        ...     operation="charge", timestamp=1_700_000_000.0, attempt=2)
        >>> ctx.error_type, ctx.message, ctx.attempt
        ('ConnectionResetError', 'peer reset', 2)
        >>> ErrorContext.from_dict(ctx.to_dict()) == ctx
        True
    """

    component: str
    operation: str
    error_type: str
    message: str = ""
    severity: ErrorSeverity | None = None
    attempt: int = 1
    timestamp: float
    trace_id: str | None = None
    span_id: str | None = None
    attributes: Mapping[str, AttributeValue] = _NO_ATTRIBUTES
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalised values are stored this way
        set_(self, "component", _check_name("component", self.component))
        set_(self, "operation", _check_name("operation", self.operation))
        set_(self, "error_type", _check_name("error_type", self.error_type))
        if not isinstance(self.message, str):
            raise TypeError(
                f"{_CTX}.message must be a str, got {_type_name(self.message)} {self.message!r}"
            )
        set_(self, "message", truncate(str.__str__(self.message), DEFAULT_MAX_TEXT_BYTES))
        if self.severity is not None and not isinstance(self.severity, ErrorSeverity):
            raise TypeError(
                f"{_CTX}.severity must be an ErrorSeverity or None, "
                f"got {_type_name(self.severity)} {self.severity!r}"
            )
        check_int(_CTX, "attempt", self.attempt)
        set_(
            self,
            "timestamp",
            check_number(_CTX, "timestamp", self.timestamp, minimum=0.0, allow_minimum=True),
        )
        _check_id("trace_id", self.trace_id, _TRACE_ID, 32)
        _check_id("span_id", self.span_id, _SPAN_ID, 16)
        if self.span_id is not None and self.trace_id is None:
            raise ValueError(f"{_CTX}.span_id needs a trace_id (a span id alone means nothing)")
        set_(self, "attributes", _check_attributes(self.attributes))
        if self.exception is not None and not isinstance(self.exception, BaseException):
            raise TypeError(
                f"{_CTX}.exception must be an exception or None, "
                f"got {_type_name(self.exception)} {self.exception!r}"
            )

    @classmethod
    def from_exception(
        cls,
        error: BaseException,
        *,
        component: str,
        operation: str,
        timestamp: float,
        attempt: int = 1,
        severity: ErrorSeverity | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> ErrorContext:
        """Build the context of ``error``: its class name and its safe, truncated text.

        A ``__str__`` that raises gives a placeholder message instead of an error.
        """
        if not isinstance(error, BaseException):
            raise TypeError(
                f"{_CTX}.from_exception needs an exception, got {_type_name(error)} {error!r}"
            )
        return cls(
            component=component,
            operation=operation,
            error_type=type(error).__qualname__,
            message=error_message(error),
            severity=severity,
            attempt=attempt,
            timestamp=timestamp,
            trace_id=trace_id,
            span_id=span_id,
            attributes=_check_attributes(attributes),
            exception=error,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the context as JSON-compatible data; the exception object is dropped.

        ``severity`` becomes its label (``"high"``) or ``None``; :meth:`from_dict` reads
        the result back into an equal context.
        """
        return {
            "component": self.component,
            "operation": self.operation,
            "error_type": self.error_type,
            "message": self.message,
            "severity": None if self.severity is None else self.severity.label,
            "attempt": self.attempt,
            "timestamp": self.timestamp,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorContext:
        """Build a context from :meth:`to_dict` output, validating every key.

        Missing required keys (``component``, ``operation``, ``error_type``,
        ``timestamp``) and unknown keys raise ``ValueError`` naming the key; bad values
        raise as the constructor does, naming the field.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"{_CTX}.from_dict needs a mapping, got {_type_name(data)} {data!r}")
        for key in data:
            if key not in _DICT_KEYS:
                raise ValueError(f"{_CTX}.from_dict: unknown key {key!r}")
        for key in _REQUIRED_KEYS:
            if key not in data:
                raise ValueError(f"{_CTX}.from_dict: missing key {key!r}")
        kwargs = dict(data)
        severity = kwargs.get("severity")
        if severity is not None:
            try:
                kwargs["severity"] = ErrorSeverity.parse(severity)
            except ValueError as error:
                raise ValueError(f"{_CTX}.severity: {error}") from None
        return cls(**kwargs)


_REQUIRED_KEYS: Final = ("component", "operation", "error_type", "timestamp")
_DICT_KEYS: Final = frozenset(
    (*_REQUIRED_KEYS, "message", "severity", "attempt", "trace_id", "span_id", "attributes")
)


# -- recovery actions ---------------------------------------------------------------------


class RecoveryAction(enum.Enum):
    """The built-in recoveries; the value is the ``resilience.recovery.action`` value.

    Custom actions are plain strings: names registered on the orchestrator, placed in the
    decision table beside these members (see :data:`RecoveryActionName`).
    """

    RETRY = "retry"
    """Let the pipeline retry the call."""
    FALLBACK = "fallback"
    """Produce the result from the pipeline's fallback."""
    CIRCUIT_BREAK = "circuit_break"
    """Open the component's circuit breaker at once."""
    FAILOVER = "failover"
    """Switch the component to its next alternate (``FailoverConfig``)."""
    ALERT = "alert"
    """Notify operators through the alert sinks."""
    STOP_RETRIES = "stop_retries"
    """Stop retrying: the failure will not go away by itself."""

    @classmethod
    def coerce(cls, value: object) -> RecoveryAction | str:
        """Return ``value`` as a table entry: a member, or a custom action name.

        A string equal to a member's value (``"fallback"``) becomes that member, so a
        plan never holds the same action in two spellings; any other non-empty string is
        a custom action name, returned as is.
        """
        if isinstance(value, RecoveryAction):
            return value
        if not isinstance(value, str):
            raise TypeError(
                f"a recovery action must be a RecoveryAction or a str name, "
                f"got {_type_name(value)} {value!r}"
            )
        if not value.strip():
            raise ValueError("a custom recovery action name must not be empty")
        try:
            return cls(value)
        except ValueError:
            return str.__str__(value)


RecoveryActionName: TypeAlias = RecoveryAction | str
"""A decision-table entry: a built-in action or the name of a registered custom action."""


def action_name(action: RecoveryAction | str) -> str:
    """Return the telemetry name of ``action``: a member's value, or the custom name.

    Example:
        >>> action_name(RecoveryAction.CIRCUIT_BREAK), action_name("page_oncall")
        ('circuit_break', 'page_oncall')
    """
    return action.value if isinstance(action, RecoveryAction) else action


def _check_action(owner: str, field_name: str, value: object) -> RecoveryAction | str:
    try:
        return RecoveryAction.coerce(value)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{owner}.{field_name}: {error}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionOutcome:
    """What happened when the orchestrator performed one action.

    Attributes:
        action: the action performed (a member, or a custom action name).
        ok: whether it succeeded.
        detail: a short explanation (cut to 1 KiB), e.g. the error of a failed action.

    Example:
        >>> ActionOutcome(action="alert", ok=False, detail="webhook timed out").name
        'alert'
    """

    action: RecoveryAction | str
    ok: bool
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", _check_action(_OUTCOME, "action", self.action))
        if not isinstance(self.ok, bool):
            raise TypeError(f"{_OUTCOME}.ok must be a bool, got {_type_name(self.ok)} {self.ok!r}")
        if not isinstance(self.detail, str):
            raise TypeError(
                f"{_OUTCOME}.detail must be a str, got {_type_name(self.detail)} {self.detail!r}"
            )
        object.__setattr__(self, "detail", truncate(str.__str__(self.detail)))

    @property
    def name(self) -> str:
        """The action's telemetry name."""
        return action_name(self.action)

    def to_dict(self) -> dict[str, Any]:
        """Return the outcome as JSON-compatible data."""
        return {"action": self.name, "ok": self.ok, "detail": self.detail}


# -- the recovery plan --------------------------------------------------------------------


def _check_severity(field_name: str, value: object) -> ErrorSeverity:
    if not isinstance(value, ErrorSeverity):
        raise TypeError(
            f"{_PLAN}.{field_name} must be an ErrorSeverity, got {_type_name(value)} {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryPlan:
    """The orchestrator's answer to one failure: what it decided, why, and what it did.

    Attributes:
        context: the failure.
        severity: the final severity, after pattern escalation.
        base_severity: the severity before escalation (from the context, attribute,
            rule or default).
        severity_reason: why ``base_severity``, e.g. ``"rule 'http server error'"``.
        escalated: whether a recurring pattern raised the severity (``FATAL`` escalated
            stays ``FATAL``, so ``escalated`` may be true with equal severities).
        pattern_count: occurrences of this failure's pattern in the window (>= 0).
        actions: the actions chosen, in order (no repeats).
        executed: the orchestrator-side actions performed, with their outcomes.

    Example:
        >>> ctx = ErrorContext(component="db", operation="query", error_type="OperationalError",
        ...                    timestamp=1.0)
        >>> plan = RecoveryPlan(
        ...     context=ctx, severity=ErrorSeverity.HIGH, base_severity=ErrorSeverity.MEDIUM,
        ...     severity_reason="default", escalated=True, pattern_count=6,
        ...     actions=(RecoveryAction.CIRCUIT_BREAK, RecoveryAction.FALLBACK))
        >>> plan.stop_retries, plan.open_breaker
        (True, True)
        >>> print(plan.summary())
        db/query: OperationalError on attempt 1 is high (default; escalated from medium \
after 6 occurrences in the window); actions: circuit_break, fallback
    """

    context: ErrorContext
    severity: ErrorSeverity
    base_severity: ErrorSeverity
    severity_reason: str
    escalated: bool
    pattern_count: int
    actions: tuple[RecoveryAction | str, ...]
    executed: tuple[ActionOutcome, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalised values are stored this way
        if not isinstance(self.context, ErrorContext):
            raise TypeError(
                f"{_PLAN}.context must be an ErrorContext, got {_type_name(self.context)}"
            )
        _check_severity("severity", self.severity)
        _check_severity("base_severity", self.base_severity)
        if not isinstance(self.severity_reason, str):
            raise TypeError(
                f"{_PLAN}.severity_reason must be a str, got {_type_name(self.severity_reason)}"
            )
        set_(self, "severity_reason", truncate(str.__str__(self.severity_reason)))
        if not isinstance(self.escalated, bool):
            raise TypeError(
                f"{_PLAN}.escalated must be a bool, got {_type_name(self.escalated)} "
                f"{self.escalated!r}"
            )
        check_int(_PLAN, "pattern_count", self.pattern_count, minimum=0)
        if self.severity < self.base_severity:
            raise ValueError(
                f"{_PLAN}.severity ({self.severity.label}) must not be below "
                f"base_severity ({self.base_severity.label}): escalation only goes up"
            )
        if self.severity != self.base_severity and not self.escalated:
            raise ValueError(
                f"{_PLAN}.severity ({self.severity.label}) differs from base_severity "
                f"({self.base_severity.label}) but escalated is False"
            )
        set_(self, "actions", self._check_actions(self.actions))
        executed: object = self.executed
        if not isinstance(executed, tuple | list):
            raise TypeError(
                f"{_PLAN}.executed must be a tuple of ActionOutcome, "
                f"got {_type_name(executed)} {executed!r}"
            )
        for outcome in executed:
            if not isinstance(outcome, ActionOutcome):
                raise TypeError(
                    f"{_PLAN}.executed must contain ActionOutcome objects, "
                    f"got {_type_name(outcome)} {outcome!r}"
                )
        set_(self, "executed", tuple(self.executed))

    @staticmethod
    def _check_actions(value: object) -> tuple[RecoveryAction | str, ...]:
        if isinstance(value, str) or not isinstance(value, tuple | list):
            raise TypeError(
                f"{_PLAN}.actions must be a tuple of RecoveryAction or str names, "
                f"got {_type_name(value)} {value!r}"
            )
        actions = tuple(_check_action(_PLAN, "actions", item) for item in value)
        if len(set(actions)) != len(actions):
            seen: set[RecoveryAction | str] = set()
            for action in actions:
                if action in seen:
                    raise ValueError(
                        f"{_PLAN}.actions must not repeat an action: "
                        f"{action_name(action)!r} appears twice"
                    )
                seen.add(action)
        return actions

    @property
    def stop_retries(self) -> bool:
        """Whether retries must stop: ``STOP_RETRIES`` chosen, or ``RETRY`` not chosen."""
        actions = self.actions
        return RecoveryAction.STOP_RETRIES in actions or RecoveryAction.RETRY not in actions

    @property
    def open_breaker(self) -> bool:
        """Whether the component's breaker is to be opened (``CIRCUIT_BREAK`` chosen)."""
        return RecoveryAction.CIRCUIT_BREAK in self.actions

    @property
    def action_names(self) -> tuple[str, ...]:
        """The chosen actions' telemetry names, in order."""
        return tuple(action_name(action) for action in self.actions)

    def summary(self) -> str:
        """Return one line saying what failed, how bad it is, why, and what was done."""
        ctx = self.context
        why = _one_line(self.severity_reason) or "no reason given"
        if self.escalated:
            why += (
                f"; escalated from {self.base_severity.label} after "
                f"{self.pattern_count} occurrences in the window"
            )
        line = (
            f"{_one_line(ctx.component)}/{_one_line(ctx.operation)}: "
            f"{_one_line(ctx.error_type)} on attempt {ctx.attempt} is "
            f"{self.severity.label} ({why}); actions: {', '.join(self.action_names) or 'none'}"
        )
        if self.executed:
            done = []
            for outcome in self.executed:
                text = f"{outcome.name} {'ok' if outcome.ok else 'failed'}"
                detail = _one_line(outcome.detail)
                done.append(f"{text} ({detail})" if detail else text)
            line += "; done: " + ", ".join(done)
        return line

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-compatible data (for status reports, events, webhooks)."""
        return {
            "context": self.context.to_dict(),
            "severity": self.severity.label,
            "base_severity": self.base_severity.label,
            "severity_reason": self.severity_reason,
            "escalated": self.escalated,
            "pattern_count": self.pattern_count,
            "actions": list(self.action_names),
            "executed": [outcome.to_dict() for outcome in self.executed],
            "stop_retries": self.stop_retries,
            "open_breaker": self.open_breaker,
        }
