"""How bad a failure is: the severity scale, severity rules and the classifier.

Severity is read, in order, from the error context itself (a severity its creator set),
the span attribute ``resilience.error.severity``, the first matching
:class:`SeverityRule`, and finally the classifier's default (``MEDIUM``). User code and
instrumentations steer the recovery by setting that attribute on the failing span;
applications map their own exception classes by putting rules before the defaults::

    classifier = SeverityClassifier((SeverityRule(ErrorSeverity.FATAL,
                                                  exception_types=(LedgerCorrupt,)),
                                     *DEFAULT_RULES))

Classification runs only when a protected call fails, never on the success path, and it
never raises: a bad attribute value or a predicate that raises is ignored (the reason
says so, or the error is logged at a limited rate).
"""

from __future__ import annotations

import enum
import math
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Final, TypeAlias

from otel_resilience._events import LISTENER_ERRORS
from otel_resilience._validation import check_callable, check_exception_types
from otel_resilience.telemetry.names import ATTR_ERROR_SEVERITY

if TYPE_CHECKING:
    from otel_resilience.orchestrator._context import ErrorContext

__all__ = [
    "CONNECTION_ERROR_TYPE_NAMES",
    "CONNECTION_EXCEPTION_TYPES",
    "DEFAULT_RULES",
    "DEFAULT_SEVERITY",
    "HTTP_STATUS_ATTRIBUTES",
    "AttributeValue",
    "ErrorSeverity",
    "SeverityClassifier",
    "SeverityRule",
]

AttributeValue: TypeAlias = str | bool | int | float
"""A span attribute value an :class:`ErrorContext` keeps (sequences are not kept)."""


class ErrorSeverity(enum.IntEnum):
    """How bad a failure is, ordered: ``LOW < MEDIUM < HIGH < CRITICAL < FATAL``.

    The telemetry value (``resilience.error.severity``) is the lower-case name,
    :attr:`label`.

    Example:
        >>> ErrorSeverity.parse("high") > ErrorSeverity.MEDIUM
        True
        >>> ErrorSeverity.HIGH.escalate().label
        'critical'
        >>> ErrorSeverity.FATAL.escalate() is ErrorSeverity.FATAL
        True
    """

    LOW = 1
    """Transient and expected (throttling, a service briefly unavailable): retry."""
    MEDIUM = 2
    """An ordinary failure: retry, then fall back."""
    HIGH = 3
    """The dependency is unreachable (connection, DNS, TLS): open its breaker, fall back."""
    CRITICAL = 4
    """The full recovery workflow and an operator alert."""
    FATAL = 5
    """As ``CRITICAL``, and retries for the component stop."""

    @property
    def label(self) -> str:
        """The lower-case name: the value of the ``resilience.error.severity`` attribute."""
        return self.name.lower()

    def escalate(self) -> ErrorSeverity:
        """Return the next level up; ``FATAL`` stays ``FATAL``."""
        if self is ErrorSeverity.FATAL:
            return self
        return ErrorSeverity(self.value + 1)

    @classmethod
    def parse(cls, value: object) -> ErrorSeverity:
        """Return the severity ``value`` denotes.

        Accepts a member, an ``int`` from 1 to 5, or a name in any case with optional
        surrounding blanks (``"high"``, ``" CRITICAL "``). Everything else, bools and
        numeric strings included, raises ``ValueError`` naming the value, whatever its
        type: callers parse untrusted span attributes and need one error to catch.
        """
        if isinstance(value, ErrorSeverity):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        elif isinstance(value, str):
            member = cls.__members__.get(value.strip().upper())
            if member is not None:
                return member
        raise ValueError(
            f"not an error severity: {value!r} (expected one of "
            f"{', '.join(m.label for m in cls)}, or 1 to 5)"
        )


DEFAULT_SEVERITY: Final = ErrorSeverity.MEDIUM
"""Severity of a failure no attribute and no rule classifies."""

_RULE = "SeverityRule"
_CLASSIFIER = "SeverityClassifier"


def _type_name(value: object) -> str:
    return type(value).__name__


def _value_key(value: AttributeValue) -> tuple[bool, AttributeValue]:
    # ``True == 1`` in Python; keying on "is it a bool" keeps a boolean attribute from
    # matching the number 1 (and 503 still matches 503.0).
    return (isinstance(value, bool), value)


def _check_values(value: object) -> tuple[AttributeValue, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, tuple | list | set | frozenset):
        raise TypeError(
            f"{_RULE}.values must be a tuple of str, bool, int or float values, "
            f"got {_type_name(value)} {value!r}"
        )
    items: list[AttributeValue] = []
    for item in value:
        if not isinstance(item, str | bool | int | float):
            raise TypeError(
                f"{_RULE}.values must contain str, bool, int or float values, "
                f"got {_type_name(item)} {item!r}"
            )
        if isinstance(item, float) and math.isnan(item):
            raise ValueError(f"{_RULE}.values must not contain NaN (it equals nothing)")
        items.append(item)
    return tuple(items)


