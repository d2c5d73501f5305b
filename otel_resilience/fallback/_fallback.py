"""The sans-IO core of the fallback strategy: when to replace an outcome, and with what."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias, final

from otel_resilience._validation import (
    check_callable,
    check_exception_types,
    is_async_callable,
)

__all__ = [
    "DEFAULT_FALLBACK_NAME",
    "DEFAULT_FALLBACK_ON",
    "Fallback",
    "FallbackContext",
]

DEFAULT_FALLBACK_NAME = "fallback"
"""Name of a :class:`Fallback` when none is given (used in errors and telemetry)."""

DEFAULT_FALLBACK_ON: tuple[type[Exception], ...] = (Exception,)
"""Exceptions a :class:`Fallback` handles by default: every ``Exception``."""

ErrorFilter: TypeAlias = (
    type[Exception] | tuple[type[Exception], ...] | Callable[[BaseException], bool]
)
"""What ``Fallback.on`` accepts: exception classes, or a predicate on the exception."""


@final
class _Unset:
    """The "no value given" marker, distinct from every user value including ``None``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final = _Unset()


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackContext:
    """What a fallback handler receives: the outcome being replaced.

    Attributes:
        error: the exception the protected call ended with, or ``None`` when a result
            was rejected by ``on_result``.
        result: the rejected result, or ``None`` when the call raised.
        attempts: how many attempts the call made (1 without a retry).
        pipeline: the name of the pipeline the fallback belongs to.
    """

    error: BaseException | None
    result: Any
    attempts: int
    pipeline: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Fallback:
    """Replace a failed outcome with a fixed value or a handler's answer.

    Give exactly one of ``value`` (returned as is, shared by every call) or ``handler``
    (called with a :class:`FallbackContext` each time it applies). The handler may be a
    plain function or an ``async def`` function; an async handler only works in an async
    pipeline (``acall`` or a decorated ``async def``): a sync pipeline cannot await it and
    raises ``TypeError`` naming this fallback (see :meth:`produce_sync`).

    A fallback applies to an exception when it is an ``Exception`` matching ``on``, and to
    a result when ``on_result(result)`` returns true. Control flow (``CancelledError``,
    ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``) is never handled.

    This object only decides; the pipeline drivers run the protected call and the handler.

    Attributes:
        value: the replacement value (unset unless given).
        handler: callable ``(FallbackContext) -> result`` (sync or async), or ``None``.
        on: an ``Exception`` subclass, a tuple of them, or a predicate
            ``(BaseException) -> bool`` (default :data:`DEFAULT_FALLBACK_ON`: every
            ``Exception``, including the toolkit's own ``CircuitOpenError``,
            ``BulkheadFullError`` and ``ResilienceTimeoutError``). ``()`` handles no
            exception, which only makes sense together with ``on_result``.
        on_result: optional predicate on a returned value; a result for which it returns
            true is replaced.
        name: identifies the fallback in errors and telemetry
            (default :data:`DEFAULT_FALLBACK_NAME`).
        is_async: whether ``handler`` is a coroutine function (computed).

    Example:
        >>> fallback = Fallback(value=[], on=(ConnectionError,))
        >>> fallback.handles_error(ConnectionError("down"))
        True
        >>> fallback.handles_error(KeyError("id"))
        False
        >>> fallback.produce(FallbackContext(error=None, result=None, attempts=1, pipeline="p"))
        []
    """

    value: Any = _UNSET
    handler: Callable[[FallbackContext], Any] | None = None
    on: ErrorFilter = DEFAULT_FALLBACK_ON
    on_result: Callable[[Any], bool] | None = None
    name: str = DEFAULT_FALLBACK_NAME
    is_async: bool = field(init=False, compare=False)
    _on_types: tuple[type[BaseException], ...] | None = field(init=False, repr=False, compare=False)
    _on_predicate: Callable[[BaseException], bool] | None = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        has_value = self.value is not _UNSET
        if has_value == (self.handler is not None):
            raise TypeError("Fallback needs exactly one of Fallback.value and Fallback.handler")
        if self.handler is not None:
            check_callable("Fallback", "handler", self.handler)
        _check_name(self.name)
        on_types, on_predicate = _parse_on(self.on)
        if on_types is not None:
            object.__setattr__(self, "on", on_types)
        if self.on_result is not None:
            check_callable("Fallback", "on_result", self.on_result)
        elif on_types == ():
            raise ValueError(
                "Fallback.on is empty and Fallback.on_result is None: the fallback would "
                "never apply"
            )
        object.__setattr__(self, "_on_types", on_types)
        object.__setattr__(self, "_on_predicate", on_predicate)
        object.__setattr__(
            self, "is_async", self.handler is not None and is_async_callable(self.handler)
        )

    def handles_error(self, error: BaseException) -> bool:
        """Return whether this fallback replaces a call that raised ``error``.

        Always false for control flow: exceptions that are not ``Exception`` subclasses.
        A predicate given as ``on`` is called here; whatever it raises propagates.
        """
        if not isinstance(error, Exception):
            return False
        on_types = self._on_types
        if on_types is not None:
            return isinstance(error, on_types)
        predicate = self._on_predicate
        return predicate is not None and bool(predicate(error))

    def handles_result(self, result: object) -> bool:
        """Return whether this fallback replaces a call that returned ``result``."""
        on_result = self.on_result
        return on_result is not None and bool(on_result(result))

    def produce(self, context: FallbackContext) -> Any:
        """Return the replacement: ``value``, or what the handler returns for ``context``.

        For an async handler this returns the coroutine, which the async driver awaits.
        """
        handler = self.handler
        if handler is None:
            return self.value
        return handler(context)

    def produce_sync(self, context: FallbackContext) -> Any:
        """Like :meth:`produce`, for the sync driver, which cannot await.

        Raises:
            TypeError: the handler is async; the message names this fallback.
        """
        if self.is_async:
            raise TypeError(
                f"fallback {self.name!r} has an async handler, which a sync call cannot "
                "await; call the pipeline from async code (acall or an async def function) "
                "or give the fallback a sync handler"
            )
        return self.produce(context)


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise TypeError(f"Fallback.name must be a str, got {type(name).__name__} {name!r}")
    if not name:
        raise ValueError("Fallback.name must not be empty")


def _parse_on(
    on: object,
) -> tuple[tuple[type[BaseException], ...] | None, Callable[[BaseException], bool] | None]:
    """Split ``Fallback.on`` into exception classes or a predicate, validating either."""
    if isinstance(on, type | tuple | list | frozenset | set):
        types = check_exception_types("Fallback", "on", on)
        for item in types:
            if not issubclass(item, Exception):
                raise TypeError(
                    f"Fallback.on must contain Exception subclasses, got {item.__name__}: "
                    "control flow such as KeyboardInterrupt or CancelledError is never "
                    "handled by a fallback"
                )
        return types, None
    if callable(on):
        return None, on
    raise TypeError(
        "Fallback.on must be an Exception subclass, a tuple of them or a predicate, "
        f"got {type(on).__name__} {on!r}"
    )
