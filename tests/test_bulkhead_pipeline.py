"""The bulkhead through both drivers: real threads, real tasks, FIFO queue, queue timeouts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from otel_resilience import (
    Bulkhead,
    BulkheadFullError,
    BulkheadRejected,
    Pipeline,
    ResilienceError,
    ResilienceEvent,
    ResilienceTimeoutError,
)
from otel_resilience.testing import FakeClock

WaitUntil = Callable[[Callable[[], bool]], None]


async def checkpoint() -> None:
    """Let the other ready tasks run once; no time passes."""
    await asyncio.sleep(0)  # noqa: TID251 - a zero sleep only yields to the event loop


async def settle(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition()`` holds (bounded, so a bug fails fast)."""
    for _ in range(1000):
        if condition():
            return
        await checkpoint()
    pytest.fail("condition never became true")


class Events:
    def __init__(self) -> None:
        self.events: list[ResilienceEvent] = []
        self.lock = threading.Lock()

    def start_call(self, pipeline: str) -> None:
        return None

    def on_event(self, event: ResilienceEvent) -> None:
        with self.lock:
            self.events.append(event)


class Concurrency:
    """Counts calls running at once, under a lock; remembers the peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.done = 0

    def enter(self) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        with self.lock:
            self.running -= 1
            self.done += 1


class Holder:
    """Holds a bulkhead slot in a thread until released."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.thread = threading.Thread(target=pipeline.call, args=(self.hold,))
        self.thread.start()
        assert self.entered.wait(5)

    def hold(self) -> None:
        self.entered.set()
        assert self.gate.wait(5)

    def release(self) -> None:
        self.gate.set()
        self.thread.join()


class Caller:
    """Makes one pipeline call in a thread and keeps its result or error."""

    def __init__(self, pipeline: Pipeline, fn: Callable[[], object]) -> None:
        self.result: object = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, args=(pipeline, fn))
        self.thread.start()

    def run(self, pipeline: Pipeline, fn: Callable[[], object]) -> None:
        try:
            self.result = pipeline.call(fn)
        except BaseException as error:
            self.error = error

    def join(self) -> None:
        self.thread.join(5)
        assert not self.thread.is_alive()


# -- sync: threads ---------------------------------------------------------------------


def test_fifty_threads_never_exceed_five_running(clock: FakeClock, wait_until: WaitUntil) -> None:
    bulkhead = Bulkhead(5, max_queue=50)
    pipeline = Pipeline(bulkhead=bulkhead, clock=clock)
    counter = Concurrency()
    gate = threading.Event()

    def work(n: int) -> int:
        counter.enter()
        try:
            assert gate.wait(5)
            return n * n
        finally:
            counter.leave()

    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            results[n] = pipeline.call(work, n)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    # Five hold a slot, forty-five wait in the queue.
    wait_until(lambda: bulkhead.queued == 45)
    assert counter.running == 5
    assert bulkhead.in_flight == 5
    gate.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == {n: n * n for n in range(50)}
    assert counter.peak == 5
    assert counter.done == 50
    assert (bulkhead.in_flight, bulkhead.queued, bulkhead.rejections) == (0, 0, 0)


def test_threads_are_served_in_arrival_order(clock: FakeClock, wait_until: WaitUntil) -> None:
    bulkhead = Bulkhead(1, max_queue=10)
    pipeline = Pipeline(bulkhead=bulkhead, clock=clock)
    holder = Holder(pipeline)
    order: list[int] = []
    callers = []
    for n in range(8):
        callers.append(Caller(pipeline, lambda n=n: order.append(n)))  # type: ignore[misc]
        wait_until(lambda n=n: bulkhead.queued == n + 1)  # type: ignore[misc]
    holder.release()
    for caller in callers:
        caller.join()
        assert caller.error is None
    assert order == list(range(8))


def test_full_queue_rejects_at_once(clock: FakeClock, wait_until: WaitUntil) -> None:
    events = Events()
    bulkhead = Bulkhead(1, max_queue=1, name="pool", listener=events)
    pipeline = Pipeline(bulkhead=bulkhead, clock=clock)
    holder = Holder(pipeline)
    queued = Caller(pipeline, lambda: "queued")
    wait_until(lambda: bulkhead.queued == 1)
    called: list[int] = []
    with pytest.raises(BulkheadFullError) as caught:
        pipeline.call(lambda: called.append(1))
    assert isinstance(caught.value, ResilienceError)
    assert (caught.value.bulkhead_name, caught.value.reason) == ("pool", "queue_full")
    assert str(caught.value) == "bulkhead 'pool' rejected the call (queue_full)"
    assert called == []
    holder.release()
    queued.join()
    assert queued.result == "queued"
    assert events.events == [BulkheadRejected(bulkhead="pool", reason="queue_full")]
    assert bulkhead.rejections == 1


