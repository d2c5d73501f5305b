"""The event bus: typed dispatch, ordering, isolation, bounded queues, acks and lifecycle.

Real event loops and real threads throughout. Nothing waits on real time: hand-offs use
asyncio and threading events, and every timeout runs on a FakeClock that the test moves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_resilience import CircuitState, CircuitStateChanged, RetryScheduled
from otel_resilience._events import LISTENER_ERRORS
from otel_resilience.events import (
    DEFAULT_ACK_TIMEOUT,
    DEFAULT_QUEUE_SIZE,
    AckResult,
    AlertRaised,
    AlertResolved,
    ErrorOccurred,
    EventBus,
    OrchestratorEvent,
    RecoveryActionTaken,
    Subscription,
)
from otel_resilience.testing import FakeClock

WaitUntil = Callable[[Callable[[], bool]], None]
NoLeakedCoroutines = Callable[[], AbstractContextManager[None]]


@dataclass(frozen=True, slots=True)
class Ping:
    n: int


@dataclass(frozen=True, slots=True)
class LoudPing(Ping):
    volume: int = 11


@dataclass(frozen=True, slots=True)
class Pong:
    n: int


@dataclass(frozen=True, slots=True)
class Stamp:
    thread: int
    seq: int


@dataclass(slots=True)
class Mutable:
    n: int


async def yield_once() -> None:
    await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop


@pytest.fixture
def log_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The rate limiter of isolated errors on a fake clock, with nothing logged yet."""
    fake = FakeClock(start=1000.0)
    monkeypatch.setattr(LISTENER_ERRORS, "_clock", fake)
    monkeypatch.setattr(LISTENER_ERRORS, "_last", float("-inf"))
    monkeypatch.setattr(LISTENER_ERRORS, "_suppressed", 0)
    return fake


@pytest.fixture
def release_threads() -> Iterator[list[threading.Event]]:
    """Events that block sync handlers; all set at teardown so no thread stays hung."""
    events: list[threading.Event] = []
    yield events
    for event in events:
        event.set()


def bus_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "otel_resilience"]


# -- events ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        ErrorOccurred(context={"component": "db"}),
        RecoveryActionTaken(component="db", action="retry", ok=True, detail="scheduled"),
        AlertRaised(alert="a"),
        AlertResolved(alert="a"),
    ],
    ids=lambda event: type(event).__name__,
)
def test_orchestrator_events_are_frozen_slotted_dataclasses(event: OrchestratorEvent) -> None:
    assert isinstance(event, OrchestratorEvent)
    params = type(event).__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen
    assert not hasattr(event, "__dict__")
    field = dataclasses.fields(event)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, field, "changed")


def test_orchestrator_events_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        RecoveryActionTaken("db", "retry", True, "scheduled")  # type: ignore[call-arg]


# -- configuration --------------------------------------------------------------------


