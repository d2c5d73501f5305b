"""What both drivers decide: how an attempt ended, whether to retry, when, and how to end.

The drivers own the I/O (calling, sleeping, awaiting, timers); everything they must
*decide* lives here, once, so the sync and async paths cannot drift apart. A
:class:`CallRun` follows one call on the general path; the drivers' fast path (a breaker
and a retry, nobody observing) needs none until its first failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from otel_resilience._clock import wall_time
from otel_resilience._errors import ResilienceTimeoutError
from otel_resilience._events import (
    LISTENER_ERRORS,
    AttemptOutcome,
    CallObserver,
    CallOutcome,
    FallbackExecuted,
    ResilienceEvent,
    RetryExhausted,
    RetryScheduled,
    TimeoutExceeded,
    safe_call,
)
from otel_resilience.fallback import FallbackContext
from otel_resilience.timeout import deadline_scope

if TYPE_CHECKING:
    from otel_resilience._clock import Clock
    from otel_resilience.bulkhead import Bulkhead, BulkheadWaiter
    from otel_resilience.orchestrator._context import ErrorContext
    from otel_resilience.pipeline._pipeline import Pipeline
    from otel_resilience.retry._retry import RetryState

__all__ = [
    "CallRun",
    "attempt_limit",
    "chain_to",
    "emit",
    "end_queue_wait",
    "error_type",
    "finish",
    "observe",
    "queue_wait",
    "reports_events",
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


def end_queue_wait(
    pipeline: Pipeline,
    bulkhead: Bulkhead,
    waiter: BulkheadWaiter,
    limit: float | None,
    *,
    woken: bool,
) -> None:
    """After a queued wait: return if the call may run (holding a slot), else raise why.

    A wait that ends past ``limit`` (the attempt's or the call's deadline) is a timeout,
    as when a timeout outside a queue cancels the wait, even if the slot arrived at the
    same moment: no call starts after its deadline. A wait that hit the bulkhead's own
    ``queue_timeout`` is a rejection (``BulkheadFullError``, reason ``queue_timeout``).
    """
    late = limit is not None and pipeline.clock.monotonic() >= limit
    if woken or not bulkhead.abandon(waiter, timed_out=not late):
        # We hold a slot (woken, or handed over just as the wait ended).
        if not late:
            return
        bulkhead.release()
    seconds = pipeline.attempt_timeout
    if late and seconds is not None:
        emit(pipeline, TimeoutExceeded(pipeline=pipeline.name, scope="attempt", timeout=seconds))
        raise ResilienceTimeoutError(seconds, "attempt")
    # Past the total deadline, the driver turns this into the total timeout.
    raise bulkhead.rejected_error("queue_timeout")


def reports_events(pipeline: Pipeline) -> bool:
    """Whether the pipeline's listener takes events now (see ``ResilienceListener``)."""
    if pipeline.listener is None:
        return False
    enabled = pipeline.listener_enabled
    return enabled is None or bool(enabled())


def observe(
    pipeline: Pipeline, start_call: Callable[[str], CallObserver | None]
) -> CallObserver | None:
    """The call's observer from the listener's ``start_call``, or ``None``.

    A ``start_call`` that raises is logged (rate-limited); the call goes on unobserved.
    """
    try:
        return start_call(pipeline.name)
    except Exception:  # noqa: BLE001 - a failing listener observes nothing
        LISTENER_ERRORS.exception("resilience listener start_call")
        return None


def chain_to(error: BaseException, handled: BaseException | None) -> None:
    """Chain a fallback handler's ``error`` to the failure it handled, as Python does.

    The handler runs because of ``handled``, so its error reads like one raised in an
    ``except`` block for it: ``__context__`` is ``handled`` unless already set.
    """
    if handled is not None and error is not handled and error.__context__ is None:
        error.__context__ = handled


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