def test_without_a_queue_a_full_bulkhead_rejects(clock: FakeClock) -> None:
    bulkhead = Bulkhead(1)
    pipeline = Pipeline(bulkhead=bulkhead, clock=clock)
    holder = Holder(pipeline)
    with pytest.raises(BulkheadFullError):
        pipeline.call(lambda: None)
    holder.release()
    assert pipeline.call(lambda: "free") == "free"


def test_queue_timeout_on_the_fake_clock(clock: FakeClock, wait_until: WaitUntil) -> None:
    events = Events()
    bulkhead = Bulkhead(1, max_queue=2, queue_timeout=5.0, name="pool", listener=events)
    pipeline = Pipeline(bulkhead=bulkhead, clock=clock)
    holder = Holder(pipeline)
    waiting = Caller(pipeline, lambda: "never")
    wait_until(lambda: bulkhead.queued == 1)
    clock.advance(4.9)
    assert waiting.thread.is_alive()  # not yet: fake time has not reached the timeout
    assert bulkhead.queued == 1
    clock.advance(0.1)
    waiting.join()
    assert isinstance(waiting.error, BulkheadFullError)
    assert (waiting.error.bulkhead_name, waiting.error.reason) == ("pool", "queue_timeout")
    assert events.events == [BulkheadRejected(bulkhead="pool", reason="queue_timeout")]
    assert bulkhead.queued == 0
    holder.release()
    assert (bulkhead.in_flight, bulkhead.rejections) == (0, 1)


def test_a_waiter_woken_in_time_runs(clock: FakeClock, wait_until: WaitUntil) -> None:
    bulkhead = Bulkhead(1, max_queue=1, queue_timeout=5.0)
    pipeline = Pipeline(bulkhead=bulkhead, clock=clock)
    holder = Holder(pipeline)
    waiting = Caller(pipeline, lambda: "ran")
    wait_until(lambda: bulkhead.queued == 1)
    clock.advance(3.0)
    holder.release()
    waiting.join()
    assert (waiting.result, waiting.error) == ("ran", None)
    assert bulkhead.in_flight == 0


# -- async: tasks ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fifty_tasks_never_exceed_five_running(clock: FakeClock) -> None:
    bulkhead = Bulkhead(5, max_queue=50)
    pipeline = Pipeline(bulkhead=bulkhead, clock=clock)
    counter = Concurrency()
    gate = asyncio.Event()

    async def work(n: int) -> int:
        counter.enter()
        try:
            await gate.wait()
            await checkpoint()
            return n
        finally:
            counter.leave()

    tasks = [asyncio.create_task(pipeline.acall(work, n)) for n in range(50)]
    await settle(lambda: bulkhead.queued == 45)
    assert counter.running == 5
    gate.set()
    assert await asyncio.gather(*tasks) == list(range(50))
    assert counter.peak == 5
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


@pytest.mark.asyncio
async def test_tasks_are_served_in_arrival_order(clock: FakeClock) -> None:
    bulkhead = Bulkhead(1, max_queue=10)
    pipeline = Pipeline(bulkhead=bulkhead, clock=clock)
    gate = asyncio.Event()
    order: list[int] = []

    async def hold() -> None:
        await gate.wait()

    async def record(n: int) -> None:
        order.append(n)
        await checkpoint()

    holder = asyncio.create_task(pipeline.acall(hold))
    await settle(lambda: bulkhead.in_flight == 1)
    tasks = []
    for n in range(8):
        tasks.append(asyncio.create_task(pipeline.acall(record, n)))
        await settle(lambda n=n: bulkhead.queued == n + 1)  # type: ignore[misc]
    gate.set()
    await asyncio.gather(holder, *tasks)
    assert order == list(range(8))


@pytest.mark.asyncio
async def test_async_queue_full_and_queue_timeout(clock: FakeClock) -> None:
    bulkhead = Bulkhead(1, max_queue=1, queue_timeout=2.0, name="pool")
    pipeline = Pipeline(bulkhead=bulkhead, clock=clock)
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    async def never() -> None:
        raise AssertionError("a rejected call ran")

    holder = asyncio.create_task(pipeline.acall(hold))
    await settle(lambda: bulkhead.in_flight == 1)
    waiting = asyncio.create_task(pipeline.acall(never))
    await settle(lambda: bulkhead.queued == 1)
    with pytest.raises(BulkheadFullError) as full:
        await pipeline.acall(never)
    assert full.value.reason == "queue_full"
    clock.advance(2.0)
    with pytest.raises(BulkheadFullError) as timed_out:
        await waiting
    assert (timed_out.value.bulkhead_name, timed_out.value.reason) == ("pool", "queue_timeout")
    gate.set()
    await holder
    assert (bulkhead.in_flight, bulkhead.queued, bulkhead.rejections) == (0, 0, 2)


