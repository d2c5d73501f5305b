"""The decision table: defaults, lookups, copies, custom actions and validation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_resilience.orchestrator._context import RecoveryAction, RecoveryActionName
from otel_resilience.orchestrator._severity import ErrorSeverity
from otel_resilience.orchestrator._table import DEFAULT_ACTIONS, DecisionTable

LOW, MEDIUM, HIGH, CRITICAL, FATAL = ErrorSeverity
RETRY = RecoveryAction.RETRY
FALLBACK = RecoveryAction.FALLBACK
BREAK = RecoveryAction.CIRCUIT_BREAK
FAILOVER = RecoveryAction.FAILOVER
ALERT = RecoveryAction.ALERT
STOP = RecoveryAction.STOP_RETRIES


def full(**overrides: Any) -> dict[Any, Any]:
    """The default mapping as a plain dict, with some severities replaced."""
    mapping: dict[Any, Any] = dict(DEFAULT_ACTIONS)
    for name, actions in overrides.items():
        mapping[ErrorSeverity[name.upper()]] = actions
    return mapping


# -- defaults ---------------------------------------------------------------------------


def test_default_table() -> None:
    table = DecisionTable()
    assert table.actions_for(LOW) == (RETRY,)
    assert table.actions_for(MEDIUM) == (RETRY, FALLBACK)
    assert table.actions_for(HIGH) == (BREAK, FALLBACK)
    assert table.actions_for(CRITICAL) == (BREAK, FALLBACK, FAILOVER, ALERT)
    assert table.actions_for(FATAL) == (BREAK, FALLBACK, FAILOVER, ALERT, STOP)
    assert table == DecisionTable.DEFAULT
    assert hash(table) == hash(DecisionTable.DEFAULT)
    assert DecisionTable(None) == table


def test_default_severities_stop_retries_from_high_up() -> None:
    # HIGH and above never retry: the breaker opens at once and retries stop.
    for severity, actions in DecisionTable.DEFAULT.items():
        assert (RETRY in actions) == (severity <= MEDIUM)


def test_to_dict_uses_labels_and_action_names() -> None:
    table = DecisionTable.DEFAULT.with_actions(LOW, [RETRY, "notify_team"])
    assert table.to_dict() == {
        "low": ["retry", "notify_team"],
        "medium": ["retry", "fallback"],
        "high": ["circuit_break", "fallback"],
        "critical": ["circuit_break", "fallback", "failover", "alert"],
        "fatal": ["circuit_break", "fallback", "failover", "alert", "stop_retries"],
    }


def test_items_run_from_low_to_fatal() -> None:
    mapping = {FATAL: [STOP], HIGH: [BREAK], LOW: [RETRY], CRITICAL: [ALERT], MEDIUM: []}
    table = DecisionTable(mapping)
    assert [severity for severity, _ in table.items()] == [LOW, MEDIUM, HIGH, CRITICAL, FATAL]


# -- lookups ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [HIGH, 3, "high", " HIGH "])
def test_actions_for_accepts_members_ints_and_names(key: object) -> None:
    assert DecisionTable.DEFAULT.actions_for(key) == (BREAK, FALLBACK)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [0, 6, "urgent", True, None, 3.0])
def test_actions_for_rejects_unknown_severities(key: object) -> None:
    with pytest.raises(ValueError, match="DecisionTable: invalid severity"):
        DecisionTable.DEFAULT.actions_for(key)  # type: ignore[arg-type]


# -- copies and custom actions ----------------------------------------------------------


def test_with_actions_returns_a_changed_copy() -> None:
    original = DecisionTable()
    changed = original.with_actions(HIGH, [BREAK, "page_on_call", FALLBACK])
    assert changed.actions_for(HIGH) == (BREAK, "page_on_call", FALLBACK)
    assert original.actions_for(HIGH) == (BREAK, FALLBACK)
    assert changed != original
    for severity in (LOW, MEDIUM, CRITICAL, FATAL):
        assert changed.actions_for(severity) == original.actions_for(severity)
    assert changed.with_actions("high", [BREAK, FALLBACK]) == original


def test_custom_actions_are_listed() -> None:
    table = DecisionTable(full(low=["warm_cache"], critical=[BREAK, "page_on_call", "scale_up"]))
    assert table.custom_actions() == frozenset({"warm_cache", "page_on_call", "scale_up"})
    assert DecisionTable.DEFAULT.custom_actions() == frozenset()


def test_built_in_names_become_members() -> None:
    table = DecisionTable(full(medium=["retry", "fallback"]))
    actions = table.actions_for(MEDIUM)
    assert actions == (RETRY, FALLBACK)
    assert all(isinstance(action, RecoveryAction) for action in actions)
    assert table == DecisionTable.DEFAULT
    assert table.custom_actions() == frozenset()


def test_keys_may_be_ints_or_names() -> None:
    mapping = {1: [RETRY], "medium": [RETRY, FALLBACK], 3: [BREAK, FALLBACK]}
    mapping |= {"Critical": [BREAK, FALLBACK, FAILOVER, ALERT]}
    mapping |= {5: [BREAK, FALLBACK, FAILOVER, ALERT, STOP]}
    assert DecisionTable(mapping) == DecisionTable.DEFAULT  # type: ignore[arg-type]


def test_an_empty_entry_means_no_action() -> None:
    table = DecisionTable(full(low=()))
    assert table.actions_for(LOW) == ()


@given(
    choices=st.lists(
        st.lists(st.sampled_from([*RecoveryAction, "custom_a", "custom_b"]), unique=True),
        min_size=5,
        max_size=5,
    )
)
def test_any_valid_table_gives_back_what_it_was_given(
    choices: list[list[RecoveryActionName]],
) -> None:
    for actions in choices:
        if RETRY in actions and STOP in actions:
            actions.remove(STOP)
    table = DecisionTable(dict(zip(ErrorSeverity, choices, strict=True)))
    for severity, actions in zip(ErrorSeverity, choices, strict=True):
        assert table.actions_for(severity) == tuple(actions)
    rebuilt = DecisionTable(table.to_dict())
    assert rebuilt == table
    assert hash(rebuilt) == hash(table)


# -- immutability -----------------------------------------------------------------------


def test_table_is_immutable() -> None:
    table = DecisionTable()
    with pytest.raises(AttributeError, match="immutable"):
        table._actions = {}
    with pytest.raises(AttributeError, match="immutable"):
        del table._actions
    with pytest.raises(TypeError):
        table._actions[LOW] = (FALLBACK,)  # type: ignore[index]
    assert table.actions_for(LOW) == (RETRY,)


def test_changing_the_input_after_construction_changes_nothing() -> None:
    low = [RETRY]
    mapping = full(low=low)
    table = DecisionTable(mapping)
    low.append(FALLBACK)
    mapping[HIGH] = [ALERT]
    assert table.actions_for(LOW) == (RETRY,)
    assert table.actions_for(HIGH) == (BREAK, FALLBACK)


# -- validation -------------------------------------------------------------------------


def test_every_severity_must_be_present() -> None:
    mapping = full()
    del mapping[HIGH]
    del mapping[FATAL]
    with pytest.raises(ValueError, match=r"every severity, missing \['HIGH', 'FATAL'\]"):
        DecisionTable(mapping)
    with pytest.raises(ValueError, match="missing"):
        DecisionTable({})


def test_a_severity_given_twice_is_rejected() -> None:
    mapping = full()
    mapping["high"] = [ALERT]
    with pytest.raises(ValueError, match=r"gives HIGH twice \(as 'high'\)"):
        DecisionTable(mapping)


@pytest.mark.parametrize("key", ["urgent", 0, 6, True, 2.0, None])
def test_unknown_severity_keys_are_rejected(key: object) -> None:
    # Drop the equal member first: True and 2.0 would otherwise just update LOW and MEDIUM.
    mapping = {k: v for k, v in full().items() if k != key}
    mapping[key] = [RETRY]
    with pytest.raises(ValueError, match="invalid severity"):
        DecisionTable(mapping)


@pytest.mark.parametrize("value", [[("a", "b")], [(LOW, RETRY)], "LOW=retry", 42])
def test_mapping_must_be_a_mapping(value: object) -> None:
    with pytest.raises(TypeError, match=r"DecisionTable\.mapping must be a mapping"):
        DecisionTable(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("actions", "error", "message"),
    [
        ("retry", TypeError, r"mapping\[LOW\] must be a sequence of actions"),
        (RETRY, TypeError, r"mapping\[LOW\] must be a sequence of actions"),
        (None, TypeError, r"mapping\[LOW\] must be a sequence of actions"),
        ([RETRY, 1], TypeError, r"mapping\[LOW\]: a recovery action must be"),
        ([RETRY, None], TypeError, r"mapping\[LOW\]: a recovery action must be"),
        ([""], ValueError, r"mapping\[LOW\]: .*must not be empty"),
        (["   "], ValueError, r"mapping\[LOW\]: .*must not be empty"),
        ([RETRY, RETRY], ValueError, r"mapping\[LOW\] must not repeat"),
        ([RETRY, "retry"], ValueError, r"mapping\[LOW\] must not repeat"),
        (["page", "page"], ValueError, r"mapping\[LOW\] must not repeat"),
        ([RETRY, STOP], ValueError, r"mapping\[LOW\] cannot both retry and stop"),
    ],
)
def test_bad_entries_are_rejected(actions: object, error: type, message: str) -> None:
    with pytest.raises(error, match=rf"DecisionTable\.{message}"):
        DecisionTable(full(low=actions))
    with pytest.raises(error, match=rf"DecisionTable\.{message}"):
        DecisionTable.DEFAULT.with_actions(LOW, actions)  # type: ignore[arg-type]
