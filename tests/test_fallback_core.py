"""The sans-IO fallback core: what it handles, what it produces, how it is validated."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from otel_resilience._errors import BulkheadFullError, CircuitOpenError, ResilienceTimeoutError
from otel_resilience.fallback import (
    DEFAULT_FALLBACK_NAME,
    DEFAULT_FALLBACK_ON,
    Fallback,
    FallbackContext,
)

CONTEXT = FallbackContext(error=ConnectionError("down"), result=None, attempts=3, pipeline="p")


def test_value_fallback_returns_the_value_itself() -> None:
    cached: list[int] = [1, 2]
    fallback = Fallback(value=cached)
    assert fallback.produce(CONTEXT) is cached
    assert fallback.produce_sync(CONTEXT) is cached
    assert fallback.is_async is False


@pytest.mark.parametrize("value", [None, 0, False, "", ()])
def test_falsy_values_including_none_are_real_values(value: object) -> None:
    assert Fallback(value=value).produce(CONTEXT) is value


def test_sync_handler_receives_the_context() -> None:
    seen: list[FallbackContext] = []

    def handler(context: FallbackContext) -> str:
        seen.append(context)
        return f"after {context.attempts} attempts: {type(context.error).__name__}"

    fallback = Fallback(handler=handler)
    assert fallback.produce(CONTEXT) == "after 3 attempts: ConnectionError"
    assert fallback.produce_sync(CONTEXT) == "after 3 attempts: ConnectionError"
    assert seen == [CONTEXT, CONTEXT]


async def _async_handler(context: FallbackContext) -> str:
    return f"async {context.pipeline}"


class _AsyncCallable:
    async def __call__(self, context: FallbackContext) -> str:
        return "callable"


@pytest.mark.asyncio
async def test_async_handler_produces_a_coroutine_for_the_async_driver() -> None:
    fallback = Fallback(handler=_async_handler)
    assert fallback.is_async is True
    pending = fallback.produce(CONTEXT)
    assert asyncio.iscoroutine(pending)
    assert await pending == "async p"


@pytest.mark.asyncio
async def test_object_with_async_call_is_async() -> None:
    fallback = Fallback(handler=_AsyncCallable())
    assert fallback.is_async is True
    assert await fallback.produce(CONTEXT) == "callable"


def test_sync_driver_cannot_run_an_async_handler() -> None:
    fallback = Fallback(handler=_async_handler, name="cache")
    with pytest.raises(TypeError, match="fallback 'cache' has an async handler"):
        fallback.produce_sync(CONTEXT)


def test_handler_errors_propagate() -> None:
    def handler(context: FallbackContext) -> None:
        raise LookupError("no cache either")

    with pytest.raises(LookupError, match="no cache either"):
        Fallback(handler=handler).produce(CONTEXT)


def test_default_handles_every_exception_including_the_toolkits_own() -> None:
    fallback = Fallback(value=None)
    assert fallback.on == DEFAULT_FALLBACK_ON
    for error in (
        ValueError("x"),
        ConnectionError("x"),
        CircuitOpenError("b", 1.0),
        BulkheadFullError("b", "queue_full"),
        ResilienceTimeoutError(1.0, "total"),
    ):
        assert fallback.handles_error(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncio.CancelledError(),
        KeyboardInterrupt(),
        SystemExit(1),
        GeneratorExit(),
        BaseExceptionGroup("g", [KeyboardInterrupt()]),
    ],
)
def test_control_flow_is_never_handled(error: BaseException) -> None:
    assert not Fallback(value=1).handles_error(error)
    assert not Fallback(value=1, on=lambda e: True).handles_error(error)


def test_exception_classes_filter() -> None:
    fallback = Fallback(value=1, on=(ConnectionError, TimeoutError))
    assert fallback.handles_error(ConnectionResetError())
    assert fallback.handles_error(ResilienceTimeoutError(1.0, "attempt"))
    assert not fallback.handles_error(ValueError())


def test_single_class_and_list_are_normalised_to_a_tuple() -> None:
    assert Fallback(value=1, on=KeyError).on == (KeyError,)
    listed: Any = [KeyError, ValueError]
    assert Fallback(value=1, on=listed).on == (KeyError, ValueError)
    assert Fallback(value=1, on=KeyError).handles_error(KeyError("k"))


def test_predicate_filter() -> None:
    fallback = Fallback(value=1, on=lambda error: "retryable" in str(error))
    assert fallback.handles_error(RuntimeError("retryable glitch"))
    assert not fallback.handles_error(RuntimeError("fatal"))


def test_predicate_errors_propagate() -> None:
    def broken(error: BaseException) -> bool:
        raise AttributeError("bug in predicate")

    with pytest.raises(AttributeError):
        Fallback(value=1, on=broken).handles_error(ValueError())


def test_result_predicate() -> None:
    fallback = Fallback(value="default", on_result=lambda result: result is None)
    assert fallback.handles_result(None)
    assert not fallback.handles_result("value")
    assert not Fallback(value=1).handles_result(None)


def test_result_only_fallback() -> None:
    fallback = Fallback(value=0, on=(), on_result=lambda r: r < 0)
    assert not fallback.handles_error(ValueError())
    assert fallback.handles_result(-1)
    context = FallbackContext(error=None, result=-1, attempts=1, pipeline="p")
    assert fallback.produce(context) == 0


def test_context_is_a_frozen_slotted_dataclass() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CONTEXT.attempts = 4  # type: ignore[misc]
    assert not hasattr(CONTEXT, "__dict__")
    with pytest.raises(TypeError):
        FallbackContext(None, None, 1, "p")  # type: ignore[call-arg]


def test_fallback_is_frozen_and_named() -> None:
    fallback = Fallback(value=1)
    assert fallback.name == DEFAULT_FALLBACK_NAME
    assert Fallback(value=1, name="cache").name == "cache"
    with pytest.raises(dataclasses.FrozenInstanceError):
        fallback.value = 2  # type: ignore[misc]
    assert "<unset>" in repr(Fallback(handler=lambda c: 1))
    assert "_on_types" not in repr(fallback)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, TypeError, r"exactly one of Fallback\.value and Fallback\.handler"),
        (
            {"value": 1, "handler": lambda c: 2},
            TypeError,
            r"exactly one of Fallback\.value and Fallback\.handler",
        ),
        ({"value": None, "handler": lambda c: 2}, TypeError, r"exactly one"),
        ({"handler": "not callable"}, TypeError, r"^Fallback\.handler must be callable"),
        ({"value": 1, "on": "ValueError"}, TypeError, r"^Fallback\.on must be"),
        ({"value": 1, "on": (ValueError, "x")}, TypeError, r"^Fallback\.on must contain"),
        ({"value": 1, "on": 3}, TypeError, r"^Fallback\.on must be"),
        ({"value": 1, "on": KeyboardInterrupt}, TypeError, r"^Fallback\.on must contain Excep"),
        ({"value": 1, "on": BaseException}, TypeError, r"^Fallback\.on must contain Exception"),
        ({"value": 1, "on": ()}, ValueError, r"^Fallback\.on is empty"),
        ({"value": 1, "on_result": True}, TypeError, r"^Fallback\.on_result must be callable"),
        ({"value": 1, "name": ""}, ValueError, r"^Fallback\.name must not be empty"),
        ({"value": 1, "name": 3}, TypeError, r"^Fallback\.name must be a str"),
    ],
)
def test_invalid_configuration_names_the_field(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Fallback(**kwargs)


def test_configuration_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Fallback(1)  # type: ignore[call-arg]