@pytest.mark.asyncio
async def test_a_cancelled_waiter_leaves_the_queue(clock: FakeClock) -> None:
    bulkhead = Bulkhead(1, max_queue=5)
    pipeline = Pipeline(bulkhead=bulkhead, clock=clock)
    gate = asyncio.Event()
    ran: list[str] = []

    async def hold() -> None:
        await gate.wait()

    async def run(name: str) -> str:
        ran.append(name)
        return name

    holder = asyncio.create_task(pipeline.acall(hold))
    await settle(lambda: bulkhead.in_flight == 1)
    doomed = asyncio.create_task(pipeline.acall(run, "doomed"))
    await settle(lambda: bulkhead.queued == 1)
    survivor = asyncio.create_task(pipeline.acall(run, "survivor"))
    await settle(lambda: bulkhead.queued == 2)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert bulkhead.queued == 1
    gate.set()
    await holder
    assert await survivor == "survivor"
    assert ran == ["survivor"]
    assert (bulkhead.in_flight, bulkhead.queued, bulkhead.rejections) == (0, 0, 0)


@pytest.mark.asyncio
async def test_a_thread_and_a_task_share_one_bulkhead(clock: FakeClock) -> None:
    bulkhead = Bulkhead(1, max_queue=1)
    pipeline = Pipeline(bulkhead=bulkhead, clock=clock)
    holder = Holder(pipeline)  # a thread holds the only slot

    async def work() -> str:
        return "task ran"

    task = asyncio.create_task(pipeline.acall(work))
    await settle(lambda: bulkhead.queued == 1)
    # Releasing from the other thread hands the slot to the task in its loop.
    await asyncio.get_running_loop().run_in_executor(None, holder.release)
    assert await task == "task ran"
    assert bulkhead.in_flight == 0


# -- the bulkhead under timeouts -------------------------------------------------------


@pytest.mark.asyncio
async def test_async_total_timeout_ends_a_queue_wait(clock: FakeClock) -> None:
    bulkhead = Bulkhead(1, max_queue=1)
    holding = Pipeline(bulkhead=bulkhead, clock=clock)
    timed = Pipeline(timeout=3.0, bulkhead=bulkhead, clock=clock)
    gate = asyncio.Event()
    ran: list[str] = []

    async def hold() -> None:
        await gate.wait()

    async def work() -> str:
        ran.append("work")
        return "never"

    holder = asyncio.create_task(holding.acall(hold))
    await settle(lambda: bulkhead.in_flight == 1)
    waiting = asyncio.create_task(timed.acall(work))
    await settle(lambda: bulkhead.queued == 1)
    clock.advance(3.0)
    with pytest.raises(ResilienceTimeoutError) as caught:
        await waiting
    assert caught.value.scope == "total"
    assert (bulkhead.queued, bulkhead.rejections) == (0, 0)
    gate.set()
    await holder
    assert ran == []
    assert bulkhead.in_flight == 0


def test_sync_call_queued_past_its_total_deadline_never_runs(
    clock: FakeClock, wait_until: WaitUntil
) -> None:
    bulkhead = Bulkhead(1, max_queue=1)
    holder = Holder(Pipeline(bulkhead=bulkhead, clock=clock))
    ran: list[float] = []
    waiting = Caller(
        Pipeline(timeout=5.0, bulkhead=bulkhead, clock=clock),
        lambda: ran.append(clock.monotonic()),
    )
    wait_until(lambda: bulkhead.queued == 1)
    clock.advance(10.0)
    holder.release()
    waiting.join()
    assert isinstance(waiting.error, ResilienceTimeoutError)
    assert waiting.error.scope == "total"
    assert ran == []


@pytest.mark.asyncio
async def test_async_queue_wait_counts_toward_the_attempt_timeout(clock: FakeClock) -> None:
    bulkhead = Bulkhead(1, max_queue=1)
    holding = Pipeline(bulkhead=bulkhead, clock=clock)
    timed = Pipeline(attempt_timeout=2.0, bulkhead=bulkhead, clock=clock)
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    async def work() -> str:
        return "ran after waiting 3 s of a 2 s attempt"

    holder = asyncio.create_task(holding.acall(hold))
    await settle(lambda: bulkhead.in_flight == 1)
    waiting = asyncio.create_task(timed.acall(work))
    await settle(lambda: bulkhead.queued == 1)
    clock.advance(3.0)
    await checkpoint()
    gate.set()
    await holder
    with pytest.raises(ResilienceTimeoutError):
        await waiting
