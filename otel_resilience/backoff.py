"""Backoff strategies: how long a retry waits before the next attempt.

Every strategy is a frozen, validated, keyword-only dataclass with one method,
:meth:`Backoff.delay`. It is a pure function of the retry number, the injected random
source and the previous delay (only :class:`Adaptive` also reads its own record of recent
outcomes). A strategy never sleeps; the retry driver sleeps on its injected clock.

Guarantees, for every strategy and every ``retry >= 1`` (including ``10**18`` and beyond):

- the result is a finite float in ``[0, max_delay]`` (``[0, delay]`` for :class:`Constant`);
- nothing overflows: powers are compared through logarithms before they are computed, and
  :class:`Fibonacci` precomputes its sequence only up to the cap;
- strategies without jitter are non-decreasing in ``retry``.

Example:
    >>> import random
    >>> backoff = Exponential(initial=0.5, multiplier=2.0, max_delay=3.0)
    >>> rng = random.Random(7)
    >>> [backoff.delay(n, rng, 0.0) for n in (1, 2, 3, 4, 10**18)]
    [0.5, 1.0, 2.0, 3.0, 3.0]
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import NoReturn, Protocol, runtime_checkable

from otel_resilience._clock import RandomSource
from otel_resilience._validation import check_number

__all__ = [
    "DECORRELATED_GROWTH",
    "DEFAULT_ADAPTIVE_JITTER",
    "DEFAULT_ADAPTIVE_MIN_DELAY",
    "DEFAULT_ADAPTIVE_SMOOTHING",
    "DEFAULT_CONSTANT_DELAY",
    "DEFAULT_INITIAL_DELAY",
    "DEFAULT_LINEAR_STEP",
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MULTIPLIER",
    "Adaptive",
    "Backoff",
    "Constant",
    "DecorrelatedJitter",
    "EqualJitter",
    "Exponential",
    "Fibonacci",
    "FullJitter",
    "Linear",
    "RecordingBackoff",
]

DEFAULT_CONSTANT_DELAY = 1.0
"""Seconds :class:`Constant` waits between attempts by default."""

DEFAULT_INITIAL_DELAY = 0.1
"""Seconds of the first wait (before the second attempt) of the growing strategies."""

DEFAULT_LINEAR_STEP = 0.1
"""Seconds :class:`Linear` adds for each further retry."""

DEFAULT_MULTIPLIER = 2.0
"""Growth factor per retry of :class:`Exponential` and the exponential jitters."""

DEFAULT_MAX_DELAY = 10.0
"""Cap, in seconds, on any single wait of the growing strategies."""

DECORRELATED_GROWTH = 3.0
"""Upper bound factor of :class:`DecorrelatedJitter`: the next wait is at most 3x the last."""

DEFAULT_ADAPTIVE_MIN_DELAY = 0.0
"""Floor of :class:`Adaptive`: the wait when no recent call failed."""

DEFAULT_ADAPTIVE_SMOOTHING = 0.2
"""Weight of the newest outcome in :class:`Adaptive`'s failure ratio (EWMA alpha)."""

DEFAULT_ADAPTIVE_JITTER = 0.0
"""Fraction of :class:`Adaptive`'s adaptive part that is randomised (0: deterministic)."""


@runtime_checkable
class Backoff(Protocol):
    """A backoff strategy: the wait before the next attempt of a retried call."""

    def delay(self, retry: int, rng: RandomSource, previous: float) -> float:
        """Return the seconds to wait before the next attempt.

        Args:
            retry: 1-based retry number: 1 is the wait before the second attempt.
            rng: the injected random source (jittered strategies draw from it).
            previous: the delay this strategy returned for the previous retry of the same
                call, ``0.0`` before the first retry.

        Returns:
            A finite float in ``[0, max_delay]``.

        Raises:
            ValueError: ``retry`` is below 1.
        """


@runtime_checkable
class RecordingBackoff(Backoff, Protocol):
    """A backoff that learns from outcomes; a retry calls :meth:`record` after each attempt.

    ``isinstance(backoff, RecordingBackoff)`` tells a retry whether to feed it.
    """

    def record(self, success: bool) -> None:  # noqa: FBT001 - the retry contract fixes this
        """Record whether an attempt succeeded."""


def _bad_retry(owner: str, retry: int) -> NoReturn:
    # Callers test ``retry < 1`` inline: delay() is on every failed call's path.
    raise ValueError(f"{owner}.delay retry must be >= 1, got {retry!r}")


