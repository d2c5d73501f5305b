"""What both drivers decide after a failed attempt: retry, give up, fall back.

The drivers own the I/O (calling, sleeping, awaiting, timers); everything they must
*decide* once an attempt has failed lives here, once, so the sync and async paths cannot
drift apart. A :class:`Recovery` is created at a call's first failure, never on the
success path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from otel_resilience._errors import ResilienceTimeoutError
from otel_resilience._events import (
    LISTENER_ERRORS,
    AttemptOutcome,
    CallObserver,
    CallOutcome,
    FallbackExecuted,
    ResilienceEvent,
    ResilienceListener,
    RetryExhausted,
    RetryScheduled,
    TimeoutExceeded,
    safe_call,
)
from otel_resilience.fallback import FallbackContext

if TYPE_CHECKING:
    from otel_resilience._clock import Clock
    from otel_resilience.bulkhead import Bulkhead, BulkheadWaiter
    from otel_resilience.pipeline._pipeline import Pipeline
    from otel_resilience.retry._retry import RetryState

__all__ = [
    "Recovery",
    "attempt_limit",
    "conclude",
    "emit",
    "error_type",
    "finish",
    "queue_wait",
    "raise_queue_timeout",
    "start_call",
    "total_timeout",
]


def error_type(error: BaseException | None) -> str | None:
    """The low-cardinality name telemetry uses for ``error``: its class name."""
    return None if error is None else type(error).__qualname__


def emit(pipeline: Pipeline, event: ResilienceEvent) -> None:
    """Report ``event`` to the pipeline's listener, isolated from the call."""
    listener = pipeline.listener
    if listener is not None:
        safe_call("resilience listener", listener.on_event, event)


def attempt_limit(pipeline: Pipeline, started: float, deadline: float | None) -> float | None:
    """The absolute time by which an attempt started at ``started`` must end, if any."""
    seconds = pipeline.attempt_timeout
    if seconds is None:
        return deadline
    limit = started + seconds
    return limit if deadline is None or limit < deadline else deadline


def queue_wait(bulkhead: Bulkhead, clock: Clock, limit: float | None) -> float | None:
    """How long a queued call may wait: ``queue_timeout``, cut short by ``limit``."""
    wait = bulkhead.queue_timeout
    if limit is not None:
        left = max(limit - clock.monotonic(), 0.0)
        wait = left if wait is None else min(wait, left)
    return wait


def raise_queue_timeout(
    pipeline: Pipeline, bulkhead: Bulkhead, waiter: BulkheadWaiter, limit: float | None
) -> None:
    """A queued wait ended unwoken: raise why, unless the slot arrived meanwhile.

    Cut short by the attempt or total deadline, it is a timeout (as when a timeout outside
    a queue cancels the wait); otherwise the bulkhead's own ``queue_timeout`` ran out.
    """
    by_deadline = limit is not None and pipeline.clock.monotonic() >= limit
    if not bulkhead.abandon(waiter, timed_out=not by_deadline):
        return  # handed the slot just as the wait ended: the caller owns it
    seconds = pipeline.attempt_timeout
    if by_deadline and seconds is not None:
        emit(pipeline, TimeoutExceeded(pipeline=pipeline.name, scope="attempt", timeout=seconds))
        raise ResilienceTimeoutError(seconds, "attempt")
    # By the total deadline, the driver turns this into the total timeout.
    raise bulkhead.rejected_error("queue_timeout")


def start_call(listener: ResilienceListener, pipeline: str) -> CallObserver | None:
    """Ask ``listener`` for the call's observer; a listener that raises observes nothing."""
    try:
        return listener.start_call(pipeline)
    except Exception:  # noqa: BLE001 - telemetry must never break the call
        LISTENER_ERRORS.exception("resilience listener start_call")
        return None


def finish(
    observer: CallObserver | None,
    outcome: CallOutcome,
    error: BaseException | None,
    started: float,
    now: float,
) -> None:
    """Tell the call's observer (if any) how the call ended."""
    if observer is not None:
        safe_call("call observer", observer.call_ended, outcome, error, now - started)


def total_timeout(pipeline: Pipeline, cause: BaseException | None) -> ResilienceTimeoutError:
    """The error that ends a call whose total timeout ran out (and report it)."""
    seconds = pipeline.timeout
    assert seconds is not None  # noqa: S101 - only called when a total timeout is set
    emit(pipeline, TimeoutExceeded(pipeline=pipeline.name, scope="total", timeout=seconds))
    error = ResilienceTimeoutError(seconds, "total")
    error.__cause__ = cause
    return error


