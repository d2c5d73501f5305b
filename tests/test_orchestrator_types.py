"""ErrorContext, RecoveryAction, ActionOutcome and RecoveryPlan: validation and serialisation."""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import math
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_resilience.orchestrator._context import (
    MAX_CONTEXT_ATTRIBUTES,
    MAX_NAME_BYTES,
    ActionOutcome,
    ErrorContext,
    RecoveryAction,
    RecoveryPlan,
    action_name,
    select_attributes,
)
from otel_resilience.orchestrator._severity import ErrorSeverity
from otel_resilience.telemetry import DEFAULT_MAX_TEXT_BYTES

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
BASE: dict[str, Any] = {
    "component": "payments",
    "operation": "charge",
    "error_type": "ConnectionResetError",
    "timestamp": 1_700_000_000.5,
}


def _ctx(**overrides: Any) -> ErrorContext:
    return ErrorContext(**{**BASE, **overrides})


# -- ErrorContext: construction and validation ----------------------------------------------


def test_defaults() -> None:
    ctx = _ctx()
    assert ctx.message == ""
    assert ctx.severity is None
    assert ctx.attempt == 1
    assert ctx.trace_id is None
    assert ctx.span_id is None
    assert dict(ctx.attributes) == {}
    assert ctx.exception is None


