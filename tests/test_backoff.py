"""Backoff strategies: formulas, bounds, monotonicity, overflow safety, validation."""

from __future__ import annotations

import dataclasses
import math
import random  # noqa: TID251 - tests seed their own random source
import re
import sys
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_resilience import backoff as bo
from otel_resilience.backoff import (
    Adaptive,
    Backoff,
    Constant,
    DecorrelatedJitter,
    EqualJitter,
    Exponential,
    Fibonacci,
    FullJitter,
    Linear,
    RecordingBackoff,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "backoff.md"

# Delays in a realistic range, plus extremes that would overflow a naive ``m ** n``.
positive = st.floats(min_value=1e-6, max_value=1e4, allow_nan=False, allow_infinity=False)
extreme_positive = st.sampled_from([5e-324, 1e-300, 1e-9, 1.0, 1e9, 1e300])
ratio_up = st.floats(min_value=1.0, max_value=1e6)
multipliers = st.one_of(
    st.floats(min_value=1.0, max_value=16.0),
    st.sampled_from([1.0, 1.0 + 1e-12, 1.5, 2.0, 1e6, 1e300]),
)
retries = st.one_of(
    st.integers(min_value=1, max_value=100),
    st.integers(min_value=1, max_value=10**18),
    st.sampled_from([10**6, 10**18, 10**30, 10**400]),
)
seeds = st.integers(min_value=0, max_value=2**32)
previous_delays = st.one_of(
    st.floats(min_value=0.0, max_value=1e6),
    st.sampled_from([0.0, math.inf, math.nan, -1.0, 1e308]),
)


@st.composite
def initial_and_cap(draw: st.DrawFn, *, allow_zero: bool = False) -> tuple[float, float]:
    base = draw(st.one_of(positive, extreme_positive))
    if allow_zero and draw(st.booleans()):
        base = 0.0
    cap = min(max(base, 1e-6) * draw(ratio_up), 1.7e308)
    if draw(st.booleans()):
        cap = max(cap, base)
    return base, max(cap, base)


@st.composite
def linears(draw: st.DrawFn) -> Linear:
    initial, cap = draw(initial_and_cap(allow_zero=True))
    step = draw(st.one_of(st.just(0.0), positive, extreme_positive))
    return Linear(initial=initial, step=step, max_delay=max(cap, 1e-9))


@st.composite
def exponential_family(draw: st.DrawFn, cls: type[Any]) -> Any:
    initial, cap = draw(initial_and_cap())
    return cls(initial=initial, multiplier=draw(multipliers), max_delay=cap)


@st.composite
def fibonaccis(draw: st.DrawFn) -> Fibonacci:
    initial, cap = draw(initial_and_cap())
    return Fibonacci(initial=initial, max_delay=cap)


@st.composite
def decorrelateds(draw: st.DrawFn) -> DecorrelatedJitter:
    initial, cap = draw(initial_and_cap())
    return DecorrelatedJitter(initial=initial, max_delay=cap)


@st.composite
def adaptives(draw: st.DrawFn) -> Adaptive:
    initial, cap = draw(initial_and_cap())
    floor = initial * draw(st.floats(min_value=0.0, max_value=1.0))
    adaptive = Adaptive(
        initial=initial,
        multiplier=draw(multipliers),
        max_delay=cap,
        min_delay=floor,
        smoothing=draw(st.floats(min_value=0.01, max_value=1.0)),
        jitter=draw(st.floats(min_value=0.0, max_value=1.0)),
    )
    for success in draw(st.lists(st.booleans(), max_size=30)):
        adaptive.record(success)
    return adaptive


@st.composite
def constants(draw: st.DrawFn) -> Constant:
    return Constant(seconds=draw(st.one_of(st.just(0.0), positive, extreme_positive)))


any_backoff = st.one_of(
    constants(),
    linears(),
    exponential_family(Exponential),
    fibonaccis(),
    exponential_family(FullJitter),
    exponential_family(EqualJitter),
    decorrelateds(),
    adaptives(),
)
monotone_backoff = st.one_of(linears(), exponential_family(Exponential), fibonaccis())

ALL_CLASSES: list[type[Any]] = [
    Constant,
    Linear,
    Exponential,
    Fibonacci,
    FullJitter,
    EqualJitter,
    DecorrelatedJitter,
    Adaptive,
]


def _cap(backoff: Any) -> float:
    return float(backoff.max_delay)


# --- properties shared by every strategy -------------------------------------------------


@given(any_backoff, retries, seeds, previous_delays)
def test_delay_is_finite_and_within_cap(
    backoff: Any, retry: int, seed: int, previous: float
) -> None:
    delay = backoff.delay(retry, random.Random(seed), previous)
    assert isinstance(delay, float)
    assert math.isfinite(delay)
    assert 0.0 <= delay <= _cap(backoff)


@given(any_backoff, st.sampled_from([10**6, 10**18]), seeds)
def test_huge_retry_numbers_do_not_overflow(backoff: Any, retry: int, seed: int) -> None:
    rng = random.Random(seed)
    delay = backoff.delay(retry, rng, backoff.delay(retry - 1, rng, 0.0))
    assert math.isfinite(delay)
    assert 0.0 <= delay <= _cap(backoff)


@given(any_backoff, seeds, st.lists(retries, min_size=1, max_size=20))
def test_seeded_random_source_gives_the_same_delays(
    backoff: Any, seed: int, retry_numbers: list[int]
) -> None:
    def run() -> list[float]:
        rng = random.Random(seed)
        previous = 0.0
        out = []
        for retry in retry_numbers:
            previous = backoff.delay(retry, rng, previous)
            out.append(previous)
        return out

    assert run() == run()


@given(monotone_backoff, retries, retries)
def test_unjittered_growth_is_non_decreasing(backoff: Any, first: int, second: int) -> None:
    low, high = sorted((first, second))
    rng = random.Random(0)
    assert backoff.delay(low, rng, 0.0) <= backoff.delay(high, rng, 0.0)


@given(monotone_backoff, st.integers(min_value=1, max_value=300))
def test_unjittered_growth_is_non_decreasing_step_by_step(backoff: Any, retry: int) -> None:
    rng = random.Random(0)
    assert backoff.delay(retry, rng, 0.0) <= backoff.delay(retry + 1, rng, 0.0)


@pytest.mark.parametrize(
    "backoff",
    [
        Linear(initial=0.0, step=1e-2, max_delay=1e3),
        Exponential(initial=5e-324, multiplier=1.01, max_delay=1.7e308),
        Exponential(initial=1e-300, multiplier=1e300, max_delay=1e300),
        Fibonacci(initial=5e-324, max_delay=1.7e308),
        Adaptive(initial=1e-9, multiplier=1.5, max_delay=1e9, smoothing=1.0),
    ],
)
@pytest.mark.parametrize("retry", [10**6, 10**18, 10**400])
def test_growing_strategies_sit_at_their_cap_for_huge_retries(backoff: Any, retry: int) -> None:
    if isinstance(backoff, Adaptive):
        backoff.record(False)
    assert backoff.delay(retry, random.Random(0), 0.0) == backoff.max_delay


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize("retry", [0, -1, -(10**18)])
def test_retry_numbers_start_at_one(cls: type[Any], retry: int) -> None:
    with pytest.raises(ValueError, match=rf"^{cls.__name__}\.delay retry must be >= 1"):
        cls().delay(retry, random.Random(0), 0.0)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_every_strategy_is_a_backoff_and_frozen(cls: type[Any]) -> None:
    backoff = cls()
    assert isinstance(backoff, Backoff)
    assert isinstance(backoff, RecordingBackoff) == (cls is Adaptive)
    assert cls.__doc__
    assert "Formula" in cls.__doc__ or "formula" in cls.__doc__
    field = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(backoff, field, 1.0)
    assert not hasattr(backoff, "__dict__")


def test_defaults_are_named_constants() -> None:
    assert Constant().seconds == bo.DEFAULT_CONSTANT_DELAY
    assert Linear() == Linear(
        initial=bo.DEFAULT_INITIAL_DELAY,
        step=bo.DEFAULT_LINEAR_STEP,
        max_delay=bo.DEFAULT_MAX_DELAY,
    )
    assert Exponential().multiplier == bo.DEFAULT_MULTIPLIER
    adaptive = Adaptive()
    assert adaptive.min_delay == bo.DEFAULT_ADAPTIVE_MIN_DELAY
    assert adaptive.smoothing == bo.DEFAULT_ADAPTIVE_SMOOTHING
    assert adaptive.jitter == bo.DEFAULT_ADAPTIVE_JITTER


# --- formulas ------------------------------------------------------------------------------


def _delays(backoff: Backoff, count: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    previous = 0.0
    out = []
    for retry in range(1, count + 1):
        previous = backoff.delay(retry, rng, previous)
        out.append(previous)
    return out


def test_constant_formula() -> None:
    assert _delays(Constant(seconds=0.25), 4) == [0.25] * 4
    assert _delays(Constant(seconds=0), 3) == [0.0] * 3
    assert Constant(seconds=2).delay(10**18, random.Random(0), 0.0) == 2.0


def test_linear_formula() -> None:
    assert _delays(Linear(initial=1.0, step=0.5, max_delay=2.2), 5) == [1.0, 1.5, 2.0, 2.2, 2.2]
    assert _delays(Linear(initial=0.0, step=1.0, max_delay=100.0), 3) == [0.0, 1.0, 2.0]
    assert Linear(initial=0.3, step=0.0, max_delay=1.0).delay(10**30, random.Random(0), 0) == 0.3


def test_exponential_formula() -> None:
    backoff = Exponential(initial=0.5, multiplier=3.0, max_delay=10.0)
    assert _delays(backoff, 5) == [0.5, 1.5, 4.5, 10.0, 10.0]
    assert _delays(Exponential(initial=0.2, multiplier=1.0, max_delay=1.0), 3) == [0.2] * 3
    assert Exponential(initial=1.0, max_delay=1.0).delay(1, random.Random(0), 0.0) == 1.0


def test_exponential_matches_the_naive_formula_where_it_is_safe() -> None:
    backoff = Exponential(initial=0.01, multiplier=1.7, max_delay=1e6)
    for retry in range(1, 200):
        assert backoff.delay(retry, random.Random(0), 0.0) == pytest.approx(
            min(1e6, 0.01 * 1.7 ** (retry - 1))
        )


class _TopRandom:
    """A random source that always draws the top of the range: jitter at its ceiling."""

    def random(self) -> float:
        return 1.0 - 2.0**-53

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize("cls", [Exponential, FullJitter, EqualJitter])
def test_power_overflow_below_the_cap_is_computed_in_log_space(cls: type[Any]) -> None:
    # 1e6 ** 52 overflows a float, yet 5e-324 * 1e6 ** 52 (about 5e-12) is below the cap.
    backoff = cls(initial=5e-324, multiplier=1e6, max_delay=1e-6)
    assert backoff.delay(53, _TopRandom(), 0.0) == pytest.approx(4.94e-12, rel=0.01)
    assert backoff.delay(54, _TopRandom(), 0.0) == 1e-6


def test_fibonacci_formula() -> None:
    backoff = Fibonacci(initial=0.5, max_delay=4.0)
    assert _delays(backoff, 8) == [0.5, 0.5, 1.0, 1.5, 2.5, 4.0, 4.0, 4.0]


@given(fibonaccis(), st.integers(min_value=1, max_value=3000))
def test_fibonacci_matches_the_naive_sequence(backoff: Fibonacci, retry: int) -> None:
    previous, current = 0, 1  # exact integers: F(1) = 1
    for _ in range(retry - 1):
        previous, current = current, previous + current
    # Exact rational arithmetic: a subnormal ``initial`` times a huge F(n) can still be tiny.
    try:
        scaled = float(Fraction(backoff.initial) * current)
    except OverflowError:
        scaled = math.inf
    expected = min(backoff.max_delay, scaled)
    assert backoff.delay(retry, random.Random(0), 0.0) == pytest.approx(expected)


def test_fibonacci_at_extreme_ratios_is_a_bounded_table() -> None:
    backoff = Fibonacci(initial=5e-324, max_delay=1.7e308)
    # The sequence is precomputed up to the cap only: a few thousand terms at most.
    assert len(backoff._table) < 4000
    assert backoff.delay(10**18, random.Random(0), 0.0) == 1.7e308
    assert backoff.delay(2, random.Random(0), 0.0) == 5e-324


@given(exponential_family(FullJitter), st.integers(min_value=1, max_value=2000), seeds)
def test_full_jitter_formula(backoff: FullJitter, retry: int, seed: int) -> None:
    ceiling = Exponential(
        initial=backoff.initial, multiplier=backoff.multiplier, max_delay=backoff.max_delay
    ).delay(retry, random.Random(0), 0.0)
    expected = random.Random(seed).uniform(0.0, ceiling)
    assert backoff.delay(retry, random.Random(seed), 0.0) == pytest.approx(expected)
    assert backoff.delay(retry, random.Random(seed), 0.0) <= ceiling


@given(exponential_family(EqualJitter), st.integers(min_value=1, max_value=2000), seeds)
def test_equal_jitter_keeps_half_fixed(backoff: EqualJitter, retry: int, seed: int) -> None:
    ceiling = Exponential(
        initial=backoff.initial, multiplier=backoff.multiplier, max_delay=backoff.max_delay
    ).delay(retry, random.Random(0), 0.0)
    delay = backoff.delay(retry, random.Random(seed), 0.0)
    assert ceiling / 2 <= delay <= ceiling
    assert delay == pytest.approx(ceiling / 2 + random.Random(seed).uniform(0, ceiling / 2))


@given(decorrelateds(), seeds, st.floats(min_value=0.0, max_value=1e6))
def test_decorrelated_jitter_formula(
    backoff: DecorrelatedJitter, seed: int, previous: float
) -> None:
    base = min(max(previous, backoff.initial), backoff.max_delay)
    expected = min(backoff.max_delay, random.Random(seed).uniform(backoff.initial, base * 3))
    delay = backoff.delay(5, random.Random(seed), previous)
    assert delay == pytest.approx(expected)
    assert backoff.initial <= delay <= backoff.max_delay


@pytest.mark.parametrize("previous", [math.nan, math.inf, -math.inf, -5.0, 1e308])
def test_decorrelated_jitter_survives_garbage_previous(previous: float) -> None:
    delay = DecorrelatedJitter(initial=0.1, max_delay=2.0).delay(3, random.Random(1), previous)
    assert 0.1 <= delay <= 2.0


def test_decorrelated_jitter_first_retry_is_between_initial_and_three_times() -> None:
    backoff = DecorrelatedJitter(initial=1.0, max_delay=100.0)
    for seed in range(200):
        assert 1.0 <= backoff.delay(1, random.Random(seed), 0.0) <= 3.0


class _ConstantRandom:
    """A random source stuck at one value: shows clamping of a misbehaving source."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value

    def uniform(self, a: float, b: float) -> float:
        return self.value


@pytest.mark.parametrize("value", [-1.0, 1e9, math.nan])
@pytest.mark.parametrize(
    "make",
    [
        lambda: FullJitter(max_delay=1.0),
        lambda: EqualJitter(max_delay=1.0),
        lambda: DecorrelatedJitter(max_delay=1.0),
        lambda: Adaptive(initial=1.0, max_delay=1.0, smoothing=1.0, jitter=1.0),
    ],
)
def test_jitter_is_clamped_even_with_a_broken_random_source(
    make: Callable[[], Any], value: float
) -> None:
    backoff = make()
    if isinstance(backoff, Adaptive):
        backoff.record(False)
    assert 0.0 <= backoff.delay(3, _ConstantRandom(value), 0.5) <= 1.0


# --- adaptive ------------------------------------------------------------------------------


def test_adaptive_healthy_waits_the_floor_and_failing_waits_the_curve() -> None:
    backoff = Adaptive(initial=1.0, multiplier=2.0, max_delay=8.0, min_delay=0.1, smoothing=0.5)
    rng = random.Random(0)
    assert backoff.failure_ratio == 0.0
    assert backoff.delay(3, rng, 0.0) == 0.1
    backoff.record(False)
    assert backoff.failure_ratio == 0.5
    assert backoff.delay(3, rng, 0.0) == pytest.approx(0.1 + 0.5 * (4.0 - 0.1))
    for _ in range(60):
        backoff.record(False)
    assert backoff.failure_ratio == pytest.approx(1.0)
    assert backoff.delay(3, rng, 0.0) == pytest.approx(4.0)
    assert backoff.delay(10**18, rng, 0.0) == pytest.approx(8.0)
    for _ in range(60):
        backoff.record(True)
    assert backoff.delay(3, rng, 0.0) == pytest.approx(0.1)
    backoff.record(False)
    backoff.reset()
    assert backoff.failure_ratio == 0.0


@given(adaptives(), retries, st.lists(st.booleans(), min_size=1, max_size=30))
def test_adaptive_stays_between_floor_and_curve(
    backoff: Adaptive, retry: int, outcomes: list[bool]
) -> None:
    for success in outcomes:
        backoff.record(success)
    assert 0.0 <= backoff.failure_ratio <= 1.0
    curve = Exponential(
        initial=backoff.initial, multiplier=backoff.multiplier, max_delay=backoff.max_delay
    ).delay(retry, random.Random(0), 0.0)
    delay = backoff.delay(retry, random.Random(3), 0.0)
    assert backoff.min_delay <= delay <= curve <= backoff.max_delay


@given(st.integers(min_value=1, max_value=50), st.integers(min_value=0, max_value=20))
def test_adaptive_waits_longer_after_more_failures(retry: int, extra_failures: int) -> None:
    fewer = Adaptive(initial=0.1, max_delay=30.0)
    more = Adaptive(initial=0.1, max_delay=30.0)
    fewer.record(False)
    for _ in range(1 + extra_failures):
        more.record(False)
    rng = random.Random(0)
    assert fewer.delay(retry, rng, 0.0) <= more.delay(retry, rng, 0.0)


def test_adaptive_jitter_shaves_at_most_its_fraction() -> None:
    backoff = Adaptive(initial=1.0, max_delay=1.0, min_delay=0.0, smoothing=1.0, jitter=0.25)
    backoff.record(False)
    delays = {backoff.delay(1, random.Random(seed), 0.0) for seed in range(100)}
    assert all(0.75 < d <= 1.0 for d in delays)
    assert len(delays) > 1


def test_adaptive_state_is_shared_by_design_but_not_compared() -> None:
    first, second = Adaptive(), Adaptive()
    first.record(False)
    assert first == second
    assert second.failure_ratio == 0.0
    assert "_state" not in repr(first)
    assert dataclasses.replace(first).failure_ratio == 0.0


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as possible, so a missing lock shows up as lost updates."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("fast_switching")
def test_adaptive_records_from_many_threads_without_losing_updates() -> None:
    backoff = Adaptive(smoothing=0.001)
    threads_count, per_thread = 50, 200
    barrier = threading.Barrier(threads_count)

    def worker() -> None:
        barrier.wait()
        for _ in range(per_thread):
            backoff.record(False)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = 0.0
    for _ in range(threads_count * per_thread):
        expected = expected + 0.001 * (1.0 - expected)
    assert backoff.failure_ratio == pytest.approx(expected, rel=1e-12)


# --- validation ----------------------------------------------------------------------------

# (class, field, value, error type): each must be refused with a message naming the field.
INVALID: list[tuple[type[Any], str, object, type[Exception]]] = []
_NUMERIC_FIELDS = {
    Constant: ["seconds"],
    Linear: ["initial", "step", "max_delay"],
    Exponential: ["initial", "multiplier", "max_delay"],
    Fibonacci: ["initial", "max_delay"],
    FullJitter: ["initial", "multiplier", "max_delay"],
    EqualJitter: ["initial", "multiplier", "max_delay"],
    DecorrelatedJitter: ["initial", "max_delay"],
    Adaptive: ["initial", "multiplier", "max_delay", "min_delay", "smoothing", "jitter"],
}
for _cls, _fields in _NUMERIC_FIELDS.items():
    for _field in _fields:
        INVALID += [
            (_cls, _field, True, TypeError),
            (_cls, _field, "1", TypeError),
            (_cls, _field, None, TypeError),
            (_cls, _field, math.nan, ValueError),
            (_cls, _field, math.inf, ValueError),
            (_cls, _field, -1.0, ValueError),
        ]
# Zero where it is meaningless; below-one multipliers (shrinking waits); ratios above one.
for _cls in (Exponential, Fibonacci, FullJitter, EqualJitter, DecorrelatedJitter, Adaptive):
    INVALID += [(_cls, "initial", 0.0, ValueError), (_cls, "max_delay", 0, ValueError)]
for _cls in (Exponential, FullJitter, EqualJitter, Adaptive):
    INVALID += [(_cls, "multiplier", 0.5, ValueError), (_cls, "multiplier", 0, ValueError)]
INVALID += [
    (Linear, "max_delay", 0.0, ValueError),
    (Adaptive, "smoothing", 0.0, ValueError),
    (Adaptive, "smoothing", 1.5, ValueError),
    (Adaptive, "jitter", 1.01, ValueError),
]


@pytest.mark.parametrize(
    ("cls", "field", "value", "error"),
    INVALID,
    ids=[f"{c.__name__}.{f}={v!r}" for c, f, v, _ in INVALID],
)
def test_invalid_configuration_names_the_field(
    cls: type[Any], field: str, value: object, error: type[Exception]
) -> None:
    name = cls.__name__
    with pytest.raises(error, match=rf"^{name}\.{field} must"):
        cls(**{field: value})


_FIELD_CASES = [(cls, field) for cls, fields in _NUMERIC_FIELDS.items() for field in fields]


@given(
    st.sampled_from(_FIELD_CASES),
    st.one_of(
        st.floats(max_value=-1e-300, allow_infinity=True),
        st.sampled_from([math.nan, math.inf]),
    ),
)
def test_any_negative_or_non_finite_value_is_refused_by_name(
    case: tuple[type[Any], str], value: float
) -> None:
    cls, field = case
    with pytest.raises(ValueError, match=rf"^{cls.__name__}\.{field} must"):
        cls(**{field: value})


@given(
    st.sampled_from(_FIELD_CASES),
    st.one_of(st.booleans(), st.text(max_size=5), st.none(), st.lists(st.floats(), max_size=2)),
)
def test_any_non_number_is_refused_by_name(case: tuple[type[Any], str], value: object) -> None:
    cls, field = case
    with pytest.raises(TypeError, match=rf"^{cls.__name__}\.{field} must be a number"):
        cls(**{field: value})


@pytest.mark.parametrize(
    "cls", [Linear, Exponential, Fibonacci, FullJitter, EqualJitter, DecorrelatedJitter, Adaptive]
)
def test_initial_above_cap_is_refused(cls: type[Any]) -> None:
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"^{name}\.initial must be <= {name}\.max_delay"):
        cls(initial=5.0, max_delay=1.0)


def test_adaptive_floor_above_initial_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^Adaptive\.min_delay must be <= Adaptive\.initial"):
        Adaptive(initial=0.1, min_delay=0.2)


def test_configuration_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Exponential(0.1)  # type: ignore[call-arg]


def test_ints_are_accepted_and_stored_as_floats() -> None:
    backoff = Linear(initial=1, step=2, max_delay=10)
    assert backoff == Linear(initial=1.0, step=2.0, max_delay=10.0)
    assert isinstance(backoff.delay(2, random.Random(0), 0.0), float)
    assert isinstance(Constant(seconds=3).delay(1, random.Random(0), 0.0), float)


# --- documentation -------------------------------------------------------------------------


def test_documentation_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {"__name__": "docs_backoff"})


def test_documentation_lists_every_strategy() -> None:
    text = DOC.read_text(encoding="utf-8")
    for cls in ALL_CLASSES:
        assert f"`{cls.__name__}" in text
