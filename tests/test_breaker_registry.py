"""CircuitBreakerRegistry: one breaker per name, bounded with LRU eviction of CLOSED ones."""

from __future__ import annotations

import random  # noqa: TID251 - tests seed their own random source
import sys
import threading
from collections.abc import Iterator

import pytest

from otel_resilience._events import CallObserver, ResilienceEvent
from otel_resilience.breaker import (
    DEFAULT_MAX_BREAKERS,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerRegistry,
    CircuitState,
    RegistryFullError,
)
from otel_resilience.testing import FakeClock


class Collector:
    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []

    def start_call(self, pipeline: str) -> CallObserver | None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)


def test_get_creates_once_and_returns_the_same_breaker() -> None:
    registry = CircuitBreakerRegistry()
    first = registry.get("db")
    assert isinstance(first, CircuitBreaker)
    assert registry.get("db") is first
    assert first.name == "db"
    assert first.config == CircuitBreakerConfig()
    assert registry.max_breakers == DEFAULT_MAX_BREAKERS


def test_breakers_share_the_registry_defaults() -> None:
    clock = FakeClock(start=5.0)
    collector = Collector()
    default = CircuitBreakerConfig(failure_threshold=1)
    registry = CircuitBreakerRegistry(
        default_config=default, clock=clock, rng=random.Random(1), listener=collector
    )
    assert registry.default_config is default
    breaker = registry.get("api")
    breaker.record_failure(breaker.acquire())
    assert breaker.state is CircuitState.OPEN
    assert breaker.metrics.state_since == 5.0  # the registry's clock
    assert len(collector.events) == 1  # the registry's listener


def test_explicit_config_and_conflicting_config() -> None:
    registry = CircuitBreakerRegistry()
    config = CircuitBreakerConfig(failure_threshold=2)
    breaker = registry.get("api", config)
    assert breaker.config is config
    assert registry.get("api", CircuitBreakerConfig(failure_threshold=2)) is breaker
    assert registry.get("api") is breaker  # no config: whatever it was created with
    with pytest.raises(ValueError, match="'api' already exists with a different config"):
        registry.get("api", CircuitBreakerConfig(failure_threshold=3))


def test_container_protocol_and_snapshots() -> None:
    registry = CircuitBreakerRegistry()
    a, b = registry.get("a"), registry.get("b")
    assert "a" in registry
    assert "z" not in registry
    assert 3 not in registry
    assert len(registry) == 2
    assert list(registry) == ["a", "b"]
    snapshot = registry.breakers()
    assert snapshot == {"a": a, "b": b}
    snapshot.clear()  # a copy: the registry is untouched
    assert len(registry) == 2
    names = iter(registry)
    registry.get("c")  # iterating a snapshot: no "changed size during iteration"
    assert list(names) == ["a", "b"]
    assert repr(registry) == "CircuitBreakerRegistry(breakers=3, max_breakers=1000)"


def test_remove() -> None:
    registry = CircuitBreakerRegistry()
    breaker = registry.get("a")
    assert registry.remove("a") is breaker
    assert registry.remove("a") is None
    assert "a" not in registry
    assert registry.get("a") is not breaker


def test_full_registry_evicts_the_least_recently_used_closed_breaker() -> None:
    registry = CircuitBreakerRegistry(max_breakers=3)
    registry.get("a")
    b, c = registry.get("b"), registry.get("c")
    registry.get("a")  # "a" is now the most recently used
    b.force_open()  # "b" is not CLOSED: kept
    registry.get("d")
    assert list(registry) == ["b", "a", "d"]  # "c" went
    assert c.acquire() > 0  # an evicted breaker keeps working for its holders
    assert len(registry) == 3
    registry.get("e")
    assert list(registry) == ["b", "d", "e"]


@pytest.mark.parametrize("state", ["trip", "force_open", "disable"])
def test_full_registry_of_non_closed_breakers_raises(state: str) -> None:
    registry = CircuitBreakerRegistry(max_breakers=2)
    for name in ("a", "b"):
        getattr(registry.get(name), state)()
    with pytest.raises(RegistryFullError, match="full \\(2 breakers\\) and none is CLOSED"):
        registry.get("c")
    assert list(registry) == ["a", "b"]
    registry.get("a").reset()
    registry.get("c")
    assert list(registry) == ["b", "c"]


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (True, TypeError), ("5", TypeError)])
def test_max_breakers_is_validated(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"CircuitBreakerRegistry\.max_breakers"):
        CircuitBreakerRegistry(max_breakers=value)  # type: ignore[arg-type]


def test_default_config_type_is_validated() -> None:
    with pytest.raises(TypeError, match=r"CircuitBreakerRegistry\.default_config"):
        CircuitBreakerRegistry(default_config={"failure_threshold": 1})  # type: ignore[arg-type]


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_fifty_threads_racing_get_create_exactly_one_breaker_per_name() -> None:
    registry = CircuitBreakerRegistry()
    racers = 50
    barrier = threading.Barrier(racers)
    results: list[list[CircuitBreaker]] = [[] for _ in range(racers)]

    def racer(index: int) -> None:
        barrier.wait()
        for name in ("shared", f"own-{index % 5}"):
            results[index].append(registry.get(name))

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60.0)
    assert not any(thread.is_alive() for thread in threads)
    shared = {id(result[0]) for result in results}
    assert len(shared) == 1
    for group in range(5):
        assert len({id(r[1]) for i, r in enumerate(results) if i % 5 == group}) == 1
    assert len(registry) == 6


def test_a_registry_with_a_store_makes_shared_breakers(clock: FakeClock) -> None:
    from otel_resilience import SharedCircuitBreaker  # noqa: PLC0415
    from otel_resilience.stores import InMemoryStateStore  # noqa: PLC0415

    store = InMemoryStateStore(clock=clock)
    config = CircuitBreakerConfig(failure_threshold=1)
    # Two registries over one store, as two processes over one Redis.
    first, second = (
        CircuitBreakerRegistry(default_config=config, clock=clock, store=store, max_breakers=1)
        for _ in range(2)
    )
    breaker = first.get("payments")
    assert isinstance(breaker, SharedCircuitBreaker)
    breaker.record_failure(breaker.acquire())
    assert second.get("payments").state is CircuitState.OPEN
    # Evicting the local object forgets nothing shared: a new one sees the open state.
    first.get("other")
    assert "payments" not in first
    assert first.get("payments").state is CircuitState.OPEN
