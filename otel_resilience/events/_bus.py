"""An in-process event bus: typed events, isolated subscribers, bounded per-subscriber queues.

Design, in short:

- An event is any frozen dataclass instance. Subscriptions are by class, never by string;
  a subscription to a base class receives every subclass (``object`` receives everything).
- ``publish`` never blocks and never runs a handler: under one short lock it appends the
  event to each matching subscriber's bounded queue, or drops it for that subscriber
  (counted, and reported to the drop hooks). It is safe from any thread, inside or
  outside an event loop, and before ``start``.
- Once started, the bus runs one worker task per subscription on its event loop. The
  worker drains its own queue in order, one event at a time. Async handlers are awaited
  in the worker; sync handlers run in a daemon thread owned by the subscription (one
  thread each, so a slow or hung sync handler never holds up another subscriber, and a
  hung one never blocks interpreter exit or the loop's shutdown).
- A handler that raises is logged at a limited rate and counted; it affects nothing else.
  A hung handler stops only its own worker: its queue fills up and further events for it
  are dropped and counted.
- Timeouts (acknowledgment, stop) run on the injected clock's ``call_later``, so tests
  move time with :class:`~otel_resilience.testing.FakeClock` instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import queue
import threading
import types
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypeVar

from otel_resilience._clock import SYSTEM_CLOCK, Clock
from otel_resilience._events import LISTENER_ERRORS, safe_call
from otel_resilience._validation import check_callable, check_int, check_number, is_async_callable

__all__ = [
    "DEFAULT_ACK_TIMEOUT",
    "DEFAULT_BUS_NAME",
    "DEFAULT_QUEUE_SIZE",
    "AckResult",
    "DropHook",
    "EventBus",
    "Subscription",
]

_logger = logging.getLogger("otel_resilience")

E = TypeVar("E")

DEFAULT_QUEUE_SIZE: Final = 1000
"""Events each subscriber may have waiting before further ones are dropped for it."""

DEFAULT_ACK_TIMEOUT: Final = 5.0
"""Seconds :meth:`EventBus.publish_and_wait` waits for handlers, and :meth:`EventBus.stop`
lets workers drain, unless told otherwise."""

DEFAULT_BUS_NAME: Final = "events"
"""The bus's name, used in log messages and in its handler threads' names."""

_MAX_ROUTES = 1024
# Routes are cached per published class; classes created at run time could grow the
# cache without end, so past this many the cache starts over.

DropHook: TypeAlias = Callable[[Any, "Subscription"], object]
"""Called as ``hook(event, subscription)`` for every event dropped for a subscriber.

