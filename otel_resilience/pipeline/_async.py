"""The async driver: runs any pipeline around a coroutine function, in the running loop.

It mirrors the sync driver step for step; what differs is only I/O: awaiting the call,
awaiting sleeps, and timeouts that really cancel (a timer from the injected clock cancels
the task, and the cancellation is turned into ``ResilienceTimeoutError`` the way
``asyncio.timeout`` does it, so an outside cancellation is never swallowed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from otel_resilience._errors import CircuitOpenError, ResilienceTimeoutError
from otel_resilience._events import (
    AttemptOutcome,
    CallObserver,
    CallOutcome,
    TimeoutExceeded,
    safe_call,
)
from otel_resilience.bulkhead import Admission, Bulkhead
from otel_resilience.pipeline._flow import (
    Recovery,
    attempt_limit,
    conclude,
    emit,
    finish,
    queue_wait,
    raise_queue_timeout,
    start_call,
    total_timeout,
)
from otel_resilience.pipeline._sync import _bad_result
from otel_resilience.timeout import deadline_scope

if TYPE_CHECKING:
    from otel_resilience.pipeline._pipeline import Pipeline

__all__ = ["run_async"]

R = TypeVar("R")

_SUCCESS = AttemptOutcome.SUCCESS
_FAILURE = AttemptOutcome.FAILURE
_REJECTED = AttemptOutcome.REJECTED
_TIMEOUT = AttemptOutcome.TIMEOUT


class _Canceller:
    """Timer callback that cancels a task and remembers that it did."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False

    def __call__(self) -> None:
        if not self.task.done():
            self.fired = True
            self.task.cancel()


def _settle_cancel(canceller: _Canceller | None, cancelling: int) -> bool:
    """After a CancelledError: was it our timer (and nobody else) that cancelled?"""
    if canceller is None or not canceller.fired:
        return False
    canceller.fired = False
    return canceller.task.uncancel() <= cancelling


def _grant(future: asyncio.Future[bool], granted: bool) -> None:  # noqa: FBT001
    if not future.done():
        future.set_result(granted)