def _bounded(value: float, cap: float) -> float:
    # Clamps rounding noise (and a misbehaving random source) into [0, cap]; NaN -> 0.
    if value >= 0.0:
        return value if value <= cap else cap
    return 0.0


def _limit_exponent(initial: float, multiplier: float, max_delay: float) -> float:
    """Return the exponent ``n`` from which ``initial * multiplier**n`` reaches ``max_delay``.

    Computed once with logarithms so ``delay`` never raises a float to a huge power.
    """
    if multiplier == 1.0:
        return math.inf
    # A difference of logs, not log(max_delay / initial): that ratio overflows for a
    # subnormal ``initial``. The result is finite for every valid configuration.
    return (math.log(max_delay) - math.log(initial)) / math.log(multiplier)


def _exponential(
    retry: int, initial: float, multiplier: float, limit: float, max_delay: float
) -> float:
    exponent = retry - 1
    # int/float comparison is exact in Python, so this is safe for any integer retry.
    if exponent >= limit:
        return max_delay
    if multiplier == 1.0:
        return initial
    try:
        value = initial * multiplier**exponent
    except OverflowError:
        # The power alone overflows although the product may stay below the cap (a tiny
        # ``initial``): finish in log space, where nothing overflows.
        log_value = math.log(initial) + exponent * math.log(multiplier)
        return max_delay if log_value >= math.log(max_delay) else math.exp(log_value)
    return value if value < max_delay else max_delay


def _check_initial_and_cap(owner: str, initial: float, max_delay: float) -> None:
    if initial > max_delay:
        raise ValueError(
            f"{owner}.initial must be <= {owner}.max_delay, got {initial!r} > {max_delay!r}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Constant:
    """The same wait before every retry.

    Formula: ``delay(n) = seconds``. ``Constant(seconds=0)`` retries at once.

    The field is ``seconds`` rather than ``delay`` because ``delay`` is the method every
    backoff has.

    Attributes:
        seconds: the wait, ``>= 0`` (default :data:`DEFAULT_CONSTANT_DELAY`).
    """

    seconds: float = DEFAULT_CONSTANT_DELAY

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "seconds", check_number("Constant", "seconds", self.seconds, allow_minimum=True)
        )

    @property
    def max_delay(self) -> float:
        """The cap, which for a constant wait is the wait itself."""
        return self.seconds

    def delay(self, retry: int, rng: RandomSource, previous: float) -> float:
        """Return ``seconds``."""
        if retry < 1:
            _bad_retry("Constant", retry)
        return self.seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class Linear:
    """A wait that grows by a fixed step per retry, up to a cap.

    Formula: ``delay(n) = min(max_delay, initial + step * (n - 1))``. Non-decreasing.

    Attributes:
        initial: first wait in seconds, ``>= 0`` (default :data:`DEFAULT_INITIAL_DELAY`).
        step: seconds added per retry, ``>= 0`` (default :data:`DEFAULT_LINEAR_STEP`).
        max_delay: cap in seconds, ``> 0`` and ``>= initial``
            (default :data:`DEFAULT_MAX_DELAY`).
    """

    initial: float = DEFAULT_INITIAL_DELAY
    step: float = DEFAULT_LINEAR_STEP
    max_delay: float = DEFAULT_MAX_DELAY
    _limit: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        initial = check_number("Linear", "initial", self.initial, allow_minimum=True)
        step = check_number("Linear", "step", self.step, allow_minimum=True)
        max_delay = check_number("Linear", "max_delay", self.max_delay)
        _check_initial_and_cap("Linear", initial, max_delay)
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "step", step)
        object.__setattr__(self, "max_delay", max_delay)
        # The retry index from which the cap applies; comparing against it first keeps
        # huge retry numbers away from float arithmetic.
        limit = math.inf if step == 0.0 else (max_delay - initial) / step
        object.__setattr__(self, "_limit", limit)

    def delay(self, retry: int, rng: RandomSource, previous: float) -> float:
        """Return ``min(max_delay, initial + step * (retry - 1))``."""
        if retry < 1:
            _bad_retry("Linear", retry)
        index = retry - 1
        if index >= self._limit:
            return self.max_delay
        step = self.step
        if step == 0.0:
            return self.initial
        try:
            grown = step * index
        except OverflowError:
            # ``index`` is beyond float range, reachable only when ``_limit`` itself
            # overflowed (a subnormal step): compare in log space instead.
            log_grown = math.log(step) + math.log(index)
            if log_grown >= math.log(self.max_delay - self.initial):
                return self.max_delay
            grown = math.exp(log_grown)
        return _bounded(self.initial + grown, self.max_delay)


