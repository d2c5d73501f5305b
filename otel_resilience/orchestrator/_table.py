"""The decision table: which recovery actions each severity calls for.

The table is data: an immutable mapping from every :class:`ErrorSeverity` to an ordered
tuple of actions. An action is a built-in :class:`RecoveryAction` or the name of a custom
action registered on the orchestrator. Tables are changed by copying
(:meth:`DecisionTable.with_actions`), so a table shared between orchestrators or threads
never changes under them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import ClassVar, Final, NoReturn, TypeAlias

from otel_resilience.orchestrator._context import (
    RecoveryAction,
    RecoveryActionName,
    action_name,
)
from otel_resilience.orchestrator._severity import ErrorSeverity

__all__ = [
    "DEFAULT_ACTIONS",
    "ActionMapping",
    "DecisionTable",
]


ActionMapping: TypeAlias = (
    Mapping[ErrorSeverity, Iterable[RecoveryActionName]]
    | Mapping[int, Iterable[RecoveryActionName]]
    | Mapping[str, Iterable[RecoveryActionName]]
)
"""What :class:`DecisionTable` is built from: actions by severity (member, int or name)."""

_R = RecoveryAction
_S = ErrorSeverity

DEFAULT_ACTIONS: Final[Mapping[ErrorSeverity, tuple[RecoveryActionName, ...]]] = MappingProxyType(
    {
        _S.LOW: (_R.RETRY,),
        _S.MEDIUM: (_R.RETRY, _R.FALLBACK),
        _S.HIGH: (_R.CIRCUIT_BREAK, _R.FALLBACK),
        _S.CRITICAL: (_R.CIRCUIT_BREAK, _R.FALLBACK, _R.FAILOVER, _R.ALERT),
        _S.FATAL: (_R.CIRCUIT_BREAK, _R.FALLBACK, _R.FAILOVER, _R.ALERT, _R.STOP_RETRIES),
    }
)
"""The default actions: LOW retries; MEDIUM retries, then falls back; HIGH opens the
component's breaker and falls back; CRITICAL adds failover and an operator alert; FATAL
also stops retries for the component."""

_OWNER = "DecisionTable"


def _check_action(field: str, action: object) -> RecoveryActionName:
    # coerce() turns "retry" into RecoveryAction.RETRY, so a plan testing for the member
    # finds it however the table spelled it.
    try:
        return RecoveryAction.coerce(action)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{_OWNER}.{field}: {error}") from None


def _check_actions(field: str, actions: object) -> tuple[RecoveryActionName, ...]:
    if isinstance(actions, str | RecoveryAction) or not isinstance(actions, Iterable):
        raise TypeError(
            f"{_OWNER}.{field} must be a sequence of actions, "
            f"got {type(actions).__name__} {actions!r}"
        )
    checked = tuple(_check_action(field, action) for action in actions)
    if len(set(checked)) != len(checked):
        raise ValueError(f"{_OWNER}.{field} must not repeat an action, got {checked!r}")
    if _R.RETRY in checked and _R.STOP_RETRIES in checked:
        raise ValueError(f"{_OWNER}.{field} cannot both retry and stop retries")
    return checked


def _check_severity(value: object) -> ErrorSeverity:
    try:
        return ErrorSeverity.parse(value)
    except ValueError as error:
        raise ValueError(f"{_OWNER}: invalid severity: {error}") from None


class DecisionTable:
    """Which recovery actions each severity calls for; immutable.

    Args:
        mapping: actions by severity, for every severity. Keys are :class:`ErrorSeverity`
            members, ints 1 to 5 or case-insensitive names (``"high"``); values are
            sequences of :class:`RecoveryAction` members or custom action names. A name
            equal to a built-in action's value (``"retry"``) means that built-in action.
            An action may not repeat within a severity, and ``RETRY`` and
            ``STOP_RETRIES`` exclude each other. ``None`` gives :data:`DEFAULT_ACTIONS`.

    Raises:
        TypeError: a value is not a sequence of actions, or an entry is neither a
            :class:`RecoveryAction` nor a string.
        ValueError: a severity is missing or given twice, or an entry is an empty name,
            a repeat, or contradicts another.

    Example:
        >>> table = DecisionTable.DEFAULT.with_actions(
        ...     ErrorSeverity.HIGH, [RecoveryAction.CIRCUIT_BREAK, "page_on_call"]
        ... )
        >>> [action_name(action) for action in table.actions_for(ErrorSeverity.HIGH)]
        ['circuit_break', 'page_on_call']
        >>> table.custom_actions()
        frozenset({'page_on_call'})
    """

    __slots__ = ("_actions", "_hash")

    _actions: Mapping[ErrorSeverity, tuple[RecoveryActionName, ...]]
    _hash: int

    DEFAULT: ClassVar[DecisionTable]
    """The table of :data:`DEFAULT_ACTIONS`."""

    def __init__(self, mapping: ActionMapping | None = None) -> None:
        if mapping is None:
            mapping = DEFAULT_ACTIONS
        elif not isinstance(mapping, Mapping):
            raise TypeError(
                f"{_OWNER}.mapping must be a mapping of severity to actions, "
                f"got {type(mapping).__name__} {mapping!r}"
            )
        actions: dict[ErrorSeverity, tuple[RecoveryActionName, ...]] = {}
        for key, value in mapping.items():
            severity = _check_severity(key)
            if severity in actions:
                raise ValueError(f"{_OWNER}.mapping gives {severity.name} twice (as {key!r})")
            actions[severity] = _check_actions(f"mapping[{severity.name}]", value)
        missing = [severity.name for severity in ErrorSeverity if severity not in actions]
        if missing:
            raise ValueError(f"{_OWNER}.mapping must give every severity, missing {missing}")
        ordered = {severity: actions[severity] for severity in ErrorSeverity}
        object.__setattr__(self, "_actions", MappingProxyType(ordered))
        object.__setattr__(self, "_hash", hash(tuple(ordered.items())))

    def actions_for(self, severity: ErrorSeverity | int | str) -> tuple[RecoveryActionName, ...]:
        """Return the actions for ``severity``, in order.

        ``severity`` may also be an int 1 to 5 or a severity name.
        """
        # An exact type test: a plain dict lookup would also take True and 3.0, which
        # compare equal to LOW and HIGH.
        if type(severity) is ErrorSeverity:
            return self._actions[severity]
        return self._actions[_check_severity(severity)]

    def with_actions(
        self, severity: ErrorSeverity | int | str, actions: Iterable[RecoveryActionName]
    ) -> DecisionTable:
        """Return a copy of this table with ``actions`` for ``severity`` (validated alike)."""
        mapping: dict[ErrorSeverity, Iterable[RecoveryActionName]] = dict(self._actions)
        mapping[_check_severity(severity)] = actions
        return DecisionTable(mapping)

    def custom_actions(self) -> frozenset[str]:
        """Return the names of the custom actions the table uses (to check registrations)."""
        return frozenset(
            action
            for actions in self._actions.values()
            for action in actions
            if not isinstance(action, RecoveryAction)
        )

    def to_dict(self) -> dict[str, list[str]]:
        """Return the table as plain data: severity label to action names."""
        return {
            severity.label: [action_name(action) for action in actions]
            for severity, actions in self._actions.items()
        }

    def items(self) -> Iterator[tuple[ErrorSeverity, tuple[RecoveryActionName, ...]]]:
        """Iterate over ``(severity, actions)`` from LOW to FATAL."""
        return iter(self._actions.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DecisionTable):
            return NotImplemented
        return self._actions == other._actions

    def __hash__(self) -> int:
        return self._hash

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{_OWNER} is immutable; use with_actions() to change a copy")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{_OWNER} is immutable; use with_actions() to change a copy")

    def __repr__(self) -> str:
        body = ", ".join(
            f"{severity.name}: ({', '.join(action_name(a) for a in actions)})"
            for severity, actions in self._actions.items()
        )
        return f"DecisionTable({{{body}}})"


DecisionTable.DEFAULT = DecisionTable()
