"""Async benchmarks: otel-resilience against aiobreaker, purgatory, circuitbreaker, tenacity,
backoff and stamina, all awaited in one running event loop.

Run by hand: ``uv run --group bench python bench/bench_async.py [--quick]``. Semantics as
in ``bench_sync.py``: a breaker that opens after 5 consecutive failures, under a retry of
at most 3 attempts with jittered exponential backoff that never retries the breaker's own
open-circuit error. Every benchmarked coroutine function returns without suspending.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

import aiobreaker
import backoff
import circuitbreaker
import purgatory
import stamina
import tenacity
import wrapt
from bench_sync import (
    ATTEMPTS,
    FAILURE_THRESHOLD,
    OPEN_SECONDS,
    disable_stamina_hooks,
    gives_up_on,
    not_open_circuit,
)
from harness import RESULT, Attempts, Case, Probe, Scenario, TransientError, main, typed
from purgatory.domain.model import OpenedState

import otel_resilience
from otel_resilience import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, RetryConfig
from otel_resilience.backoff import Constant

__all__ = ["scenarios"]

AsyncFn = Callable[[], Coroutine[Any, Any, int]]


def _target() -> AsyncFn:
    """A fresh trivial coroutine function: each contender decorates its own."""

    async def target() -> int:
        return RESULT

    return target


@wrapt.decorator
def passthrough(
    wrapped: Callable[..., object],
    instance: object,
    args: tuple[object, ...],
    kwargs: dict[str, object],
) -> object:
    """The plainest wrapt decorator: returns the coroutine for the caller to await."""
    return wrapped(*args, **kwargs)


@wrapt.decorator
async def async_passthrough(
    wrapped: Callable[..., Awaitable[object]],
    instance: object,
    args: tuple[object, ...],
    kwargs: dict[str, object],
) -> object:
    """A wrapt decorator that awaits inside its own coroutine, as any async middleware must."""
    return await wrapped(*args, **kwargs)


async def _no_sleep(_: float) -> None:
    return None


# -- scenario 2: breaker + retry, success path ---------------------------------------------


def success() -> Scenario:
    """Breaker + retry through each library's decorator; every await succeeds."""

    @otel_resilience.resilient(
        retry=RetryConfig(max_attempts=ATTEMPTS), circuit_breaker=CircuitBreaker("async-success")
    )
    async def ours() -> int:
        return RESULT

    aio = aiobreaker.CircuitBreaker(
        fail_max=FAILURE_THRESHOLD, timeout_duration=timedelta(seconds=60)
    )

    @typed(
        tenacity.retry(
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=10),
            retry=tenacity.retry_if_not_exception_type(aiobreaker.CircuitBreakerError),
            reraise=True,
        )
    )
    @typed(aio)
    async def tenacity_aiobreaker() -> int:
        return RESULT

    purgatory_tenacity = purgatory.AsyncCircuitBreakerFactory(
        default_threshold=FAILURE_THRESHOLD, default_ttl=60
    )

    @typed(
        tenacity.retry(
            stop=tenacity.stop_after_attempt(ATTEMPTS),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=10),
            retry=tenacity.retry_if_not_exception_type(OpenedState),
            reraise=True,
        )
    )
    @typed(purgatory_tenacity("async-success-tenacity"))
    async def tenacity_purgatory() -> int:
        return RESULT

    purgatory_backoff = purgatory.AsyncCircuitBreakerFactory(
        default_threshold=FAILURE_THRESHOLD, default_ttl=60
    )

    @typed(
        backoff.on_exception(
            backoff.expo,
            Exception,
            max_tries=ATTEMPTS,
            giveup=gives_up_on(OpenedState),
            factor=0.1,
            max_value=10,
        )
    )
    @typed(purgatory_backoff("async-success-backoff"))
    async def backoff_purgatory() -> int:
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
    async def backoff_circuitbreaker() -> int:
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
    async def stamina_circuitbreaker() -> int:
        return RESULT

    return Scenario(
        key="success_async",
        title="2. Breaker + retry, success path (async)",
        description=(
            "Await a decorated coroutine function that returns at once; retry (3 attempts) "
            "over a breaker."
        ),
        is_async=True,
        cases=(
            Case(name="otel-resilience", call=ours, role="ours"),
            Case(name="tenacity + aiobreaker", call=tenacity_aiobreaker),
            Case(name="tenacity + purgatory", call=tenacity_purgatory),
            Case(name="backoff + purgatory", call=backoff_purgatory),
            Case(name="backoff + circuitbreaker", call=backoff_circuitbreaker),
            Case(name="stamina + circuitbreaker", call=stamina_circuitbreaker),
            Case(name="bare await", call=_target(), role="reference"),
            Case(
                name="wrapt.decorator pass-through", call=passthrough(_target()), role="reference"
            ),
            Case(
                name="wrapt.decorator async pass-through",
                call=async_passthrough(_target()),
                role="reference",
            ),
        ),
    )