def test_defaults() -> None:
    bus = EventBus()
    assert bus.queue_size == DEFAULT_QUEUE_SIZE == 1000
    assert bus.ack_timeout == DEFAULT_ACK_TIMEOUT == 5.0
    assert bus.name == "events"
    assert not bus.running
    assert bus.dropped == 0
    assert bus.subscriptions == ()
    assert "events" in repr(bus)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"queue_size": 0}, ValueError, "EventBus.queue_size must be >= 1"),
        ({"queue_size": -3}, ValueError, "EventBus.queue_size"),
        ({"queue_size": True}, TypeError, "EventBus.queue_size must be an int"),
        ({"queue_size": 2.0}, TypeError, "EventBus.queue_size must be an int"),
        ({"queue_size": "10"}, TypeError, "EventBus.queue_size must be an int"),
        ({"ack_timeout": 0}, ValueError, "EventBus.ack_timeout must be > 0"),
        ({"ack_timeout": -1.0}, ValueError, "EventBus.ack_timeout"),
        ({"ack_timeout": math.nan}, ValueError, "EventBus.ack_timeout must be finite"),
        ({"ack_timeout": math.inf}, ValueError, "EventBus.ack_timeout must be finite"),
        ({"ack_timeout": False}, TypeError, "EventBus.ack_timeout must be a number"),
        ({"ack_timeout": "5"}, TypeError, "EventBus.ack_timeout must be a number"),
        ({"clock": object()}, TypeError, "EventBus.clock must be a Clock"),
        ({"name": ""}, ValueError, "EventBus.name must not be empty"),
        ({"name": 3}, TypeError, "EventBus.name must be a str"),
        ({"on_drop": "metric"}, TypeError, "EventBus.on_drop must be callable"),
    ],
)
def test_bad_configuration_names_the_field(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        EventBus(**kwargs)


def test_subscribe_takes_a_class_and_a_callable_never_a_string() -> None:
    bus = EventBus()
    with pytest.raises(TypeError, match="event_type must be an event class"):
        bus.subscribe("Ping", print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"subscribe\.handler must be callable"):
        bus.subscribe(Ping, "print")  # type: ignore[arg-type]
    assert bus.subscriptions == ()


@pytest.mark.parametrize(
    "event",
    [Mutable(n=1), object(), "ping", 42, Ping],
    ids=["mutable dataclass", "object", "str", "int", "a class"],
)
def test_only_frozen_dataclass_instances_are_events(event: object) -> None:
    bus = EventBus()
    bus.subscribe(object, print)
    with pytest.raises(TypeError, match="an event must be a frozen dataclass instance"):
        bus.publish(event)


@pytest.mark.asyncio
async def test_publish_and_wait_rejects_bad_events_and_timeouts() -> None:
    bus = EventBus()
    with pytest.raises(TypeError, match="frozen dataclass"):
        await bus.publish_and_wait(Mutable(n=1))
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"EventBus\.publish_and_wait\.timeout"):
            await bus.publish_and_wait(Ping(n=1), timeout=bad)
    with pytest.raises(TypeError, match=r"EventBus\.stop\.timeout"):
        await bus.stop(timeout="1")  # type: ignore[arg-type]


def test_unsubscribe_rejects_a_foreign_subscription() -> None:
    mine, theirs = EventBus(name="mine"), EventBus(name="theirs")
    subscription = theirs.subscribe(Ping, print)
    with pytest.raises(ValueError, match="does not belong to event bus 'mine'"):
        mine.unsubscribe(subscription)
    assert subscription.active


# -- dispatch and ordering ------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_async_handler_sees_every_event_in_publish_order() -> None:
    bus = EventBus()
    seen: list[int] = []

    async def handler(event: Ping) -> None:
        if event.n % 7 == 0:
            await yield_once()  # suspend sometimes, so order does not rest on luck
        seen.append(event.n)

    subscription = bus.subscribe(Ping, handler)
    assert subscription.is_async
    await bus.start()
    for n in range(999):  # with the acknowledged one, exactly the default queue size
        bus.publish(Ping(n=n))
    result = await bus.publish_and_wait(Ping(n=999))
    assert result.succeeded == (subscription,)
    assert seen == list(range(1000))
    assert subscription.delivered == 1000
    await bus.stop()


@pytest.mark.asyncio
async def test_a_sync_handler_runs_in_its_own_thread_in_publish_order() -> None:
    bus = EventBus()
    seen: list[int] = []
    threads: set[int] = set()

    def handler(event: Ping) -> None:
        threads.add(threading.get_ident())
        seen.append(event.n)

    subscription = bus.subscribe(Ping, handler)
    assert not subscription.is_async
    await bus.start()
    for n in range(500):
        bus.publish(Ping(n=n))
    assert (await bus.publish_and_wait(Ping(n=500))).ok
    assert seen == list(range(501))
    assert len(threads) == 1
    assert threading.get_ident() not in threads
    await bus.stop()


@pytest.mark.asyncio
async def test_dispatch_is_by_type_and_a_base_class_receives_subclasses() -> None:
    bus = EventBus()
    got: dict[str, list[object]] = {"ping": [], "loud": [], "pong": [], "all": []}
    bus.subscribe(Ping, got["ping"].append)
    bus.subscribe(LoudPing, got["loud"].append)
    bus.subscribe(Pong, got["pong"].append)
    bus.subscribe(object, got["all"].append)
    await bus.start()
    ping, loud, pong = Ping(n=1), LoudPing(n=2), Pong(n=3)
    for event in (ping, loud, pong):
        bus.publish(event)
    await bus.stop()  # drains
    assert got == {
        "ping": [ping, loud],
        "loud": [loud],
        "pong": [pong],
        "all": [ping, loud, pong],
    }


