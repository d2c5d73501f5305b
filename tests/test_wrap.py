"""wrap("module:qualname") patches in place; unwrap restores the very same object."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import pytest

from otel_resilience import (
    CircuitBreaker,
    CircuitOpenError,
    Pipeline,
    ResilientFunction,
    RetryConfig,
    unwrap,
    wrap,
)
from otel_resilience.backoff import Constant
from otel_resilience.testing import FakeClock

MODULE = "tests.wrap_target"

# Imported by name, as wrap() does: tests/ is not a package for the type checker, so a
# static ``from tests import wrap_target`` would make it see the module twice.
wrap_target: Any = importlib.import_module(MODULE)
Client: Any = wrap_target.Client
SubClient: Any = wrap_target.SubClient


@pytest.fixture(autouse=True)
def _pristine_target() -> Iterator[None]:
    """Restore every attribute of the target module and classes, whatever a test did."""
    saved_module = dict(vars(wrap_target))
    saved_client = dict(vars(Client))
    saved_sub = dict(vars(SubClient))
    wrap_target.calls.clear()
    wrap_target.failures_left = 0
    yield
    for name in list(vars(wrap_target)):
        if name not in saved_module:
            delattr(wrap_target, name)
    for name, value in saved_module.items():
        setattr(wrap_target, name, value)
    for cls, saved in ((Client, saved_client), (SubClient, saved_sub)):
        for name in list(vars(cls)):
            if name not in saved:
                delattr(cls, name)
        for name, value in saved.items():
            if (
                name not in ("__dict__", "__weakref__", "__doc__")
                and vars(cls).get(name) is not value
            ):
                setattr(cls, name, value)
    wrap_target.calls.clear()


def retry(attempts: int = 3) -> RetryConfig:
    return RetryConfig(max_attempts=attempts, backoff=Constant(seconds=1.0))


# -- module functions ------------------------------------------------------------------


def test_wrap_a_module_function_and_unwrap_it(clock: FakeClock) -> None:
    original = wrap_target.fetch
    wrapper = wrap(f"{MODULE}:fetch", retry=retry(), clock=clock)
    assert isinstance(wrapper, ResilientFunction)
    assert wrap_target.fetch is wrapper
    assert wrapper.__wrapped__ is original
    assert wrapper.pipeline.name == f"{MODULE}:fetch"
    assert wrapper.__name__ == "fetch"
    assert inspect.signature(wrapper) == inspect.signature(original)

    wrap_target.failures_left = 2
    assert wrap_target.fetch("k") == "K"
    assert wrap_target.calls == ["fetch"] * 3
    assert clock.sleeps == [1.0, 1.0]

    unwrap(f"{MODULE}:fetch")
    assert wrap_target.fetch is original
    wrap_target.failures_left = 1
    with pytest.raises(ConnectionError):
        wrap_target.fetch("k")


def test_wrap_with_a_pipeline_object(clock: FakeClock) -> None:
    pipeline = Pipeline(name="shared", retry=retry(), clock=clock)
    wrapper = wrap(f"{MODULE}:fetch", pipeline)
    assert wrapper.pipeline is pipeline
    unwrap(f"{MODULE}:fetch")


@pytest.mark.asyncio
async def test_wrap_an_async_function(clock: FakeClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock)
    breaker.force_open()
    original = wrap_target.afetch
    wrap(f"{MODULE}:afetch", circuit_breaker=breaker, clock=clock)
    assert inspect.iscoroutinefunction(wrap_target.afetch)
    with pytest.raises(CircuitOpenError):
        await wrap_target.afetch("k")
    assert wrap_target.calls == []
    unwrap(f"{MODULE}:afetch")
    assert wrap_target.afetch is original
    assert await wrap_target.afetch("k") == "K"
    assert asyncio.iscoroutinefunction(wrap_target.afetch)


def test_wrap_a_generator_function(clock: FakeClock) -> None:
    wrap(f"{MODULE}:stream", clock=clock)
    assert inspect.isgeneratorfunction(wrap_target.stream)
    assert list(wrap_target.stream(3)) == [0, 1, 2]
    unwrap(f"{MODULE}:stream")


def test_callers_that_look_the_function_up_get_the_wrapper(clock: FakeClock) -> None:
    early = wrap_target.fetch  # bound before patching: stays the original
    wrap(f"{MODULE}:fetch", retry=retry(), clock=clock)
    wrap_target.failures_left = 1
    with pytest.raises(ConnectionError):
        early("k")
    wrap_target.failures_left = 1
    assert wrap_target.fetch("k") == "K"
    unwrap(f"{MODULE}:fetch")


# -- class methods ---------------------------------------------------------------------


def test_wrap_a_method(clock: FakeClock) -> None:
    original = vars(Client)["add"]
    wrap(f"{MODULE}:Client.add", retry=retry(), clock=clock)
    client = Client(10)
    assert client.add(1) == 11
    assert Client.add(client, 2) == 12
    assert SubClient(1).add(1) == 2
    assert Client.add.__qualname__ == "Client.add"
    assert str(inspect.signature(client.add)) == "(x: 'int') -> 'int'"
    unwrap(f"{MODULE}:Client.add")
    assert vars(Client)["add"] is original


def test_wrap_a_classmethod_and_a_staticmethod(clock: FakeClock) -> None:
    create, double = vars(Client)["create"], vars(Client)["double"]
    wrap(f"{MODULE}:Client.create", clock=clock)
    wrap(f"{MODULE}:Client.double", clock=clock)
    assert Client.create(3).base == 3
    assert type(SubClient.create(4)) is SubClient
    assert Client.double(4) == 8
    assert Client(0).double(5) == 10
    assert wrap_target.calls == ["create", "create", "double", "double"]
    unwrap(f"{MODULE}:Client.create")
    unwrap(f"{MODULE}:Client.double")
    # The very same descriptor objects are back in the class dictionary.
    assert vars(Client)["create"] is create
    assert vars(Client)["double"] is double


def test_a_wrapped_method_runs_its_pipeline(clock: FakeClock) -> None:
    breaker = CircuitBreaker("dep", clock=clock)
    breaker.force_open()
    wrap(f"{MODULE}:Client.add", circuit_breaker=breaker, clock=clock)
    with pytest.raises(CircuitOpenError):
        Client(1).add(1)
    assert wrap_target.calls == []
    unwrap(f"{MODULE}:Client.add")


def test_unwrap_of_an_inherited_method_leaves_the_subclass_as_it_was(clock: FakeClock) -> None:
    base_add = vars(Client)["add"]
    assert "add" not in vars(SubClient)
    wrap(f"{MODULE}:SubClient.add", clock=clock)
    assert SubClient(1).add(1) == 2
    assert vars(Client)["add"] is base_add  # the base class is untouched
    unwrap(f"{MODULE}:SubClient.add")
    assert "add" not in vars(SubClient)


# -- errors ----------------------------------------------------------------------------


def test_double_wrap_is_refused(clock: FakeClock) -> None:
    first = wrap(f"{MODULE}:fetch", clock=clock)
    with pytest.raises(ValueError, match="already wrapped"):
        wrap(f"{MODULE}:fetch", clock=clock)
    assert wrap_target.fetch is first
    unwrap(f"{MODULE}:fetch")


def test_unwrap_of_an_unwrapped_target_is_refused() -> None:
    original = wrap_target.fetch
    with pytest.raises(ValueError, match="not wrapped"):
        unwrap(f"{MODULE}:fetch")
    assert wrap_target.fetch is original


def test_unwrap_twice_is_refused(clock: FakeClock) -> None:
    wrap(f"{MODULE}:fetch", clock=clock)
    unwrap(f"{MODULE}:fetch")
    with pytest.raises(ValueError, match="not wrapped"):
        unwrap(f"{MODULE}:fetch")


def test_a_function_wrapped_by_someone_else_is_not_unwrapped(clock: FakeClock) -> None:
    original = wrap_target.fetch

    @functools.wraps(original)
    def foreign(key: str) -> str:
        return str(original(key))

    wrap_target.fetch = foreign
    with pytest.raises(ValueError, match="not wrapped"):
        unwrap(f"{MODULE}:fetch")
    assert wrap_target.fetch is foreign


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (MODULE, "must look like 'package.module:Qualified.name'"),
        (f"{MODULE}:", "must look like"),
        (":fetch", "must look like"),
        ("", "must look like"),
        (f"{MODULE}:missing", "cannot find 'missing' in module 'tests.wrap_target'"),
        (f"{MODULE}:Client.missing", "cannot find 'Client.missing'"),
        (f"{MODULE}:missing.deeper", "cannot find 'missing.deeper'"),
    ],
)
def test_bad_paths_give_clear_errors(target: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        wrap(target)
    with pytest.raises(ValueError, match=message):
        unwrap(target)


def test_a_missing_module_is_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        wrap("no_such_module_here:fetch")


def test_bad_strategies_fail_before_anything_is_patched() -> None:
    original = wrap_target.fetch
    with pytest.raises(ValueError, match=r"^Pipeline\.timeout"):
        wrap(f"{MODULE}:fetch", timeout=0)
    assert wrap_target.fetch is original


def test_wrapping_a_non_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="callable"):
        wrap(f"{MODULE}:value")
    assert type(wrap_target.value) is int


def test_a_target_that_is_not_a_string_is_a_type_error() -> None:
    target: Any = 3
    with pytest.raises(TypeError, match="target"):
        wrap(target)