def test_every_field_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        ErrorContext("payments", "charge", "E", timestamp=1.0)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("component", "", ValueError),
        ("component", "   ", ValueError),
        ("component", None, TypeError),
        ("component", 7, TypeError),
        ("operation", "", ValueError),
        ("operation", b"charge", TypeError),
        ("error_type", "", ValueError),
        ("error_type", ValueError, TypeError),
        ("message", None, TypeError),
        ("message", b"bytes", TypeError),
        ("severity", 3, TypeError),
        ("severity", "high", TypeError),
        ("attempt", 0, ValueError),
        ("attempt", -1, ValueError),
        ("attempt", True, TypeError),
        ("attempt", 1.0, TypeError),
        ("attempt", "2", TypeError),
        ("timestamp", math.nan, ValueError),
        ("timestamp", math.inf, ValueError),
        ("timestamp", -1.0, ValueError),
        ("timestamp", True, TypeError),
        ("timestamp", "1700000000", TypeError),
        ("timestamp", None, TypeError),
        ("trace_id", TRACE_ID.upper(), ValueError),
        ("trace_id", TRACE_ID[:-1], ValueError),
        ("trace_id", TRACE_ID + "0", ValueError),
        ("trace_id", "g" * 32, ValueError),
        ("trace_id", f" {TRACE_ID[1:]}", ValueError),
        ("trace_id", "0" * 32, ValueError),
        ("trace_id", int(TRACE_ID, 16), TypeError),
        ("exception", "boom", TypeError),
        ("exception", ValueError, TypeError),
    ],
)
def test_field_validation_names_the_field(
    field: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=rf"^ErrorContext\.{field}\b"):
        _ctx(**{field: value})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (SPAN_ID.upper(), ValueError),
        (SPAN_ID[:-1], ValueError),
        ("z" * 16, ValueError),
        ("0" * 16, ValueError),
        (TRACE_ID, ValueError),
        (12345, TypeError),
    ],
)
def test_span_id_validation(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^ErrorContext\.span_id\b"):
        _ctx(trace_id=TRACE_ID, span_id=value)


def test_a_span_id_needs_a_trace_id() -> None:
    with pytest.raises(ValueError, match=r"ErrorContext\.span_id needs a trace_id"):
        _ctx(span_id=SPAN_ID)
    assert _ctx(trace_id=TRACE_ID).span_id is None
    assert _ctx(trace_id=TRACE_ID, span_id=SPAN_ID).span_id == SPAN_ID


@pytest.mark.parametrize(
    ("attributes", "error", "pattern"),
    [
        ([("a", 1)], TypeError, r"ErrorContext\.attributes must be a mapping"),
        ("a=1", TypeError, r"ErrorContext\.attributes must be a mapping"),
        ({1: "x"}, TypeError, r"ErrorContext\.attributes keys"),
        ({"": "x"}, TypeError, r"ErrorContext\.attributes keys"),
        ({"a": [1, 2]}, TypeError, r"ErrorContext\.attributes\['a'\]"),
        ({"a": ("x",)}, TypeError, r"ErrorContext\.attributes\['a'\]"),
        ({"a": None}, TypeError, r"ErrorContext\.attributes\['a'\]"),
        ({"a": {"b": 1}}, TypeError, r"ErrorContext\.attributes\['a'\]"),
        ({"a": b"x"}, TypeError, r"ErrorContext\.attributes\['a'\]"),
        ({"a": object()}, TypeError, r"ErrorContext\.attributes\['a'\]"),
        ({"a": 1j}, TypeError, r"ErrorContext\.attributes\['a'\]"),
        ({"a": math.nan}, ValueError, r"ErrorContext\.attributes\['a'\] must be finite"),
        ({"a": -math.inf}, ValueError, r"ErrorContext\.attributes\['a'\] must be finite"),
    ],
)
def test_attribute_validation(attributes: object, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        _ctx(attributes=attributes)


def test_attributes_are_bounded() -> None:
    full = {f"k{i}": i for i in range(MAX_CONTEXT_ATTRIBUTES)}
    assert len(_ctx(attributes=full).attributes) == MAX_CONTEXT_ATTRIBUTES
    with pytest.raises(ValueError, match=rf"at most {MAX_CONTEXT_ATTRIBUTES} entries"):
        _ctx(attributes={**full, "one more": 1})


class _Code(enum.IntEnum):
    UNAVAILABLE = 503


class _Name(str, enum.Enum):  # noqa: UP042 - str() gives "_Name.DB": the case under test
    DB = "postgresql"


def test_attribute_values_become_plain_primitives() -> None:
    ctx = _ctx(attributes={"code": _Code.UNAVAILABLE, "db": _Name.DB, "ok": True, "x": 1.5})
    assert dict(ctx.attributes) == {"code": 503, "db": "postgresql", "ok": True, "x": 1.5}
    assert [type(v) for v in ctx.attributes.values()] == [int, str, bool, float]


def test_long_attribute_strings_are_cut() -> None:
    ctx = _ctx(attributes={"sql": "x" * 5000})
    value = ctx.attributes["sql"]
    assert isinstance(value, str)
    assert len(value.encode()) <= DEFAULT_MAX_TEXT_BYTES
    assert value.endswith("...")


def test_attributes_are_a_read_only_copy() -> None:
    source: dict[str, Any] = {"a": 1}
    ctx = _ctx(attributes=source)
    source["a"] = 2
    source["b"] = 3
    assert dict(ctx.attributes) == {"a": 1}
    with pytest.raises(TypeError):
        ctx.attributes["a"] = 5  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.attempt = 2  # type: ignore[misc]
    assert "a" in ctx.attributes
    assert ctx.attributes.get("missing") is None
    assert ctx.attributes == {"a": 1}
    assert ctx.attributes != {"a": 2}
    assert repr(ctx.attributes) == "{'a': 1}"


def test_long_names_are_cut_and_kept_valid() -> None:
    ctx = _ctx(component="c" * 1000, operation="SELECT " + "x" * 1000, error_type="E" * 300)
    for name in (ctx.component, ctx.operation, ctx.error_type):
        assert len(name.encode()) <= MAX_NAME_BYTES
        assert name.endswith("...")
    assert _ctx(component="c" * MAX_NAME_BYTES).component == "c" * MAX_NAME_BYTES


def test_timestamp_is_stored_as_float() -> None:
    ctx = _ctx(timestamp=0)
    assert ctx.timestamp == 0.0
    assert type(ctx.timestamp) is float


def test_equality_and_hash_ignore_the_exception_and_repr_hides_it() -> None:
    one = _ctx(exception=ValueError("secret detail"), attributes={"a": 1})
    two = _ctx(exception=KeyError("other"), attributes={"a": 1})
    assert one == two
    assert hash(one) == hash(two)
    assert "secret detail" not in repr(one)
    assert "exception" not in repr(one)
    assert one != _ctx(attributes={"a": 2})
    assert len({one, two, _ctx()}) == 2


def test_copy_pickle_replace_and_asdict_work() -> None:
    ctx = _ctx(attributes={"a": 1}, severity=ErrorSeverity.HIGH, exception=ValueError("v"))
    assert copy.deepcopy(ctx) == ctx
    assert pickle.loads(pickle.dumps(ctx)) == ctx
    replaced = dataclasses.replace(ctx, severity=ErrorSeverity.LOW)
    assert replaced.severity is ErrorSeverity.LOW
    assert replaced.attributes == ctx.attributes
    assert dataclasses.asdict(ctx)["attributes"] == {"a": 1}


# -- ErrorContext.from_exception -------------------------------------------------------------


class Outer:
    class InnerError(Exception):
        pass


def test_from_exception_fills_type_message_and_keeps_the_exception() -> None:
    error = Outer.InnerError("it broke")
    ctx = ErrorContext.from_exception(
        error,
        component="svc",
        operation="op",
        timestamp=5.0,
        attempt=3,
        severity=ErrorSeverity.CRITICAL,
        attributes={"k": "v"},
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
    )
    assert ctx.error_type == "Outer.InnerError"
    assert ctx.message == "it broke"
    assert ctx.exception is error
    assert (ctx.attempt, ctx.severity, ctx.trace_id, ctx.span_id) == (
        3,
        ErrorSeverity.CRITICAL,
        TRACE_ID,
        SPAN_ID,
    )
    assert dict(ctx.attributes) == {"k": "v"}


def test_from_exception_truncates_the_message_to_one_kib() -> None:
    ctx = ErrorContext.from_exception(
        ValueError("é" * 4000), component="c", operation="o", timestamp=0.0
    )
    assert len(ctx.message.encode()) <= DEFAULT_MAX_TEXT_BYTES
    assert ctx.message.endswith("...")
    assert set(ctx.message[:-3]) == {"é"}


def test_a_direct_message_is_truncated_too() -> None:
    assert len(_ctx(message="m" * 10_000).message.encode()) <= DEFAULT_MAX_TEXT_BYTES


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_an_unprintable_exception_gets_a_placeholder() -> None:
    ctx = ErrorContext.from_exception(Unprintable(), component="c", operation="o", timestamp=0.0)
    assert ctx.message == "<unprintable Unprintable>"
    assert ctx.error_type == "Unprintable"


def test_from_exception_validates() -> None:
    with pytest.raises(TypeError, match="needs an exception"):
        ErrorContext.from_exception("boom", component="c", operation="o", timestamp=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ErrorContext\.attempt"):
        ErrorContext.from_exception(
            ValueError(), component="c", operation="o", timestamp=0.0, attempt=0
        )
    with pytest.raises(ValueError, match=r"ErrorContext\.component"):
        ErrorContext.from_exception(ValueError(), component="", operation="o", timestamp=0.0)


# -- serialisation ---------------------------------------------------------------------------


def test_to_dict_holds_json_types_and_no_exception() -> None:
    ctx = _ctx(
        severity=ErrorSeverity.HIGH,
        attempt=2,
        message="reset",
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        attributes={"http.response.status_code": 503, "retry": True},
        exception=ConnectionResetError("reset"),
    )
    data = ctx.to_dict()
    assert data == {
        "component": "payments",
        "operation": "charge",
        "error_type": "ConnectionResetError",
        "message": "reset",
        "severity": "high",
        "attempt": 2,
        "timestamp": 1_700_000_000.5,
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "attributes": {"http.response.status_code": 503, "retry": True},
    }
    restored = ErrorContext.from_dict(json.loads(json.dumps(data)))
    assert restored == ctx
    assert restored.exception is None


def test_from_dict_accepts_minimal_data_and_severity_spellings() -> None:
    ctx = ErrorContext.from_dict(BASE)
    assert ctx == _ctx()
    assert ErrorContext.from_dict({**BASE, "severity": "FATAL"}).severity is ErrorSeverity.FATAL
    assert ErrorContext.from_dict({**BASE, "severity": 1}).severity is ErrorSeverity.LOW
    assert ErrorContext.from_dict({**BASE, "severity": None}).severity is None
    assert ErrorContext.from_dict({**BASE, "attributes": None}).attributes == {}


@pytest.mark.parametrize("missing", ["component", "operation", "error_type", "timestamp"])
def test_from_dict_names_a_missing_key(missing: str) -> None:
    data = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ValueError, match=rf"missing key '{missing}'"):
        ErrorContext.from_dict(data)


@pytest.mark.parametrize(
    ("key", "value", "error", "pattern"),
    [
        ("colour", "red", ValueError, "unknown key 'colour'"),
        ("exception", None, ValueError, "unknown key 'exception'"),
        ("severity", "urgent", ValueError, r"ErrorContext\.severity: not an error severity"),
        ("severity", True, ValueError, r"ErrorContext\.severity"),
        ("attempt", 0, ValueError, r"ErrorContext\.attempt"),
        ("attempt", "1", TypeError, r"ErrorContext\.attempt"),
        ("timestamp", "now", TypeError, r"ErrorContext\.timestamp"),
        ("trace_id", "xyz", ValueError, r"ErrorContext\.trace_id"),
        ("attributes", [1], TypeError, r"ErrorContext\.attributes"),
        ("attributes", {"a": [1]}, TypeError, r"ErrorContext\.attributes\['a'\]"),
        ("message", 5, TypeError, r"ErrorContext\.message"),
    ],
)
def test_from_dict_names_the_bad_key(
    key: str, value: object, error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        ErrorContext.from_dict({**BASE, key: value})


def test_from_dict_needs_a_mapping() -> None:
    with pytest.raises(TypeError, match=r"ErrorContext\.from_dict needs a mapping"):
        ErrorContext.from_dict([("component", "x")])  # type: ignore[arg-type]


_NAMES = st.text(min_size=1, max_size=300).filter(lambda s: s.strip() != "")
_VALUES = (
    st.text(max_size=1200)
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
)
_HEX32 = st.text("0123456789abcdef", min_size=32, max_size=32).filter(lambda s: set(s) != {"0"})
_HEX16 = st.text("0123456789abcdef", min_size=16, max_size=16).filter(lambda s: set(s) != {"0"})


@st.composite
def contexts(draw: st.DrawFn) -> ErrorContext:
    trace_id = draw(st.none() | _HEX32)
    return ErrorContext(
        component=draw(_NAMES),
        operation=draw(_NAMES),
        error_type=draw(_NAMES),
        message=draw(st.text(max_size=2000)),
        severity=draw(st.none() | st.sampled_from(ErrorSeverity)),
        attempt=draw(st.integers(min_value=1, max_value=10**6)),
        timestamp=draw(st.floats(min_value=0, max_value=4e9) | st.integers(0, 2**40)),
        trace_id=trace_id,
        span_id=None if trace_id is None else draw(st.none() | _HEX16),
        attributes=draw(st.dictionaries(_NAMES, _VALUES, max_size=8)),
        exception=draw(st.none() | st.builds(ValueError, st.text(max_size=20))),
    )


@given(contexts())
def test_to_dict_from_dict_round_trip(ctx: ErrorContext) -> None:
    data = ctx.to_dict()
    assert "exception" not in data
    restored = ErrorContext.from_dict(data)
    assert restored == ctx
    assert restored.to_dict() == data
    through_json = ErrorContext.from_dict(json.loads(json.dumps(data)))
    assert through_json == ctx
    assert len(ctx.message.encode()) <= DEFAULT_MAX_TEXT_BYTES


# -- select_attributes -----------------------------------------------------------------------


def test_select_attributes_keeps_only_what_a_context_can_hold() -> None:
    source: dict[str, object] = {
        "http.response.status_code": 503,
        "tags": ("a", "b"),
        "ratio": math.nan,
        "db.system": "postgresql",
        "ok": False,
        "": "empty key",
    }
    assert select_attributes(source) == {
        "http.response.status_code": 503,
        "db.system": "postgresql",
        "ok": False,
    }
    assert select_attributes(source, keys=["db.system", "missing", "tags"]) == {
        "db.system": "postgresql"
    }
    assert select_attributes(None) == {}
    many = {f"k{i}": i for i in range(MAX_CONTEXT_ATTRIBUTES * 2)}
    kept = select_attributes(many)
    assert list(kept) == [f"k{i}" for i in range(MAX_CONTEXT_ATTRIBUTES)]
    assert _ctx(attributes=kept).attributes == kept


# -- RecoveryAction and ActionOutcome --------------------------------------------------------


def test_recovery_action_values() -> None:
    assert {a.name: a.value for a in RecoveryAction} == {
        "RETRY": "retry",
        "FALLBACK": "fallback",
        "CIRCUIT_BREAK": "circuit_break",
        "FAILOVER": "failover",
        "ALERT": "alert",
        "STOP_RETRIES": "stop_retries",
    }


def test_coerce_turns_builtin_names_into_members_and_keeps_custom_names() -> None:
    assert RecoveryAction.coerce(RecoveryAction.ALERT) is RecoveryAction.ALERT
    assert RecoveryAction.coerce("fallback") is RecoveryAction.FALLBACK
    assert RecoveryAction.coerce("page_oncall") == "page_oncall"
    assert RecoveryAction.coerce("FALLBACK") == "FALLBACK"  # names are exact, like values
    with pytest.raises(ValueError, match="must not be empty"):
        RecoveryAction.coerce("  ")
    with pytest.raises(TypeError, match="RecoveryAction or a str"):
        RecoveryAction.coerce(3)


def test_action_name() -> None:
    assert action_name(RecoveryAction.STOP_RETRIES) == "stop_retries"
    assert action_name("drain_queue") == "drain_queue"


def test_action_outcome() -> None:
    outcome = ActionOutcome(action="circuit_break", ok=True)
    assert outcome.action is RecoveryAction.CIRCUIT_BREAK
    assert outcome.name == "circuit_break"
    assert outcome.detail == ""
    assert outcome.to_dict() == {"action": "circuit_break", "ok": True, "detail": ""}
    long = ActionOutcome(action="notify", ok=False, detail="d" * 5000)
    assert len(long.detail.encode()) <= DEFAULT_MAX_TEXT_BYTES


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"action": 1, "ok": True}, TypeError, "action"),
        ({"action": "", "ok": True}, ValueError, "action"),
        ({"action": "alert", "ok": 1}, TypeError, "ok"),
        ({"action": "alert", "ok": None}, TypeError, "ok"),
        ({"action": "alert", "ok": True, "detail": None}, TypeError, "detail"),
    ],
)
def test_action_outcome_validation(
    kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=rf"^ActionOutcome\.{field}\b"):
        ActionOutcome(**kwargs)


