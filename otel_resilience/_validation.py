"""Validation helpers shared by every configuration dataclass.

Each helper names the offending field in its message and rejects bools where numbers
belong, strings (numeric or not), NaN and infinity. ``TypeError`` for a wrong type,
``ValueError`` for a wrong value, as the standard library does.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "check_callable",
    "check_exception_types",
    "check_int",
    "check_number",
    "check_optional_number",
    "check_ratio",
]


def _type_name(value: object) -> str:
    return type(value).__name__


def check_int(owner: str, field: str, value: object, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an ``int`` (not ``bool``) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.{field} must be an int, got {_type_name(value)} {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}.{field} must be >= {minimum}, got {value}")
    return value


def check_number(
    owner: str,
    field: str,
    value: object,
    *,
    minimum: float = 0.0,
    allow_minimum: bool = False,
    maximum: float | None = None,
) -> float:
    """Return ``value`` as a float if it is a finite real number in range.

    ``minimum`` is exclusive unless ``allow_minimum``; ``maximum`` is inclusive.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{owner}.{field} must be a number, got {_type_name(value)} {value!r}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"{owner}.{field} must be finite, got {value!r}")
    if number < minimum or (number == minimum and not allow_minimum):
        bound = ">=" if allow_minimum else ">"
        raise ValueError(f"{owner}.{field} must be {bound} {minimum:g}, got {value!r}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{owner}.{field} must be <= {maximum:g}, got {value!r}")
    return number


def check_optional_number(
    owner: str,
    field: str,
    value: object,
    *,
    minimum: float = 0.0,
    allow_minimum: bool = False,
    maximum: float | None = None,
) -> float | None:
    """Like :func:`check_number`, but ``None`` passes through (meaning "not set")."""
    if value is None:
        return None
    return check_number(
        owner, field, value, minimum=minimum, allow_minimum=allow_minimum, maximum=maximum
    )


def check_ratio(owner: str, field: str, value: object) -> float | None:
    """Return an optional ratio in ``(0, 1]``."""
    return check_optional_number(owner, field, value, minimum=0.0, maximum=1.0)


def check_exception_types(owner: str, field: str, value: object) -> tuple[type[BaseException], ...]:
    """Return ``value`` as a tuple of exception classes (a single class is accepted)."""
    if isinstance(value, type):
        value = (value,)
    if not isinstance(value, tuple | list | frozenset | set):
        raise TypeError(
            f"{owner}.{field} must be an exception class or a tuple of them, "
            f"got {_type_name(value)} {value!r}"
        )
    for item in value:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"{owner}.{field} must contain exception classes, got {item!r}")
    return tuple(value)


def check_callable(owner: str, field: str, value: object) -> Callable[..., Any]:
    """Return ``value`` if it is callable."""
    if not callable(value):
        raise TypeError(f"{owner}.{field} must be callable, got {_type_name(value)} {value!r}")
    return value


def is_async_callable(value: object) -> bool:
    """Return whether calling ``value`` produces an awaitable coroutine."""
    if inspect.iscoroutinefunction(value):
        return True
    call = getattr(value, "__call__", None)  # noqa: B004 - instances with async __call__
    return call is not None and inspect.iscoroutinefunction(call)