class _LoopWaiter:
    """A bulkhead waiter that resolves a future in its event loop (from any thread)."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[bool] = loop.create_future()

    def wake(self) -> None:
        self.loop.call_soon_threadsafe(_grant, self.future, True)


async def _enter_bulkhead(pipeline: Pipeline, bulkhead: Bulkhead, limit: float | None) -> None:
    """Take a bulkhead slot, queueing if allowed; raise ``BulkheadFullError`` if refused.

    A queued wait ends at ``queue_timeout`` or at ``limit``, whichever comes first; cut
    short by ``limit``, it is a timeout.
    """
    clock = pipeline.clock
    if bulkhead.try_acquire():
        return
    waiter = _LoopWaiter(asyncio.get_running_loop())
    admission = bulkhead.acquire_or_enqueue(waiter)
    if admission is Admission.GRANTED:
        return
    if admission is Admission.REJECTED:
        raise bulkhead.rejected_error("queue_full")
    timer = None
    wait = queue_wait(bulkhead, clock, limit)
    if wait is not None:
        timer = clock.call_later(wait, lambda: _grant(waiter.future, False))
    try:
        granted = await waiter.future
    except BaseException:
        if not bulkhead.abandon(waiter, timed_out=False):
            bulkhead.release()
        raise
    finally:
        if timer is not None:
            timer.cancel()
    if not granted:
        raise_queue_timeout(pipeline, bulkhead, waiter, limit)


async def _await_within(
    pipeline: Pipeline,
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    task: asyncio.Task[Any],
    limit: float,
) -> Any:
    """Await ``fn`` until ``limit``: the attempt is cancelled when it overruns."""
    canceller = _Canceller(task)
    cancelling = task.cancelling()
    clock = pipeline.clock
    handle = clock.call_later(limit - clock.monotonic(), canceller)
    try:
        with deadline_scope(limit, clock=clock):
            return await fn(*args, **kwargs)
    except asyncio.CancelledError:
        if _settle_cancel(canceller, cancelling):
            seconds = pipeline.attempt_timeout
            assert seconds is not None  # noqa: S101 - only called with an attempt timeout
            emit(
                pipeline,
                TimeoutExceeded(pipeline=pipeline.name, scope="attempt", timeout=seconds),
            )
            raise ResilienceTimeoutError(seconds, "attempt") from None
        raise
    finally:
        handle.cancel()


async def run_async(
    pipeline: Pipeline, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any
) -> R:
    """Await ``fn(*args, **kwargs)`` through ``pipeline``; return its or a fallback's result.

    ``fn`` is not called at all while the breaker rejects: no coroutine is created.
    """
    listener = pipeline.listener
    observer = None if listener is None else start_call(listener, pipeline.name)
    if observer is not None or not pipeline.fast:
        return await _run(pipeline, fn, args, kwargs, observer, None)
    # Fast path: nothing configured that needs the clock, a slot or a result check, and
    # nobody observing. The first attempt runs inline; a failure hands over to _run.
    breaker = pipeline.circuit_breaker
    if breaker is None:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - classified by _run
            return await _run(pipeline, fn, args, kwargs, None, (exc, _FAILURE))
    if pipeline.passthrough:
        ticket = breaker.acquire()  # a rejection goes straight to the caller
    else:
        try:
            ticket = breaker.acquire()
        except CircuitOpenError as exc:
            return await _run(pipeline, fn, args, kwargs, None, (exc, _REJECTED))
    try:
        result = await fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - classified by the breaker and _run
        breaker.on_error(ticket, exc)
        return await _run(pipeline, fn, args, kwargs, None, (exc, _FAILURE))
    except BaseException:
        breaker.release(ticket)
        raise
    breaker.on_result(ticket, result)
    return result


async def _run(
    pipeline: Pipeline,
    fn: Callable[..., Awaitable[R]],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    observer: CallObserver | None,
    first: tuple[Exception, AttemptOutcome] | None,
) -> R:
    """The general loop; ``first`` is the outcome of a first attempt the fast path ran."""
    clock = pipeline.clock
    timed = pipeline.timed or observer is not None
    started = clock.monotonic() if timed else 0.0
    if pipeline.budget is not None:
        pipeline.budget.record_call()
    breaker = pipeline.circuit_breaker
    bulkhead = pipeline.bulkhead
    guarded = pipeline.attempt_timeout is not None
    task: asyncio.Task[Any] | None = None
    total: _Canceller | None = None
    total_handle = None
    scope = None
    cancelling = 0
    deadline = None
    if pipeline.timeout is not None or guarded:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("timeouts need to run inside an asyncio task")
        cancelling = task.cancelling()
        if pipeline.timeout is not None:
            deadline = started + pipeline.timeout
            total = _Canceller(task)
            total_handle = clock.call_later(pipeline.timeout, total)
            scope = deadline_scope(deadline, clock=clock)
            scope.__enter__()
    recovery: Recovery | None = None
    attempt = 1
    error: BaseException | None
    try:
        while True:
            if first is not None:
                (error, outcome), result, ticket, first = first, None, None, None
                attempt_started = ended = started
            else:
                attempt_started = clock.monotonic() if timed and attempt > 1 else started
                if deadline is not None and attempt_started >= deadline:
                    error, result, outcome = total_timeout(pipeline, None), None, _TIMEOUT
                    break
                if observer is not None:
                    safe_call("call observer", observer.attempt_started, attempt)
                ticket = None
                called = False
                error = None
                limit = (
                    attempt_limit(pipeline, attempt_started, deadline)
                    if guarded or bulkhead is not None
                    else None
                )
                try:
                    if breaker is not None:
                        ticket = breaker.acquire()
                    if bulkhead is None:
                        called = True
                        if guarded:
                            result = await _await_within(pipeline, fn, args, kwargs, task, limit)  # type: ignore[arg-type]
                        else:
                            result = await fn(*args, **kwargs)
                    else:
                        await _enter_bulkhead(pipeline, bulkhead, limit)
                        called = True
                        try:
                            if guarded:
                                result = await _await_within(
                                    pipeline,
                                    fn,
                                    args,
                                    kwargs,
                                    task,  # type: ignore[arg-type]
                                    limit,  # type: ignore[arg-type]
                                )
                            else:
                                result = await fn(*args, **kwargs)
                        finally:
                            bulkhead.release()
                except Exception as exc:  # noqa: BLE001 - classified by the strategies below
                    error = exc
                    result = None
                except BaseException as exc:
                    if ticket is not None:
                        breaker.release(ticket)  # type: ignore[union-attr]
                    ended = clock.monotonic() if timed else 0.0
                    if isinstance(exc, asyncio.CancelledError) and _settle_cancel(
                        total, cancelling
                    ):
                        error, result, outcome = total_timeout(pipeline, None), None, _TIMEOUT
                        if observer is not None:
                            safe_call(
                                "call observer",
                                observer.attempt_ended,
                                attempt,
                                _TIMEOUT,
                                error,
                                ended - attempt_started,
                            )
                        break
                    if observer is not None:
                        safe_call(
                            "call observer",
                            observer.attempt_ended,
                            attempt,
                            _FAILURE,
                            exc,
                            ended - attempt_started,
                        )
                        finish(observer, CallOutcome.CANCELLED, exc, started, ended)
                    raise
                ended = clock.monotonic() if timed else 0.0
                if error is None:
                    if ticket is not None:
                        breaker.on_result(ticket, result, ended - attempt_started)  # type: ignore[union-attr]
                    if not pipeline.checks_result or not _bad_result(pipeline, result):
                        if pipeline.observes_outcomes:
                            pipeline.retry.observe(success=True)  # type: ignore[union-attr]
                        if observer is not None:
                            safe_call(
                                "call observer",
                                observer.attempt_ended,
                                attempt,
                                _SUCCESS,
                                None,
                                ended - attempt_started,
                            )
                            finish(observer, CallOutcome.SUCCESS, None, started, ended)
                        return cast("R", result)
                    outcome = _FAILURE
                elif not called:
                    # Refused before the call: nothing to tell the breaker about.
                    if ticket is not None:
                        breaker.release(ticket)  # type: ignore[union-attr]
                    timed_out = isinstance(error, ResilienceTimeoutError)
                    outcome = _TIMEOUT if timed_out else _REJECTED
                else:
                    if ticket is not None:
                        breaker.on_error(ticket, error, ended - attempt_started)  # type: ignore[union-attr]
                    outcome = _TIMEOUT if isinstance(error, ResilienceTimeoutError) else _FAILURE
            # ---- the attempt failed ----
            if pipeline.observes_outcomes:
                pipeline.retry.observe(success=False)  # type: ignore[union-attr]
            if observer is not None:
                safe_call(
                    "call observer",
                    observer.attempt_ended,
                    attempt,
                    outcome,
                    error,
                    ended - attempt_started,
                )
            if recovery is None:
                recovery = Recovery(pipeline, started, deadline)
            delay = recovery.retry_delay(error, result)
            if delay is None:
                if recovery.reason == "total_timeout":
                    error = total_timeout(pipeline, error)
                break
            if delay > 0:
                try:
                    await clock.async_sleep(delay)
                except asyncio.CancelledError as cancelled:
                    if not _settle_cancel(total, cancelling):
                        finish(observer, CallOutcome.CANCELLED, cancelled, started, ended)
                        raise
                    error, result = total_timeout(pipeline, error), None
                    break
            attempt += 1
    finally:
        if total_handle is not None:
            total_handle.cancel()
        if scope is not None:
            scope.__exit__(None, None, None)
    return cast("R", await _give_up(pipeline, recovery, observer, error, result, started, outcome))


async def _give_up(
    pipeline: Pipeline,
    recovery: Recovery | None,
    observer: Any,
    error: BaseException | None,
    result: Any,
    started: float,
    last_outcome: AttemptOutcome,
) -> Any:
    """End a call whose last attempt failed: fall back, return the result, or raise."""
    context = conclude(
        pipeline, recovery, observer, error, result, started, last_outcome, sync=False
    )
    if context is None:
        return result
    fallback = pipeline.fallback
    assert fallback is not None  # noqa: S101 - a context implies a fallback
    try:
        value = fallback.produce(context)
        if fallback.is_async:
            value = await value
    except BaseException as exc:
        finish(observer, CallOutcome.FAILURE, exc, started, pipeline.clock.monotonic())
        raise
    finish(observer, CallOutcome.FALLBACK, None, started, pipeline.clock.monotonic())
    return value
