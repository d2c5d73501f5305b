"""Timing harness shared by the benchmark scripts (run by hand, never by pytest).

Every contender of a scenario is measured in the same process and interleaved: after a
calibration and warm-up, each round takes one sample of every contender, in an order
rotated from round to round, so drift (CPU frequency, a noisy neighbour) touches them all
alike. A sample is a calibrated loop of calls timed with :func:`time.perf_counter_ns`;
the result of a contender is the median time per call over all samples, with the
interquartile range as its spread.

pyperf is not used for the timing: it runs each benchmark in fresh worker processes one
after another, which rules out interleaving contenders in one process.

Times include the cost of the timing loop itself (one iteration plus one call of the
benchmarked callable, about as much as the "bare call" reference row); nothing is
subtracted, so every row is directly comparable with the reference rows. A full garbage
collection runs before every sample, so one contender's garbage is not collected on
another's time; the collector stays on while timing, as it is in an application, so a
library whose errors are left in reference cycles pays for their collection. (Only a
contender raising one shared exception instance gets its traceback cut after each catch;
it would otherwise grow without bound.)

Each contender is called once before timing and must return :data:`RESULT` (or raise the
error its scenario expects); after timing, its ``check`` proves the semantics held
throughout (the function never ran while the circuit was open, every call took exactly
three attempts, ...). A contender that misbehaves stops the run with
:class:`BenchmarkError` rather than producing a flattering number.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import itertools
import os
import platform
import statistics
import sys
import sysconfig
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any, Literal

__all__ = [
    "HEADER",
    "PACKAGES",
    "QUICK",
    "RESULT",
    "Attempts",
    "BenchmarkError",
    "Case",
    "CaseResult",
    "Decorator",
    "Probe",
    "Scenario",
    "ScenarioResult",
    "Settings",
    "Stats",
    "TransientError",
    "add_arguments",
    "fmt_ns",
    "fmt_ratio",
    "format_text",
    "judged",
    "machine_info",
    "main",
    "package_versions",
    "progress_to_stderr",
    "rows",
    "run_scenarios",
    "select",
    "settings_from",
    "typed",
]

RESULT = 42
"""What every benchmarked function returns; checked once per contender before timing."""

PACKAGES = (
    "otel-resilience",
    "wrapt",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "tenacity",
    "pybreaker",
    "circuitbreaker",
    "backoff",
    "stamina",
    "aiobreaker",
    "purgatory",
)
"""Every distribution whose version matters to the results (the SDK should be absent)."""

Role = Literal["ours", "peer", "reference"]


class TransientError(Exception):
    """The failure every benchmarked function raises: retryable, counted by breakers."""


class Probe:
    """The body of a protected function: counts its calls and fails on demand.

    Open-circuit scenarios trip a breaker with ``failing`` set, then check with
    :meth:`untouched` that no timed call reached the function.
    """

    __slots__ = ("calls", "failing")

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False

    def hit(self) -> int:
        """Count the call; raise :class:`TransientError` while ``failing``."""
        self.calls += 1
        if self.failing:
            raise TransientError("dependency down")
        return RESULT

    def reset(self) -> None:
        """Stop failing and forget the calls made so far (those that tripped the breaker)."""
        self.calls = 0
        self.failing = False

    def untouched(self) -> None:
        """Raise if the function ran since :meth:`reset`: a rejection must not call it."""
        if self.calls:
            raise BenchmarkError(f"the protected function ran {self.calls} times while open")


class Attempts:
    """Counts the attempts of a function that fails twice, then succeeds, call after call."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def whole_calls(self) -> None:
        """Raise unless every call took exactly three attempts."""
        if self.count % 3:
            raise BenchmarkError(f"{self.count} attempts is not a multiple of 3")


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def typed(decorator: Any) -> Decorator:
    """Give a peer library's decorator a type, so mypy still checks the code around it.

    Several peers ship no type information, and none is installed when only the default
    dependency groups are (as in CI), so every peer decorator goes through this identity.
    """
    result: Decorator = decorator
    return result


class BenchmarkError(RuntimeError):
    """A contender did not behave as its scenario requires, so its timing would mislead."""