# -- RecoveryPlan ----------------------------------------------------------------------------

R = RecoveryAction
S = ErrorSeverity


def _plan(**overrides: Any) -> RecoveryPlan:
    fields: dict[str, Any] = {
        "context": _ctx(),
        "severity": S.MEDIUM,
        "base_severity": S.MEDIUM,
        "severity_reason": "default",
        "escalated": False,
        "pattern_count": 1,
        "actions": (R.RETRY, R.FALLBACK),
    }
    return RecoveryPlan(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("actions", "stop_retries", "open_breaker"),
    [
        ((R.RETRY,), False, False),
        ((R.RETRY, R.FALLBACK), False, False),
        ((R.FALLBACK,), True, False),
        ((R.CIRCUIT_BREAK, R.FALLBACK), True, True),
        ((R.RETRY, R.CIRCUIT_BREAK), False, True),
        ((R.RETRY, R.STOP_RETRIES), True, False),
        (("retry", "custom"), False, False),
        (("circuit_break",), True, True),
        ((), True, False),
    ],
)
def test_plan_properties(
    actions: tuple[RecoveryAction | str, ...], stop_retries: bool, open_breaker: bool
) -> None:
    plan = _plan(actions=actions)
    assert plan.stop_retries is stop_retries
    assert plan.open_breaker is open_breaker


