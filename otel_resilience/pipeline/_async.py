"""The async driver: runs any pipeline around a coroutine function, in the running loop.

It mirrors the sync driver; what differs is only I/O: awaiting the call, awaiting
sleeps, and timeouts that really cancel (a timer from the injected clock cancels the
task, and the cancellation is turned into ``ResilienceTimeoutError`` the way
``asyncio.timeout`` does it, so an outside cancellation is never swallowed). Decisions
are :class:`~otel_resilience.pipeline._flow.CallRun`'s, shared with the sync driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from opentelemetry import trace as _trace_api
from opentelemetry.metrics import _internal as _metrics_api

from otel_resilience._errors import ResilienceTimeoutError
from otel_resilience._events import AttemptOutcome, TimeoutExceeded
from otel_resilience.bulkhead import Admission, Bulkhead
from otel_resilience.pipeline._flow import (
    CallRun,
    chain_to,
    emit,
    end_queue_wait,
    observe,
    queue_wait,
    reports_events,
)
from otel_resilience.retry import RetryState
from otel_resilience.timeout import deadline_scope

if TYPE_CHECKING:
    from otel_resilience._clock import TimerHandle
    from otel_resilience.breaker import SharedCircuitBreaker
    from otel_resilience.pipeline._pipeline import Pipeline

__all__ = ["run_async"]

R = TypeVar("R")

_FAILURE = AttemptOutcome.FAILURE
_REJECTED = AttemptOutcome.REJECTED


class _Canceller:
    """A timer that cancels a task, and tells afterwards whether it was the canceller.

    ``caused()`` follows ``asyncio.timeout``: the cancellation is ours to turn into a
    timeout only if nobody else asked to cancel the task meanwhile.
    """

    __slots__ = ("_cancelling", "_fired", "_handle", "_task")

    def __init__(self, pipeline: Pipeline, task: asyncio.Task[Any], limit: float) -> None:
        self._task = task
        self._fired = False
        self._cancelling = task.cancelling()
        clock = pipeline.clock
        self._handle: TimerHandle = clock.call_later(limit - clock.monotonic(), self._fire)

    def _fire(self) -> None:
        if not self._task.done():
            self._fired = True
            self._task.cancel()

    def caused(self) -> bool:
        """After a CancelledError: was it this timer (and nobody else) that cancelled?"""
        if not self._fired:
            return False
        self._fired = False
        return self._task.uncancel() <= self._cancelling

    def stop(self) -> None:
        self._handle.cancel()


def _current_task() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("otel-resilience timeouts need to run inside an asyncio task")
    return task


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
    if bulkhead.try_acquire():
        return
    waiter = _LoopWaiter(asyncio.get_running_loop())
    admission = bulkhead.acquire_or_enqueue(waiter)
    if admission is Admission.GRANTED:
        return
    if admission is Admission.REJECTED:
        raise bulkhead.rejected_error("queue_full")
    clock = pipeline.clock
    wait = queue_wait(bulkhead, clock, limit)
    timer = None if wait is None else clock.call_later(wait, lambda: _grant(waiter.future, False))
    try:
        granted = await waiter.future
    except BaseException:
        if not bulkhead.abandon(waiter, timed_out=False):
            bulkhead.release()
        raise
    finally:
        if timer is not None:
            timer.cancel()
    end_queue_wait(pipeline, bulkhead, waiter, limit, woken=granted)


async def _call(
    pipeline: Pipeline,
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    limit: float | None,
) -> Any:
    """Await the function, cancelled at ``limit`` when there is an attempt timeout."""
    seconds = pipeline.attempt_timeout
    if seconds is None:
        return await fn(*args, **kwargs)
    assert limit is not None  # noqa: S101 - an attempt timeout implies a limit
    canceller = _Canceller(pipeline, _current_task(), limit)
    try:
        with deadline_scope(limit, clock=pipeline.clock):
            return await fn(*args, **kwargs)
    except asyncio.CancelledError:
        if canceller.caused():
            emit(
                pipeline,
                TimeoutExceeded(pipeline=pipeline.name, scope="attempt", timeout=seconds),
            )
            raise ResilienceTimeoutError(seconds, "attempt") from None
        raise
    finally:
        canceller.stop()


async def run_async(
    pipeline: Pipeline, fn: Callable[..., Awaitable[R]], /, *args: Any, **kwargs: Any
) -> R:
    """Await ``fn(*args, **kwargs)`` through ``pipeline``; return its or a fallback's result.

    ``fn`` is not called at all while the breaker rejects: no coroutine is created.
    """
    start_call = pipeline.start_call
    # Whether anybody listens: with no SDK set up, two global reads and no call.
    if start_call is not None and not (
        pipeline.gated
        and _trace_api._TRACER_PROVIDER is None
        and _metrics_api._METER_PROVIDER is None
    ):
        observer = observe(pipeline, start_call)
        if observer is not None or not pipeline.fast:
            return await _run(pipeline, fn, args, kwargs, CallRun(pipeline, observer))
    elif not pipeline.fast:
        return await _run(pipeline, fn, args, kwargs, CallRun(pipeline, None))
    # Fast path, as in the sync driver.
    breaker = pipeline.circuit_breaker
    if breaker is None:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - classified by the retry
            failure: Exception = exc
        outcome = _FAILURE
    else:
        ticket = breaker.try_acquire()
        if isinstance(ticket, int):  # admitted (an int check is cheap; a class check is not)
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified by the breaker and the loop
                breaker.on_error(ticket, exc)
                failure, outcome = exc, _FAILURE
            except BaseException:
                breaker.release(ticket)
                raise
            else:
                breaker.on_result(ticket, result)
                return result
        else:  # refused: ``ticket`` is the CircuitOpenError
            if pipeline.passthrough:
                try:
                    raise ticket  # straight to the caller, from this frame
                finally:
                    del ticket  # no cycle: the traceback holds this frame
            failure, outcome = ticket, _REJECTED
            del ticket
    # Retried out of the except block: a later attempt's error gets no __context__.
    try:
        return await _retry_after_first(pipeline, fn, args, kwargs, failure, outcome)
    finally:
        del failure  # no cycle: the error's traceback holds this frame


async def _retry_after_first(
    pipeline: Pipeline,
    fn: Callable[..., Awaitable[R]],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    error: Exception,
    outcome: AttemptOutcome,
) -> R:
    """Go on from a fast-path first attempt that failed.

    With nobody listening, the retries stay on the fast path: the decisions are the
    retry's and the breaker's, and a :class:`CallRun` is made only to give up.
    """
    retry = pipeline.retry
    # An orchestrator to consult, or a listener taking events: the general loop.
    if retry is None or pipeline.orchestrator is not None or reports_events(pipeline):
        run = CallRun(pipeline, None)
        run.fail(error, None, outcome, 0.0)
        del error  # the run has it now (no cycle through this frame)
        return await _run(pipeline, fn, args, kwargs, run, failed=True)
    breaker = pipeline.circuit_breaker
    clock = pipeline.clock
    # The attempt count and last delay in locals: a RetryState only when decide() is asked.
    attempt, previous = 1, 0.0
    failure: Exception = error
    try:
        while True:
            decision = retry.fast_delay(attempt, previous, failure)
            if decision is None:
                state = RetryState(None)
                state.attempt, state.previous_delay = attempt, previous
                verdict = retry.decide(state, failure, None, 0.0)
                if isinstance(verdict, str):
                    run = CallRun.gave_up(pipeline, failure, outcome, state, verdict)
                    del failure, error  # the run has it now (no cycle through this frame)
                    return cast("R", await _end(pipeline, run))
                decision = verdict
            attempt += 1
            previous = decision
            if decision > 0:
                await clock.async_sleep(decision)
            if breaker is None:
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - classified by the retry
                    failure, outcome = exc, _FAILURE
                    continue
                del failure, error  # no cycle: their tracebacks hold this frame
                return result
            ticket = breaker.try_acquire()
            if not isinstance(ticket, int):  # refused
                failure, outcome = ticket, _REJECTED
                del ticket  # only ``failure`` refers to it, for the give-up to drop
                continue
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified by the breaker and the retry
                breaker.on_error(ticket, exc)
                failure, outcome = exc, _FAILURE
                continue
            except BaseException:
                breaker.release(ticket)
                raise
            breaker.on_result(ticket, result)
            del failure, error  # no cycle: their tracebacks hold this frame
            return result
    except BaseException:
        # Ended by control flow (or by the give-up raising): let go of the errors
        # whose tracebacks hold this frame, or they would form a cycle with it.
        failure = error = None  # type: ignore[assignment]
        raise


async def _run(
    pipeline: Pipeline,
    fn: Callable[..., Awaitable[R]],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    run: CallRun,
    *,
    failed: bool = False,
) -> R:
    """The general loop. With ``failed``, the fast path already ran a failed first attempt."""
    breaker = pipeline.circuit_breaker
    bulkhead = pipeline.bulkhead
    guarded = pipeline.attempt_timeout is not None
    clock = pipeline.clock
    shared = cast("SharedCircuitBreaker", breaker) if pipeline.awaits_breaker else None
    total = None
    if run.deadline is not None:
        total = _Canceller(pipeline, _current_task(), run.deadline)
    try:
        while True:
            if not failed:
                if not run.begin_attempt():
                    break
                ticket = None
                called = False
                error = None
                result = None
                try:
                    if shared is not None:
                        ticket = await shared.aacquire()
                    elif breaker is not None:
                        ticket = breaker.acquire()
                    if bulkhead is None:
                        called = True
                        if guarded:
                            result = await _call(pipeline, fn, args, kwargs, run.limit)
                        else:
                            result = await fn(*args, **kwargs)
                    else:
                        await _enter_bulkhead(pipeline, bulkhead, run.limit)
                        called = True
                        try:
                            result = await _call(pipeline, fn, args, kwargs, run.limit)
                        finally:
                            bulkhead.release()
                except Exception as exc:  # noqa: BLE001 - classified by run.settle
                    error = exc
                except BaseException as exc:
                    cancelled = isinstance(exc, asyncio.CancelledError)
                    if cancelled and total is not None and total.caused():
                        run.timed_out(ticket)
                        break
                    run.interrupted(ticket, exc)
                    raise
                settled = run.settle(ticket, error, result, called=called)
                error = None  # the run has it now (no cycle through this frame)
                if shared is not None and shared.has_outbox():
                    await shared.aflush()  # the outcome (and any trip) to the store
                if settled:
                    return cast("R", result)
            failed = False
            delay = run.next_delay()
            if delay is None:
                break
            if delay > 0:
                try:
                    await clock.async_sleep(delay)
                except asyncio.CancelledError as exc:
                    if total is None or not total.caused():
                        run.interrupted(None, exc)
                        raise
                    run.sleep_cut_short()
                    break
    except BaseException:
        run.error = None  # escaping: its traceback holds this frame, which holds the run
        raise
    finally:
        if total is not None:
            total.stop()
        run.close()
    if shared is not None and shared.has_outbox():
        await shared.aflush()  # what a timeout or an orchestrator queued
    return cast("R", await _end(pipeline, run))


async def _end(pipeline: Pipeline, run: CallRun) -> Any:
    """End a call whose last attempt failed: fall back, return the result, or raise."""
    context = run.conclude(sync=False)
    if context is None:
        return run.result
    fallback = pipeline.fallback
    assert fallback is not None  # noqa: S101 - a context implies a fallback
    try:
        value = fallback.produce(context)
        if fallback.is_async:
            value = await value
    except BaseException as exc:
        chain_to(exc, context.error)
        run.fallback_done(exc)
        raise
    run.fallback_done(None)
    return value