@pytest.mark.asyncio
async def test_engine_events_and_orchestrator_events_are_publishable() -> None:
    bus = EventBus()
    changes: list[object] = []
    retries: list[object] = []
    orchestrator: list[object] = []
    bus.subscribe(CircuitStateChanged, changes.append)
    bus.subscribe(RetryScheduled, retries.append)
    bus.subscribe(OrchestratorEvent, orchestrator.append)
    await bus.start()
    changed = CircuitStateChanged(
        breaker="db",
        previous=CircuitState.CLOSED,
        state=CircuitState.OPEN,
        reason="failure_threshold",
        at=1.0,
    )
    scheduled = RetryScheduled(pipeline="db", attempt=1, delay=0.5, error_type="OSError")
    action = RecoveryActionTaken(component="db", action="circuit_break", ok=True, detail="")
    alert = AlertRaised(alert="db down")
    for event in (changed, scheduled, action, alert):
        bus.publish(event)
    await bus.stop()
    assert changes == [changed]
    assert retries == [scheduled]
    assert orchestrator == [action, alert]


@pytest.mark.asyncio
async def test_subscribing_twice_delivers_twice_and_events_without_subscribers_vanish() -> None:
    bus = EventBus()
    seen: list[int] = []
    bus.subscribe(Ping, lambda event: seen.append(event.n))
    bus.subscribe(Ping, lambda event: seen.append(event.n))
    await bus.start()
    bus.publish(Ping(n=1))
    bus.publish(Pong(n=2))  # nobody listens: not an error, not a drop
    await bus.stop()
    assert seen == [1, 1]
    assert bus.dropped == 0


@pytest.mark.asyncio
async def test_handlers_may_publish_from_the_loop_and_from_their_thread() -> None:
    bus = EventBus()
    pongs: list[int] = []
    done = asyncio.Event()

    async def relay_async(event: Ping) -> None:
        bus.publish(Pong(n=event.n))

    def relay_sync(event: Ping) -> None:
        bus.publish(Pong(n=-event.n))

    async def collect(event: Pong) -> None:
        pongs.append(event.n)
        if len(pongs) == 2:
            done.set()

    bus.subscribe(Ping, relay_async)
    bus.subscribe(Ping, relay_sync)
    bus.subscribe(Pong, collect)
    await bus.start()
    bus.publish(Ping(n=5))
    await done.wait()
    assert sorted(pongs) == [-5, 5]
    await bus.stop()


@pytest.mark.asyncio
async def test_a_sync_handler_returning_an_awaitable_is_awaited(
    no_leaked_coroutines: NoLeakedCoroutines,
) -> None:
    bus = EventBus()
    seen: list[int] = []

    async def record(n: int) -> None:
        seen.append(n)

    with no_leaked_coroutines():
        subscription = bus.subscribe(Ping, lambda event: record(event.n))
        assert not subscription.is_async
        await bus.start()
        assert (await bus.publish_and_wait(Ping(n=3))).ok
        await bus.stop()
    assert seen == [3]


# -- threads --------------------------------------------------------------------------

THREADS = 20
PER_THREAD = 250


