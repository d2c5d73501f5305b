"""The sync driver: runs any pipeline around a plain function, in the calling thread.

It does the I/O only: asking the breaker and the bulkhead, calling, sleeping. What
happened and what comes next is decided by :class:`~otel_resilience.pipeline._flow.CallRun`,
shared with the async driver.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
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
    from otel_resilience.pipeline._pipeline import Pipeline

__all__ = ["run_sync"]

R = TypeVar("R")

_FAILURE = AttemptOutcome.FAILURE
_REJECTED = AttemptOutcome.REJECTED


class _ThreadWaiter:
    """A bulkhead waiter that parks a thread on an event."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()

    def wake(self) -> None:
        self.event.set()


def _enter_bulkhead(pipeline: Pipeline, bulkhead: Bulkhead, limit: float | None) -> None:
    """Take a bulkhead slot, queueing if allowed; raise ``BulkheadFullError`` if refused.

    A queued wait ends at ``queue_timeout`` or at ``limit`` (the attempt's or the call's
    deadline), whichever comes first; cut short by ``limit``, it is a timeout.
    """
    if bulkhead.try_acquire():
        return
    waiter = _ThreadWaiter()
    admission = bulkhead.acquire_or_enqueue(waiter)
    if admission is Admission.GRANTED:
        return
    if admission is Admission.REJECTED:
        raise bulkhead.rejected_error("queue_full")
    clock = pipeline.clock
    try:
        woken = clock.wait(waiter.event, queue_wait(bulkhead, clock, limit))
    except BaseException:
        if not bulkhead.abandon(waiter, timed_out=False):
            bulkhead.release()
        raise
    end_queue_wait(pipeline, bulkhead, waiter, limit, woken=woken)


def _call_within(
    pipeline: Pipeline,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    limit: float,
) -> Any:
    """Call ``fn`` under the attempt timeout (sync: cooperative, checked on return)."""
    with deadline_scope(limit, clock=pipeline.clock):
        result = fn(*args, **kwargs)
    if pipeline.clock.monotonic() > limit:
        seconds = pipeline.attempt_timeout
        assert seconds is not None  # noqa: S101 - only called with an attempt timeout
        emit(pipeline, TimeoutExceeded(pipeline=pipeline.name, scope="attempt", timeout=seconds))
        raise ResilienceTimeoutError(seconds, "attempt")
    return result


def _call(
    pipeline: Pipeline,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    limit: float | None,
) -> Any:
    """The function itself, under the attempt timeout when there is one."""
    if pipeline.attempt_timeout is None:
        return fn(*args, **kwargs)
    return _call_within(pipeline, fn, args, kwargs, limit)  # type: ignore[arg-type]


def run_sync(pipeline: Pipeline, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
    """Call ``fn(*args, **kwargs)`` through ``pipeline``; return its or a fallback's result."""
    start_call = pipeline.start_call
    # Whether anybody listens: with no SDK set up, two global reads and no call.
    if start_call is not None and not (
        pipeline.gated
        and _trace_api._TRACER_PROVIDER is None
        and _metrics_api._METER_PROVIDER is None
    ):
        observer = observe(pipeline, start_call)
        if observer is not None or not pipeline.fast:
            return _run(pipeline, fn, args, kwargs, CallRun(pipeline, observer))
    elif not pipeline.fast:
        return _run(pipeline, fn, args, kwargs, CallRun(pipeline, None))
    # Fast path: only a breaker and/or a plain retry, nobody observing. The first attempt
    # runs inline, allocating nothing; a failure hands over to the general loop.
    breaker = pipeline.circuit_breaker
    if breaker is None:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - classified by the retry
            failure: Exception = exc
        outcome = _FAILURE
    else:
        ticket = breaker.try_acquire()
        if isinstance(ticket, int):  # admitted (an int check is cheap; a class check is not)
            try:
                result = fn(*args, **kwargs)
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
        return _retry_after_first(pipeline, fn, args, kwargs, failure, outcome)
    finally:
        del failure  # no cycle: the error's traceback holds this frame


def _retry_after_first(
    pipeline: Pipeline,
    fn: Callable[..., R],
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
        return _run(pipeline, fn, args, kwargs, run, failed=True)
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
                    return cast("R", _end(pipeline, run))
                decision = verdict
            attempt += 1
            previous = decision
            if decision > 0:
                clock.sleep(decision)
            if breaker is None:
                try:
                    result = fn(*args, **kwargs)
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
                result = fn(*args, **kwargs)
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


def _run(
    pipeline: Pipeline,
    fn: Callable[..., R],
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
                    if breaker is not None:
                        ticket = breaker.acquire()
                    if bulkhead is None:
                        called = True
                        if guarded:
                            result = _call(pipeline, fn, args, kwargs, run.limit)
                        else:
                            result = fn(*args, **kwargs)
                    else:
                        _enter_bulkhead(pipeline, bulkhead, run.limit)
                        called = True
                        try:
                            result = _call(pipeline, fn, args, kwargs, run.limit)
                        finally:
                            bulkhead.release()
                except Exception as exc:  # noqa: BLE001 - classified by run.settle
                    error = exc
                except BaseException as exc:
                    run.interrupted(ticket, exc)
                    raise
                settled = run.settle(ticket, error, result, called=called)
                error = None  # the run has it now (no cycle through this frame)
                if settled:
                    return cast("R", result)
            failed = False
            delay = run.next_delay()
            if delay is None:
                break
            if delay > 0:
                clock.sleep(delay)
    except BaseException:
        run.error = None  # escaping: its traceback holds this frame, which holds the run
        raise
    finally:
        run.close()
    return cast("R", _end(pipeline, run))


def _end(pipeline: Pipeline, run: CallRun) -> Any:
    """End a call whose last attempt failed: fall back, return the result, or raise."""
    context = run.conclude(sync=True)
    if context is None:
        return run.result
    fallback = pipeline.fallback
    assert fallback is not None  # noqa: S101 - a context implies a fallback
    try:
        value = fallback.produce(context)
    except BaseException as exc:
        chain_to(exc, context.error)
        run.fallback_done(exc)
        raise
    run.fallback_done(None)
    return value
