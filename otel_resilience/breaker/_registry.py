"""A bounded, thread-safe set of circuit breakers looked up by name."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from otel_resilience._validation import check_int
from otel_resilience.breaker._breaker import CircuitBreaker
from otel_resilience.breaker._config import CircuitBreakerConfig
from otel_resilience.breaker._state import CircuitState

if TYPE_CHECKING:
    from otel_resilience._clock import Clock, RandomSource
    from otel_resilience._events import ResilienceListener
    from otel_resilience.stores import AsyncBreakerStateStore, BreakerStateStore

__all__ = ["DEFAULT_MAX_BREAKERS", "CircuitBreakerRegistry", "RegistryFullError"]

DEFAULT_MAX_BREAKERS: Final = 1000
"""Breakers a registry holds before it evicts the least recently used CLOSED one."""

_OWNER = "CircuitBreakerRegistry"


class RegistryFullError(RuntimeError):
    """A registry is full and none of its breakers is CLOSED, so none can be evicted.

    Evicting an OPEN or HALF_OPEN breaker would silently forget that a dependency is
    failing, and growing would break the memory bound; raise the limit or
    :meth:`~CircuitBreakerRegistry.remove` breakers instead.
    """


class CircuitBreakerRegistry:
    """Creates circuit breakers on first use and hands back the same one per name.

    Create one where your application is assembled and pass it where it is needed;
    there is no module-level registry. Every breaker it creates shares its clock, random
    source and listener.

    The registry is bounded: when it holds ``max_breakers`` breakers and a new name is
    asked for, it evicts the least recently used breaker (by :meth:`get`) that is
    CLOSED. A CLOSED breaker holds nothing worth keeping beyond its window; OPEN,
    HALF_OPEN, FORCED_OPEN and DISABLED ones are kept, and if no breaker can be evicted
    :meth:`get` raises :class:`RegistryFullError`. An evicted breaker keeps working for
    whoever still holds it; the registry just forgets it.

    Args:
        default_config: the config of breakers created without one
            (``CircuitBreakerConfig()`` when omitted).
        max_breakers: the most breakers held at once (>= 1).
        clock: passed to every breaker; the system clock when omitted.
        rng: passed to every breaker; each breaker gets its own when omitted.
        listener: passed to every breaker.
        store: a shared state store (see :mod:`otel_resilience.stores`): every breaker the
            registry creates is then a :class:`~otel_resilience.SharedCircuitBreaker`
            over it. Evicting one forgets only the local object; its state stays shared.

    Example:
        >>> registry = CircuitBreakerRegistry(max_breakers=100)
        >>> registry.get("payments") is registry.get("payments")
        True
        >>> "payments" in registry, len(registry)
        (True, 1)
    """

    __slots__ = (
        "_breakers",
        "_clock",
        "_default_config",
        "_listener",
        "_lock",
        "_max",
        "_rng",
        "_store",
    )

    def __init__(
        self,
        *,
        default_config: CircuitBreakerConfig | None = None,
        max_breakers: int = DEFAULT_MAX_BREAKERS,
        clock: Clock | None = None,
        rng: RandomSource | None = None,
        listener: ResilienceListener | None = None,
        store: BreakerStateStore | AsyncBreakerStateStore | None = None,
    ) -> None:
        if default_config is None:
            default_config = CircuitBreakerConfig()
        elif not isinstance(default_config, CircuitBreakerConfig):
            raise TypeError(
                f"{_OWNER}.default_config must be a CircuitBreakerConfig, "
                f"got {type(default_config).__name__}"
            )
        self._default_config = default_config
        self._max = check_int(_OWNER, "max_breakers", max_breakers)
        self._clock = clock
        self._rng = rng
        self._listener = listener
        self._store = store
        self._lock = threading.Lock()
        # Least recently used first.
        self._breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()

    @property
    def default_config(self) -> CircuitBreakerConfig:
        """The config of breakers created without one."""
        return self._default_config

    @property
    def max_breakers(self) -> int:
        """The most breakers held at once."""
        return self._max

    def get(self, name: str, config: CircuitBreakerConfig | None = None) -> CircuitBreaker:
        """Return the breaker called ``name``, creating it on first use.

        Exactly one breaker exists per name, however many threads ask at once.

        Args:
            name: the breaker's name.
            config: the config to create it with (the registry's default when omitted).
                Asking again with a different config is an error rather than being
                silently ignored.

        Raises:
            ValueError: ``config`` differs from the existing breaker's.
            RegistryFullError: the registry is full and no breaker is CLOSED.
        """
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is not None:
                if config is not None and config != breaker.config:
                    raise ValueError(
                        f"circuit breaker {name!r} already exists with a different config"
                    )
                self._breakers.move_to_end(name)
                return breaker
            # Built under the lock so that racing callers cannot create two; building
            # runs no user code and dispatches no events.
            breaker = CircuitBreaker(
                name,
                self._default_config if config is None else config,
                clock=self._clock,
                rng=self._rng,
                listener=self._listener,
                store=self._store,
            )
            if len(self._breakers) >= self._max:
                self._evict_locked()
            self._breakers[name] = breaker
            return breaker

    def _evict_locked(self) -> None:
        for name, breaker in self._breakers.items():
            # An unlocked read of the state: reading ``breaker.state`` could dispatch
            # events, which must not happen under the registry lock. A breaker that
            # has just left CLOSED is evicted as if it had not; it keeps working.
            if breaker._state is CircuitState.CLOSED:
                del self._breakers[name]
                return
        raise RegistryFullError(
            f"circuit breaker registry is full ({self._max} breakers) and none is CLOSED; "
            "raise max_breakers or remove breakers"
        )

    def remove(self, name: str) -> CircuitBreaker | None:
        """Forget the breaker called ``name``; return it, or ``None`` if there was none."""
        with self._lock:
            return self._breakers.pop(name, None)

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Return a snapshot of the breakers by name, least recently used first."""
        with self._lock:
            return dict(self._breakers)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._breakers

    def __len__(self) -> int:
        with self._lock:
            return len(self._breakers)

    def __iter__(self) -> Iterator[str]:
        """Iterate over a snapshot of the names, least recently used first."""
        with self._lock:
            names = list(self._breakers)
        return iter(names)

    def __repr__(self) -> str:
        return f"CircuitBreakerRegistry(breakers={len(self)}, max_breakers={self._max})"
