"""Sync benchmarks: otel-resilience against tenacity, backoff, stamina, pybreaker, circuitbreaker.

Run by hand: ``uv run --group bench python bench/bench_sync.py [--quick]``. Each contender
is written the way its documentation shows, with the same semantics: a breaker that opens
after 5 consecutive failures, wrapped by a retry of at most 3 attempts that backs off
exponentially with jitter and never retries the breaker's own open-circuit error.
"""

from __future__ import annotations

from collections.abc import Callable

import backoff
import circuitbreaker
import pybreaker
import stamina
import tenacity
import wrapt
from harness import (
    RESULT,
    Attempts,
    Case,
    Probe,
    Scenario,
    TransientError,
    main,
    typed,
)

import otel_resilience
from otel_resilience import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, RetryConfig
from otel_resilience.backoff import Constant

__all__ = [
    "ATTEMPTS",
    "FAILURE_THRESHOLD",
    "OPEN_SECONDS",
    "disable_stamina_hooks",
    "not_open_circuit",
    "scenarios",
]

FAILURE_THRESHOLD = 5
"""Consecutive failures that open every breaker (each library's own default, too)."""

OPEN_SECONDS = 3600.0
"""Open duration of breakers in rejection scenarios: long enough never to half-open."""

ATTEMPTS = 3
"""Attempts of every retry, the first call included."""


def disable_stamina_hooks() -> None:
    """Turn off stamina's default retry hook, which logs a WARNING to stderr per retry.

    otel-resilience with no OpenTelemetry SDK records nothing either, so both run bare.
    """
    stamina.instrumentation.set_on_retry_hooks(())


def _target() -> Callable[[], int]:
    """A fresh trivial function: each contender decorates its own."""

    def target() -> int:
        return RESULT

    return target


@wrapt.decorator
def passthrough(
    wrapped: Callable[..., object],
    instance: object,
    args: tuple[object, ...],
    kwargs: dict[str, object],
) -> object:
    """The plainest wrapt decorator: the reference for what a wrapper costs at all."""
    return wrapped(*args, **kwargs)


def not_open_circuit(*errors: type[BaseException]) -> Callable[[BaseException], bool]:
    """A retry predicate: retry anything but a breaker's own open-circuit error."""

    def retryable(exc: BaseException) -> bool:
        return not isinstance(exc, errors)

    return retryable


def gives_up_on(*errors: type[BaseException]) -> Callable[[BaseException], bool]:
    """A give-up predicate (backoff's ``giveup``): stop on a breaker's open-circuit error."""

    def give_up(exc: BaseException) -> bool:
        return isinstance(exc, errors)

    return give_up


def _no_sleep(_: float) -> None:
    return None


# -- scenario 1: breaker + retry, success path ---------------------------------------------


def success() -> Scenario:
    """Breaker + retry through each library's decorator; every call succeeds."""
    bare = _target()
    wrapped = passthrough(_target())

    @otel_resilience.resilient(
        retry=RetryConfig(max_attempts=ATTEMPTS), circuit_breaker=CircuitBreaker("sync-success")
    )
    def ours() -> int:
        return RESULT

    pb_tenacity = pybreaker.CircuitBreaker(fail_max=FAILURE_THRESHOLD, reset_timeout=60)

    @typed(
        tenacity.retry(
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=10),
            retry=tenacity.retry_if_not_exception_type(pybreaker.CircuitBreakerError),
            reraise=True,
        )
    )
    @typed(pb_tenacity)
    def tenacity_pybreaker() -> int:
        return RESULT

    @typed(
        tenacity.retry(
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=10),
            retry=tenacity.retry_if_not_exception_type(circuitbreaker.CircuitBreakerError),
            reraise=True,
        )
    )
    @typed(circuitbreaker.circuit(failure_threshold=FAILURE_THRESHOLD, recovery_timeout=60))
    def tenacity_circuitbreaker() -> int:
        return RESULT

    @typed(
        backoff.on_exception(
            backoff.expo,
            Exception,
            max_tries=ATTEMPTS,
            giveup=gives_up_on(circuitbreaker.CircuitBreakerError),
            factor=0.1,
            max_value=10,
        )
    )
    @typed(circuitbreaker.circuit(failure_threshold=FAILURE_THRESHOLD, recovery_timeout=60))
    def backoff_circuitbreaker() -> int:
        return RESULT

    pb_backoff = pybreaker.CircuitBreaker(fail_max=FAILURE_THRESHOLD, reset_timeout=60)

    @typed(
        backoff.on_exception(
            backoff.expo,
            Exception,
            max_tries=ATTEMPTS,
            giveup=gives_up_on(pybreaker.CircuitBreakerError),
            factor=0.1,
            max_value=10,
        )
    )
    @typed(pb_backoff)
    def backoff_pybreaker() -> int:
        return RESULT

    @typed(
        stamina.retry(
            on=not_open_circuit(circuitbreaker.CircuitBreakerError),
            attempts=ATTEMPTS,
            wait_initial=0.1,
            wait_max=10,
        )
    )
    @typed(circuitbreaker.circuit(failure_threshold=FAILURE_THRESHOLD, recovery_timeout=60))
    def stamina_circuitbreaker() -> int:
        return RESULT

    pb_stamina = pybreaker.CircuitBreaker(fail_max=FAILURE_THRESHOLD, reset_timeout=60)

    @typed(
        stamina.retry(
            on=not_open_circuit(pybreaker.CircuitBreakerError),
            attempts=ATTEMPTS,
            wait_initial=0.1,
            wait_max=10,
        )
    )
    @typed(pb_stamina)
    def stamina_pybreaker() -> int:
        return RESULT

    return Scenario(
        key="success_sync",
        title="1. Breaker + retry, success path (sync)",
        description="A decorated function returns at once; retry (3 attempts) over a breaker.",
        is_async=False,
        cases=(
            Case(name="otel-resilience", call=ours, role="ours"),
            Case(name="tenacity + pybreaker", call=tenacity_pybreaker),
            Case(name="tenacity + circuitbreaker", call=tenacity_circuitbreaker),
            Case(name="backoff + circuitbreaker", call=backoff_circuitbreaker),
            Case(name="backoff + pybreaker", call=backoff_pybreaker),
            Case(name="stamina + circuitbreaker", call=stamina_circuitbreaker),
            Case(name="stamina + pybreaker", call=stamina_pybreaker),
            Case(name="bare call", call=bare, role="reference"),
            Case(name="wrapt.decorator pass-through", call=wrapped, role="reference"),
        ),
    )