def publish_from_threads(bus: EventBus) -> None:
    barrier = threading.Barrier(THREADS)

    def run(index: int) -> None:
        barrier.wait()
        for seq in range(PER_THREAD):
            bus.publish(Stamp(thread=index, seq=seq))

    threads = [threading.Thread(target=run, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def assert_exact_and_ordered(stamps: list[Stamp]) -> None:
    assert len(stamps) == THREADS * PER_THREAD
    by_thread: dict[int, list[int]] = {}
    for stamp in stamps:
        by_thread.setdefault(stamp.thread, []).append(stamp.seq)
    assert by_thread == {index: list(range(PER_THREAD)) for index in range(THREADS)}


@pytest.mark.asyncio
async def test_twenty_threads_publish_concurrently_with_exact_delivery() -> None:
    bus = EventBus(queue_size=THREADS * PER_THREAD)
    async_seen: list[Stamp] = []
    sync_seen: list[Stamp] = []

    async def on_async(event: Stamp) -> None:
        async_seen.append(event)

    on_async_sub = bus.subscribe(Stamp, on_async)
    on_sync_sub = bus.subscribe(Stamp, sync_seen.append)
    await bus.start()
    # The loop keeps running (and delivering) while the threads publish.
    await asyncio.to_thread(publish_from_threads, bus)
    await bus.stop(timeout=60.0)  # drains everything queued
    assert_exact_and_ordered(async_seen)
    assert_exact_and_ordered(sync_seen)
    assert bus.dropped == 0
    assert on_async_sub.delivered == on_sync_sub.delivered == THREADS * PER_THREAD


@pytest.mark.asyncio
async def test_threads_may_publish_before_start() -> None:
    bus = EventBus(queue_size=THREADS * PER_THREAD)
    seen: list[Stamp] = []

    async def on_stamp(event: Stamp) -> None:
        seen.append(event)

    subscription = bus.subscribe(Stamp, on_stamp)
    publish_from_threads(bus)  # no loop bound yet: everything waits in the queue
    assert subscription.pending == THREADS * PER_THREAD
    await bus.start()
    await bus.stop(timeout=60.0)
    assert_exact_and_ordered(seen)


@pytest.mark.asyncio
async def test_subscribing_from_another_thread_while_running() -> None:
    bus = EventBus()
    await bus.start()
    seen: list[int] = []

    async def handler(event: Ping) -> None:
        seen.append(event.n)

    subscription = await asyncio.to_thread(bus.subscribe, Ping, handler)
    result = await bus.publish_and_wait(Ping(n=1))
    assert result.succeeded == (subscription,)
    assert seen == [1]
    await bus.stop()


@pytest.mark.asyncio
async def test_publish_and_wait_from_another_threads_event_loop() -> None:
    bus = EventBus()
    seen: list[int] = []

    async def handler(event: Ping) -> None:
        seen.append(event.n)

    subscription = bus.subscribe(Ping, handler)
    await bus.start()
    result = await asyncio.to_thread(asyncio.run, bus.publish_and_wait(Ping(n=9)))
    assert result.succeeded == (subscription,)
    assert seen == [9]
    await bus.stop()


# -- bounded queues -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_full_queue_drops_and_counts_per_subscriber() -> None:
    drops: list[tuple[int, Subscription]] = []
    bus = EventBus(queue_size=3, on_drop=lambda event, sub: drops.append((event.n, sub)))
    seen: list[int] = []

    async def handler(event: Ping) -> None:
        seen.append(event.n)

    subscription = bus.subscribe(Ping, handler)
    for n in range(5):
        bus.publish(Ping(n=n))  # before start: queued up to the bound
    assert subscription.pending == 3
    assert subscription.dropped == 2
    assert bus.dropped == 2
    assert drops == [(3, subscription), (4, subscription)]
    await bus.start()
    await bus.stop()
    assert seen == [0, 1, 2]
    assert subscription.delivered == 3


@pytest.mark.asyncio
async def test_a_hung_async_handler_only_fills_its_own_queue() -> None:
    clock = FakeClock()
    bus = EventBus(queue_size=5, clock=clock)
    hung_started = asyncio.Event()
    never = asyncio.Event()
    cancelled: list[int] = []
    received: asyncio.Queue[int] = asyncio.Queue()

    async def hung(event: Ping) -> None:
        hung_started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.append(event.n)
            raise

    async def healthy(event: Ping) -> None:
        received.put_nowait(event.n)

    hung_sub = bus.subscribe(Ping, hung)
    healthy_sub = bus.subscribe(Ping, healthy)
    before = asyncio.all_tasks()
    await bus.start()
    bus.publish(Ping(n=0))
    await hung_started.wait()
    assert await received.get() == 0
    for n in range(1, 20):
        bus.publish(Ping(n=n))  # never blocks, though one subscriber is stuck
        assert await received.get() == n
    assert healthy_sub.delivered == 20
    assert healthy_sub.dropped == 0
    assert hung_sub.pending == 5  # events 1..5; 6..19 dropped
    assert hung_sub.dropped == 14
    assert bus.dropped == 14

    stopping = asyncio.create_task(bus.stop(timeout=1.0))
    await yield_once()  # stop starts draining on the fake clock
    assert not stopping.done()
    clock.advance(1.0)  # the drain times out: the hung worker is cancelled
    await stopping
    assert cancelled == [0]
    assert hung_sub.dropped == 19  # the five still queued are dropped at stop
    assert hung_sub.delivered == 0
    assert asyncio.all_tasks() - before == set()


@pytest.mark.asyncio
async def test_a_hung_sync_handler_blocks_no_other_subscriber(
    release_threads: list[threading.Event], wait_until: WaitUntil
) -> None:
    clock = FakeClock()
    bus = EventBus(clock=clock, name="hangs")
    gate = threading.Event()
    release_threads.append(gate)
    loop = asyncio.get_running_loop()
    other_sync_done = asyncio.Event()
    async_done = asyncio.Event()

    def hung(event: Ping) -> None:
        gate.wait()

    def other_sync(event: Ping) -> None:
        loop.call_soon_threadsafe(other_sync_done.set)

    async def other_async(event: Ping) -> None:
        async_done.set()

    hung_sub = bus.subscribe(Ping, hung)
    bus.subscribe(Ping, other_sync)
    bus.subscribe(Ping, other_async)
    before = asyncio.all_tasks()
    await bus.start()
    acked = asyncio.create_task(bus.publish_and_wait(Ping(n=1)))
    await other_sync_done.wait()  # both others finished while ``hung`` is stuck
    await async_done.wait()
    assert not acked.done()
    gate.set()
    result = await acked
    assert result.ok
    assert len(result.succeeded) == 3

    gate.clear()
    bus.publish(Ping(n=2))
    stopping = asyncio.create_task(bus.stop(timeout=1.0))
    await yield_once()
    clock.advance(1.0)  # the sync handler cannot be interrupted: its thread is abandoned
    await stopping
    assert asyncio.all_tasks() - before == set()
    assert hung_sub.delivered == 1
    gate.set()  # the abandoned thread finishes its handler and ends
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("hangs")])


