"""Severity: the scale, rules and their validation, and the classifier's order of decision."""

from __future__ import annotations

import enum
import socket
import ssl
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_resilience.orchestrator._context import ErrorContext
from otel_resilience.orchestrator._severity import (
    CONNECTION_ERROR_TYPE_NAMES,
    DEFAULT_RULES,
    DEFAULT_SEVERITY,
    HTTP_STATUS_ATTRIBUTES,
    ErrorSeverity,
    SeverityClassifier,
    SeverityRule,
)
from otel_resilience.telemetry.names import ATTR_ERROR_SEVERITY

LOW, MEDIUM, HIGH, CRITICAL, FATAL = (
    ErrorSeverity.LOW,
    ErrorSeverity.MEDIUM,
    ErrorSeverity.HIGH,
    ErrorSeverity.CRITICAL,
    ErrorSeverity.FATAL,
)
STATUS = "http.response.status_code"
_ON_STATUS: dict[str, Any] = {"severity": ErrorSeverity.HIGH, "attribute": STATUS}


def _ctx(
    error_type: str = "RuntimeError",
    *,
    attributes: dict[str, Any] | None = None,
    exception: BaseException | None = None,
    severity: ErrorSeverity | None = None,
) -> ErrorContext:
    return ErrorContext(
        component="inventory",
        operation="GET /items",
        error_type=error_type,
        timestamp=1_700_000_000.0,
        attributes=attributes or {},
        exception=exception,
        severity=severity,
    )


def _of(error: BaseException, **attributes: Any) -> ErrorContext:
    return ErrorContext.from_exception(
        error, component="inventory", operation="fetch", timestamp=1.0, attributes=attributes
    )


CLASSIFIER = SeverityClassifier()


# -- the scale ---------------------------------------------------------------------------


def test_levels_are_ordered_with_their_values() -> None:
    assert list(ErrorSeverity) == [LOW, MEDIUM, HIGH, CRITICAL, FATAL]
    assert [int(s) for s in ErrorSeverity] == [1, 2, 3, 4, 5]
    assert LOW < MEDIUM < HIGH < CRITICAL < FATAL
    assert max(MEDIUM, FATAL, LOW) is FATAL


def test_label_is_the_lower_case_name() -> None:
    assert [s.label for s in ErrorSeverity] == ["low", "medium", "high", "critical", "fatal"]


def test_escalate_goes_one_level_up_and_stops_at_fatal() -> None:
    assert [s.escalate() for s in ErrorSeverity] == [MEDIUM, HIGH, CRITICAL, FATAL, FATAL]
    assert all(type(s.escalate()) is ErrorSeverity for s in ErrorSeverity)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (HIGH, HIGH),
        (1, LOW),
        (5, FATAL),
        ("high", HIGH),
        ("HIGH", HIGH),
        ("Critical", CRITICAL),
        ("  fatal\n", FATAL),
    ],
)
def test_parse_accepts_members_ints_and_names(value: object, expected: ErrorSeverity) -> None:
    assert ErrorSeverity.parse(value) is expected


@pytest.mark.parametrize(
    "value", [0, 6, -1, True, False, "3", "", "urgent", "HIGH!", 2.0, None, [3], b"high"]
)
def test_parse_rejects_everything_else_with_a_value_error_naming_it(value: object) -> None:
    with pytest.raises(ValueError, match="not an error severity") as info:
        ErrorSeverity.parse(value)
    assert repr(value) in str(info.value)