# -- scenario 3: open-circuit rejection -------------------------------------------------------


def _trip(fn: Callable[[], object], probe: Probe) -> None:
    """Open a breaker the ordinary way: enough consecutive failures through ``fn``."""
    probe.failing = True
    for _ in range(FAILURE_THRESHOLD):
        try:
            fn()
        except Exception:  # the failures are the point; the last may be a rejection
            continue
    probe.reset()


def rejection() -> Scenario:
    """The breaker is open: each call raises the library's open-circuit error at once."""
    forced_probe = Probe()
    forced = CircuitBreaker("sync-forced")

    @otel_resilience.resilient(circuit_breaker=forced)
    def ours_forced() -> int:
        return forced_probe.hit()

    forced.force_open()

    tripped_probe = Probe()
    tripped = CircuitBreaker(
        "sync-tripped",
        CircuitBreakerConfig(failure_threshold=FAILURE_THRESHOLD, timeout_seconds=OPEN_SECONDS),
    )

    @otel_resilience.resilient(circuit_breaker=tripped)
    def ours_tripped() -> int:
        return tripped_probe.hit()

    _trip(ours_tripped, tripped_probe)

    acquire_breaker = CircuitBreaker("sync-acquire")
    acquire_breaker.force_open()

    pb_probe = Probe()
    pb = pybreaker.CircuitBreaker(fail_max=FAILURE_THRESHOLD, reset_timeout=OPEN_SECONDS)

    @typed(pb)
    def pybreaker_open() -> int:
        return pb_probe.hit()

    pb.open()

    cb_probe = Probe()

    @typed(
        circuitbreaker.circuit(failure_threshold=FAILURE_THRESHOLD, recovery_timeout=OPEN_SECONDS)
    )
    def circuitbreaker_open() -> int:
        return cb_probe.hit()

    _trip(circuitbreaker_open, cb_probe)

    def raise_floor() -> int:
        raise CircuitOpenError("floor", None)

    return Scenario(
        key="rejection_sync",
        title="3. Open-circuit rejection (sync)",
        description=(
            "The breaker is open; each call raises the library's open-circuit error without "
            "running the function (caught by the timing loop)."
        ),
        is_async=False,
        cases=(
            Case(
                name="otel-resilience (forced open)",
                call=ours_forced,
                role="ours",
                raises=CircuitOpenError,
                check=forced_probe.untouched,
                note="resilient(circuit_breaker=b) with b.force_open()",
            ),
            Case(
                name="otel-resilience (tripped open)",
                call=ours_tripped,
                role="ours",
                raises=CircuitOpenError,
                check=tripped_probe.untouched,
                note="opened by 5 failures; computes retry_after on every rejection",
            ),
            Case(
                name="pybreaker",
                call=pybreaker_open,
                raises=pybreaker.CircuitBreakerError,
                check=pb_probe.untouched,
                note="breaker.open()",
            ),
            Case(
                name="circuitbreaker",
                call=circuitbreaker_open,
                raises=circuitbreaker.CircuitBreakerError,
                check=cb_probe.untouched,
                note="opened by 5 failures (it has no force-open)",
            ),
            Case(
                name="otel-resilience breaker.acquire() alone",
                call=acquire_breaker.acquire,
                role="reference",
                raises=CircuitOpenError,
            ),
            Case(
                name="raise + catch CircuitOpenError",
                call=raise_floor,
                role="reference",
                raises=CircuitOpenError,
            ),
        ),
    )


# -- scenario 4: two failures, then success, zero wait --------------------------------------