@pytest.mark.asyncio
async def test_publish_after_stop_drops_and_counts() -> None:
    drops: list[object] = []
    bus = EventBus(on_drop=lambda event, sub: drops.append(event))
    subscription = bus.subscribe(Ping, print)
    await bus.start()
    await bus.stop()
    event = Ping(n=1)
    bus.publish(event)
    assert subscription.dropped == 1
    assert bus.dropped == 1
    assert drops == [event]
    result = await bus.publish_and_wait(Ping(n=2))
    assert result.dropped == (subscription,)
    assert not result.ok
    assert bus.dropped == 2


def test_a_failing_drop_hook_is_isolated(
    caplog: pytest.LogCaptureFixture, log_clock: FakeClock
) -> None:
    calls: list[object] = []

    def broken(event: object, subscription: Subscription) -> None:
        raise RuntimeError("metric backend down")

    bus = EventBus(queue_size=1, on_drop=broken)
    bus.add_drop_hook(lambda event, sub: calls.append(event))
    bus.subscribe(Ping, print)
    bus.publish(Ping(n=1))
    bus.publish(Ping(n=2))  # dropped: the broken hook raises, the next hook still runs
    assert calls == [Ping(n=2)]
    assert any("drop hook" in r.getMessage() for r in bus_records(caplog))
    bus.remove_drop_hook(broken)
    bus.remove_drop_hook(broken)  # unknown hooks are ignored
    bus.publish(Ping(n=3))
    assert calls == [Ping(n=2), Ping(n=3)]
    assert bus.dropped == 2


# -- acknowledgment -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_ack_reports_success_failure_and_timeout(
    caplog: pytest.LogCaptureFixture, log_clock: FakeClock
) -> None:
    clock = FakeClock()
    bus = EventBus(clock=clock, ack_timeout=2.0)
    ok_done, fail_started, hung_started, release = (asyncio.Event() for _ in range(4))
    boom = ValueError("boom")

    async def ok(event: Ping) -> None:
        ok_done.set()

    async def failing(event: Ping) -> None:
        fail_started.set()
        raise boom

    async def hung(event: Ping) -> None:
        hung_started.set()
        await release.wait()

    ok_sub = bus.subscribe(Ping, ok)
    fail_sub = bus.subscribe(Ping, failing)
    hung_sub = bus.subscribe(Ping, hung)
    await bus.start()
    waiting = asyncio.create_task(bus.publish_and_wait(Ping(n=1)))
    await ok_done.wait()
    await fail_started.wait()
    await hung_started.wait()
    clock.advance(1.999)
    await yield_once()
    assert not waiting.done()
    clock.advance(0.001)  # the default ack_timeout passes on the fake clock
    result = await waiting
    assert result == AckResult(
        succeeded=(ok_sub,), failed=((fail_sub, boom),), timed_out=(hung_sub,)
    )
    assert not result.ok
    assert fail_sub.failed == 1
    records = bus_records(caplog)
    assert len(records) == 1
    assert "handler" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert records[0].exc_info[1] is boom

    release.set()  # the timed-out handler still finishes its event
    later = await bus.publish_and_wait(Ping(n=2))
    assert later.succeeded == (ok_sub, hung_sub)
    assert hung_sub.delivered == 2
    await bus.stop()