def _check_bound(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{_RULE}.{name} must be a number, got {_type_name(value)} {value!r}")
    if math.isnan(value):
        raise ValueError(f"{_RULE}.{name} must not be NaN")
    return value


def _check_attribute_name(value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{_RULE}.attribute must be a non-empty str or None, got {value!r}")


def _check_names(value: object) -> tuple[str, ...]:
    # One name is accepted on its own; iterating a str would split it into letters.
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, tuple | list | set | frozenset):
        raise TypeError(
            f"{_RULE}.error_types must be class names (str), got {_type_name(value)} {value!r}"
        )
    names: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise TypeError(f"{_RULE}.error_types must contain non-empty str names, got {item!r}")
        names.append(item)
    return tuple(names)


@dataclass(frozen=True, slots=True)
class SeverityRule:
    """Assigns ``severity`` to the failures that meet every condition given.

    Conditions (at least one is required; all given ones must hold):

    * ``attribute`` with ``values`` and/or ``min_value``/``max_value``: the error
      context's attribute ``attribute`` equals one of ``values`` (a bool matches only a
      bool, ``503`` matches ``503.0``) or is a number within ``[min_value, max_value]``
      (either bound may be left open). A missing attribute does not match.
    * ``exception_types``: the context's exception is an instance of one of them (needs
      ``ctx.exception``; contexts built from spans have none).
    * ``error_types``: class names, for contexts without an exception object. A name
      matches ``ctx.error_type`` whole or its last dotted part (``"ConnectError"`` matches
      ``"httpx.ConnectError"``); with an exception object it also matches the name of any
      class the exception inherits from, as ``isinstance`` would.
    * ``predicate(ctx)`` returns true. A predicate that raises does not match (the error
      is logged at a limited rate).

    Attributes:
        severity: the severity assigned on a match.
        attribute: the context attribute the value conditions read.
        values: attribute values that match (str, bool, int or float).
        min_value: inclusive lower bound for a numeric attribute.
        max_value: inclusive upper bound for a numeric attribute.
        exception_types: exception classes that match.
        error_types: class names that match.
        predicate: any test over the :class:`ErrorContext`.
        name: a short label for the classification reason; derived from the
            conditions when empty.

    Example:
        >>> rule = SeverityRule(ErrorSeverity.LOW, attribute="http.response.status_code",
        ...                     values=(429,), name="throttled")
        >>> rule.severity.label, rule.label
        ('low', 'throttled')
    """

    severity: ErrorSeverity
    _: KW_ONLY
    attribute: str | None = None
    values: tuple[AttributeValue, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    exception_types: tuple[type[BaseException], ...] = ()
    error_types: tuple[str, ...] = ()
    predicate: Callable[[ErrorContext], bool] | None = None
    name: str = ""
    _keys: frozenset[tuple[bool, AttributeValue]] = field(
        init=False, repr=False, compare=False, default=frozenset()
    )
    _names: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    _label: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalised values are stored this way
        if not isinstance(self.severity, ErrorSeverity):
            raise TypeError(
                f"{_RULE}.severity must be an ErrorSeverity, "
                f"got {_type_name(self.severity)} {self.severity!r}"
            )
        _check_attribute_name(self.attribute)
        set_(self, "values", _check_values(self.values))
        set_(self, "min_value", _check_bound("min_value", self.min_value))
        set_(self, "max_value", _check_bound("max_value", self.max_value))
        set_(
            self,
            "exception_types",
            check_exception_types(_RULE, "exception_types", self.exception_types),
        )
        set_(self, "error_types", _check_names(self.error_types))
        if self.predicate is not None:
            check_callable(_RULE, "predicate", self.predicate)
        if not isinstance(self.name, str):
            raise TypeError(f"{_RULE}.name must be a str, got {_type_name(self.name)}")
        self._check_combinations()
        set_(self, "_keys", frozenset(_value_key(v) for v in self.values))
        set_(self, "_names", frozenset(self.error_types))
        set_(self, "_label", self.name or self._describe())

    def _check_combinations(self) -> None:
        has_value_test = bool(self.values) or self.has_range
        if self.attribute is None and has_value_test:
            raise ValueError(f"{_RULE}.values, min_value and max_value need an attribute")
        if self.attribute is not None and not has_value_test:
            raise ValueError(
                f"{_RULE}.attribute {self.attribute!r} needs values or min_value/max_value "
                "(use a predicate to test for presence)"
            )
        if (
            self.min_value is not None
            and self.max_value is not None
            and self.min_value > self.max_value
        ):
            raise ValueError(
                f"{_RULE}.min_value ({self.min_value!r}) must be <= max_value ({self.max_value!r})"
            )
        if (
            self.attribute is None
            and not self.exception_types
            and not self.error_types
            and self.predicate is None
        ):
            raise ValueError(
                f"{_RULE} needs at least one condition: attribute, exception_types, "
                "error_types or predicate"
            )

    @property
    def has_range(self) -> bool:
        """Whether a numeric range (``min_value`` or ``max_value``) is set."""
        return self.min_value is not None or self.max_value is not None

    @property
    def label(self) -> str:
        """``name``, or a description of the conditions when no name was given."""
        return self._label

    def _describe(self) -> str:
        parts: list[str] = []
        if self.attribute is not None:
            tests = [", ".join(repr(v) for v in self.values)] if self.values else []
            if self.has_range:
                low = "" if self.min_value is None else f"{self.min_value:g}"
                high = "" if self.max_value is None else f"{self.max_value:g}"
                tests.append(f"{low}..{high}")
            parts.append(f"{self.attribute} in ({' or '.join(tests)})")
        if self.exception_types:
            parts.append(" | ".join(t.__qualname__ for t in self.exception_types))
        if self.error_types:
            parts.append("error.type " + " | ".join(self.error_types))
        if self.predicate is not None:
            parts.append(getattr(self.predicate, "__qualname__", "predicate"))
        return " and ".join(parts)

    def matches(self, ctx: ErrorContext) -> bool:
        """Return whether every condition of this rule holds for ``ctx``; never raises."""
        attribute = self.attribute
        if attribute is not None and not self._attribute_matches(ctx, attribute):
            return False
        if self.exception_types and not isinstance(ctx.exception, self.exception_types):
            return False
        if self._names and not self._name_matches(ctx):
            return False
        if self.predicate is not None:
            try:
                return bool(self.predicate(ctx))
            except Exception:  # noqa: BLE001 - classification must never fail a recovery
                LISTENER_ERRORS.exception(f"severity rule {self._label!r} predicate")
                return False
        return True

    def _attribute_matches(self, ctx: ErrorContext, attribute: str) -> bool:
        value = ctx.attributes.get(attribute)
        if value is None:
            return False
        if _value_key(value) in self._keys:
            return True
        if not self.has_range or isinstance(value, bool | str):
            return False
        return (self.min_value is None or value >= self.min_value) and (
            self.max_value is None or value <= self.max_value
        )

    def _name_matches(self, ctx: ErrorContext) -> bool:
        names = self._names
        error_type = ctx.error_type
        if error_type in names or error_type.rpartition(".")[2] in names:
            return True
        if ctx.exception is None:
            return False
        return any(
            cls.__qualname__ in names or cls.__name__ in names
            for cls in type(ctx.exception).__mro__
        )


HTTP_STATUS_ATTRIBUTES: Final = ("http.response.status_code", "http.status_code")
"""Where HTTP instrumentations put the status code: the stable semantic-convention name
and the name used before it (still emitted by older instrumentations)."""

CONNECTION_EXCEPTION_TYPES: Final[tuple[type[BaseException], ...]] = (
    ConnectionError,
    socket.gaierror,
    socket.herror,
    ssl.SSLError,
    ssl.CertificateError,
)
"""Exception classes of connection, DNS and TLS failures, classified ``HIGH``.

:class:`ConnectionError` covers refused, reset and aborted connections and broken pipes.
:class:`TimeoutError` is deliberately absent: a timeout says the dependency is slow, not
unreachable, and stays ``MEDIUM``.
"""

CONNECTION_ERROR_TYPE_NAMES: Final = (
    # Python's own
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "ConnectionAbortedError",
    "BrokenPipeError",
    "gaierror",
    "herror",
    "SSLError",
    "SSLCertVerificationError",
    "CertificateError",
    # httpx / httpcore: ConnectTimeout means no connection could be made at all (the host
    # is unreachable or drops packets), unlike a read or write timeout.
    "ConnectError",
    "ConnectTimeout",
    # urllib3 and requests (requests' ConnectionError and SSLError match by name)
    "NewConnectionError",
    "NameResolutionError",
    # aiohttp
    "ClientConnectorError",
    "ClientConnectorDNSError",
    "ClientConnectorSSLError",
    "ClientConnectorCertificateError",
)
"""Class names of connection, DNS and TLS failures, classified ``HIGH`` by name.

For contexts built from spans of other instrumentations, which carry ``error.type`` but
no exception object. Read and write timeouts are absent on purpose (they stay ``MEDIUM``);
a connect timeout is a failure to connect.
"""

DEFAULT_RULES: Final[tuple[SeverityRule, ...]] = (
    *(
        SeverityRule(
            ErrorSeverity.LOW,
            attribute=attribute,
            values=(429, 503),
            name="http throttled or unavailable",
        )
        for attribute in HTTP_STATUS_ATTRIBUTES
    ),
    *(
        SeverityRule(
            ErrorSeverity.MEDIUM,
            attribute=attribute,
            min_value=500,
            max_value=599,
            name="http server error",
        )
        for attribute in HTTP_STATUS_ATTRIBUTES
    ),
    SeverityRule(
        ErrorSeverity.HIGH,
        exception_types=CONNECTION_EXCEPTION_TYPES,
        name="connection, dns or tls error",
    ),
    SeverityRule(
        ErrorSeverity.HIGH,
        error_types=CONNECTION_ERROR_TYPE_NAMES,
        name="connection, dns or tls error type",
    ),
)
"""The default rules, in order:

1. HTTP status 429 or 503 (``http.response.status_code``, or the older
   ``http.status_code``): ``LOW``, the server asks to come back later.
2. Any other HTTP status from 500 to 599: ``MEDIUM``.
3. Connection, DNS and TLS errors (:data:`CONNECTION_EXCEPTION_TYPES`, or by name
   :data:`CONNECTION_ERROR_TYPE_NAMES`): ``HIGH``.

Timeouts match none of them and get the default, ``MEDIUM``. Map your own exceptions by
putting your rules first: ``rules=(my_rule, *DEFAULT_RULES)``.
"""


class SeverityClassifier:
    """Decides the severity of a failure; see the module documentation for the order.

    Args:
        rules: the rules, tried in order; the first match wins. Defaults to
            :data:`DEFAULT_RULES`; pass ``(my_rule, *DEFAULT_RULES)`` to extend them.
        default: the severity when nothing else decides (``MEDIUM``).

    Immutable and safe to share between threads.

    Example:
        >>> from otel_resilience.orchestrator._context import ErrorContext
        >>> ctx = ErrorContext.from_exception(
        ...     ConnectionRefusedError("refused"), component="db", operation="query",
        ...     timestamp=1.0)
        >>> SeverityClassifier().classify(ctx)
        (<ErrorSeverity.HIGH: 3>, "rule 'connection, dns or tls error'")
    """

    __slots__ = ("_default", "_rules")

    def __init__(
        self,
        rules: Iterable[SeverityRule] = DEFAULT_RULES,
        *,
        default: ErrorSeverity = DEFAULT_SEVERITY,
    ) -> None:
        if isinstance(rules, SeverityRule | str | bytes) or not isinstance(rules, Iterable):
            raise TypeError(
                f"{_CLASSIFIER}.rules must be an iterable of SeverityRule, "
                f"got {_type_name(rules)} {rules!r}"
            )
        checked = tuple(rules)
        for rule in checked:
            if not isinstance(rule, SeverityRule):
                raise TypeError(
                    f"{_CLASSIFIER}.rules must contain SeverityRule objects, "
                    f"got {_type_name(rule)} {rule!r}"
                )
        if not isinstance(default, ErrorSeverity):
            raise TypeError(
                f"{_CLASSIFIER}.default must be an ErrorSeverity, "
                f"got {_type_name(default)} {default!r}"
            )
        self._rules = checked
        self._default = default

    @property
    def rules(self) -> tuple[SeverityRule, ...]:
        """The rules, in the order they are tried."""
        return self._rules

    @property
    def default(self) -> ErrorSeverity:
        """The severity when no attribute and no rule decides."""
        return self._default

    def classify(self, ctx: ErrorContext) -> tuple[ErrorSeverity, str]:
        """Return the severity of ``ctx`` and a short reason; never raises.

        In order: ``ctx.severity`` when its creator set one; the attribute
        ``resilience.error.severity`` when it parses (an invalid value is ignored and the
        reason says so); the first matching rule; the default.
        """
        if ctx.severity is not None:
            return ctx.severity, "set on the error context"
        note = ""
        raw = ctx.attributes.get(ATTR_ERROR_SEVERITY)
        if raw is not None:
            try:
                severity = ErrorSeverity.parse(raw)
            except ValueError:
                note = f"; ignored invalid {ATTR_ERROR_SEVERITY}={raw!r}"
            else:
                return severity, f"span attribute {ATTR_ERROR_SEVERITY}={raw!r}"
        for rule in self._rules:
            if rule.matches(ctx):
                return rule.severity, f"rule {rule.label!r}{note}"
        return self._default, f"default{note}"

    def __repr__(self) -> str:
        return f"SeverityClassifier(<{len(self._rules)} rules>, default={self._default.label})"