class Recovery:
    """Per-call failure bookkeeping: the retry state and the attempt count.

    Args:
        pipeline: the pipeline running the call.
        started: clock time at which the call started.
        deadline: absolute total-timeout deadline, if any.
    """

    __slots__ = ("attempt", "deadline", "pipeline", "reason", "started", "state")

    def __init__(self, pipeline: Pipeline, started: float, deadline: float | None) -> None:
        self.pipeline = pipeline
        self.started = started
        self.deadline = deadline
        self.attempt = 1
        self.state: RetryState | None = None
        self.reason: str | None = None
        """Why the retry gave up (``"total_timeout"`` makes the driver raise a timeout)."""

    def retry_delay(self, error: BaseException | None, result: Any) -> float | None:
        """After attempt ``self.attempt`` failed: seconds to wait, or ``None`` to give up.

        ``None`` is also returned when the next attempt could only start after the total
        deadline; :attr:`reason` is then ``"total_timeout"``.
        """
        pipeline = self.pipeline
        retry = pipeline.retry
        if retry is None:
            return None
        if error is not None:
            retryable = retry.is_retryable_error(error)
        else:
            retryable = retry.is_retryable_result(result)
        if not retryable:
            if self.attempt > 1:
                self._exhausted(error, "not_retryable")
            return None
        state = self.state
        if state is None:
            state = self.state = retry.start(self.started)
        # The clock matters only against a deadline; skip the read otherwise.
        timed = self.deadline is not None or state.deadline is not None
        now = pipeline.clock.monotonic() if timed else 0.0
        decision = retry.next_delay(state, error, result, now)
        if isinstance(decision, str):
            self._exhausted(error, decision)
            return None
        if self.deadline is not None and now + decision >= self.deadline:
            self._exhausted(error, "total_timeout")
            return None
        if pipeline.listener is not None:
            emit(
                pipeline,
                RetryScheduled(
                    pipeline=pipeline.name,
                    attempt=self.attempt,
                    delay=decision,
                    error_type=error_type(error),
                ),
            )
        self.attempt += 1
        return decision

    def _exhausted(self, error: BaseException | None, reason: str) -> None:
        pipeline = self.pipeline
        self.reason = reason
        if pipeline.listener is not None:
            emit(
                pipeline,
                RetryExhausted(
                    pipeline=pipeline.name,
                    attempts=self.attempt,
                    reason=reason,
                    error_type=error_type(error),
                ),
            )
        self._note(error, reason.replace("_", " "))

    def _note(self, error: BaseException | None, reason: str) -> None:
        if error is not None:
            plural = "s" if self.attempt != 1 else ""
            error.add_note(
                f"otel-resilience: pipeline {self.pipeline.name!r} gave up after "
                f"{self.attempt} attempt{plural} ({reason})"
            )

    def fallback(self, error: BaseException | None, result: Any) -> FallbackContext | None:
        """The fallback's context if the pipeline's fallback handles this final outcome."""
        fallback = self.pipeline.fallback
        if fallback is None:
            return None
        if error is not None:
            if not fallback.handles_error(error):
                return None
        elif not fallback.handles_result(result):
            return None
        return FallbackContext(
            error=error, result=result, attempts=self.attempt, pipeline=self.pipeline.name
        )


def conclude(
    pipeline: Pipeline,
    recovery: Recovery | None,
    observer: CallObserver | None,
    error: BaseException | None,
    result: Any,
    started: float,
    last_outcome: AttemptOutcome,
    *,
    sync: bool,
) -> FallbackContext | None:
    """End a call whose last attempt failed.

    Returns the fallback's context when the fallback takes over (the driver then runs it
    and reports the end); ``sync`` drivers refuse an async fallback handler here, before
    anything is reported as executed. Otherwise reports the end and raises ``error``, or returns
    ``None`` when retries ran out on an unacceptable result that is to be returned as is.
    """
    if recovery is None:
        recovery = Recovery(pipeline, started, None)
    context = recovery.fallback(error, result)
    now = pipeline.clock.monotonic()
    if context is not None:
        fallback = pipeline.fallback
        if sync and fallback is not None and fallback.is_async:
            misuse = TypeError(
                f"fallback {fallback.name!r} has an async handler; "
                "call this pipeline with acall() or decorate an async function"
            )
            misuse.__cause__ = error
            finish(observer, CallOutcome.FAILURE, misuse, started, now)
            raise misuse
        emit(pipeline, FallbackExecuted(pipeline=pipeline.name, error_type=error_type(error)))
        return context
    if error is None:
        finish(observer, CallOutcome.FAILURE, None, started, now)
        return None
    if isinstance(error, ResilienceTimeoutError):
        outcome = CallOutcome.TIMEOUT
    elif last_outcome is AttemptOutcome.REJECTED:
        outcome = CallOutcome.REJECTED
    else:
        outcome = CallOutcome.FAILURE
    finish(observer, outcome, error, started, now)
    raise error