@pytest.mark.asyncio
async def test_ack_reports_a_sync_handlers_failure() -> None:
    bus = EventBus()

    def failing(event: Ping) -> None:
        raise KeyError(event.n)

    subscription = bus.subscribe(Ping, failing)
    await bus.start()
    result = await bus.publish_and_wait(Ping(n=4))
    ((failed_sub, error),) = result.failed
    assert failed_sub is subscription
    assert isinstance(error, KeyError)
    assert result.succeeded == result.timed_out == result.dropped == ()
    await bus.stop()


@pytest.mark.asyncio
async def test_ack_with_no_subscriber_is_empty_and_ok() -> None:
    bus = EventBus()
    await bus.start()
    result = await bus.publish_and_wait(Ping(n=1))
    assert result == AckResult()
    assert result.ok
    await bus.stop()


@pytest.mark.asyncio
async def test_ack_waits_behind_earlier_events_and_reports_a_full_queue_as_dropped() -> None:
    clock = FakeClock()
    bus = EventBus(queue_size=3, clock=clock)
    seen: list[int] = []

    async def handler(event: Ping) -> None:
        seen.append(event.n)

    subscription = bus.subscribe(Ping, handler)
    bus.publish(Ping(n=1))
    bus.publish(Ping(n=2))
    behind = asyncio.create_task(bus.publish_and_wait(Ping(n=3)))
    await yield_once()  # queued behind 1 and 2; now the queue is full
    bus.publish(Ping(n=4))
    full = await bus.publish_and_wait(Ping(n=5))  # never reached, reported at once
    assert full.dropped == (subscription,)
    assert subscription.dropped == 2
    assert not behind.done()
    await bus.start()
    assert (await behind).succeeded == (subscription,)
    assert seen == [1, 2, 3]
    await bus.stop()


@pytest.mark.asyncio
async def test_ack_before_start_times_out_on_the_clock() -> None:
    clock = FakeClock()
    bus = EventBus(clock=clock)
    subscription = bus.subscribe(Ping, print)
    waiting = asyncio.create_task(bus.publish_and_wait(Ping(n=1), timeout=3.0))
    await yield_once()
    clock.advance(3.0)
    result = await waiting
    assert result.timed_out == (subscription,)
    assert subscription.pending == 1  # still delivered once the bus starts


@pytest.mark.asyncio
async def test_cancelling_a_subscription_drops_its_queue_and_resolves_acks() -> None:
    drops: list[object] = []
    bus = EventBus(on_drop=lambda event, sub: drops.append(event))
    seen: list[int] = []

    async def handler(event: Ping) -> None:
        seen.append(event.n)

    subscription = bus.subscribe(Ping, handler)
    kept = bus.subscribe(Ping, handler)
    bus.publish(Ping(n=1))
    waiting = asyncio.create_task(bus.publish_and_wait(Ping(n=2)))
    await yield_once()
    assert subscription.cancel()
    assert not subscription.cancel()  # idempotent
    assert not bus.unsubscribe(subscription)
    assert not subscription.active
    assert "cancelled" in repr(subscription)
    assert bus.subscriptions == (kept,)
    assert subscription.dropped == 2
    assert drops == [Ping(n=1), Ping(n=2)]
    await bus.start()
    result = await waiting
    assert result.dropped == (subscription,)
    assert result.succeeded == (kept,)
    bus.publish(Ping(n=3))
    await bus.stop()
    assert seen == [1, 2, 3]  # all from ``kept``


@pytest.mark.asyncio
async def test_a_subscription_cancelled_while_running_stops_its_worker() -> None:
    bus = EventBus()
    seen: list[int] = []

    async def handler(event: Ping) -> None:
        seen.append(event.n)
        if event.n == 1:
            subscription.cancel()  # from inside its own handler

    subscription = bus.subscribe(Ping, handler)
    before = asyncio.all_tasks()
    await bus.start()
    assert len(asyncio.all_tasks() - before) == 1
    bus.publish(Ping(n=1))
    bus.publish(Ping(n=2))
    worker = next(iter(asyncio.all_tasks() - before))
    await worker  # the worker ends by itself
    assert seen == [1]
    assert subscription.dropped == 1
    await bus.stop()


