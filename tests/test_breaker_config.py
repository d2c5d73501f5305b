"""CircuitBreakerConfig: defaults, normalisation, and validation that names the field."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from otel_resilience._clock import RandomSource
from otel_resilience.breaker import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_HALF_OPEN_MAX_CALLS,
    DEFAULT_MINIMUM_CALLS,
    DEFAULT_PROBE_LEASE_SECONDS,
    DEFAULT_RECORD_EXCEPTIONS,
    DEFAULT_SUCCESS_THRESHOLD,
    DEFAULT_TIMEOUT_SECONDS,
    CircuitBreakerConfig,
)
from otel_resilience.breaker._config import MAX_SLIDING_WINDOW_SIZE


class _Backoff:
    def delay(self, retry: int, rng: RandomSource, previous: float) -> float:
        return 1.0


# Fields plus the companions each needs to be valid on its own.
_COMPANIONS: dict[str, dict[str, Any]] = {
    "failure_threshold": {},
    "success_threshold": {},
    "half_open_max_calls": {},
    "minimum_calls": {},
    "sliding_window_size": {"minimum_calls": 1},
    "timeout_seconds": {},
    "sliding_window_seconds": {},
    "slow_call_duration_seconds": {"slow_call_rate_threshold": 0.5, "sliding_window_size": 10},
    "probe_lease_seconds": {},
    "failure_rate_threshold": {"sliding_window_size": 10},
    "slow_call_rate_threshold": {"slow_call_duration_seconds": 1.0, "sliding_window_size": 10},
}

_INT_FIELDS = [
    "failure_threshold",
    "success_threshold",
    "half_open_max_calls",
    "minimum_calls",
    "sliding_window_size",
]
_SECONDS_FIELDS = [
    "timeout_seconds",
    "sliding_window_seconds",
    "slow_call_duration_seconds",
    "probe_lease_seconds",
]
_RATIO_FIELDS = ["failure_rate_threshold", "slow_call_rate_threshold"]


def _build(field: str, value: object) -> CircuitBreakerConfig:
    kwargs: dict[str, Any] = {**_COMPANIONS[field], field: value}
    return CircuitBreakerConfig(**kwargs)


def _expect(error: type[Exception], field: str, value: object) -> None:
    with pytest.raises(error, match=rf"CircuitBreakerConfig\.{field}\b"):
        _build(field, value)


def test_defaults_are_the_named_constants() -> None:
    config = CircuitBreakerConfig()
    assert config.failure_threshold == DEFAULT_FAILURE_THRESHOLD == 5
    assert config.success_threshold == DEFAULT_SUCCESS_THRESHOLD == 3
    assert config.timeout_seconds == DEFAULT_TIMEOUT_SECONDS == 60.0
    assert config.half_open_max_calls == DEFAULT_HALF_OPEN_MAX_CALLS == 5
    assert config.record_exceptions == DEFAULT_RECORD_EXCEPTIONS == (Exception,)
    assert config.ignore_exceptions == ()
    assert config.failure_rate_threshold is None
    assert config.minimum_calls == DEFAULT_MINIMUM_CALLS
    assert config.sliding_window_size is None
    assert config.sliding_window_seconds is None
    assert config.slow_call_duration_seconds is None
    assert config.slow_call_rate_threshold is None
    assert config.record_result is None
    assert config.probe_lease_seconds == DEFAULT_PROBE_LEASE_SECONDS
    assert config.open_backoff is None
    assert not config.has_window
    assert not config.detects_slow_calls


def test_config_is_frozen_and_keyword_only() -> None:
    config = CircuitBreakerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.failure_threshold = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        CircuitBreakerConfig(5)  # type: ignore[call-arg]


def test_every_field_set_at_once_is_accepted() -> None:
    backoff = _Backoff()
    config = CircuitBreakerConfig(
        failure_threshold=2,
        success_threshold=1,
        timeout_seconds=1,
        half_open_max_calls=1,
        record_exceptions=[OSError],  # type: ignore[arg-type]
        ignore_exceptions=KeyError,  # type: ignore[arg-type]
        failure_rate_threshold=1,
        minimum_calls=5,
        sliding_window_size=5,
        slow_call_duration_seconds=2,
        slow_call_rate_threshold=0.25,
        record_result=lambda result: result is None,
        probe_lease_seconds=None,
        open_backoff=backoff,
    )
    # Containers and single classes become tuples; ints given for floats become floats.
    assert config.record_exceptions == (OSError,)
    assert config.ignore_exceptions == (KeyError,)
    assert type(config.timeout_seconds) is float
    assert type(config.failure_rate_threshold) is float
    assert type(config.slow_call_duration_seconds) is float
    assert config.open_backoff is backoff
    assert config.has_window
    assert config.detects_slow_calls


def test_time_window_config() -> None:
    config = CircuitBreakerConfig(sliding_window_seconds=30, failure_rate_threshold=0.5)
    assert config.sliding_window_seconds == 30.0
    assert config.has_window


@pytest.mark.parametrize("field", _INT_FIELDS)
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (True, TypeError),
        (False, TypeError),
        ("5", TypeError),
        (2.0, TypeError),
        (math.nan, TypeError),
        (math.inf, TypeError),
    ],
)
def test_int_fields_reject(field: str, value: object, error: type[Exception]) -> None:
    _expect(error, field, value)


@pytest.mark.parametrize("field", [f for f in _INT_FIELDS if f != "sliding_window_size"])
def test_required_int_fields_reject_none(field: str) -> None:
    _expect(TypeError, field, None)


@pytest.mark.parametrize("field", _SECONDS_FIELDS)
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (0.0, ValueError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        (True, TypeError),
        ("1.5", TypeError),
    ],
)
def test_seconds_fields_reject(field: str, value: object, error: type[Exception]) -> None:
    _expect(error, field, value)


def test_timeout_seconds_rejects_none() -> None:
    _expect(TypeError, "timeout_seconds", None)


@pytest.mark.parametrize("field", _RATIO_FIELDS)
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (0.0, ValueError),
        (-0.5, ValueError),
        (1.01, ValueError),
        (2, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (True, TypeError),
        ("0.5", TypeError),
    ],
)
def test_ratio_fields_reject(field: str, value: object, error: type[Exception]) -> None:
    _expect(error, field, value)


@pytest.mark.parametrize("field", _RATIO_FIELDS)
def test_ratio_of_one_is_accepted(field: str) -> None:
    assert getattr(_build(field, 1), field) == 1.0


def test_sliding_window_size_has_an_upper_bound() -> None:
    _build("sliding_window_size", MAX_SLIDING_WINDOW_SIZE)
    _expect(ValueError, "sliding_window_size", MAX_SLIDING_WINDOW_SIZE + 1)


@pytest.mark.parametrize("field", ["record_exceptions", "ignore_exceptions"])
@pytest.mark.parametrize("value", [5, "ValueError", None, (ValueError, 3), (int,), [str]])
def test_exception_filters_reject_non_exceptions(field: str, value: object) -> None:
    kwargs: dict[str, Any] = {field: value}
    with pytest.raises(TypeError, match=rf"CircuitBreakerConfig\.{field}\b"):
        CircuitBreakerConfig(**kwargs)


@pytest.mark.parametrize("control", [KeyboardInterrupt, SystemExit, GeneratorExit, BaseException])
def test_record_exceptions_rejects_control_flow(control: type[BaseException]) -> None:
    with pytest.raises(TypeError, match=r"CircuitBreakerConfig\.record_exceptions\b.*never"):
        CircuitBreakerConfig(record_exceptions=(ValueError, control))


def test_exception_filters_accept_predicates() -> None:
    def transient(error: BaseException) -> bool:
        return isinstance(error, OSError)

    config = CircuitBreakerConfig(record_exceptions=transient, ignore_exceptions=transient)
    assert config.record_exceptions is transient
    assert config.ignore_exceptions is transient


def test_empty_record_exceptions_is_allowed() -> None:
    assert CircuitBreakerConfig(record_exceptions=()).record_exceptions == ()


@pytest.mark.parametrize("value", [5, "x", True])
def test_record_result_must_be_callable(value: object) -> None:
    with pytest.raises(TypeError, match=r"CircuitBreakerConfig\.record_result\b"):
        CircuitBreakerConfig(record_result=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [5, "exponential", object(), lambda retry: 1.0])
def test_open_backoff_needs_a_delay_method(value: object) -> None:
    with pytest.raises(TypeError, match=r"CircuitBreakerConfig\.open_backoff\b"):
        CircuitBreakerConfig(open_backoff=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"sliding_window_size": 10, "sliding_window_seconds": 10.0},
            r"sliding_window_size and .*sliding_window_seconds are exclusive",
        ),
        ({"failure_rate_threshold": 0.5}, r"failure_rate_threshold needs a sliding window"),
        (
            {"slow_call_rate_threshold": 0.5, "slow_call_duration_seconds": 1.0},
            r"slow_call_rate_threshold needs a sliding window",
        ),
        (
            {"slow_call_rate_threshold": 0.5, "sliding_window_size": 10},
            r"slow_call_duration_seconds and .*slow_call_rate_threshold must be set together",
        ),
        (
            {"slow_call_duration_seconds": 1.0, "sliding_window_size": 10},
            r"slow_call_duration_seconds and .*slow_call_rate_threshold must be set together",
        ),
        (
            {"sliding_window_size": 5, "minimum_calls": 6},
            r"minimum_calls \(6\) must be <= sliding_window_size \(5\)",
        ),
        # The default minimum_calls (10) does not fit a window of 5 either.
        (
            {"sliding_window_size": 5, "failure_rate_threshold": 0.5},
            r"minimum_calls \(10\) must be <= sliding_window_size \(5\)",
        ),
    ],
)
def test_impossible_combinations_raise(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CircuitBreakerConfig(**kwargs)


def test_minimum_calls_is_free_with_a_time_window() -> None:
    config = CircuitBreakerConfig(
        sliding_window_seconds=1.0, minimum_calls=1000, failure_rate_threshold=0.5
    )
    assert config.minimum_calls == 1000


def test_a_window_without_thresholds_is_allowed_for_metrics() -> None:
    assert CircuitBreakerConfig(sliding_window_size=10).has_window


def test_configs_compare_by_value() -> None:
    assert CircuitBreakerConfig(failure_threshold=2) == CircuitBreakerConfig(failure_threshold=2)
    assert CircuitBreakerConfig(failure_threshold=2) != CircuitBreakerConfig(failure_threshold=3)