It runs in the thread that caused the drop (usually the publisher's), outside every lock;
an exception it raises is logged at a limited rate and otherwise ignored.
"""

_NEW, _RUNNING, _STOPPING, _STOPPED = range(4)


@types.coroutine
def _yield_once() -> Generator[None, None, None]:
    # A bare yield hands control back to the event loop for one iteration (what
    # asyncio.sleep(0) does internally), so a worker whose handlers never suspend cannot
    # starve the other workers.
    yield


class _Dropped:
    """The outcome of a delivery that never reached its handler."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DROPPED"


_DROPPED: Final = _Dropped()
_NOTHING: Final = object()


class Subscription:
    """One handler subscribed to one event class on an :class:`EventBus`.

    Returned by :meth:`EventBus.subscribe`; cancel it with :meth:`cancel` (or
    :meth:`EventBus.unsubscribe`). Its counters are updated by the bus and may be read
    from any thread.
    """

    __slots__ = (
        "_active",
        "_bus",
        "_closing",
        "_delivered",
        "_dropped",
        "_event_type",
        "_failed",
        "_handler",
        "_idle",
        "_is_async",
        "_label",
        "_queue",
        "_runner",
        "_task",
        "_wakeup",
    )

    def __init__(
        self, bus: EventBus, event_type: type[Any], handler: Callable[[Any], object]
    ) -> None:
        self._bus = bus
        self._event_type = event_type
        self._handler = handler
        self._is_async = is_async_callable(handler)
        name = getattr(handler, "__qualname__", None)
        self._label: str = name if isinstance(name, str) else type(handler).__qualname__
        self._queue: deque[object] = deque()
        self._active = True
        self._closing = False
        self._idle = False
        self._delivered = 0
        self._failed = 0
        self._dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._runner: _SyncRunner | None = None

    @property
    def event_type(self) -> type[Any]:
        """The class subscribed to; instances of its subclasses are delivered too."""
        return self._event_type

    @property
    def handler(self) -> Callable[[Any], object]:
        """The handler, sync or async, called with each event."""
        return self._handler

    @property
    def is_async(self) -> bool:
        """Whether the handler is awaited on the bus's loop (otherwise it runs in a thread)."""
        return self._is_async

    @property
    def active(self) -> bool:
        """Whether the subscription still receives events (``False`` once cancelled)."""
        return self._active

    @property
    def delivered(self) -> int:
        """Events the handler finished without raising."""
        return self._delivered

    @property
    def failed(self) -> int:
        """Events for which the handler raised."""
        return self._failed

    @property
    def dropped(self) -> int:
        """Events dropped for this subscriber.

        Dropped because its queue was full, the bus was stopped, or the subscription was
        cancelled with events still queued.
        """
        return self._dropped

    @property
    def pending(self) -> int:
        """Events queued for the handler and not yet taken by its worker."""
        return len(self._queue)

    def cancel(self) -> bool:
        """Stop receiving events; queued ones are dropped (and counted).

        A handler already running finishes. Idempotent; safe from any thread.

        Returns:
            Whether this call cancelled the subscription (``False`` if it already was).
        """
        return self._bus.unsubscribe(self)

    def __repr__(self) -> str:
        state = "active" if self._active else "cancelled"
        return f"<Subscription {self._event_type.__qualname__} -> {self._label} ({state})>"


@dataclass(frozen=True, slots=True, kw_only=True)
class AckResult:
    """What became of one event sent with :meth:`EventBus.publish_and_wait`.

    Every subscription that matched the event appears in exactly one field, in
    subscription order.
    """

    succeeded: tuple[Subscription, ...] = ()
    """Handlers that finished without raising."""
    failed: tuple[tuple[Subscription, BaseException], ...] = ()
    """Handlers that raised, with what they raised (a handler interrupted by
    :meth:`EventBus.stop` appears with the :class:`asyncio.CancelledError`)."""
    timed_out: tuple[Subscription, ...] = ()
    """Handlers that had not finished (or not started) when the timeout passed. They still
    receive the event later, unless the bus stops first."""
    dropped: tuple[Subscription, ...] = ()
    """Subscribers the event never reached: queue full, bus stopped, or subscription
    cancelled before its turn."""

    @property
    def ok(self) -> bool:
        """Whether every matching handler finished without raising (vacuously true)."""
        return not (self.failed or self.timed_out or self.dropped)


class _Ack:
    """Collects the outcomes of one acknowledged publish.

    Resolves a future on the waiter's loop once every delivery is accounted for or the
    timeout expires.
    """

    __slots__ = ("_closed", "_future", "_lock", "_loop", "_outcomes", "_pending", "_thread")

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self._loop = loop
        self._thread = threading.get_ident()
        self._future: asyncio.Future[None] = loop.create_future()
        self._lock = threading.Lock()
        self._outcomes: dict[Subscription, object] = {}
        self._pending = expected
        self._closed = expected == 0

    def report(self, subscription: Subscription, outcome: object) -> None:
        """Record ``outcome``: ``None`` (success), an exception, or ``_DROPPED``."""
        with self._lock:
            if self._closed:
                return
            self._outcomes[subscription] = outcome
            self._pending -= 1
            if self._pending:
                return
            self._closed = True
        self._resolve()

    def expire(self) -> None:
        """The timeout passed: whoever has not reported has timed out."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._resolve()

    async def wait(self) -> None:
        with self._lock:
            if self._closed:
                return
        await self._future

    def result(self, subscriptions: Iterable[Subscription]) -> AckResult:
        with self._lock:
            outcomes = dict(self._outcomes)
        succeeded: list[Subscription] = []
        failed: list[tuple[Subscription, BaseException]] = []
        timed_out: list[Subscription] = []
        dropped: list[Subscription] = []
        for subscription in subscriptions:
            outcome = outcomes.get(subscription, _NOTHING)
            if outcome is None:
                succeeded.append(subscription)
            elif outcome is _NOTHING:
                timed_out.append(subscription)
            elif isinstance(outcome, BaseException):
                failed.append((subscription, outcome))
            else:
                dropped.append(subscription)
        return AckResult(
            succeeded=tuple(succeeded),
            failed=tuple(failed),
            timed_out=tuple(timed_out),
            dropped=tuple(dropped),
        )

    def _resolve(self) -> None:
        if threading.get_ident() == self._thread:
            self._set()
            return
        # A closed loop (RuntimeError) means nobody waits any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._set)

    def _set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)


class _Delivery:
    """A queued event whose publisher waits for acknowledgment.

    Plain events are queued as themselves, so fire-and-forget publishing allocates nothing.
    """

    __slots__ = ("ack", "event")

    def __init__(self, event: object, ack: _Ack) -> None:
        self.event = event
        self.ack = ack


def _settle(future: asyncio.Future[object], ok: bool, value: object) -> None:  # noqa: FBT001
    if future.done():  # the worker was cancelled while the handler ran
        return
    if ok:
        future.set_result(value)
    else:
        assert isinstance(value, BaseException)  # noqa: S101 - internal invariant
        future.set_exception(value)


_Job: TypeAlias = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[object]", Callable[[Any], object], object
]


class _SyncRunner:
    """A daemon thread that runs one subscription's sync handler, one event at a time.

    Daemon, so that a handler that never returns holds neither ``stop`` nor interpreter
    exit (a ``ThreadPoolExecutor`` joins its threads at exit, and ``asyncio.run`` joins the
    default executor).
    """

    __slots__ = ("_jobs", "_thread")

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(
        self, loop: asyncio.AbstractEventLoop, handler: Callable[[Any], object], event: object
    ) -> asyncio.Future[object]:
        future: asyncio.Future[object] = loop.create_future()
        self._jobs.put((loop, future, handler, event))
        return future

    def close(self) -> None:
        """Let the thread end once the handler it runs, if any, returns."""
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, handler, event = job
            del job
            try:
                value, ok = handler(event), True
            except BaseException as error:  # noqa: BLE001 - forwarded to the worker as is
                value, ok = error, False
            # A closed loop (RuntimeError) means the worker is long gone.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, ok, value)
            del loop, future, handler, event, value


def _is_event_class(cls: type[Any]) -> bool:
    params = getattr(cls, "__dataclass_params__", None)
    return dataclasses.is_dataclass(cls) and bool(getattr(params, "frozen", False))


class EventBus:
    """Typed publish/subscribe with isolated subscribers and bounded queues.

    Events are frozen dataclass instances (the engine's :class:`CircuitStateChanged`,
    :class:`RetryScheduled`, ..., the orchestrator's :class:`ErrorOccurred`, ..., or your
    own). Handlers subscribe by class, sync or async.

    Args:
        queue_size: events each subscriber may have waiting; beyond it, events are dropped
            for that subscriber and counted (``dropped``).
        ack_timeout: default timeout in seconds of :meth:`publish_and_wait` and of the
            drain in :meth:`stop`.
        clock: where timeouts are measured (its ``call_later``); the system clock by
            default, a :class:`~otel_resilience.testing.FakeClock` in tests.
        name: used in log messages and handler thread names.
        telemetry: ``False`` keeps the bus out of the ``resilience.events.dropped``
            metric of the global OpenTelemetry providers.
        on_drop: a :data:`DropHook` called for every dropped event; more can be added with
            :meth:`add_drop_hook`.

    Example:
        >>> import asyncio
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Ping:
        ...     n: int
        >>> async def main() -> list[int]:
        ...     seen: list[int] = []
        ...     bus = EventBus()
        ...     bus.subscribe(Ping, lambda event: seen.append(event.n))
        ...     await bus.start()
        ...     bus.publish(Ping(n=1))
        ...     result = await bus.publish_and_wait(Ping(n=2))
        ...     await bus.stop()
        ...     return seen if result.ok else []
        >>> asyncio.run(main())
        [1, 2]
    """

    __slots__ = (
        "__weakref__",
        "_accepting",
        "_ack_timeout",
        "_clock",
        "_drop_hooks",
        "_dropped",
        "_lock",
        "_loop",
        "_loop_thread",
        "_name",
        "_queue_size",
        "_routes",
        "_state",
        "_stop_done",
        "_subscriptions",
        "_workers",
    )

    def __init__(
        self,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        clock: Clock | None = None,
        name: str = DEFAULT_BUS_NAME,
        on_drop: DropHook | None = None,
        telemetry: bool = True,
    ) -> None:
        self._queue_size = check_int("EventBus", "queue_size", queue_size)
        self._ack_timeout = check_number("EventBus", "ack_timeout", ack_timeout)
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"EventBus.clock must be a Clock, got {type(clock).__name__}")
        self._clock: Clock = SYSTEM_CLOCK if clock is None else clock
        if not isinstance(name, str):
            raise TypeError(f"EventBus.name must be a str, got {type(name).__name__}")
        if not name:
            raise ValueError("EventBus.name must not be empty")
        self._name = name
        self._drop_hooks: tuple[DropHook, ...] = ()
        if on_drop is not None:
            self._drop_hooks = (check_callable("EventBus", "on_drop", on_drop),)
        self._lock = threading.Lock()
        self._subscriptions: tuple[Subscription, ...] = ()
        # Per published class, the subscriptions it matches. Replaced (never mutated) when
        # subscriptions change, so ``publish`` reads it without the lock.
        self._routes: dict[type[Any], tuple[Subscription, ...]] = {}
        self._state = _NEW
        self._accepting = True
        self._dropped = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._workers: set[asyncio.Task[None]] = set()
        self._stop_done: asyncio.Future[None] | None = None
        if telemetry:
            # Dropped events are counted by the OpenTelemetry adapter at collection time
            # (``resilience.events.dropped``). Imported here: telemetry imports the engine.
            from otel_resilience.telemetry import default_listener  # noqa: PLC0415

            default_listener().track(self)

    # -- introspection -----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The bus's name."""
        return self._name

    @property
    def queue_size(self) -> int:
        """The bound of each subscriber's queue."""
        return self._queue_size

    @property
    def ack_timeout(self) -> float:
        """The default timeout of :meth:`publish_and_wait` and :meth:`stop`, in seconds."""
        return self._ack_timeout

    @property
    def running(self) -> bool:
        """Whether the bus is started (and not stopping)."""
        return self._state == _RUNNING

    @property
    def dropped(self) -> int:
        """Events dropped so far, summed over subscribers.

        An event dropped for two subscribers counts twice.
        """
        return self._dropped

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """The active subscriptions, in subscription order."""
        return self._subscriptions

    def add_drop_hook(self, hook: DropHook) -> None:
        """Call ``hook(event, subscription)`` for every event dropped from now on."""
        check_callable("EventBus", "add_drop_hook.hook", hook)
        with self._lock:
            self._drop_hooks = (*self._drop_hooks, hook)

    def remove_drop_hook(self, hook: DropHook) -> None:
        """Stop calling ``hook``; a hook that was never added is ignored."""
        with self._lock:
            self._drop_hooks = tuple(h for h in self._drop_hooks if h is not hook)

    # -- subscribing -------------------------------------------------------------------

    def subscribe(
        self, event_type: type[E], handler: Callable[[E], Awaitable[object]] | Callable[[E], object]
    ) -> Subscription:
        """Call ``handler(event)`` for every published instance of ``event_type``.

        Instances of subclasses are delivered too; ``object`` receives every event. An
        async handler (coroutine function) is awaited on the bus's loop; a sync handler
        runs in a thread of its own. Each subscription sees its events in publish order,
        one at a time. Safe from any thread, before or after :meth:`start`.

        Raises:
            TypeError: ``event_type`` is not a class (event names are never strings), or
                ``handler`` is not callable.
        """
        if not isinstance(event_type, type):
            raise TypeError(
                "EventBus.subscribe.event_type must be an event class, "
                f"got {type(event_type).__name__} {event_type!r}"
            )
        check_callable("EventBus", "subscribe.handler", handler)
        subscription = Subscription(self, event_type, handler)
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)
            self._routes = {}
            loop = self._loop if self._state == _RUNNING else None
        if loop is not None:
            self._on_loop(loop, self._spawn, subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> bool:
        """Cancel ``subscription``: see :meth:`Subscription.cancel`.

        Raises:
            ValueError: the subscription belongs to another bus.
        """
        if subscription._bus is not self:
            raise ValueError(f"{subscription!r} does not belong to event bus {self._name!r}")
        with self._lock:
            if not subscription._active:
                return False
            subscription._active = False
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)
            self._routes = {}
            leftovers = self._take_queue_locked(subscription)
            wakeup = self._wake_locked(subscription)
            loop = self._loop
        if wakeup is not None and loop is not None:
            self._on_loop(loop, wakeup.set)
        self._report_dropped(subscription, leftovers)
        return True

    # -- publishing --------------------------------------------------------------------

    def publish(self, event: object) -> None:
        """Queue ``event`` for every matching subscriber and return at once.

        Never blocks and never runs a handler. For each subscriber whose queue is full,
        or when the bus is stopped, the event is dropped for that subscriber, counted and
        passed to the drop hooks. Before :meth:`start`, events wait in the queues. Safe
        from any thread, inside or outside an event loop.

        Raises:
            TypeError: ``event`` is not a frozen dataclass instance.
        """
        routes = self._routes.get(type(event))
        if routes is None:
            routes = self._route(type(event))
        if not routes:
            return
        wakeups: list[asyncio.Event] | None = None
        dropped: list[Subscription] | None = None
        with self._lock:
            accepting = self._accepting
            limit = self._queue_size
            for subscription in routes:
                if not subscription._active:
                    continue
                pending = subscription._queue
                if accepting and len(pending) < limit:
                    pending.append(event)
                    if subscription._idle:
                        # Only an idle worker needs waking; a busy one finds the event
                        # when it next looks at its queue.
                        subscription._idle = False
                        wakeup = subscription._wakeup
                        if wakeup is not None:
                            if wakeups is None:
                                wakeups = []
                            wakeups.append(wakeup)
                else:
                    subscription._dropped += 1
                    self._dropped += 1
                    if dropped is None:
                        dropped = []
                    dropped.append(subscription)
            loop = self._loop
        if wakeups is not None and loop is not None:
            self._wake(loop, wakeups)
        if dropped is not None:
            for subscription in dropped:
                self._notify_drop(event, subscription)

    async def publish_and_wait(
        self,
        event: object,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - runs on the injected clock
    ) -> AckResult:
        """Deliver ``event`` to every matching handler and wait until each has finished.

        The event takes its place in each subscriber's queue behind earlier events, so
        per-subscriber order holds across both kinds of publish. Waiting ends when every
        handler has finished or ``timeout`` seconds (default ``ack_timeout``) have passed;
        handlers still running then keep running. Awaitable in any event loop.

        Returns:
            Which handlers succeeded, failed (with their exceptions), timed out, or were
            never reached (dropped). A handler's failure is never raised.

        Raises:
            TypeError: ``event`` is not a frozen dataclass instance.
        """
        wait = (
            self._ack_timeout
            if timeout is None
            else check_number("EventBus", "publish_and_wait.timeout", timeout, allow_minimum=True)
        )
        routes = self._routes.get(type(event))
        if routes is None:
            routes = self._route(type(event))
        loop = asyncio.get_running_loop()
        wakeups: list[asyncio.Event] = []
        dropped: list[Subscription] = []
        with self._lock:
            targets = tuple(s for s in routes if s._active)
            ack = _Ack(loop, len(targets))
            delivery = _Delivery(event, ack)
            accepting = self._accepting
            for subscription in targets:
                pending = subscription._queue
                if accepting and len(pending) < self._queue_size:
                    pending.append(delivery)
                    wakeup = self._wake_locked(subscription)
                    if wakeup is not None:
                        wakeups.append(wakeup)
                else:
                    subscription._dropped += 1
                    self._dropped += 1
                    dropped.append(subscription)
            bus_loop = self._loop
        if wakeups and bus_loop is not None:
            self._wake(bus_loop, wakeups)
        for subscription in dropped:
            ack.report(subscription, _DROPPED)
            self._notify_drop(event, subscription)
        if not targets:
            return AckResult()
        handle = self._clock.call_later(wait, ack.expire)
        try:
            await ack.wait()
        finally:
            handle.cancel()
        return ack.result(targets)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start delivering, on the running event loop. Idempotent.

        Events published before ``start`` are delivered now. A bus stopped earlier can be
        started again (in any loop).

        Raises:
            RuntimeError: the bus already runs in another event loop, or is stopping.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._state == _RUNNING:
                if self._loop is loop:
                    return
                if not self._orphaned_locked():
                    raise RuntimeError(f"event bus {self._name!r} already runs in another loop")
                # The loop it ran in was closed without stop(): the workers died with it,
                # and the queued events are delivered by the new ones.
                self._workers.clear()
                for subscription in self._subscriptions:
                    subscription._task = None
                    subscription._idle = False
                    subscription._closing = False
            if self._state == _STOPPING:
                raise RuntimeError(f"event bus {self._name!r} is stopping; await stop() first")
            self._state = _RUNNING
            self._accepting = True
            self._loop = loop
            self._loop_thread = threading.get_ident()
            subscriptions = self._subscriptions
        for subscription in subscriptions:
            self._spawn(subscription)

    async def stop(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - runs on the injected clock
    ) -> None:
        """Stop the bus: drain, then cancel what is left. Idempotent.

        From the moment ``stop`` is called, ``publish`` drops (and counts) new events.
        Workers first get ``timeout`` seconds (default ``ack_timeout``; ``0`` skips the
        drain) to deliver what is already queued; workers still busy after that are
        cancelled (an async handler sees :class:`asyncio.CancelledError`; a sync handler
        cannot be interrupted, its thread is abandoned and ends when the handler returns).
        Events still queued are dropped and counted. When ``stop`` returns, no task of the
        bus is left. Must be awaited in the bus's loop; concurrent calls wait for the first.
        """
        grace = (
            self._ack_timeout
            if timeout is None
            else check_number("EventBus", "stop.timeout", timeout, allow_minimum=True)
        )
        loop = asyncio.get_running_loop()
        wakeups: list[asyncio.Event] = []
        with self._lock:
            state = self._state
            if state == _STOPPED:
                return
            if state == _NEW or self._orphaned_locked():
                state = _NEW  # nothing runs: only the queues are left to drop
                done = None
            elif state == _STOPPING:
                done = self._stop_done
            else:
                if self._loop is not loop:
                    raise RuntimeError(
                        f"event bus {self._name!r} must be stopped in the loop it runs in"
                    )
                done = self._stop_done = loop.create_future()
                self._state = _STOPPING
                self._accepting = False
                for subscription in self._subscriptions:
                    subscription._closing = True
                    wakeup = self._wake_locked(subscription)
                    if wakeup is not None:
                        wakeups.append(wakeup)
            workers = set(self._workers)
        if state == _STOPPING:
            assert done is not None  # noqa: S101 - set by the stop in progress
            await asyncio.shield(done)
            return
        if state == _NEW:
            self._finish_stop()
            return
        for wakeup in wakeups:
            wakeup.set()
        try:
            pending = await self._wait_for(workers, grace)
            if pending:
                for task in pending:
                    task.cancel()
                pending = await self._wait_for(pending, grace)
                if pending:
                    _logger.error(
                        "event bus %r: %d handler(s) ignored cancellation and were abandoned",
                        self._name,
                        len(pending),
                    )
        except BaseException:
            for task in workers:
                task.cancel()
            raise
        finally:
            self._finish_stop()
            assert done is not None  # noqa: S101 - created above
            if not done.done():
                done.set_result(None)

    def _orphaned_locked(self) -> bool:
        """Whether the loop the bus was started in is closed (without a stop)."""
        return self._loop is not None and self._loop.is_closed()

    def _finish_stop(self) -> None:
        leftovers: list[tuple[Subscription, list[object]]] = []
        with self._lock:
            self._state = _STOPPED
            self._accepting = False
            self._loop = None
            self._loop_thread = None
            self._workers.clear()
            for subscription in self._subscriptions:
                subscription._closing = False
                subscription._idle = False
                subscription._task = None
                items = self._take_queue_locked(subscription)
                if items:
                    leftovers.append((subscription, items))
        for subscription, items in leftovers:
            self._report_dropped(subscription, items)

    async def _wait_for(
        self, tasks: set[asyncio.Task[None]], limit: float
    ) -> set[asyncio.Task[None]]:
        """Wait until every task is done or ``limit`` seconds pass on the injected clock."""
        pending = {task for task in tasks if not task.done()}
        if not pending:
            return pending
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        left = len(pending)

        def release() -> None:
            if not waiter.done():
                waiter.set_result(None)

        def one_done(_: object) -> None:
            nonlocal left
            left -= 1
            if not left:
                release()

        for task in pending:
            task.add_done_callback(one_done)
        handle = self._clock.call_later(limit, release)
        try:
            await waiter
        finally:
            handle.cancel()
            for task in pending:
                task.remove_done_callback(one_done)
        return {task for task in pending if not task.done()}

    # -- workers -----------------------------------------------------------------------

    def _spawn(self, subscription: Subscription) -> None:
        """Start the worker of ``subscription`` (on the bus's loop thread)."""
        with self._lock:
            loop = self._loop
            if (
                self._state != _RUNNING
                or loop is None
                or not subscription._active
                or subscription._task is not None
            ):
                return
            wakeup = subscription._wakeup = asyncio.Event()
            subscription._idle = False
            subscription._closing = False
        task = loop.create_task(
            self._work(subscription, wakeup),
            name=f"{self._name}: {subscription._label}",
        )
        with self._lock:
            subscription._task = task
            self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    async def _work(self, subscription: Subscription, wakeup: asyncio.Event) -> None:
        lock = self._lock
        pending = subscription._queue
        try:
            while True:
                with lock:
                    if not subscription._active:
                        return
                    if pending:
                        item = pending.popleft()
                    elif subscription._closing:
                        return
                    else:
                        subscription._idle = True
                        wakeup.clear()
                        item = _NOTHING
                if item is _NOTHING:
                    await wakeup.wait()
                else:
                    await self._deliver(subscription, item)
                    await _yield_once()
        finally:
            runner = subscription._runner
            subscription._runner = None
            if runner is not None:
                runner.close()
            with lock:
                subscription._idle = False
                if subscription._task is asyncio.current_task():
                    subscription._task = None

    async def _deliver(self, subscription: Subscription, item: object) -> None:
        if type(item) is _Delivery:
            event, ack = item.event, item.ack
        else:
            event, ack = item, None
        handler = subscription._handler
        try:
            if subscription._is_async:
                await handler(event)  # type: ignore[misc]
            else:
                runner = subscription._runner
                if runner is None:
                    runner = subscription._runner = _SyncRunner(
                        f"{self._name}: {subscription._label}"
                    )
                loop = asyncio.get_running_loop()
                result = await runner.submit(loop, handler, event)
                if result is not None and inspect.isawaitable(result):
                    # A sync callable returning an awaitable (a lambda around a coroutine
                    # function): await it here rather than leave it never awaited.
                    await result
        except asyncio.CancelledError as error:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # The worker itself is being cancelled (stop): report and let it end.
                if ack is not None:
                    ack.report(subscription, error)
                raise
            # The handler cancelled something of its own and let it escape: that is the
            # handler's failure, and must not end this subscriber's worker.
            self._handler_failed(subscription, ack, error)
        except Exception as error:  # noqa: BLE001 - isolation: a handler never breaks the bus
            self._handler_failed(subscription, ack, error)
        else:
            subscription._delivered += 1
            if ack is not None:
                ack.report(subscription, None)

    def _handler_failed(
        self, subscription: Subscription, ack: _Ack | None, error: BaseException
    ) -> None:
        # Called inside the ``except`` block, so the log carries the traceback.
        subscription._failed += 1
        LISTENER_ERRORS.exception(f"event bus {self._name!r} handler {subscription._label}")
        if ack is not None:
            ack.report(subscription, error)

    # -- helpers -----------------------------------------------------------------------

    def _route(self, cls: type[Any]) -> tuple[Subscription, ...]:
        if not _is_event_class(cls):
            raise TypeError(f"an event must be a frozen dataclass instance, got {cls.__qualname__}")
        with self._lock:
            routes = tuple(s for s in self._subscriptions if issubclass(cls, s._event_type))
            if len(self._routes) >= _MAX_ROUTES:
                self._routes = {}
            self._routes[cls] = routes
        return routes

    def _take_queue_locked(self, subscription: Subscription) -> list[object]:
        items = list(subscription._queue)
        subscription._queue.clear()
        subscription._dropped += len(items)
        self._dropped += len(items)
        return items

    @staticmethod
    def _wake_locked(subscription: Subscription) -> asyncio.Event | None:
        if not subscription._idle:
            return None
        subscription._idle = False
        return subscription._wakeup

    def _wake(self, loop: asyncio.AbstractEventLoop, wakeups: list[asyncio.Event]) -> None:
        if threading.get_ident() == self._loop_thread:
            for wakeup in wakeups:
                wakeup.set()
            return
        # A loop closed without stop() raises RuntimeError: the events wait in the queues.
        with contextlib.suppress(RuntimeError):
            for wakeup in wakeups:
                loop.call_soon_threadsafe(wakeup.set)

    def _on_loop(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: Any
    ) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
            return
        # A loop closed without stop() raises RuntimeError: nothing left to run it.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn, *args)

    def _report_dropped(self, subscription: Subscription, items: list[object]) -> None:
        for item in items:
            if type(item) is _Delivery:
                item.ack.report(subscription, _DROPPED)
                self._notify_drop(item.event, subscription)
            else:
                self._notify_drop(item, subscription)

    def _notify_drop(self, event: object, subscription: Subscription) -> None:
        for hook in self._drop_hooks:
            safe_call(f"event bus {self._name!r} drop hook", hook, event, subscription)

    def __repr__(self) -> str:
        state = ("new", "running", "stopping", "stopped")[self._state]
        return (
            f"<EventBus {self._name!r} {state}: {len(self._subscriptions)} subscription(s), "
            f"{self._dropped} dropped>"
        )
