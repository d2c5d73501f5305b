"""The public API is pinned: exactly these names, sorted, importable and documented."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import types
from pathlib import Path

import pytest

import otel_resilience

PUBLIC_NAMES = [
    "Alert",
    "AlertDeliveryError",
    "AlertSink",
    "AlertmanagerAlertSink",
    "AttemptOutcome",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadRejected",
    "CallObserver",
    "CallOutcome",
    "CallRejected",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerMetrics",
    "CircuitBreakerRegistry",
    "CircuitOpenError",
    "CircuitState",
    "CircuitStateChanged",
    "Clock",
    "ErrorContext",
    "ErrorRecoveryOrchestrator",
    "ErrorSeverity",
    "EventBus",
    "EventBusAlertSink",
    "FailoverConfig",
    "Fallback",
    "FallbackContext",
    "FallbackExecuted",
    "LoggingAlertSink",
    "Pipeline",
    "RandomSource",
    "RecoveryAction",
    "RecoveryPlan",
    "RegistryFullError",
    "ResilienceError",
    "ResilienceEvent",
    "ResilienceListener",
    "ResilienceTimeoutError",
    "ResilientFunction",
    "Retry",
    "RetryBudget",
    "RetryConfig",
    "RetryExhausted",
    "RetryScheduled",
    "SharedCircuitBreaker",
    "SystemClock",
    "Timeout",
    "TimeoutExceeded",
    "WebhookAlertSink",
    "backoff",
    "remaining",
    "resilient",
    "unwrap",
    "wrap",
]

CONTRACT = [
    # Names DESIGN.md's public contract requires at the top level of the core package.
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitOpenError",
    "CircuitState",
    "Fallback",
    "Pipeline",
    "Retry",
    "RetryConfig",
    "Timeout",
    "Bulkhead",
    "resilient",
    "backoff",
]


def test_all_is_pinned() -> None:
    assert otel_resilience.__all__ == PUBLIC_NAMES


def test_all_is_sorted_and_unique() -> None:
    names = list(otel_resilience.__all__)
    assert names == sorted(names)
    assert len(set(names)) == len(names)


def test_the_contract_names_are_public() -> None:
    assert set(CONTRACT) <= set(otel_resilience.__all__)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from otel_resilience import *", namespace)  # the point of the test
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(otel_resilience.__all__)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_every_name_resolves(name: str) -> None:
    assert getattr(otel_resilience, name) is not None


def _alias_docstrings(module: types.ModuleType) -> dict[str, str]:
    """Docstrings written right after module-level assignments (``X: TypeAlias = ...``)."""
    source = Path(inspect.getfile(module)).read_text(encoding="utf-8")
    body = ast.parse(source).body
    found: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        target = None
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            target = statement.target.id
        elif isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
            target = statement.targets[0].id
        if (
            target is not None
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            found[target] = following.value.value
    return found


def _own_docstring(name: str, obj: object) -> str | None:
    if isinstance(obj, types.ModuleType):
        return obj.__doc__
    if isinstance(obj, type):
        doc = vars(obj).get("__doc__")
        # A dataclass without a docstring gets its signature as __doc__: that is not one.
        if isinstance(doc, str) and doc.startswith(f"{obj.__name__}("):
            return None
        return doc if isinstance(doc, str) else None
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return obj.__doc__
    # A type alias: its documentation is the string literal after its definition.
    return _alias_docstrings(_defining_module(name)).get(name)


def _defining_module(name: str) -> types.ModuleType:
    source = Path(inspect.getfile(otel_resilience)).read_text(encoding="utf-8")
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.ImportFrom) and any(
            alias.name == name for alias in statement.names
        ):
            assert statement.module is not None
            return importlib.import_module(statement.module)
    raise AssertionError(f"{name} is not imported in otel_resilience/__init__.py")


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_every_name_has_a_docstring(name: str) -> None:
    obj = getattr(otel_resilience, name)
    doc = _own_docstring(name, obj)
    assert doc is not None, f"{name} has no docstring"
    assert doc.strip(), f"{name} has an empty docstring"


def test_the_package_has_a_docstring_and_is_typed() -> None:
    assert otel_resilience.__doc__
    assert (Path(inspect.getfile(otel_resilience)).parent / "py.typed").is_file()