# -- scenario 3: open-circuit rejection -------------------------------------------------------


async def _trip(fn: Callable[[], Awaitable[object]], probe: Probe) -> None:
    """Open a breaker the ordinary way: enough consecutive failures through ``fn``."""
    probe.failing = True
    for _ in range(FAILURE_THRESHOLD):
        try:
            await fn()
        except Exception:  # the failures are the point; the last may be a rejection
            continue
    probe.reset()


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Drive a coroutine that never suspends to completion, outside any event loop.

    Scenarios are built before the benchmark loop starts; tripping a breaker only awaits
    coroutines that return at once, so no event loop is needed for it.
    """
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("the coroutine suspended; it needs a running event loop")


def rejection() -> Scenario:
    """The breaker is open: each await raises the library's open-circuit error at once."""
    forced_probe = Probe()
    forced = CircuitBreaker("async-forced")

    @otel_resilience.resilient(circuit_breaker=forced)
    async def ours_forced() -> int:
        return forced_probe.hit()

    forced.force_open()

    tripped_probe = Probe()
    tripped = CircuitBreaker(
        "async-tripped",
        CircuitBreakerConfig(failure_threshold=FAILURE_THRESHOLD, timeout_seconds=OPEN_SECONDS),
    )

    @otel_resilience.resilient(circuit_breaker=tripped)
    async def ours_tripped() -> int:
        return tripped_probe.hit()

    _run(_trip(ours_tripped, tripped_probe))

    aio_probe = Probe()
    aio = aiobreaker.CircuitBreaker(
        fail_max=FAILURE_THRESHOLD, timeout_duration=timedelta(seconds=OPEN_SECONDS)
    )

    @typed(aio)
    async def aiobreaker_open() -> int:
        return aio_probe.hit()

    aio.open()

    purgatory_probe = Probe()
    factory = purgatory.AsyncCircuitBreakerFactory(
        default_threshold=FAILURE_THRESHOLD, default_ttl=OPEN_SECONDS
    )

    @typed(factory("async-rejection"))
    async def purgatory_open() -> int:
        return purgatory_probe.hit()

    _run(_trip(purgatory_open, purgatory_probe))

    cb_probe = Probe()

    @typed(
        circuitbreaker.circuit(failure_threshold=FAILURE_THRESHOLD, recovery_timeout=OPEN_SECONDS)
    )
    async def circuitbreaker_open() -> int:
        return cb_probe.hit()

    _run(_trip(circuitbreaker_open, cb_probe))

    async def raise_floor() -> int:
        raise CircuitOpenError("floor", None)

    return Scenario(
        key="rejection_async",
        title="3. Open-circuit rejection (async)",
        description=(
            "The breaker is open; each await raises the library's open-circuit error without "
            "running the coroutine function (caught by the timing loop)."
        ),
        is_async=True,
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
                name="aiobreaker",
                call=aiobreaker_open,
                raises=aiobreaker.CircuitBreakerError,
                check=aio_probe.untouched,
                note="breaker.open()",
            ),
            Case(
                name="purgatory",
                call=purgatory_open,
                raises=OpenedState,
                check=purgatory_probe.untouched,
                note=(
                    "opened by 5 failures; raises its one OpenedState instance every time "
                    "(the harness cuts its traceback after each catch)"
                ),
            ),
            Case(
                name="circuitbreaker",
                call=circuitbreaker_open,
                raises=circuitbreaker.CircuitBreakerError,
                check=cb_probe.untouched,
                note="opened by 5 failures (it has no force-open)",
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
    """No breaker: each await fails twice, is retried at once, and succeeds on attempt 3."""
    disable_stamina_hooks()

    def flaky(attempts: Attempts) -> AsyncFn:
        async def flaky_call() -> int:
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

    async def hand_written() -> int:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await loop_target()
            except Exception:
                if attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    return Scenario(
        key="retry_async",
        title="4. Two failures, then success, zero wait (async, no breaker)",
        description=(
            "Attempts 1 and 2 raise, attempt 3 returns; the retry waits 0 s between attempts."
        ),
        is_async=True,
        cases=(
            Case(
                name="otel-resilience",
                call=ours,
                role="ours",
                check=ours_attempts.whole_calls,
                note="RetryConfig(max_attempts=3, backoff=Constant(seconds=0)); no sleep for 0 s",
            ),
            Case(
                name="tenacity",
                call=tenacity_fn,
                check=tenacity_attempts.whole_calls,
                note="wait_none(); awaits asyncio.sleep(0) between attempts",
            ),
            Case(
                name="tenacity (sleep=no-op)",
                call=tenacity_no_sleep,
                check=no_sleep_attempts.whole_calls,
                note="tenacity's retry machinery alone: its sleep replaced by a no-op coroutine",
            ),
            Case(
                name="backoff",
                call=backoff_fn,
                check=backoff_attempts.whole_calls,
                note="backoff.constant, interval=0, jitter=None; awaits asyncio.sleep(0)",
            ),
            Case(
                name="stamina",
                call=stamina_fn,
                check=stamina_attempts.whole_calls,
                note="zero waits, retry hooks off; awaits asyncio.sleep(0)",
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
    """Only a breaker, no retry; every await succeeds."""
    target = _target()
    two_step = CircuitBreaker("async-two-step")

    async def ours_two_step() -> int:
        ticket = two_step.acquire()
        try:
            result = await target()
        except BaseException as exc:
            two_step.on_error(ticket, exc)
            raise
        two_step.on_result(ticket, result)
        return result

    @otel_resilience.resilient(circuit_breaker=CircuitBreaker("async-breaker-only"))
    async def ours_decorated() -> int:
        return RESULT

    aio = aiobreaker.CircuitBreaker(
        fail_max=FAILURE_THRESHOLD, timeout_duration=timedelta(seconds=60)
    )

    @typed(aio)
    async def aiobreaker_fn() -> int:
        return RESULT

    factory = purgatory.AsyncCircuitBreakerFactory(
        default_threshold=FAILURE_THRESHOLD, default_ttl=60
    )

    @typed(factory("async-breaker-only"))
    async def purgatory_fn() -> int:
        return RESULT

    @typed(circuitbreaker.circuit(failure_threshold=FAILURE_THRESHOLD, recovery_timeout=60))
    async def circuitbreaker_fn() -> int:
        return RESULT

    return Scenario(
        key="breaker_async",
        title="5. Breaker alone, success path (async)",
        description="A breaker around a coroutine function that returns at once; no retry.",
        is_async=True,
        cases=(
            Case(
                name="otel-resilience acquire + on_result",
                call=ours_two_step,
                role="ours",
                note="the two-step core called by hand around the await",
            ),
            Case(
                name="otel-resilience resilient(circuit_breaker=b)",
                call=ours_decorated,
                role="ours",
            ),
            Case(name="aiobreaker", call=aiobreaker_fn),
            Case(name="purgatory", call=purgatory_fn),
            Case(name="circuitbreaker", call=circuitbreaker_fn),
            Case(name="bare await", call=target, role="reference"),
        ),
    )


def scenarios() -> list[Scenario]:
    """Every async scenario, in report order."""
    return [success(), rejection(), retry_two_failures(), breaker_alone()]


if __name__ == "__main__":
    main(scenarios, __doc__ or "")