class CallRun:
    """One call on the general path: everything both drivers decide, once.

    The drivers keep only the I/O (acquiring, calling, awaiting, sleeping, timers) and
    ask this object what happened and what comes next. Created per call on the general
    path only; the drivers' fast path allocates nothing.

    Args:
        pipeline: the pipeline running the call.
        observer: the call's telemetry observer, if any.
    """

    __slots__ = (
        "attempt",
        "attempt_started",
        "clock",
        "deadline",
        "ended",
        "error",
        "limit",
        "observer",
        "outcome",
        "pipeline",
        "result",
        "scope",
        "started",
        "state",
        "timed",
    )

    def __init__(self, pipeline: Pipeline, observer: CallObserver | None) -> None:
        self.pipeline = pipeline
        self.observer = observer
        self.clock = clock = pipeline.clock
        self.timed = timed = pipeline.timed or observer is not None
        self.started = started = clock.monotonic() if timed else 0.0
        self.attempt_started = self.ended = started
        self.limit: float | None = None
        if pipeline.budget is not None:
            pipeline.budget.record_call()
        seconds = pipeline.timeout
        self.deadline = deadline = None if seconds is None else started + seconds
        self.scope: AbstractContextManager[object] | None = None
        if deadline is not None:
            # Publish the deadline to cooperative code (``otel_resilience.remaining()``).
            self.scope = deadline_scope(deadline, clock=clock)
            self.scope.__enter__()
        self.attempt = 1
        self.state: RetryState | None = None
        self.error: BaseException | None = None
        self.result: Any = None
        self.outcome = AttemptOutcome.FAILURE

    def close(self) -> None:
        """Withdraw the published deadline; call once, in the driver's ``finally``."""
        if self.scope is not None:
            self.scope.__exit__(None, None, None)

    # -- one attempt ---------------------------------------------------------------------

    def begin_attempt(self) -> bool:
        """Start the next attempt; ``False`` if the total deadline leaves no room for it.

        Sets :attr:`limit`, the absolute time the attempt must end by (``None``: none).
        """
        now = self.clock.monotonic() if self.timed and self.attempt > 1 else self.started
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            self.error = total_timeout(self.pipeline, None)
            self.result, self.outcome = None, AttemptOutcome.TIMEOUT
            return False
        self.attempt_started = now
        if self.pipeline.attempt_timeout is not None:
            self.limit = attempt_limit(self.pipeline, now, deadline)
        else:
            self.limit = deadline
        if self.observer is not None:
            safe_call("call observer", self.observer.attempt_started, self.attempt)
        return True

    def settle(
        self, ticket: int | None, error: BaseException | None, result: Any, *, called: bool
    ) -> bool:
        """Record an attempt's outcome; ``True`` when the call succeeded with ``result``.

        ``called`` says whether the function ran (a refusal by the bulkhead, or a queue
        wait cut short, happens before it); ``ticket`` is the breaker permit, if any.
        """
        pipeline = self.pipeline
        breaker = pipeline.circuit_breaker
        ended = self.clock.monotonic() if self.timed else 0.0
        duration = ended - self.attempt_started
        if error is None:
            if ticket is not None:
                breaker.on_result(ticket, result, duration)  # type: ignore[union-attr]
            if self.deadline is not None and ended > self.deadline:
                outcome = AttemptOutcome.TIMEOUT  # too late: the result is discarded
            elif not pipeline.checks_result or not _bad_result(pipeline, result):
                if pipeline.observes_outcomes:
                    pipeline.retry.observe(success=True)  # type: ignore[union-attr]
                observer = self.observer
                if observer is not None:
                    safe_call(
                        "call observer",
                        observer.attempt_ended,
                        self.attempt,
                        AttemptOutcome.SUCCESS,
                        None,
                        duration,
                    )
                    finish(observer, CallOutcome.SUCCESS, None, self.started, ended)
                self.error = None  # an earlier attempt's, whose traceback holds the driver
                return True
            else:
                outcome = AttemptOutcome.FAILURE
        elif not called:
            # Refused before the call: nothing to tell the breaker about.
            if ticket is not None:
                breaker.release(ticket)  # type: ignore[union-attr]
            timed_out = isinstance(error, ResilienceTimeoutError)
            outcome = AttemptOutcome.TIMEOUT if timed_out else AttemptOutcome.REJECTED
        else:
            if ticket is not None:
                breaker.on_error(ticket, error, duration)  # type: ignore[union-attr]
            timed_out = isinstance(error, ResilienceTimeoutError)
            outcome = AttemptOutcome.TIMEOUT if timed_out else AttemptOutcome.FAILURE
        self.fail(error, result, outcome, ended)
        return False

    def fail(
        self, error: BaseException | None, result: Any, outcome: AttemptOutcome, ended: float
    ) -> None:
        """Note that the current attempt failed (also used for the fast path's first try)."""
        self.error, self.result, self.outcome, self.ended = error, result, outcome, ended
        pipeline = self.pipeline
        if pipeline.observes_outcomes:
            pipeline.retry.observe(success=False)  # type: ignore[union-attr]
        if self.observer is not None:
            safe_call(
                "call observer",
                self.observer.attempt_ended,
                self.attempt,
                outcome,
                error,
                ended - self.attempt_started,
            )

    def interrupted(self, ticket: int | None, exc: BaseException) -> None:
        """Control flow ended the attempt: give the permit back, report, never count."""
        if ticket is not None:
            self.pipeline.circuit_breaker.release(ticket)  # type: ignore[union-attr]
        observer = self.observer
        if observer is not None:
            now = self.clock.monotonic()
            safe_call(
                "call observer",
                observer.attempt_ended,
                self.attempt,
                AttemptOutcome.CANCELLED,
                exc,
                now - self.attempt_started,
            )
            finish(observer, CallOutcome.CANCELLED, exc, self.started, now)

    def timed_out(self, ticket: int | None) -> None:
        """The total timeout cancelled the attempt (async): end the call as a timeout."""
        if ticket is not None:
            self.pipeline.circuit_breaker.release(ticket)  # type: ignore[union-attr]
        ended = self.clock.monotonic() if self.timed else 0.0
        self.fail(total_timeout(self.pipeline, None), None, AttemptOutcome.TIMEOUT, ended)

    # -- between attempts ----------------------------------------------------------------

    def next_delay(self) -> float | None:
        """After a failed attempt: seconds to wait before the next, or ``None`` to give up."""
        pipeline = self.pipeline
        deadline = self.deadline
        error = self.error
        if deadline is not None and self.ended >= deadline:
            if not _is_total_timeout(error):
                self.error = total_timeout(pipeline, error)
            return None
        if pipeline.orchestrator is not None and self._stopped_by_orchestrator():
            return None
        retry = pipeline.retry
        if retry is None:
            return None
        state = self.state
        if state is None:
            state = self.state = retry.start(self.started)
        # The clock matters only against a deadline; skip the read otherwise.
        timed = deadline is not None or state.deadline is not None
        now = self.clock.monotonic() if timed else 0.0
        decision = retry.decide(state, error, self.result, now)
        if isinstance(decision, str):
            if decision != "not_retryable" or self.attempt > 1:
                self._exhausted(error, decision)
            return None
        if deadline is not None and now + decision >= deadline:
            self._exhausted(error, "total_timeout")
            self.error = total_timeout(pipeline, error)
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

    def _stopped_by_orchestrator(self) -> bool:
        """Consult the orchestrator about the failed attempt; whether it stops retries."""
        error = self.error
        if error is None or self.outcome not in _CONSULTED:
            return False
        pipeline = self.pipeline
        orchestrator = pipeline.orchestrator
        assert orchestrator is not None  # noqa: S101 - checked by the caller
        try:
            plan = orchestrator.consult(self._error_context(error))
        except Exception:  # noqa: BLE001 - a failing orchestrator must not break the call
            LISTENER_ERRORS.exception("orchestrator consult")
            return False
        if plan.open_breaker and pipeline.circuit_breaker is not None:
            pipeline.circuit_breaker.trip(f"severity_{plan.severity.label}")
        if plan.stop_retries:
            self._exhausted(error, "orchestrator")
            return True
        return False

    def _error_context(self, error: BaseException) -> ErrorContext:
        from otel_resilience.orchestrator._context import (  # noqa: PLC0415 - optional part
            ErrorContext,
            select_attributes,
        )

        details = getattr(self.observer, "attempt_details", None)
        attributes, trace_id, span_id = (None, None, None) if details is None else details()
        # An exception may carry attributes of its own (``resilience_attributes``), such as
        # the HTTP status of a response turned into an error: they count even when no
        # span records; the attempt span's attributes win where both have a key.
        carried = getattr(error, "resilience_attributes", None)
        if isinstance(carried, Mapping) and carried:
            attributes = {**carried, **(attributes or {})}
        pipeline = self.pipeline
        return ErrorContext.from_exception(
            error,
            component=pipeline.component,
            operation=pipeline.name,
            timestamp=wall_time(),
            attempt=self.attempt,
            attributes=select_attributes(attributes),
            trace_id=trace_id,
            span_id=span_id,
        )

    def sleep_cut_short(self) -> None:
        """The total timeout fired during a retry wait (async)."""
        self.error, self.result = total_timeout(self.pipeline, self.error), None

    def _exhausted(self, error: BaseException | None, reason: str) -> None:
        pipeline = self.pipeline
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
        if error is not None:
            plural = "s" if self.attempt != 1 else ""
            error.add_note(
                f"otel-resilience: pipeline {pipeline.name!r} gave up after "
                f"{self.attempt} attempt{plural} ({reason.replace('_', ' ')})"
            )

    @classmethod
    def gave_up(
        cls,
        pipeline: Pipeline,
        error: BaseException,
        outcome: AttemptOutcome,
        state: RetryState,
        reason: str,
    ) -> CallRun:
        """The run of a fast-path call whose retry gave up, ready to :meth:`conclude`."""
        run = cls(pipeline, None)
        run.state = state
        run.attempt = state.attempt
        run.error, run.outcome = error, outcome
        if reason != "not_retryable" or state.attempt > 1:
            run._exhausted(error, reason)
        return run

    # -- the end -------------------------------------------------------------------------

    def conclude(self, *, sync: bool) -> FallbackContext | None:
        """End a call whose last attempt failed.

        Returns the fallback's context when the fallback takes over (the driver then runs
        it, with :meth:`fallback_done`); ``sync`` drivers refuse an async fallback handler
        here, before anything is reported as executed. Otherwise reports the end and
        raises the error, or returns ``None`` when retries ran out on an unacceptable
        result that is returned as is.
        """
        pipeline = self.pipeline
        # Handed over, not kept: the error's traceback holds the drivers' frames, and so
        # this run.
        error, result = self.error, self.result
        self.error = None
        context = self._fallback_context(error, result)
        now = self.clock.monotonic()
        observer = self.observer
        if context is not None:
            fallback = pipeline.fallback
            if sync and fallback is not None and fallback.is_async:
                misuse = TypeError(
                    f"fallback {fallback.name!r} has an async handler; "
                    "call this pipeline with acall() or decorate an async function"
                )
                misuse.__cause__ = error
                finish(observer, CallOutcome.FAILURE, misuse, self.started, now)
                try:
                    raise misuse
                finally:
                    del misuse, error  # no cycle: the traceback holds this frame
            emit(pipeline, FallbackExecuted(pipeline=pipeline.name, error_type=error_type(error)))
            return context
        if error is None:
            finish(observer, CallOutcome.FAILURE, None, self.started, now)
            return None
        if isinstance(error, ResilienceTimeoutError):
            outcome = CallOutcome.TIMEOUT
        elif self.outcome is AttemptOutcome.REJECTED:
            outcome = CallOutcome.REJECTED
        else:
            outcome = CallOutcome.FAILURE
        finish(observer, outcome, error, self.started, now)
        try:
            raise error
        finally:
            del error  # no cycle: the traceback holds this frame

    def fallback_done(self, error: BaseException | None) -> None:
        """Report the end of a call whose fallback ran (``error``: the fallback raised)."""
        outcome = CallOutcome.FAILURE if error is not None else CallOutcome.FALLBACK
        finish(self.observer, outcome, error, self.started, self.clock.monotonic())

    def _fallback_context(self, error: BaseException | None, result: Any) -> FallbackContext | None:
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


_CONSULTED = (AttemptOutcome.FAILURE, AttemptOutcome.TIMEOUT)
"""Attempt outcomes the orchestrator hears about (not rejections or cancellations)."""


def _is_total_timeout(error: BaseException | None) -> bool:
    return isinstance(error, ResilienceTimeoutError) and error.scope == "total"


def _bad_result(pipeline: Pipeline, result: object) -> bool:
    retry = pipeline.retry
    if retry is not None and retry.is_retryable_result(result):
        return True
    fallback = pipeline.fallback
    return fallback is not None and fallback.handles_result(result)