@dataclass(frozen=True, slots=True, kw_only=True)
class Exponential:
    """A wait that multiplies per retry, up to a cap.

    Formula: ``delay(n) = min(max_delay, initial * multiplier ** (n - 1))``. Non-decreasing.
    Prefer a jittered variant (:class:`FullJitter`, :class:`EqualJitter`,
    :class:`DecorrelatedJitter`) when many clients may retry against the same server.

    Attributes:
        initial: first wait in seconds, ``> 0`` (default :data:`DEFAULT_INITIAL_DELAY`).
        multiplier: growth factor, ``>= 1`` (default :data:`DEFAULT_MULTIPLIER`).
        max_delay: cap in seconds, ``>= initial`` (default :data:`DEFAULT_MAX_DELAY`).
    """

    initial: float = DEFAULT_INITIAL_DELAY
    multiplier: float = DEFAULT_MULTIPLIER
    max_delay: float = DEFAULT_MAX_DELAY
    _limit: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _init_exponential(self, "Exponential")

    def delay(self, retry: int, rng: RandomSource, previous: float) -> float:
        """Return ``min(max_delay, initial * multiplier ** (retry - 1))``."""
        if retry < 1:
            _bad_retry("Exponential", retry)
        return _exponential(retry, self.initial, self.multiplier, self._limit, self.max_delay)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fibonacci:
    """A wait that follows the Fibonacci sequence, up to a cap.

    Formula: ``delay(n) = min(max_delay, initial * F(n))`` with ``F(1) = F(2) = 1`` and
    ``F(n) = F(n - 1) + F(n - 2)``: ``initial`` times 1, 1, 2, 3, 5, 8, ... Grows more
    gently than doubling (by about 1.618 per retry). Non-decreasing.

    The sequence is computed once, at construction, only up to the cap (a few thousand
    terms in the most extreme configuration), so any retry number is a table look-up.

    Attributes:
        initial: first wait in seconds, ``> 0`` (default :data:`DEFAULT_INITIAL_DELAY`).
        max_delay: cap in seconds, ``>= initial`` (default :data:`DEFAULT_MAX_DELAY`).
    """

    initial: float = DEFAULT_INITIAL_DELAY
    max_delay: float = DEFAULT_MAX_DELAY
    _table: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        initial = check_number("Fibonacci", "initial", self.initial)
        max_delay = check_number("Fibonacci", "max_delay", self.max_delay)
        _check_initial_and_cap("Fibonacci", initial, max_delay)
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "max_delay", max_delay)
        table: list[float] = []
        current, following = initial, initial
        # Stops at the first term that reaches the cap: the loop is bounded by
        # log_phi(max_delay / initial), whatever retry numbers are asked for later.
        while current < max_delay:
            table.append(current)
            current, following = following, current + following
        object.__setattr__(self, "_table", tuple(table))

    def delay(self, retry: int, rng: RandomSource, previous: float) -> float:
        """Return ``min(max_delay, initial * F(retry))``."""
        if retry < 1:
            _bad_retry("Fibonacci", retry)
        table = self._table
        if retry > len(table):
            return self.max_delay
        return table[retry - 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class FullJitter:
    """AWS "full jitter": a uniformly random wait below the exponential curve.

    Formula: ``delay(n) = uniform(0, min(max_delay, initial * multiplier ** (n - 1)))``.
    Spreads retries of many clients the most; the usual choice against a shared server.

    Attributes:
        initial: seconds of the first curve value, ``> 0``
            (default :data:`DEFAULT_INITIAL_DELAY`).
        multiplier: growth factor, ``>= 1`` (default :data:`DEFAULT_MULTIPLIER`).
        max_delay: cap in seconds, ``>= initial`` (default :data:`DEFAULT_MAX_DELAY`).
    """

    initial: float = DEFAULT_INITIAL_DELAY
    multiplier: float = DEFAULT_MULTIPLIER
    max_delay: float = DEFAULT_MAX_DELAY
    _limit: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _init_exponential(self, "FullJitter")

    def delay(self, retry: int, rng: RandomSource, previous: float) -> float:
        """Return ``uniform(0, min(max_delay, initial * multiplier ** (retry - 1)))``."""
        if retry < 1:
            _bad_retry("FullJitter", retry)
        ceiling = _exponential(retry, self.initial, self.multiplier, self._limit, self.max_delay)
        return _bounded(rng.uniform(0.0, ceiling), self.max_delay)


@dataclass(frozen=True, slots=True, kw_only=True)
class EqualJitter:
    """AWS "equal jitter": half of the exponential wait is fixed, half is random.

    Formula: with ``t = min(max_delay, initial * multiplier ** (n - 1))``,
    ``delay(n) = t / 2 + uniform(0, t / 2)``. Never waits less than half the curve, so it
    keeps a guaranteed pause while still spreading clients.

    Attributes:
        initial: seconds of the first curve value, ``> 0``
            (default :data:`DEFAULT_INITIAL_DELAY`).
        multiplier: growth factor, ``>= 1`` (default :data:`DEFAULT_MULTIPLIER`).
        max_delay: cap in seconds, ``>= initial`` (default :data:`DEFAULT_MAX_DELAY`).
    """

    initial: float = DEFAULT_INITIAL_DELAY
    multiplier: float = DEFAULT_MULTIPLIER
    max_delay: float = DEFAULT_MAX_DELAY
    _limit: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _init_exponential(self, "EqualJitter")

    def delay(self, retry: int, rng: RandomSource, previous: float) -> float:
        """Return ``t / 2 + uniform(0, t / 2)`` for the capped exponential ``t``."""
        if retry < 1:
            _bad_retry("EqualJitter", retry)
        ceiling = _exponential(retry, self.initial, self.multiplier, self._limit, self.max_delay)
        half = ceiling / 2.0
        return _bounded(half + rng.uniform(0.0, half), self.max_delay)


@dataclass(frozen=True, slots=True, kw_only=True)
class DecorrelatedJitter:
    """AWS "decorrelated jitter": each wait is random, up to three times the previous one.

    Formula: ``delay(n) = min(max_delay, uniform(initial, previous * 3))`` where a
    ``previous`` below ``initial`` (the first retry passes ``0.0``) counts as ``initial``,
    and one above ``max_delay`` counts as ``max_delay``. Waits wander rather than climb
    steadily; good spread with a lower total wait than full jitter.

    Attributes:
        initial: smallest wait in seconds, ``> 0`` (default :data:`DEFAULT_INITIAL_DELAY`).
        max_delay: cap in seconds, ``>= initial`` (default :data:`DEFAULT_MAX_DELAY`).
    """

    initial: float = DEFAULT_INITIAL_DELAY
    max_delay: float = DEFAULT_MAX_DELAY

    def __post_init__(self) -> None:
        initial = check_number("DecorrelatedJitter", "initial", self.initial)
        max_delay = check_number("DecorrelatedJitter", "max_delay", self.max_delay)
        _check_initial_and_cap("DecorrelatedJitter", initial, max_delay)
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "max_delay", max_delay)

    def delay(self, retry: int, rng: RandomSource, previous: float) -> float:
        """Return ``min(max_delay, uniform(initial, max(previous, initial) * 3))``."""
        if retry < 1:
            _bad_retry("DecorrelatedJitter", retry)
        initial = self.initial
        max_delay = self.max_delay
        # ``not >=`` also catches NaN; clamping at the cap keeps ``previous * 3`` finite.
        if not previous >= initial:
            previous = initial
        elif previous > max_delay:
            previous = max_delay
        value = rng.uniform(initial, previous * DECORRELATED_GROWTH)
        return _bounded(value, max_delay)