# -- failures ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_failing_handler_affects_nobody_and_is_logged_at_a_limited_rate(
    caplog: pytest.LogCaptureFixture, log_clock: FakeClock
) -> None:
    bus = EventBus()
    seen: list[int] = []

    async def failing_async(event: Ping) -> None:
        raise RuntimeError(f"async {event.n}")

    def failing_sync(event: Ping) -> None:
        raise RuntimeError(f"sync {event.n}")

    async def healthy(event: Ping) -> None:
        seen.append(event.n)

    async_sub = bus.subscribe(Ping, failing_async)
    sync_sub = bus.subscribe(Ping, failing_sync)
    bus.subscribe(Ping, healthy)
    await bus.start()
    for n in range(10):
        bus.publish(Ping(n=n))  # publishers never see a handler's error
    result = await bus.publish_and_wait(Ping(n=10))
    assert len(result.failed) == 2
    assert seen == list(range(11))
    assert async_sub.failed == sync_sub.failed == 11
    assert len(bus_records(caplog)) == 1  # 21 more suppressed within the interval
    log_clock.advance(60.0)
    bus.publish(Ping(n=11))
    await bus.publish_and_wait(Ping(n=12))
    messages = [r.getMessage() for r in bus_records(caplog)]
    assert len(messages) == 2
    assert "similar errors suppressed" in messages[1]
    assert "(21 similar" in messages[1]
    await bus.stop()


@pytest.mark.asyncio
async def test_a_handlers_own_cancellation_is_a_failure_not_the_end_of_its_worker() -> None:
    bus = EventBus()
    seen: list[int] = []

    async def handler(event: Ping) -> None:
        if event.n == 1:
            raise asyncio.CancelledError  # e.g. an inner task it awaited was cancelled
        seen.append(event.n)

    subscription = bus.subscribe(Ping, handler)
    await bus.start()
    first = await bus.publish_and_wait(Ping(n=1))
    ((_, error),) = first.failed
    assert isinstance(error, asyncio.CancelledError)
    assert (await bus.publish_and_wait(Ping(n=2))).ok
    assert seen == [2]
    assert subscription.failed == 1
    await bus.stop()


# -- lifecycle ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_start_and_stop_twice_leave_no_task_behind() -> None:
    before = asyncio.all_tasks()
    bus = EventBus()
    seen: list[int] = []

    async def on_async(event: Ping) -> None:
        seen.append(event.n)

    bus.subscribe(Ping, on_async)
    bus.subscribe(Ping, lambda event: seen.append(-event.n))
    for cycle in range(2):
        await bus.start()
        await bus.start()  # idempotent
        assert len(asyncio.all_tasks() - before) == 2  # one worker per subscription
        bus.publish(Ping(n=cycle + 1))
        await bus.stop()
        await bus.stop()  # idempotent
        assert not bus.running
        assert asyncio.all_tasks() == before
    assert sorted(seen) == [-2, -1, 1, 2]


@pytest.mark.asyncio
async def test_stop_drains_what_is_queued() -> None:
    bus = EventBus()
    seen: list[int] = []

    async def handler(event: Ping) -> None:
        await yield_once()
        seen.append(event.n)

    bus.subscribe(Ping, handler)
    bus.subscribe(Ping, lambda event: seen.append(-event.n))
    await bus.start()
    for n in range(1, 101):
        bus.publish(Ping(n=n))
    await bus.stop()
    assert sorted(seen) == sorted([*range(1, 101), *range(-100, 0)])
    assert bus.dropped == 0


@pytest.mark.asyncio
async def test_stop_with_zero_timeout_cancels_at_once_and_counts_the_rest() -> None:
    bus = EventBus()
    started = asyncio.Event()
    never = asyncio.Event()

    async def slow(event: Ping) -> None:
        started.set()
        await never.wait()

    subscription = bus.subscribe(Ping, slow)
    before = asyncio.all_tasks()
    await bus.start()
    for n in range(4):
        bus.publish(Ping(n=n))
    await started.wait()
    await bus.stop(timeout=0)
    assert subscription.dropped == 3  # the one in flight was cancelled, not dropped
    assert asyncio.all_tasks() - before == set()


@pytest.mark.asyncio
async def test_concurrent_stops_wait_for_the_same_stop() -> None:
    bus = EventBus()
    seen: list[int] = []

    async def handler(event: Ping) -> None:
        seen.append(event.n)

    bus.subscribe(Ping, handler)
    before = asyncio.all_tasks()
    await bus.start()
    bus.publish(Ping(n=1))
    await asyncio.gather(bus.stop(), bus.stop())
    assert seen == [1]
    assert asyncio.all_tasks() == before