def judged(stats: Stats) -> float:
    """The figure every verdict compares: a row's fastest sample.

    On a shared machine the medians of one run drift against each other by tens of
    percent (see the spread column), moving the wrapt row that scales the budgets and the
    judged row independently; the fastest sample of each is what the code costs when
    undisturbed, and changes little from run to run.
    """
    return stats.min_ns


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One contender of a scenario.

    Attributes:
        name: the row label, e.g. ``"tenacity + pybreaker"``.
        call: a zero-argument callable; in an async scenario it returns an awaitable.
        role: ``"ours"`` (otel-resilience), ``"peer"`` or ``"reference"`` (a floor such
            as a bare call, not a contender).
        raises: the exception every call must raise (open-circuit rows), or ``None`` when
            every call must return :data:`RESULT`.
        check: run after all samples; raises if the contender drifted from the scenario's
            semantics while being timed (for example, the breaker closed again).
        note: a short remark printed under the table.
    """

    name: str
    call: Callable[[], Any]
    role: Role = "peer"
    raises: type[BaseException] | None = None
    check: Callable[[], None] | None = None
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A set of contenders doing the same thing, timed against each other.

    Attributes:
        key: a stable identifier (``success_sync``), used by ``--scenario`` and targets.
        title: the heading of its table.
        description: what each call does, in one or two sentences.
        is_async: whether ``call`` returns an awaitable (timed inside one running loop).
        cases: the contenders, ours first by convention.
    """

    key: str
    title: str
    description: str
    is_async: bool
    cases: tuple[Case, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How long to measure.

    Attributes:
        samples: timed samples per contender.
        warmup_rounds: interleaved rounds run before the timed ones and thrown away.
        sample_seconds: target duration of one sample; the loop count is calibrated to it.
    """

    samples: int = 30
    warmup_rounds: int = 3
    sample_seconds: float = 0.02

    def __post_init__(self) -> None:
        if isinstance(self.samples, bool) or not isinstance(self.samples, int):
            raise TypeError(f"Settings.samples must be an int, got {self.samples!r}")
        if self.samples < 3:
            raise ValueError(f"Settings.samples must be >= 3, got {self.samples}")
        if isinstance(self.warmup_rounds, bool) or not isinstance(self.warmup_rounds, int):
            raise TypeError(f"Settings.warmup_rounds must be an int, got {self.warmup_rounds!r}")
        if self.warmup_rounds < 0:
            raise ValueError(f"Settings.warmup_rounds must be >= 0, got {self.warmup_rounds}")
        seconds = self.sample_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(f"Settings.sample_seconds must be a number, got {seconds!r}")
        if not 0 < seconds <= 10:  # also rejects NaN
            raise ValueError(f"Settings.sample_seconds must be in (0, 10], got {seconds!r}")


QUICK = Settings(samples=7, warmup_rounds=1, sample_seconds=0.005)
"""A smoke run: checks every contender and gives rough numbers in a few seconds."""


@dataclass(frozen=True, slots=True)
class Stats:
    """Per-call times of one contender, in nanoseconds."""

    median_ns: float
    q1_ns: float
    q3_ns: float
    min_ns: float
    max_ns: float
    samples: int
    loops: int
    """Calls per sample."""

    @property
    def spread_pct(self) -> float:
        """Half the interquartile range, as a percentage of the median."""
        return (self.q3_ns - self.q1_ns) / 2 / self.median_ns * 100 if self.median_ns else 0.0

    @classmethod
    def of(cls, per_call_ns: Sequence[float], loops: int) -> Stats:
        """Summarise samples (each already divided by ``loops``)."""
        q1, _, q3 = statistics.quantiles(per_call_ns, n=4, method="inclusive")
        return cls(
            median_ns=statistics.median(per_call_ns),
            q1_ns=q1,
            q3_ns=q3,
            min_ns=min(per_call_ns),
            max_ns=max(per_call_ns),
            samples=len(per_call_ns),
            loops=loops,
        )


@dataclass(frozen=True, slots=True)
class CaseResult:
    """A contender and its timings."""

    case: Case
    stats: Stats


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """A scenario and the timings of all its contenders, in the scenario's order."""

    scenario: Scenario
    results: tuple[CaseResult, ...]

    def ours(self) -> CaseResult | None:
        """The first otel-resilience row: the basis of the ratio column."""
        return next((r for r in self.results if r.case.role == "ours"), None)

    def best_peer(self) -> CaseResult | None:
        """The peer row that :func:`judged` finds fastest, if the scenario has peers."""
        peers = [r for r in self.results if r.case.role == "peer"]
        return min(peers, key=lambda r: judged(r.stats)) if peers else None

    def get(self, name: str) -> CaseResult:
        """The row called ``name``; ``KeyError`` if there is none."""
        for result in self.results:
            if result.case.name == name:
                return result
        raise KeyError(f"{self.scenario.key} has no contender {name!r}")


# -- timing loops ---------------------------------------------------------------------------
# Four small loops rather than one generic one: a branch or an extra call inside the loop
# would be charged to every contender and blur the fast ones.


def _loop_sync(call: Callable[[], Any], loops: int) -> int:
    repeat = itertools.repeat(None, loops)
    start = perf_counter_ns()
    for _ in repeat:
        call()
    return perf_counter_ns() - start


def _loop_sync_raising(call: Callable[[], Any], loops: int, expected: type[BaseException]) -> int:
    repeat = itertools.repeat(None, loops)
    start = perf_counter_ns()
    for _ in repeat:
        try:  # noqa: SIM105 - contextlib.suppress would be timed with every call
            call()
        except expected:
            pass
    return perf_counter_ns() - start


def _loop_sync_raising_shared(
    call: Callable[[], Any], loops: int, expected: type[BaseException]
) -> int:
    repeat = itertools.repeat(None, loops)
    start = perf_counter_ns()
    for _ in repeat:
        try:
            call()
        except expected as exc:
            # One exception instance raised again and again: its traceback would grow with
            # every raise (frames and all) until memory and gc time explode; cut it.
            exc.__traceback__ = None
    return perf_counter_ns() - start


async def _loop_async(call: Callable[[], Awaitable[Any]], loops: int) -> int:
    repeat = itertools.repeat(None, loops)
    start = perf_counter_ns()
    for _ in repeat:
        await call()
    return perf_counter_ns() - start


async def _loop_async_raising(
    call: Callable[[], Awaitable[Any]], loops: int, expected: type[BaseException]
) -> int:
    repeat = itertools.repeat(None, loops)
    start = perf_counter_ns()
    for _ in repeat:
        try:  # noqa: SIM105 - contextlib.suppress would be timed with every call
            await call()
        except expected:
            pass
    return perf_counter_ns() - start


async def _loop_async_raising_shared(
    call: Callable[[], Awaitable[Any]], loops: int, expected: type[BaseException]
) -> int:
    repeat = itertools.repeat(None, loops)
    start = perf_counter_ns()
    for _ in repeat:
        try:
            await call()
        except expected as exc:
            exc.__traceback__ = None  # see _loop_sync_raising_shared
    return perf_counter_ns() - start


Measure = Callable[[int], Awaitable[int]]


def _measure(case: Case, *, is_async: bool, shared: bool) -> Measure:
    """Return ``measure(loops) -> elapsed ns`` for the case (awaitable for both kinds).

    ``shared``: the case raises one exception instance every time (see
    :func:`_raises_one_instance`), whose traceback the loop must cut after each catch.
    """
    call = case.call
    expected = case.raises
    sync_raising = _loop_sync_raising_shared if shared else _loop_sync_raising
    async_raising = _loop_async_raising_shared if shared else _loop_async_raising

    async def measure(loops: int) -> int:
        if is_async:
            if expected is None:
                return await _loop_async(call, loops)
            return await async_raising(call, loops, expected)
        if expected is None:
            return _loop_sync(call, loops)
        return sync_raising(call, loops, expected)

    return measure


async def _verify(scenario: Scenario, case: Case) -> BaseException | None:
    """Call once and check the outcome the scenario promises, before any timing.

    Returns the error raised, for a case that must raise.
    """
    where = f"{scenario.key} / {case.name}"
    try:
        value = case.call()
        if scenario.is_async:
            value = await value
    except BaseException as exc:
        if case.raises is not None and isinstance(exc, case.raises):
            return exc
        raise BenchmarkError(f"{where}: raised {exc!r}") from exc
    if case.raises is not None:
        raise BenchmarkError(f"{where}: returned {value!r}, expected {case.raises.__name__}")
    if value != RESULT:
        raise BenchmarkError(f"{where}: returned {value!r}, expected {RESULT!r}")
    return None


async def _raises_one_instance(scenario: Scenario, case: Case) -> bool:
    """Check the case (twice); whether it raised the very same exception object both times.

    Such a case's traceback is cut after every catch while timing. Every other case is
    timed as an application sees it: the error is freed when the handler ends, or, if
    the library left it in a reference cycle, by the garbage collector, on its time.
    """
    first = await _verify(scenario, case)
    second = await _verify(scenario, case)
    return first is not None and first is second


async def _calibrate(measure: Measure, target_ns: float) -> int:
    """Find the loop count that makes one sample last about ``target_ns``."""
    loops = 1
    while True:
        elapsed = await measure(loops)
        if elapsed >= target_ns / 8 or loops >= 1 << 30:
            break
        loops *= 10 if elapsed < target_ns / 100 else 2
    return max(1, round(loops * target_ns / max(elapsed, 1)))


ProgressFn = Callable[[str, int, int], None]
"""Told ``(scenario key, rounds done, rounds in all)`` before each round and at the end."""


def _quiet(_key: str, _done: int, _total: int) -> None:
    return None


async def _run_scenario(
    scenario: Scenario, settings: Settings, progress: ProgressFn
) -> ScenarioResult:
    cases = scenario.cases
    measures: list[Measure] = []
    for case in cases:
        shared = await _raises_one_instance(scenario, case)
        measures.append(_measure(case, is_async=scenario.is_async, shared=shared))
    target_ns = settings.sample_seconds * 1e9
    loops = [await _calibrate(measure, target_ns) for measure in measures]
    samples: list[list[float]] = [[] for _ in cases]
    count = len(cases)
    rounds = settings.warmup_rounds + settings.samples
    for round_index in range(rounds):
        progress(scenario.key, round_index, rounds)
        shift = round_index % count
        for index in itertools.chain(range(shift, count), range(shift)):
            # Collect first so garbage left by one contender is not charged to the next.
            gc.collect()
            elapsed = await measures[index](loops[index])
            if round_index >= settings.warmup_rounds:
                samples[index].append(elapsed / loops[index])
    progress(scenario.key, rounds, rounds)
    for case in cases:
        if case.check is not None:
            try:
                case.check()
            except Exception as exc:
                raise BenchmarkError(f"{scenario.key} / {case.name}: {exc}") from exc
    results = tuple(
        CaseResult(case, Stats.of(per_call, n))
        for case, per_call, n in zip(cases, samples, loops, strict=True)
    )
    return ScenarioResult(scenario, results)


def run_scenarios(
    scenarios: Iterable[Scenario],
    settings: Settings,
    progress: ProgressFn = _quiet,
) -> list[ScenarioResult]:
    """Time every scenario, one after another, inside one running event loop.

    Sync scenarios run in the loop's thread without awaiting anything, exactly as outside
    a loop; async ones await each call, so coroutines that never suspend never yield.
    """

    async def run_all() -> list[ScenarioResult]:
        return [await _run_scenario(s, settings, progress) for s in scenarios]

    return asyncio.run(run_all())


def select(scenarios: Iterable[Scenario], keys: Sequence[str] | None) -> list[Scenario]:
    """Keep the scenarios whose key is in ``keys`` (all when ``keys`` is empty)."""
    chosen = list(scenarios)
    if not keys:
        return chosen
    known = {s.key for s in chosen}
    unknown = sorted(set(keys) - known)
    if unknown:
        raise SystemExit(
            f"unknown scenario {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return [s for s in chosen if s.key in keys]


# -- reporting ------------------------------------------------------------------------------


def fmt_ns(value: float) -> str:
    """Nanoseconds with thousands separators."""
    return f"{value:,.0f}"


def fmt_ratio(value: float) -> str:
    """A ratio such as ``3.2x``."""
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def rows(result: ScenarioResult) -> list[list[str]]:
    """The table of one scenario: contender, median, spread, min, ratio to ours."""
    ours = result.ours()
    table = []
    for row in result.results:
        stats = row.stats
        ratio = fmt_ratio(stats.median_ns / ours.stats.median_ns) if ours else "-"
        label = row.case.name if row.case.role != "reference" else f"({row.case.name})"
        table.append(
            [
                label,
                fmt_ns(stats.median_ns),
                f"±{stats.spread_pct:.1f}%",
                fmt_ns(stats.min_ns),
                ratio,
            ]
        )
    return table


HEADER = ["contender", "median ns/call", "spread", "min ns", "vs ours"]


def format_text(results: Iterable[ScenarioResult]) -> str:
    """Plain-text tables for the terminal."""
    out: list[str] = []
    for result in results:
        scenario = result.scenario
        table = [HEADER, *rows(result)]
        widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
        out.append(f"\n== {scenario.title} [{scenario.key}]")
        out.append(f"   {scenario.description}")
        for index, line in enumerate(table):
            cells = [
                line[0].ljust(widths[0]),
                *(cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)),
            ]
            out.append("   " + "  ".join(cells))
            if index == 0:
                out.append("   " + "  ".join("-" * w for w in widths))
        out.extend(f"   note: {r.case.name}: {r.case.note}" for r in result.results if r.case.note)
    return "\n".join(out)


def machine_info() -> dict[str, str]:
    """CPU model, cores, Python version and build, OS: what a reader needs to compare."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    logical = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    config_args = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    # PGO and LTO make pure-Python code markedly faster; a shared libpython, slower.
    build = [
        f"{name}: {'yes' if option in config_args else 'no'}"
        for name, option in (
            ("PGO", "--enable-optimizations"),
            ("LTO", "--with-lto"),
            ("shared libpython", "--enable-shared"),
        )
    ]
    build_number, build_date = platform.python_build()
    info = {
        "CPU": model,
        "Cores": f"{logical} logical, {usable} usable by this process",
        "Python": (
            f"{platform.python_implementation()} {platform.python_version()} "
            f"({build_number}, {build_date}) [{platform.python_compiler()}]"
        ),
        "Python build": ", ".join(build) + f" (configure flags of {sys.executable})",
        "OS": platform.platform(),
    }
    if hasattr(os, "getloadavg"):
        info["Load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if sys.flags.dev_mode or sys.flags.optimize:
        info["Interpreter flags"] = f"dev_mode={sys.flags.dev_mode} optimize={sys.flags.optimize}"
    return info


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed version of each distribution, or ``"not installed"``."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# -- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every bench script takes."""
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: few short samples, rough numbers"
    )
    parser.add_argument("--samples", type=int, help="timed samples per contender (default 30)")
    parser.add_argument(
        "--sample-ms", type=float, help="target milliseconds per sample (default 20)"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="KEY",
        help="run only this scenario (repeatable); see --list",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--cpu", type=int, help="pin the process to this CPU (Linux), for steadier numbers"
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """Build :class:`Settings` from parsed options (and pin the CPU if asked)."""
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    base = QUICK if args.quick else Settings()
    return Settings(
        samples=base.samples if args.samples is None else args.samples,
        warmup_rounds=base.warmup_rounds,
        sample_seconds=base.sample_seconds if args.sample_ms is None else args.sample_ms / 1000,
    )


def progress_to_stderr(key: str, done: int, total: int) -> None:
    """Show progress on stderr: one updating line on a terminal, one line per scenario else."""
    if sys.stderr.isatty():
        end = "\n" if done == total else ""
        print(f"\r\033[K{key}: round {done}/{total}", end=end, file=sys.stderr, flush=True)
    elif done == total:
        print(f"{key}: done", file=sys.stderr, flush=True)


def main(build: Callable[[], list[Scenario]], description: str) -> None:
    """Entry point of a standalone bench script: parse options, run, print the tables."""
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser)
    args = parser.parse_args()
    scenarios = build()
    if args.list:
        for scenario in scenarios:
            print(f"{scenario.key:20} {scenario.title}")
        return
    settings = settings_from(args)
    results = run_scenarios(select(scenarios, args.scenario), settings, progress_to_stderr)
    print(format_text(results))