def retry_two_failures() -> Scenario:
    """No breaker: each call fails twice, is retried at once, and succeeds on attempt 3."""
    disable_stamina_hooks()

    def flaky(attempts: Attempts) -> Callable[[], int]:
        def flaky_call() -> int:
            attempts.count += 1
            if attempts.count % 3:
                raise TransientError("blip")
            return RESULT

        return flaky_call

    ours_attempts = Attempts()
    ours = otel_resilience.resilient(
        retry=RetryConfig(max_attempts=ATTEMPTS, backoff=Constant(seconds=0))
    )(flaky(ours_attempts))

    tenacity_attempts = Attempts()
    tenacity_fn = tenacity.retry(
        stop=tenacity.stop_after_attempt(ATTEMPTS), wait=tenacity.wait_none(), reraise=True
    )(flaky(tenacity_attempts))

    no_sleep_attempts = Attempts()
    tenacity_no_sleep = tenacity.retry(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_none(),
        sleep=_no_sleep,
        reraise=True,
    )(flaky(no_sleep_attempts))

    backoff_attempts = Attempts()
    backoff_fn = backoff.on_exception(
        backoff.constant, Exception, max_tries=ATTEMPTS, interval=0, jitter=None
    )(flaky(backoff_attempts))

    stamina_attempts = Attempts()
    stamina_fn = stamina.retry(
        on=Exception, attempts=ATTEMPTS, wait_initial=0, wait_max=0, wait_jitter=0
    )(flaky(stamina_attempts))

    loop_attempts = Attempts()
    loop_target = flaky(loop_attempts)

    def hand_written() -> int:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return loop_target()
            except Exception:
                if attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    return Scenario(
        key="retry_sync",
        title="4. Two failures, then success, zero wait (sync, no breaker)",
        description=(
            "Attempts 1 and 2 raise, attempt 3 returns; the retry waits 0 s between attempts."
        ),
        is_async=False,
        cases=(
            Case(
                name="otel-resilience",
                call=ours,
                role="ours",
                check=ours_attempts.whole_calls,
                note="RetryConfig(max_attempts=3, backoff=Constant(seconds=0))",
            ),
            Case(
                name="tenacity",
                call=tenacity_fn,
                check=tenacity_attempts.whole_calls,
                note="wait_none(); still calls time.sleep(0) between attempts",
            ),
            Case(
                name="tenacity (sleep=no-op)",
                call=tenacity_no_sleep,
                check=no_sleep_attempts.whole_calls,
                note="tenacity's retry machinery alone: its sleep replaced by a no-op",
            ),
            Case(
                name="backoff",
                call=backoff_fn,
                check=backoff_attempts.whole_calls,
                note="backoff.constant, interval=0, jitter=None; calls time.sleep(0)",
            ),
            Case(
                name="stamina",
                call=stamina_fn,
                check=stamina_attempts.whole_calls,
                note="wait_initial=wait_max=wait_jitter=0, retry hooks off; built on tenacity",
            ),
            Case(
                name="hand-written retry loop",
                call=hand_written,
                role="reference",
                check=loop_attempts.whole_calls,
            ),
        ),
    )


# -- scenario 5: the breaker alone, success path ---------------------------------------------


def breaker_alone() -> Scenario:
    """Only a breaker, no retry; every call succeeds."""
    target = _target()
    two_step = CircuitBreaker("sync-two-step")

    def ours_two_step() -> int:
        ticket = two_step.acquire()
        try:
            result = target()
        except BaseException as exc:
            two_step.on_error(ticket, exc)
            raise
        two_step.on_result(ticket, result)
        return result

    @otel_resilience.resilient(circuit_breaker=CircuitBreaker("sync-breaker-only"))
    def ours_decorated() -> int:
        return RESULT

    pb = pybreaker.CircuitBreaker(fail_max=FAILURE_THRESHOLD, reset_timeout=60)

    @typed(pb)
    def pybreaker_fn() -> int:
        return RESULT

    @typed(circuitbreaker.circuit(failure_threshold=FAILURE_THRESHOLD, recovery_timeout=60))
    def circuitbreaker_fn() -> int:
        return RESULT

    return Scenario(
        key="breaker_sync",
        title="5. Breaker alone, success path (sync)",
        description="A breaker around a function that returns at once; no retry.",
        is_async=False,
        cases=(
            Case(
                name="otel-resilience acquire + on_result",
                call=ours_two_step,
                role="ours",
                note="the two-step core called by hand, as the drivers do",
            ),
            Case(
                name="otel-resilience resilient(circuit_breaker=b)",
                call=ours_decorated,
                role="ours",
            ),
            Case(name="pybreaker", call=pybreaker_fn),
            Case(name="circuitbreaker", call=circuitbreaker_fn),
            Case(name="bare call", call=target, role="reference"),
        ),
    )


def scenarios() -> list[Scenario]:
    """Every sync scenario, in report order."""
    return [success(), rejection(), retry_two_failures(), breaker_alone()]


if __name__ == "__main__":
    main(scenarios, __doc__ or "")
