"""The ``resilient(...)`` decorator and by-path patching, on wrapt.

Every decorated callable is a :class:`wrapt.FunctionWrapper`, so name, docstring,
signature, ``inspect.iscoroutinefunction`` and method binding behave as for the original.
A plain function call skips wrapt's generic dispatch (which looks up ``__self__`` on every
call, an ``AttributeError`` for plain functions): each decoration gets a small subclass
whose ``__call__`` goes straight to the driver. Calls through a class or instance use
wrapt's binding unchanged.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any, TypeVar

import wrapt

from otel_resilience._validation import is_async_callable
from otel_resilience.pipeline._async import run_async
from otel_resilience.pipeline._pipeline import Pipeline
from otel_resilience.pipeline._sync import run_sync

__all__ = ["ResilientFunction", "resilient", "unwrap", "wrap"]

F = TypeVar("F", bound=Callable[..., Any])

_EXHAUSTED = object()


class ResilientFunction(wrapt.FunctionWrapper[..., Any]):
    """The type of every callable made by :func:`resilient` and :func:`wrap`.

    ``pipeline`` is the :class:`Pipeline` it runs; ``__wrapped__`` is the original.
    """

    # wrapt keeps ``_self_``-prefixed attributes on the proxy, not on the wrapped object.
    _self_pipeline: Pipeline
    _self_shadowing: bool

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this callable runs."""
        pipeline: Pipeline = self._self_pipeline
        return pipeline


def _kind(fn: Any) -> str:
    target = fn.__func__ if isinstance(fn, classmethod | staticmethod) else fn
    if inspect.isasyncgenfunction(target):
        return "async_generator"
    if inspect.isgeneratorfunction(target):
        return "generator"
    if is_async_callable(target):  # also objects whose __call__ is async
        return "async"
    return "sync"


def _run_generator(
    pipeline: Pipeline, fn: Callable[..., Generator[Any, Any, Any]], /, *args: Any, **kwargs: Any
) -> Generator[Any, Any, Any]:
    """Protect a generator up to its first item, then forward everything to it.

    The attempt is "create the generator and take its first item": that is what is
    retried and what the breaker records. Once an item has reached the consumer nothing
    can be replayed, so later errors propagate unchanged and uncounted.
    """

    def first_item() -> tuple[Any, Generator[Any, Any, Any] | None]:
        iterator = fn(*args, **kwargs)
        try:
            return next(iterator), iterator
        except StopIteration as stop:
            return stop.value, None

    item, iterator = run_sync(pipeline, first_item)
    if iterator is None:
        return item
    while True:  # ``yield from`` by hand, because the first item was already taken
        try:
            sent = yield item
        except GeneratorExit:
            iterator.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - thrown in by the consumer: forward it
            try:
                item = iterator.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                item = iterator.send(sent)
            except StopIteration as stop:
                return stop.value


async def _run_async_generator(
    pipeline: Pipeline, fn: Callable[..., AsyncGenerator[Any, Any]], /, *args: Any, **kwargs: Any
) -> AsyncGenerator[Any, Any]:
    """The async twin of :func:`_run_generator`."""

    async def first_item() -> tuple[Any, AsyncGenerator[Any, Any] | None]:
        iterator = fn(*args, **kwargs)
        try:
            return await iterator.__anext__(), iterator
        except StopAsyncIteration:
            return None, None

    item, iterator = await run_async(pipeline, first_item)
    if iterator is None:
        return
    while True:
        try:
            sent = yield item
        except GeneratorExit:
            await iterator.aclose()
            raise
        except BaseException as exc:  # noqa: BLE001 - thrown in by the consumer: forward it
            try:
                item = await iterator.athrow(exc)
            except StopAsyncIteration:
                return
        else:
            try:
                item = await iterator.asend(sent)
            except StopAsyncIteration:
                return


_RUNNERS: Mapping[str, Callable[..., Any]] = {
    "sync": run_sync,
    "async": run_async,
    "generator": _run_generator,
    "async_generator": _run_async_generator,
}


