"""Fault injection for tests: calls that fail on script, at random, or slowly.

Every helper counts its calls and is thread-safe, so it can sit behind a retry, a breaker
or a bulkhead exercised from many threads.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Generic, ParamSpec, TypeAlias, TypeVar, cast, overload

from otel_resilience._clock import RandomSource
from otel_resilience._validation import (
    check_callable,
    check_int,
    check_number,
    is_async_callable,
)
from otel_resilience.testing._fake_clock import FakeClock

__all__ = [
    "AsyncFailingCall",
    "AsyncScriptedCall",
    "ErrorSpec",
    "FailingCall",
    "FaultInjector",
    "ScriptExhaustedError",
    "ScriptedCall",
    "afail_with",
    "aflaky",
    "fail_with",
    "flaky",
    "slow",
]

T = TypeVar("T")
P = ParamSpec("P")

ErrorSpec: TypeAlias = BaseException | Callable[[], BaseException]
"""An exception to raise: an instance (copied for each raise) or a class or factory."""

DEFAULT_FAULT = ConnectionError("injected fault")
"""What the helpers raise when no error is given: a transient-looking network error."""


class ScriptExhaustedError(AssertionError):
    """A scripted call was called more often than its script has items.

    An ``AssertionError``, since it means the test's expectation about the number of
    calls was wrong.
    """


def _error_factory(owner: str, error: object) -> Callable[[], BaseException]:
    """Turn an :data:`ErrorSpec` into a factory of fresh exception instances."""
    if isinstance(error, BaseException):
        template = error

        # A fresh copy per raise keeps tracebacks, ``__context__`` and notes (a retry adds
        # one) from piling up on a single shared instance across calls.
        def make() -> BaseException:
            return copy.copy(template)

        return make
    if isinstance(error, type) and not issubclass(error, BaseException):
        raise TypeError(f"{owner}.error must be an exception class, got {error!r}")
    return check_callable(owner, "error", error)


def _make_error(factory: Callable[[], BaseException], owner: str) -> BaseException:
    error = factory()
    if not isinstance(error, BaseException):
        raise TypeError(f"{owner}.error factory returned {error!r}, not an exception")
    return error


class _Flaky(Generic[T]):
    """Shared state of :class:`FailingCall` and :class:`AsyncFailingCall`."""

    __slots__ = ("_calls", "_factory", "_failures", "_lock", "_result")

    def __init__(self, failures: int, *, error: ErrorSpec, result: T) -> None:
        owner = type(self).__name__
        self._failures = check_int(owner, "failures", failures, minimum=0)
        self._factory = _error_factory(owner, error)
        self._result = result
        self._calls = 0
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        """How many times it was called."""
        return self._calls

    @property
    def failures(self) -> int:
        """How many of the first calls fail."""
        return self._failures

    def _step(self) -> T:
        with self._lock:
            self._calls += 1
            failing = self._calls <= self._failures
        if failing:
            raise _make_error(self._factory, type(self).__name__)
        return self._result

    def __repr__(self) -> str:
        return f"{type(self).__name__}(failures={self._failures}, calls={self._calls})"


class FailingCall(_Flaky[T]):
    """A callable that raises on its first ``failures`` calls, then returns ``result``.

    Arguments passed to it are ignored, so it stands in for any function. Made by
    :func:`flaky`.
    """

    __slots__ = ()

    def __call__(self, *args: object, **kwargs: object) -> T:
        """Count the call; raise the error or return the result."""
        return self._step()


class AsyncFailingCall(_Flaky[T]):
    """The ``async`` twin of :class:`FailingCall`, made by :func:`aflaky`.

    It is an object with an ``async`` ``__call__``: awaiting a call raises or returns.
    ``inspect.iscoroutinefunction`` does not recognise such objects on Python 3.11;
    wrap it in an ``async def`` where a decorator must see a coroutine function.
    """

    __slots__ = ()

    async def __call__(self, *args: object, **kwargs: object) -> T:
        """Count the call; raise the error or return the result."""
        return self._step()


@overload
def flaky(failures: int, *, error: ErrorSpec = ...) -> FailingCall[None]: ...
@overload
def flaky(failures: int, *, error: ErrorSpec = ..., result: T) -> FailingCall[T]: ...
def flaky(
    failures: int, *, error: ErrorSpec = DEFAULT_FAULT, result: object = None
) -> FailingCall[Any]:
    """Return a callable that fails its first ``failures`` calls, then returns ``result``.

    Args:
        failures: how many calls fail, ``>= 0``.
        error: what those calls raise: an exception instance (a copy is raised each
            time), an exception class or a zero-argument factory
            (default :data:`DEFAULT_FAULT`, a ``ConnectionError``).
        result: what the later calls return.

    Example:
        >>> call = flaky(2, result="ok")
        >>> for _ in range(2):
        ...     try:
        ...         call()
        ...     except ConnectionError:
        ...         pass
        >>> call(), call.calls
        ('ok', 3)
    """
    return FailingCall(failures, error=error, result=result)


@overload
def aflaky(failures: int, *, error: ErrorSpec = ...) -> AsyncFailingCall[None]: ...
@overload
def aflaky(failures: int, *, error: ErrorSpec = ..., result: T) -> AsyncFailingCall[T]: ...
def aflaky(
    failures: int, *, error: ErrorSpec = DEFAULT_FAULT, result: object = None
) -> AsyncFailingCall[Any]:
    """Return an async callable that fails its first ``failures`` calls (see :func:`flaky`)."""
    return AsyncFailingCall(failures, error=error, result=result)


class _Script(Generic[T]):
    """Shared state of :class:`ScriptedCall` and :class:`AsyncScriptedCall`."""

    __slots__ = ("_calls", "_lock", "_script")

    def __init__(self, script: Iterable[T | BaseException | type[BaseException]]) -> None:
        self._script = deque(script)
        self._calls = 0
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        """How many times it was called."""
        return self._calls

    @property
    def remaining(self) -> int:
        """How many script items are left."""
        return len(self._script)

    def _step(self) -> T:
        with self._lock:
            self._calls += 1
            if not self._script:
                raise ScriptExhaustedError(
                    f"{type(self).__name__} called {self._calls} times; "
                    f"its script had {self._calls - 1} items"
                )
            item = self._script.popleft()
        if isinstance(item, type) and issubclass(item, BaseException):
            raise item
        if isinstance(item, BaseException):
            # Scripted instances are raised as given (tests may check identity), with the
            # traceback of an earlier raise cleared.
            try:
                raise item.with_traceback(None)
            finally:
                del item  # no reference cycle: the traceback holds this frame
        # Not an exception class either: isinstance cannot narrow that part of the union.
        return cast("T", item)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(calls={self._calls}, remaining={len(self._script)})"


class ScriptedCall(_Script[T]):
    """A callable that plays a script: each call takes the next item.

    An exception instance or class is raised; any other item is returned. A call past
    the end raises :class:`ScriptExhaustedError`. Arguments are ignored. Made by
    :func:`fail_with`.
    """

    __slots__ = ()

    def __call__(self, *args: object, **kwargs: object) -> T:
        """Count the call and play the next script item."""
        return self._step()


class AsyncScriptedCall(_Script[T]):
    """The ``async`` twin of :class:`ScriptedCall`, made by :func:`afail_with`."""

    __slots__ = ()

    async def __call__(self, *args: object, **kwargs: object) -> T:
        """Count the call and play the next script item."""
        return self._step()


def fail_with(script: Iterable[T | BaseException | type[BaseException]]) -> ScriptedCall[T]:
    """Return a callable that raises or returns the items of ``script``, one per call.

    Example:
        >>> call = fail_with([TimeoutError, ConnectionError("reset"), 42])
        >>> outcomes = []
        >>> for _ in range(3):
        ...     try:
        ...         outcomes.append(call())
        ...     except OSError as error:
        ...         outcomes.append(type(error).__name__)
        >>> outcomes
        ['TimeoutError', 'ConnectionError', 42]
    """
    return ScriptedCall(script)


def afail_with(
    script: Iterable[T | BaseException | type[BaseException]],
) -> AsyncScriptedCall[T]:
    """Return an async callable that plays ``script`` (see :func:`fail_with`)."""
    return AsyncScriptedCall(script)


def _default_error() -> BaseException:
    return copy.copy(DEFAULT_FAULT)


class FaultInjector:
    """Fail a given fraction of calls, chosen by an injected random source.

    Each :meth:`check` draws ``rng.random()``; below ``rate`` it raises
    ``error_factory()``. Seed the random source and the same calls fail on every run.

    Args:
        rate: fraction of calls that fail, in ``[0, 1]``.
        error_factory: zero-argument callable returning the exception to raise
            (default: a fresh ``ConnectionError``).
        rng: the random source, e.g. ``random.Random(42)``.

    Example:
        >>> import random
        >>> injector = FaultInjector(0.5, rng=random.Random(1))
        >>> fetch = injector.wrap(lambda key: key.upper())
        >>> results = []
        >>> for key in "abcdef":
        ...     try:
        ...         results.append(fetch(key))
        ...     except ConnectionError:
        ...         results.append(None)
        >>> results.count(None) == injector.failures
        True
    """

    __slots__ = ("_calls", "_error_factory", "_failures", "_lock", "_rate", "_rng")

    def __init__(
        self,
        rate: float,
        *,
        error_factory: Callable[[], BaseException] = _default_error,
        rng: RandomSource,
    ) -> None:
        self._rate = check_number("FaultInjector", "rate", rate, allow_minimum=True, maximum=1.0)
        self._error_factory = check_callable("FaultInjector", "error_factory", error_factory)
        if not callable(getattr(rng, "random", None)):
            raise TypeError(
                f"FaultInjector.rng must have a random() method, got {type(rng).__name__}"
            )
        self._rng = rng
        self._calls = 0
        self._failures = 0
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        """Fraction of calls that fail."""
        return self._rate

    @property
    def calls(self) -> int:
        """How many calls were checked."""
        return self._calls

    @property
    def failures(self) -> int:
        """How many checked calls were failed."""
        return self._failures

    def check(self) -> None:
        """Count a call and raise the injected error for the chosen fraction of calls."""
        with self._lock:
            self._calls += 1
            # The draw happens under the lock so a seeded run is reproducible call by call.
            failing = self._rng.random() < self._rate
            if failing:
                self._failures += 1
        if failing:
            raise _make_error(self._error_factory, "FaultInjector")

    def wrap(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Return ``fn`` with :meth:`check` run before every call."""

        @functools.wraps(fn)
        def faulty(*args: P.args, **kwargs: P.kwargs) -> T:
            self.check()
            return fn(*args, **kwargs)

        return faulty

    def wrap_async(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        """Return the coroutine function ``fn`` with :meth:`check` run before every call."""

        @functools.wraps(fn)
        async def faulty(*args: P.args, **kwargs: P.kwargs) -> T:
            self.check()
            return await fn(*args, **kwargs)

        return faulty

    def __repr__(self) -> str:
        return f"FaultInjector(rate={self._rate!r}, calls={self._calls}, failures={self._failures})"


@overload
def slow(
    clock: FakeClock, seconds: float, fn: Callable[P, Coroutine[Any, Any, T]]
) -> Callable[P, Coroutine[Any, Any, T]]: ...
@overload
def slow(clock: FakeClock, seconds: float, fn: Callable[P, T]) -> Callable[P, T]: ...
def slow(clock: FakeClock, seconds: float, fn: Callable[P, Any]) -> Callable[P, Any]:
    """Return ``fn`` with ``seconds`` of simulated latency before every call.

    Each call advances ``clock`` by ``seconds`` (firing the timers that fall due, such as
    an async timeout's), then calls ``fn``. For a coroutine function the wrapper is a
    coroutine function that, after advancing, yields to the event loop once so timer
    callbacks run there first: an async timeout of less than ``seconds`` cancels the call
    before ``fn`` starts, as it would a really slow call. Nothing waits for real, and
    ``clock.sleeps`` is left alone (it records the code under test's sleeps).

    Args:
        clock: the fake clock the code under test uses.
        seconds: simulated latency per call, ``>= 0``.
        fn: the function to slow down.
    """
    latency = check_number("slow", "seconds", seconds, allow_minimum=True)
    check_callable("slow", "fn", fn)
    if is_async_callable(fn):

        @functools.wraps(fn)
        async def slow_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            clock.advance(latency)
            await asyncio.sleep(0)
            return await fn(*args, **kwargs)

        return slow_async

    @functools.wraps(fn)
    def slow_sync(*args: P.args, **kwargs: P.kwargs) -> Any:
        clock.advance(latency)
        return fn(*args, **kwargs)

    return slow_sync
