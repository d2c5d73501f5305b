"""The sync driver: runs any pipeline around a plain function, in the calling thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
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
from otel_resilience.timeout import deadline_scope

if TYPE_CHECKING:
    from otel_resilience.pipeline._pipeline import Pipeline

__all__ = ["run_sync"]

R = TypeVar("R")

_SUCCESS = AttemptOutcome.SUCCESS
_FAILURE = AttemptOutcome.FAILURE
_REJECTED = AttemptOutcome.REJECTED
_TIMEOUT = AttemptOutcome.TIMEOUT


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
    clock = pipeline.clock
    if bulkhead.try_acquire():
        return
    waiter = _ThreadWaiter()
    admission = bulkhead.acquire_or_enqueue(waiter)
    if admission is Admission.GRANTED:
        return
    if admission is Admission.REJECTED:
        raise bulkhead.rejected_error("queue_full")
    wait = queue_wait(bulkhead, clock, limit)
    try:
        woken = clock.wait(waiter.event, wait)
    except BaseException:
        if not bulkhead.abandon(waiter, timed_out=False):
            bulkhead.release()
        raise
    if not woken:
        raise_queue_timeout(pipeline, bulkhead, waiter, limit)


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


def run_sync(pipeline: Pipeline, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
    """Call ``fn(*args, **kwargs)`` through ``pipeline`` and return its (or a fallback's) result."""
    listener = pipeline.listener
    observer = None if listener is None else start_call(listener, pipeline.name)
    if observer is not None or not pipeline.fast:
        return _run(pipeline, fn, args, kwargs, observer, None)
    # Fast path: nothing configured that needs the clock, a slot or a result check, and
    # nobody observing. The first attempt runs inline; a failure hands over to _run.
    breaker = pipeline.circuit_breaker
    if breaker is None:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - classified by _run
            return _run(pipeline, fn, args, kwargs, None, (exc, _FAILURE))
    if pipeline.passthrough:
        ticket = breaker.acquire()  # a rejection goes straight to the caller
    else:
        try:
            ticket = breaker.acquire()
        except CircuitOpenError as exc:
            return _run(pipeline, fn, args, kwargs, None, (exc, _REJECTED))
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - classified by the breaker and _run
        breaker.on_error(ticket, exc)
        return _run(pipeline, fn, args, kwargs, None, (exc, _FAILURE))
    except BaseException:
        breaker.release(ticket)
        raise
    breaker.on_result(ticket, result)
    return result


def _run(
    pipeline: Pipeline,
    fn: Callable[..., R],
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
    deadline = None if pipeline.timeout is None else started + pipeline.timeout
    scope = None if deadline is None else deadline_scope(deadline, clock=clock)
    if scope is not None:
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
                            result = _call_within(pipeline, fn, args, kwargs, limit)  # type: ignore[arg-type]
                        else:
                            result = fn(*args, **kwargs)
                    else:
                        _enter_bulkhead(pipeline, bulkhead, limit)
                        called = True
                        try:
                            if guarded:
                                result = _call_within(pipeline, fn, args, kwargs, limit)  # type: ignore[arg-type]
                            else:
                                result = fn(*args, **kwargs)
                        finally:
                            bulkhead.release()
                except Exception as exc:  # noqa: BLE001 - classified by the strategies below
                    error = exc
                    result = None
                except BaseException as exc:
                    # Control flow: never retried or counted; the permit goes back.
                    if ticket is not None:
                        breaker.release(ticket)  # type: ignore[union-attr]
                    if observer is not None:
                        now = clock.monotonic()
                        safe_call(
                            "call observer",
                            observer.attempt_ended,
                            attempt,
                            _FAILURE,
                            exc,
                            now - attempt_started,
                        )
                        finish(observer, CallOutcome.CANCELLED, exc, started, now)
                    raise
                ended = clock.monotonic() if timed else 0.0
                if error is None:
                    if ticket is not None:
                        breaker.on_result(ticket, result, ended - attempt_started)  # type: ignore[union-attr]
                    if deadline is not None and ended > deadline:
                        outcome = _TIMEOUT  # the late result is discarded below
                    elif not pipeline.checks_result or not _bad_result(pipeline, result):
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
                    else:
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
            if deadline is not None and ended >= deadline:
                error = total_timeout(pipeline, error)
                break
            if recovery is None:
                recovery = Recovery(pipeline, started, deadline)
            delay = recovery.retry_delay(error, result)
            if delay is None:
                if recovery.reason == "total_timeout":
                    error = total_timeout(pipeline, error)
                break
            if delay > 0:
                clock.sleep(delay)
            attempt += 1
    finally:
        if scope is not None:
            scope.__exit__(None, None, None)
    return cast("R", _give_up(pipeline, recovery, observer, error, result, started, outcome))


def _bad_result(pipeline: Pipeline, result: object) -> bool:
    retry = pipeline.retry
    if retry is not None and retry.is_retryable_result(result):
        return True
    fallback = pipeline.fallback
    return fallback is not None and fallback.handles_result(result)


def _give_up(
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
        pipeline, recovery, observer, error, result, started, last_outcome, sync=True
    )
    if context is None:
        return result
    fallback = pipeline.fallback
    assert fallback is not None  # noqa: S101 - a context implies a fallback
    try:
        value = fallback.produce(context)
    except BaseException as exc:
        finish(observer, CallOutcome.FAILURE, exc, started, pipeline.clock.monotonic())
        raise
    finish(observer, CallOutcome.FALLBACK, None, started, pipeline.clock.monotonic())
    return value