@pytest.mark.asyncio
async def test_stop_before_start_drops_the_queue() -> None:
    bus = EventBus()
    subscription = bus.subscribe(Ping, print)
    bus.publish(Ping(n=1))
    await bus.stop()
    assert subscription.dropped == 1
    bus.publish(Ping(n=2))
    assert subscription.dropped == 2


@pytest.mark.asyncio
async def test_a_running_bus_refuses_a_second_loop_and_restarts_in_a_new_one() -> None:
    bus = EventBus()
    seen: list[tuple[int, int]] = []

    async def handler(event: Ping) -> None:
        seen.append((event.n, threading.get_ident()))

    bus.subscribe(Ping, handler)
    await bus.start()
    with pytest.raises(RuntimeError, match="already runs in another loop"):
        await asyncio.to_thread(asyncio.run, bus.start())
    await bus.stop()

    async def elsewhere() -> int:
        await bus.start()
        await bus.publish_and_wait(Ping(n=2))
        await bus.stop()
        return threading.get_ident()

    other_thread = await asyncio.to_thread(asyncio.run, elsewhere())
    assert seen == [(2, other_thread)]


@pytest.mark.asyncio
async def test_subscribers_added_while_running_get_their_worker_and_stop_ends_it() -> None:
    bus = EventBus()
    before = asyncio.all_tasks()
    await bus.start()
    assert asyncio.all_tasks() == before  # no subscription, no worker
    seen: list[int] = []

    async def handler(event: Ping) -> None:
        seen.append(event.n)

    bus.subscribe(Ping, handler)
    assert bus.running
    assert len(asyncio.all_tasks() - before) == 1
    assert (await bus.publish_and_wait(Ping(n=1))).ok
    await bus.stop()
    assert asyncio.all_tasks() == before
    assert seen == [1]


# -- properties -----------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    published=st.integers(min_value=0, max_value=40),
    queue_size=st.integers(min_value=1, max_value=20),
    subscribers=st.integers(min_value=1, max_value=4),
)
def test_each_subscriber_gets_the_first_queue_size_events_in_order(
    published: int, queue_size: int, subscribers: int
) -> None:
    dropped_events: list[int] = []
    bus = EventBus(queue_size=queue_size, on_drop=lambda e, s: dropped_events.append(e.n))
    received: list[list[int]] = [[] for _ in range(subscribers)]

    def handler_for(seen: list[int]) -> Callable[[Ping], Any]:
        async def handler(event: Ping) -> None:
            seen.append(event.n)

        return handler

    subscriptions = [bus.subscribe(Ping, handler_for(seen)) for seen in received]
    for n in range(published):
        bus.publish(Ping(n=n))

    async def run() -> None:
        await bus.start()
        await bus.stop()

    asyncio.run(run())
    kept = min(published, queue_size)
    lost = published - kept
    assert received == [list(range(kept))] * subscribers
    assert [s.dropped for s in subscriptions] == [lost] * subscribers
    assert [s.delivered for s in subscriptions] == [kept] * subscribers
    assert bus.dropped == lost * subscribers
    assert sorted(dropped_events) == sorted(list(range(kept, published)) * subscribers)


@pytest.mark.asyncio
async def test_a_bus_whose_loop_closed_without_stop_starts_again_elsewhere() -> None:
    bus = EventBus()
    seen: list[int] = []

    async def handler(event: Ping) -> None:
        seen.append(event.n)

    bus.subscribe(Ping, handler)

    async def forgetful() -> None:
        await bus.start()  # and never stopped: asyncio.run closes the loop under it

    await asyncio.to_thread(asyncio.run, forgetful())
    bus.publish(Ping(n=1))  # the old loop is gone: the event waits
    before = asyncio.all_tasks()
    await bus.start()
    assert (await bus.publish_and_wait(Ping(n=2))).ok
    assert seen == [1, 2]
    await bus.stop()
    assert asyncio.all_tasks() == before


@pytest.mark.asyncio
async def test_stopping_a_bus_whose_loop_closed_drops_its_queue() -> None:
    bus = EventBus()
    subscription = bus.subscribe(Ping, print)
    await asyncio.to_thread(asyncio.run, bus.start())
    bus.publish(Ping(n=1))
    await bus.stop()
    assert subscription.dropped == 1
    assert not bus.running