def test_plan_normalises_actions() -> None:
    plan = _plan(actions=["retry", "page_oncall", R.ALERT])
    assert plan.actions == (R.RETRY, "page_oncall", R.ALERT)
    assert plan.action_names == ("retry", "page_oncall", "alert")
    assert plan.executed == ()


@pytest.mark.parametrize(
    ("overrides", "error", "pattern"),
    [
        ({"context": BASE}, TypeError, r"RecoveryPlan\.context"),
        ({"severity": 2}, TypeError, r"RecoveryPlan\.severity\b"),
        ({"base_severity": "medium"}, TypeError, r"RecoveryPlan\.base_severity"),
        ({"severity_reason": None}, TypeError, r"RecoveryPlan\.severity_reason"),
        ({"escalated": 0}, TypeError, r"RecoveryPlan\.escalated"),
        ({"pattern_count": -1}, ValueError, r"RecoveryPlan\.pattern_count"),
        ({"pattern_count": True}, TypeError, r"RecoveryPlan\.pattern_count"),
        ({"actions": "retry"}, TypeError, r"RecoveryPlan\.actions"),
        ({"actions": (R.RETRY, 5)}, TypeError, r"RecoveryPlan\.actions"),
        ({"actions": (R.RETRY, "")}, ValueError, r"RecoveryPlan\.actions"),
        ({"actions": (R.RETRY, "retry")}, ValueError, r"'retry' appears twice"),
        ({"actions": ("x", "x")}, ValueError, r"'x' appears twice"),
        ({"executed": ActionOutcome(action="alert", ok=True)}, TypeError, r"\.executed"),
        ({"executed": ("alert",)}, TypeError, r"RecoveryPlan\.executed must contain"),
        (
            {"severity": S.LOW, "base_severity": S.MEDIUM, "escalated": True},
            ValueError,
            r"RecoveryPlan\.severity \(low\) must not be below",
        ),
        (
            {"severity": S.HIGH, "base_severity": S.MEDIUM},
            ValueError,
            r"but escalated is False",
        ),
    ],
)
def test_plan_validation(overrides: dict[str, Any], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        _plan(**overrides)


def test_fatal_escalated_stays_fatal() -> None:
    plan = _plan(severity=S.FATAL, base_severity=S.FATAL, escalated=True, pattern_count=9)
    assert plan.escalated
    assert plan.severity is S.FATAL


def test_summary_says_what_why_and_what_was_done() -> None:
    plan = _plan(
        context=_ctx(attempt=2),
        severity=S.HIGH,
        base_severity=S.MEDIUM,
        severity_reason="rule 'http server error'",
        escalated=True,
        pattern_count=6,
        actions=(R.CIRCUIT_BREAK, R.FALLBACK, "page_oncall"),
        executed=(
            ActionOutcome(action=R.CIRCUIT_BREAK, ok=True),
            ActionOutcome(action="page_oncall", ok=False, detail="pager\nunreachable"),
        ),
    )
    assert plan.summary() == (
        "payments/charge: ConnectionResetError on attempt 2 is high "
        "(rule 'http server error'; escalated from medium after 6 occurrences in the window); "
        "actions: circuit_break, fallback, page_oncall; "
        "done: circuit_break ok, page_oncall failed (pager unreachable)"
    )


def test_summary_is_one_line_whatever_the_input() -> None:
    plan = _plan(
        context=_ctx(component="multi\nline", operation="op\r\nx"),
        severity_reason="first\nsecond",
        actions=(),
    )
    summary = plan.summary()
    assert "\n" not in summary
    assert "\r" not in summary
    assert summary == (
        "multi line/op x: ConnectionResetError on attempt 1 is medium (first second); actions: none"
    )
    assert "no reason given" in _plan(severity_reason="").summary()


def test_plan_to_dict_is_json() -> None:
    plan = _plan(executed=(ActionOutcome(action=R.RETRY, ok=True, detail="scheduled"),))
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["context"] == plan.context.to_dict()
    assert data["severity"] == "medium"
    assert data["actions"] == ["retry", "fallback"]
    assert data["executed"] == [{"action": "retry", "ok": True, "detail": "scheduled"}]
    assert data["stop_retries"] is False
    assert data["open_breaker"] is False


def test_plan_is_frozen() -> None:
    plan = _plan()
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.severity = S.FATAL  # type: ignore[misc]