def _refused(pipeline: Pipeline, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    """The runner of sync code whose pipeline can only be awaited: a TypeError per call."""
    del fn, args, kwargs
    pipeline.check_sync_use()


def _make(pipeline: Pipeline, fn: Any) -> ResilientFunction:
    kind = _kind(fn)
    run = _RUNNERS[kind]
    if kind in ("sync", "generator") and pipeline.awaits_breaker:
        run = _refused  # known at decoration time: the sync driver never pays for it

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return run(pipeline, wrapped, *args, **kwargs)

    # A subclass per decoration lets a plain call reach the driver in one step: a C-level
    # partial adds no Python frame (and no traceback entry when a rejection propagates).
    direct_call = functools.partial(run, pipeline, fn)
    cls = type("ResilientFunction", (ResilientFunction,), {"__call__": staticmethod(direct_call)})
    if isinstance(fn, classmethod | staticmethod):
        cls = ResilientFunction  # called only through binding, never directly
    proxy: ResilientFunction = cls(fn, wrapper)
    proxy._self_pipeline = pipeline
    return proxy


def _pipeline_from(pipeline: object, strategies: dict[str, Any], fn_name: str | None) -> Pipeline:
    if pipeline is not None:
        if not isinstance(pipeline, Pipeline):
            raise TypeError(
                "resilient() takes a Pipeline or keyword strategies, got "
                f"{type(pipeline).__name__}; write @resilient(...) with parentheses"
            )
        if strategies:
            raise TypeError(
                "resilient() takes a Pipeline or keyword strategies, not both "
                f"(got {sorted(strategies)})"
            )
        return pipeline
    if "name" not in strategies and fn_name is not None:
        strategies["name"] = fn_name
    return Pipeline(**strategies)


def resilient(pipeline: Pipeline | None = None, /, **strategies: Any) -> Callable[[F], F]:
    """Decorate a function or method so every call runs through a pipeline.

    Pass a :class:`Pipeline`, or the keyword arguments of :class:`Pipeline` to build one
    (``name`` then defaults to the function's qualified name). Works on sync and async
    functions, generators and async generators, methods, classmethods and staticmethods;
    the result keeps name, docstring, signature and ``inspect.iscoroutinefunction``.

    Example:
        >>> from otel_resilience import RetryConfig, resilient
        >>> from otel_resilience.testing import FakeClock
        >>> attempts = []
        >>> @resilient(retry=RetryConfig(max_attempts=2), clock=FakeClock())
        ... def fetch(key: str) -> str:
        ...     attempts.append(key)
        ...     if len(attempts) == 1:
        ...         raise ConnectionError("blip")
        ...     return key.upper()
        >>> fetch("a"), len(attempts)
        ('A', 2)
    """
    if pipeline is not None:
        # Fail at decoration-factory time, not at the first decorated function.
        _pipeline_from(pipeline, strategies, None)

    def decorate(fn: F) -> F:
        candidate: object = fn  # typed as callable, but checked: decorators get misused
        if not callable(candidate) and not isinstance(candidate, classmethod | staticmethod):
            raise TypeError(f"resilient() can only decorate callables, got {fn!r}")
        target = fn.__func__ if isinstance(fn, classmethod | staticmethod) else fn
        name = getattr(target, "__qualname__", None)
        chosen = _pipeline_from(pipeline, dict(strategies), name)
        return _make(chosen, fn)  # type: ignore[return-value]

    return decorate


_patch_lock = threading.Lock()


def _resolve(target: object) -> tuple[Any, str, Any]:
    if not isinstance(target, str):
        raise TypeError(
            f"target must be a 'package.module:Qualified.name' str, got {type(target).__name__}"
        )
    module_name, sep, qualname = target.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"target must look like 'package.module:Qualified.name', got {target!r}")
    module = importlib.import_module(module_name)
    try:
        parent, attribute, original = wrapt.resolve_path(module, qualname)
    except AttributeError as exc:
        raise ValueError(f"cannot find {qualname!r} in module {module_name!r}") from exc
    return parent, attribute, original


def _owns(parent: Any, attribute: str) -> bool:
    """Whether ``attribute`` lives on ``parent`` itself (not inherited from a base class)."""
    namespace = getattr(parent, "__dict__", None)
    return namespace is None or attribute in namespace


def wrap(target: str, pipeline: Pipeline | None = None, /, **strategies: Any) -> ResilientFunction:
    """Patch the function at ``"module:qualname"`` in place so calls go through a pipeline.

    Every caller that looks the function up through its module or class afterwards gets
    the protected version; :func:`unwrap` restores the original. Patching a target twice
    raises ``ValueError``. Returns the installed wrapper.

    Example:
        >>> import json
        >>> from otel_resilience import unwrap, wrap
        >>> wrapper = wrap("json:dumps", name="json.dumps")
        >>> json.dumps([1])
        '[1]'
        >>> unwrap("json:dumps")
        >>> json.dumps is wrapper.__wrapped__
        True
    """
    with _patch_lock:
        parent, attribute, original = _resolve(target)
        if isinstance(original, ResilientFunction):
            raise ValueError(f"{target!r} is already wrapped; unwrap it first")  # noqa: TRY004 - a state error, not a type error
        if not callable(original) and not isinstance(original, classmethod | staticmethod):
            raise TypeError(f"{target!r} is not callable ({type(original).__name__})")
        if pipeline is None:
            strategies.setdefault("name", target)
        chosen = _pipeline_from(pipeline, strategies, None)
        wrapper = _make(chosen, original)
        # Remember whether the patch shadows an inherited attribute, so that unwrap
        # deletes it rather than leaving a copy on the subclass.
        wrapper._self_shadowing = not _owns(parent, attribute)
        wrapt.apply_patch(parent, attribute, wrapper)
        return wrapper


def unwrap(target: str) -> None:
    """Undo :func:`wrap` for ``"module:qualname"``; ``ValueError`` if it is not wrapped."""
    with _patch_lock:
        parent, attribute, current = _resolve(target)
        if not isinstance(current, ResilientFunction):
            raise ValueError(f"{target!r} is not wrapped by otel_resilience")  # noqa: TRY004 - a state error
        if getattr(current, "_self_shadowing", False):
            delattr(parent, attribute)
        else:
            setattr(parent, attribute, current.__wrapped__)