# -- rules: validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"severity": 3, "error_types": ("X",)}, TypeError, "severity"),
        ({"severity": "high", "error_types": ("X",)}, TypeError, "severity"),
        ({"severity": HIGH, "attribute": "", "values": (1,)}, TypeError, "attribute"),
        ({"severity": HIGH, "attribute": 7, "values": (1,)}, TypeError, "attribute"),
        ({"severity": HIGH, "attribute": STATUS, "values": "503"}, TypeError, "values"),
        ({"severity": HIGH, "attribute": STATUS, "values": 503}, TypeError, "values"),
        ({"severity": HIGH, "attribute": STATUS, "values": ([503],)}, TypeError, "values"),
        ({"severity": HIGH, "attribute": STATUS, "values": (None,)}, TypeError, "values"),
        ({"severity": HIGH, "attribute": STATUS, "values": (float("nan"),)}, ValueError, "values"),
        ({"severity": HIGH, "attribute": STATUS, "min_value": "500"}, TypeError, "min_value"),
        ({"severity": HIGH, "attribute": STATUS, "min_value": True}, TypeError, "min_value"),
        ({**_ON_STATUS, "max_value": float("nan")}, ValueError, "max_value"),
        ({**_ON_STATUS, "min_value": 600, "max_value": 500}, ValueError, "min_value"),
        ({"severity": HIGH, "exception_types": ("ValueError",)}, TypeError, "exception_types"),
        ({"severity": HIGH, "exception_types": 3}, TypeError, "exception_types"),
        ({"severity": HIGH, "error_types": ("",)}, TypeError, "error_types"),
        ({"severity": HIGH, "error_types": (ValueError,)}, TypeError, "error_types"),
        ({"severity": HIGH, "error_types": 3}, TypeError, "error_types"),
        ({"severity": HIGH, "predicate": "yes"}, TypeError, "predicate"),
        ({"severity": HIGH, "error_types": ("X",), "name": 1}, TypeError, "name"),
    ],
)
def test_rule_validation_names_the_field(
    kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    options = dict(kwargs)
    severity = options.pop("severity")
    with pytest.raises(error, match=rf"^SeverityRule\.{field}\b"):
        SeverityRule(severity, **options)


def test_rule_needs_a_condition() -> None:
    with pytest.raises(ValueError, match="SeverityRule needs at least one condition"):
        SeverityRule(HIGH)
    with pytest.raises(ValueError, match="SeverityRule needs at least one condition"):
        SeverityRule(HIGH, name="named but empty")


def test_attribute_and_value_tests_need_each_other() -> None:
    with pytest.raises(ValueError, match=r"SeverityRule\.attribute 'x' needs values"):
        SeverityRule(HIGH, attribute="x")
    with pytest.raises(ValueError, match=r"SeverityRule\.values, min_value and max_value need"):
        SeverityRule(HIGH, values=(1,))
    with pytest.raises(ValueError, match=r"need an attribute"):
        SeverityRule(HIGH, max_value=5)


def test_rule_normalises_containers_and_single_values() -> None:
    rule = SeverityRule(
        HIGH,
        attribute=STATUS,
        values=[429, 503],  # type: ignore[arg-type]  # accepted at run time, normalised
        exception_types=ValueError,  # type: ignore[arg-type]
        error_types="ConnectError",  # type: ignore[arg-type]
    )
    assert rule.values == (429, 503)
    assert rule.exception_types == (ValueError,)
    assert rule.error_types == ("ConnectError",)


def test_severity_is_positional_and_the_rest_keyword_only() -> None:
    with pytest.raises(TypeError):
        SeverityRule(HIGH, "attr")  # type: ignore[call-arg]
    assert SeverityRule(severity=LOW, error_types=("X",)).severity is LOW


def test_rule_label_is_the_name_or_a_description() -> None:
    assert SeverityRule(HIGH, error_types=("X",), name="mine").label == "mine"
    described = SeverityRule(
        HIGH, attribute=STATUS, values=(429,), min_value=500, exception_types=(OSError,)
    )
    assert described.label == f"{STATUS} in (429 or 500..) and OSError"


# -- rules: matching -------------------------------------------------------------------------


def test_values_match_by_equality_but_bools_only_match_bools() -> None:
    rule = SeverityRule(HIGH, attribute="a", values=(1, "x", 2.5))
    assert rule.matches(_ctx(attributes={"a": 1}))
    assert rule.matches(_ctx(attributes={"a": 1.0}))
    assert rule.matches(_ctx(attributes={"a": "x"}))
    assert rule.matches(_ctx(attributes={"a": 2.5}))
    assert not rule.matches(_ctx(attributes={"a": True}))
    assert not rule.matches(_ctx(attributes={"a": "1"}))
    assert not rule.matches(_ctx(attributes={"b": 1}))
    assert not rule.matches(_ctx())
    flag = SeverityRule(HIGH, attribute="a", values=(True,))
    assert flag.matches(_ctx(attributes={"a": True}))
    assert not flag.matches(_ctx(attributes={"a": 1}))


def test_ranges_are_inclusive_numeric_and_may_be_open() -> None:
    closed = SeverityRule(HIGH, attribute="a", min_value=500, max_value=599)
    assert [closed.matches(_ctx(attributes={"a": v})) for v in (499, 500, 550.5, 599, 600)] == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert not closed.matches(_ctx(attributes={"a": "550"}))
    assert not SeverityRule(HIGH, attribute="a", min_value=0).matches(_ctx(attributes={"a": True}))
    at_least = SeverityRule(HIGH, attribute="a", min_value=10)
    assert at_least.matches(_ctx(attributes={"a": 10**12}))
    assert not at_least.matches(_ctx(attributes={"a": 9}))
    at_most = SeverityRule(HIGH, attribute="a", max_value=-1)
    assert at_most.matches(_ctx(attributes={"a": -5}))
    assert not at_most.matches(_ctx(attributes={"a": 0}))


def test_values_or_range_either_matches() -> None:
    rule = SeverityRule(HIGH, attribute="a", values=(429,), min_value=500, max_value=599)
    assert rule.matches(_ctx(attributes={"a": 429}))
    assert rule.matches(_ctx(attributes={"a": 501}))
    assert not rule.matches(_ctx(attributes={"a": 430}))


def test_exception_types_need_the_exception_object() -> None:
    rule = SeverityRule(HIGH, exception_types=(KeyError,))
    assert rule.matches(_of(KeyError("k")))
    assert not rule.matches(_of(ValueError("v")))
    assert not rule.matches(_ctx("KeyError"))


class ConnectError(Exception):
    """Stands for httpx.ConnectError: not a builtin ConnectionError."""


class PoolConnectError(ConnectError):
    pass


def test_error_types_match_whole_dotted_tail_and_base_class_names() -> None:
    rule = SeverityRule(HIGH, error_types=("ConnectError",))
    assert rule.matches(_ctx("ConnectError"))
    assert rule.matches(_ctx("httpx.ConnectError"))
    assert not rule.matches(_ctx("ConnectErrorX"))
    assert not rule.matches(_ctx("PoolConnectError"))
    assert rule.matches(_of(PoolConnectError("pool")))
    dotted = SeverityRule(HIGH, error_types=("httpx.ConnectError",))
    assert dotted.matches(_ctx("httpx.ConnectError"))
    assert not dotted.matches(_ctx("ConnectError"))


def test_every_given_condition_must_hold() -> None:
    rule = SeverityRule(
        HIGH, attribute="db.system", values=("postgresql",), exception_types=(OSError,)
    )
    assert rule.matches(_of(OSError("x"), **{"db.system": "postgresql"}))
    assert not rule.matches(_of(OSError("x"), **{"db.system": "mysql"}))
    assert not rule.matches(_of(ValueError("x"), **{"db.system": "postgresql"}))


def test_predicate_sees_the_context_and_its_result_decides() -> None:
    seen: list[ErrorContext] = []

    def retried_a_lot(ctx: ErrorContext) -> bool:
        seen.append(ctx)
        return ctx.attempt >= 3

    rule = SeverityRule(CRITICAL, predicate=retried_a_lot)
    ctx = _ctx()
    assert not rule.matches(ctx)
    assert seen == [ctx]
    late = ErrorContext(component="c", operation="o", error_type="E", timestamp=0, attempt=3)
    assert rule.matches(late)


def test_a_predicate_that_raises_does_not_match_and_does_not_raise() -> None:
    def broken(ctx: ErrorContext) -> bool:
        raise RuntimeError("bug in a user rule")

    classifier = SeverityClassifier((SeverityRule(FATAL, predicate=broken), *DEFAULT_RULES))
    assert classifier.classify(_of(ConnectionRefusedError())) == (
        HIGH,
        "rule 'connection, dns or tls error'",
    )


def test_the_predicate_is_only_asked_when_the_other_conditions_hold() -> None:
    calls: list[ErrorContext] = []

    def record(ctx: ErrorContext) -> bool:
        calls.append(ctx)
        return True

    rule = SeverityRule(HIGH, error_types=("Nope",), predicate=record)
    assert not rule.matches(_ctx("RuntimeError"))
    assert calls == []


# -- the classifier ---------------------------------------------------------------------------


@pytest.mark.parametrize("attribute", HTTP_STATUS_ATTRIBUTES)
@pytest.mark.parametrize(
    ("status", "expected", "reason"),
    [
        (429, LOW, "rule 'http throttled or unavailable'"),
        (503, LOW, "rule 'http throttled or unavailable'"),
        (500, MEDIUM, "rule 'http server error'"),
        (502, MEDIUM, "rule 'http server error'"),
        (504, MEDIUM, "rule 'http server error'"),
        (599, MEDIUM, "rule 'http server error'"),
        (404, MEDIUM, "default"),
        (499, MEDIUM, "default"),
        (600, MEDIUM, "default"),
    ],
)
def test_default_http_rules(
    attribute: str, status: int, expected: ErrorSeverity, reason: str
) -> None:
    assert CLASSIFIER.classify(_ctx("HTTPStatusError", attributes={attribute: status})) == (
        expected,
        reason,
    )


@pytest.mark.parametrize(
    "error",
    [
        ConnectionError("down"),
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset by peer"),
        ConnectionAbortedError(),
        BrokenPipeError(),
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        socket.herror(1, "unknown host"),
        ssl.SSLError(1, "handshake failure"),
        ssl.SSLCertVerificationError(1, "certificate verify failed"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_dns_and_tls_exceptions_are_high(error: BaseException) -> None:
    severity, reason = CLASSIFIER.classify(_of(error))
    assert severity is HIGH
    assert reason == "rule 'connection, dns or tls error'"


@pytest.mark.parametrize("name", CONNECTION_ERROR_TYPE_NAMES)
def test_connection_error_names_from_spans_are_high(name: str) -> None:
    assert CLASSIFIER.classify(_ctx(name)) == (HIGH, "rule 'connection, dns or tls error type'")
    assert CLASSIFIER.classify(_ctx(f"somelib.{name}"))[0] is HIGH


def test_a_library_connect_error_is_high_through_its_class_name() -> None:
    assert CLASSIFIER.classify(_of(PoolConnectError("no route")))[0] is HIGH


@pytest.mark.parametrize(
    "context",
    [
        _of(TimeoutError("timed out")),
        _ctx("ReadTimeout"),
        _ctx("httpx.ReadTimeout"),
        _ctx("TimeoutError"),
        _of(ValueError("bad input")),
        _of(KeyError("missing")),
    ],
    ids=lambda c: c.error_type,
)
def test_timeouts_and_other_errors_get_the_default(context: ErrorContext) -> None:
    assert CLASSIFIER.classify(context) == (MEDIUM, "default")


def test_the_default_is_configurable() -> None:
    assert DEFAULT_SEVERITY is MEDIUM
    assert SeverityClassifier(default=LOW).classify(_ctx()) == (LOW, "default")
    assert SeverityClassifier(default=LOW).classify(_of(ConnectionResetError()))[0] is HIGH


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("critical", CRITICAL), ("LOW", LOW), (5, FATAL), ("fatal", FATAL), (3, HIGH)],
)
def test_the_severity_attribute_wins_over_every_rule(raw: object, expected: ErrorSeverity) -> None:
    ctx = _of(ConnectionRefusedError(), **{ATTR_ERROR_SEVERITY: raw, STATUS: 503})
    assert CLASSIFIER.classify(ctx) == (expected, f"span attribute {ATTR_ERROR_SEVERITY}={raw!r}")


@pytest.mark.parametrize("raw", ["urgent", "", "3", True, 0, 9, 2.5, -1])
def test_an_invalid_severity_attribute_is_ignored_and_the_reason_says_so(raw: object) -> None:
    note = f"; ignored invalid {ATTR_ERROR_SEVERITY}={raw!r}"
    from_rule = _ctx(attributes={ATTR_ERROR_SEVERITY: raw, STATUS: 503})
    assert CLASSIFIER.classify(from_rule) == (LOW, f"rule 'http throttled or unavailable'{note}")
    from_default = _ctx(attributes={ATTR_ERROR_SEVERITY: raw})
    assert CLASSIFIER.classify(from_default) == (MEDIUM, f"default{note}")


def test_a_severity_set_on_the_context_wins_over_the_attribute() -> None:
    ctx = _ctx(attributes={ATTR_ERROR_SEVERITY: "low"}, severity=CRITICAL)
    assert CLASSIFIER.classify(ctx) == (CRITICAL, "set on the error context")


class LedgerCorruptError(Exception):
    pass


class RefusedByPolicyError(ConnectionRefusedError):
    pass


def test_a_user_rule_maps_a_custom_exception_to_fatal() -> None:
    mine = SeverityRule(FATAL, exception_types=(LedgerCorruptError,), name="ledger corrupt")
    classifier = SeverityClassifier((mine, *DEFAULT_RULES))
    assert classifier.classify(_of(LedgerCorruptError("checksum"))) == (
        FATAL,
        "rule 'ledger corrupt'",
    )
    assert CLASSIFIER.classify(_of(LedgerCorruptError("checksum"))) == (MEDIUM, "default")
    # The defaults still apply to everything else.
    assert classifier.classify(_of(ConnectionResetError()))[0] is HIGH


def test_rules_are_tried_in_order_and_the_first_match_wins() -> None:
    mine = SeverityRule(LOW, exception_types=(RefusedByPolicyError,), name="policy")
    first = SeverityClassifier((mine, *DEFAULT_RULES))
    last = SeverityClassifier((*DEFAULT_RULES, mine))
    error = RefusedByPolicyError("not allowed")
    assert first.classify(_of(error)) == (LOW, "rule 'policy'")
    assert last.classify(_of(error)) == (HIGH, "rule 'connection, dns or tls error'")
    a = SeverityRule(CRITICAL, attribute="x", values=(1,), name="a")
    b = SeverityRule(LOW, attribute="x", min_value=0, name="b")
    assert SeverityClassifier((a, b)).classify(_ctx(attributes={"x": 1})) == (CRITICAL, "rule 'a'")
    assert SeverityClassifier((b, a)).classify(_ctx(attributes={"x": 1})) == (LOW, "rule 'b'")


def test_no_rules_means_attribute_or_default() -> None:
    bare = SeverityClassifier(())
    assert bare.rules == ()
    assert bare.classify(_of(ConnectionResetError())) == (MEDIUM, "default")
    assert bare.classify(_ctx(attributes={ATTR_ERROR_SEVERITY: "high"}))[0] is HIGH


def test_classifier_accepts_any_iterable_of_rules() -> None:
    rules = [SeverityRule(HIGH, error_types=("X",))]
    classifier = SeverityClassifier(iter(rules))
    assert classifier.rules == tuple(rules)
    assert classifier.default is MEDIUM
    assert SeverityClassifier().rules == DEFAULT_RULES
    assert repr(classifier) == "SeverityClassifier(<1 rules>, default=medium)"


@pytest.mark.parametrize(
    ("rules", "default", "field"),
    [
        (5, MEDIUM, "rules"),
        (SeverityRule(HIGH, error_types=("X",)), MEDIUM, "rules"),
        ("rules", MEDIUM, "rules"),
        ((object(),), MEDIUM, "rules"),
        ((), 2, "default"),
        ((), "medium", "default"),
    ],
)
def test_classifier_validation_names_the_field(rules: Any, default: Any, field: str) -> None:
    with pytest.raises(TypeError, match=rf"^SeverityClassifier\.{field}\b"):
        SeverityClassifier(rules, default=default)


_ATTRIBUTE_VALUES = (
    st.text(max_size=20)
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
)


class _Color(enum.IntEnum):
    RED = 1


@given(
    attributes=st.dictionaries(
        st.sampled_from([ATTR_ERROR_SEVERITY, STATUS, "http.status_code", "other"]),
        _ATTRIBUTE_VALUES,
    ),
    error_type=st.sampled_from(["ValueError", "ConnectError", "x.y.SSLError", "E"]),
)
def test_classification_never_raises_and_always_explains(
    attributes: dict[str, Any], error_type: str
) -> None:
    severity, reason = CLASSIFIER.classify(_ctx(error_type, attributes=attributes))
    assert isinstance(severity, ErrorSeverity)
    assert reason
    if ATTR_ERROR_SEVERITY in attributes:
        try:
            expected = ErrorSeverity.parse(attributes[ATTR_ERROR_SEVERITY])
        except ValueError:
            assert "ignored invalid" in reason
        else:
            assert severity is expected


def test_an_enum_attribute_value_is_kept_as_a_plain_number() -> None:
    ctx = _ctx(attributes={ATTR_ERROR_SEVERITY: _Color.RED})
    assert type(ctx.attributes[ATTR_ERROR_SEVERITY]) is int
    assert CLASSIFIER.classify(ctx)[0] is LOW