class _AdaptiveState:
    """The mutable part of :class:`Adaptive`: its failure ratio, behind a lock."""

    __slots__ = ("lock", "ratio")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ratio = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Adaptive:
    """An exponential wait scaled by how often recent attempts failed.

    It keeps an exponentially weighted moving average of failures, fed by :meth:`record`
    (a retry calls it after every attempt: :class:`RecordingBackoff`)::

        ratio <- ratio + smoothing * (outcome - ratio)     outcome: 1 failure, 0 success

    starting at 0 (healthy). Formula, for retry ``n``::

        e(n)     = min(max_delay, initial * multiplier ** (n - 1))
        delay(n) = min_delay + ratio * (e(n) - min_delay) * (1 - jitter * u)

    with ``u`` uniform in ``[0, 1)`` (drawn only when ``jitter > 0``). So a dependency
    that mostly succeeds gets retried after about ``min_delay``; one that keeps failing
    gets the full exponential wait, up to ``max_delay``. ``delay(n)`` always lies in
    ``[min_delay, e(n)]``. For a fixed ratio and no jitter it is non-decreasing in ``n``;
    for a fixed ``n`` it grows with the ratio.

    The record is shared state, on purpose: share one instance between the retries that
    call the same dependency so they learn together. It is thread-safe (one lock around
    the update; the ratio is read without one) and bounded (a single float).

    Attributes:
        initial: first exponential wait in seconds, ``> 0`` and ``>= min_delay``
            (default :data:`DEFAULT_INITIAL_DELAY`).
        multiplier: growth factor, ``>= 1`` (default :data:`DEFAULT_MULTIPLIER`).
        max_delay: cap in seconds, ``>= initial`` (default :data:`DEFAULT_MAX_DELAY`).
        min_delay: floor in seconds, ``>= 0`` (default :data:`DEFAULT_ADAPTIVE_MIN_DELAY`).
        smoothing: weight of each new outcome, in ``(0, 1]``
            (default :data:`DEFAULT_ADAPTIVE_SMOOTHING`); higher reacts faster.
        jitter: fraction of the adaptive part that is randomised, in ``[0, 1]``
            (default :data:`DEFAULT_ADAPTIVE_JITTER`).
    """

    initial: float = DEFAULT_INITIAL_DELAY
    multiplier: float = DEFAULT_MULTIPLIER
    max_delay: float = DEFAULT_MAX_DELAY
    min_delay: float = DEFAULT_ADAPTIVE_MIN_DELAY
    smoothing: float = DEFAULT_ADAPTIVE_SMOOTHING
    jitter: float = DEFAULT_ADAPTIVE_JITTER
    _limit: float = field(init=False, repr=False, compare=False)
    _state: _AdaptiveState = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _init_exponential(self, "Adaptive")
        min_delay = check_number("Adaptive", "min_delay", self.min_delay, allow_minimum=True)
        if min_delay > self.initial:
            raise ValueError(
                f"Adaptive.min_delay must be <= Adaptive.initial, "
                f"got {self.min_delay!r} > {self.initial!r}"
            )
        object.__setattr__(self, "min_delay", min_delay)
        object.__setattr__(
            self, "smoothing", check_number("Adaptive", "smoothing", self.smoothing, maximum=1.0)
        )
        object.__setattr__(
            self,
            "jitter",
            check_number("Adaptive", "jitter", self.jitter, allow_minimum=True, maximum=1.0),
        )
        object.__setattr__(self, "_state", _AdaptiveState())

    @property
    def failure_ratio(self) -> float:
        """The current weighted failure ratio, in ``[0, 1]``."""
        return self._state.ratio

    def record(self, success: bool) -> None:  # noqa: FBT001 - the retry contract fixes this
        """Feed one attempt's outcome into the failure ratio."""
        state = self._state
        target = 0.0 if success else 1.0
        with state.lock:
            ratio = state.ratio + self.smoothing * (target - state.ratio)
            # Rounding must not push the ratio outside [0, 1].
            state.ratio = 0.0 if ratio < 0.0 else min(ratio, 1.0)

    def reset(self) -> None:
        """Forget every recorded outcome (the ratio returns to 0, healthy)."""
        state = self._state
        with state.lock:
            state.ratio = 0.0

    def delay(self, retry: int, rng: RandomSource, previous: float) -> float:
        """Return ``min_delay + ratio * (e(retry) - min_delay) * (1 - jitter * u)``."""
        if retry < 1:
            _bad_retry("Adaptive", retry)
        ceiling = _exponential(retry, self.initial, self.multiplier, self._limit, self.max_delay)
        floor = self.min_delay
        span = (ceiling - floor) * self._state.ratio
        if self.jitter > 0.0:
            span *= 1.0 - self.jitter * rng.random()
        # Clamping at the curve (itself <= max_delay) absorbs rounding in floor + span.
        return _bounded(floor + span, ceiling)


def _init_exponential(
    backoff: Exponential | FullJitter | EqualJitter | Adaptive, owner: str
) -> None:
    """Validate and normalise the ``initial``/``multiplier``/``max_delay`` trio."""
    initial = check_number(owner, "initial", backoff.initial)
    multiplier = check_number(
        owner, "multiplier", backoff.multiplier, minimum=1.0, allow_minimum=True
    )
    max_delay = check_number(owner, "max_delay", backoff.max_delay)
    _check_initial_and_cap(owner, initial, max_delay)
    object.__setattr__(backoff, "initial", initial)
    object.__setattr__(backoff, "multiplier", multiplier)
    object.__setattr__(backoff, "max_delay", max_delay)
    object.__setattr__(backoff, "_limit", _limit_exponent(initial, multiplier, max_delay))
