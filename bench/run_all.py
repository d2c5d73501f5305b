"""Run every benchmark, print the tables and the targets, optionally update the docs.

Usage (from the repository root)::

    uv run --group bench python bench/run_all.py                  # full run, a few minutes
    uv run --group bench python bench/run_all.py --quick          # smoke run, seconds
    uv run --group bench python bench/run_all.py --write docs/benchmarks.md \
        --json bench/results/run.json

``--write`` replaces the generated results section of the file (between the markers
below) with this run's numbers, the machine, and every package version; the text around
the markers is left as it is.

The Redis scenarios (9 to 12, ``bench_redis.py``) start their own ``redis-server`` for the
run and stop it after; without the binary they are skipped with a note.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import bench_async
import bench_redis
import bench_sync
import bench_telemetry
from harness import (
    HEADER,
    PACKAGES,
    CaseResult,
    Scenario,
    ScenarioResult,
    Settings,
    add_arguments,
    fmt_ns,
    fmt_ratio,
    format_text,
    judged,
    machine_info,
    package_versions,
    progress_to_stderr,
    rows,
    run_scenarios,
    select,
    settings_from,
)

__all__ = [
    "BEGIN",
    "END",
    "REPORTED_PACKAGES",
    "TARGETS",
    "TELEMETRY_TARGETS",
    "RelativeTarget",
    "Target",
    "main",
    "render_markdown",
    "rewrite_section",
]

BEGIN = "<!-- BEGIN GENERATED RESULTS: bench/run_all.py --write replaces everything up to END -->"
END = "<!-- END GENERATED RESULTS -->"

REFERENCE_WRAPT_NS = 400.0
"""What the plain wrapt.decorator pass-through cost on the machine the targets were set on."""

SCALE_ROW = ("success_sync", "wrapt.decorator pass-through")
"""The row of this run compared with :data:`REFERENCE_WRAPT_NS` to scale the targets."""

REPORTED_PACKAGES = (*PACKAGES, "redis")
"""The harness's distributions and redis-py, the client of the Redis scenarios."""


@dataclass(frozen=True, slots=True)
class Target:
    """A per-call budget from the issue, set on the reference machine.

    ``cases`` are the otel-resilience rows it applies to; the slowest of them is judged.
    """

    label: str
    scenario: str
    cases: tuple[str, ...]
    reference_ns: float


TARGETS = (
    Target("Breaker + retry, success (sync)", "success_sync", ("otel-resilience",), 600),
    Target("Breaker + retry, success (async)", "success_async", ("otel-resilience",), 800),
    Target(
        "Open-circuit rejection (sync)",
        "rejection_sync",
        ("otel-resilience (forced open)", "otel-resilience (tripped open)"),
        500,
    ),
    Target(
        "Open-circuit rejection (async)",
        "rejection_async",
        ("otel-resilience (forced open)", "otel-resilience (tripped open)"),
        500,
    ),
    Target("Two failures then success, 0 s wait (sync)", "retry_sync", ("otel-resilience",), 2000),
    Target(
        "Two failures then success, 0 s wait (async)", "retry_async", ("otel-resilience",), 2000
    ),
)


@dataclass(frozen=True, slots=True)
class RelativeTarget:
    """A budget set against another row of the same run (the telemetry targets).

    ``case`` is judged against ``baseline`` (fastest samples, see :func:`judged`): it may
    be at most ``max_ratio`` times the baseline's, or at most ``max_extra_ns`` above it
    (scaled like :class:`Target` budgets). With neither, the row is reported without a
    verdict.
    """

    label: str
    scenario: str
    case: str
    baseline: str
    max_ratio: float | None = None
    max_extra_ns: float | None = None


_OURS = "otel-resilience"
_OFF_DEFAULT = "otel-resilience default"
_OFF = "otel-resilience telemetry=False"
_REFERENCE = bench_telemetry.REFERENCE

TELEMETRY_TARGETS = (
    RelativeTarget(
        "Telemetry off, no SDK (sync)", "telemetry_off_sync", _OFF_DEFAULT, _OFF, max_extra_ns=300
    ),
    RelativeTarget(
        "Telemetry off, no SDK (async)", "telemetry_off_async", _OFF_DEFAULT, _OFF, max_extra_ns=300
    ),
    RelativeTarget("Metrics only (sync)", "metrics_sync", _OURS, _REFERENCE),
    RelativeTarget("Metrics only (async)", "metrics_async", _OURS, _REFERENCE),
    RelativeTarget(
        "Metrics and spans (sync)", "metrics_spans_sync", _OURS, _REFERENCE, max_ratio=1.1
    ),
    RelativeTarget(
        "Metrics and spans (async)",
        "metrics_spans_async",
        _OURS,
        _REFERENCE,
        max_ratio=1.1,
    ),
)
"""From the telemetry issue: with metrics and spans, at most 1.1 times the hand-written
reference with the same telemetry (22 µs against 20 µs on the reference machine, sync);
telemetry off, no more than a few hundred nanoseconds over ``telemetry=False``."""


def all_scenarios() -> list[Scenario]:
    """Sync and async scenarios, paired by number so the report reads in issue order."""
    sync = bench_sync.scenarios()
    asynchronous = bench_async.scenarios()
    paired = [s for pair in zip(sync, asynchronous, strict=True) for s in pair]
    return paired + bench_telemetry.scenarios()


def scale_factor(results: list[ScenarioResult]) -> float | None:
    """This machine's wrapt pass-through over the reference machine's, or ``None``."""
    scenario_key, row = SCALE_ROW
    for result in results:
        if result.scenario.key == scenario_key:
            return judged(result.get(row).stats) / REFERENCE_WRAPT_NS
    return None


def target_rows(results: list[ScenarioResult]) -> list[list[str]]:
    """One row per target whose scenario ran: budget, scaled budget, ours, verdict, peers."""
    by_key = {r.scenario.key: r for r in results}
    factor = scale_factor(results) or 1.0
    table = []
    for target in TARGETS:
        result = by_key.get(target.scenario)
        if result is None:
            continue
        measured = max(judged(result.get(name).stats) for name in target.cases)
        budget = target.reference_ns * factor
        verdict = "yes" if measured <= budget else f"**no** (+{(measured / budget - 1) * 100:.0f}%)"
        best = result.best_peer()
        if best is None:
            peer, ratio = "-", "-"
        else:
            peer = f"{best.case.name}: {fmt_ns(judged(best.stats))}"
            ratio = fmt_ratio(measured / judged(best.stats))
        table.append(
            [
                target.label,
                fmt_ns(target.reference_ns),
                fmt_ns(budget),
                fmt_ns(measured),
                verdict,
                peer,
                ratio,
            ]
        )
    return table


def _signed_ns(value: float) -> str:
    return ("+" if value >= 0 else "-") + fmt_ns(abs(value))


def telemetry_target_rows(results: list[ScenarioResult]) -> list[list[str]]:
    """One row per telemetry target whose scenario ran, judged within its own scenario."""
    by_key = {r.scenario.key: r for r in results}
    factor = scale_factor(results) or 1.0
    table = []
    for target in TELEMETRY_TARGETS:
        result = by_key.get(target.scenario)
        if result is None:
            continue
        measured = judged(result.get(target.case).stats)
        base = judged(result.get(target.baseline).stats)
        ratio, extra = measured / base, measured - base
        if target.max_ratio is not None:
            budget = f"≤ {target.max_ratio:.2f}x"
            met = ratio <= target.max_ratio
            overshoot = ratio / target.max_ratio
        elif target.max_extra_ns is not None:
            scaled = target.max_extra_ns * factor
            budget = f"≤ +{fmt_ns(target.max_extra_ns)} ns (+{fmt_ns(scaled)} here)"
            met = extra <= scaled
            overshoot = extra / scaled
        else:
            budget, met, overshoot = "none set", None, 0.0
        if met is None:
            verdict = "-"
        else:
            verdict = "yes" if met else f"**no** (+{(overshoot - 1) * 100:.0f}%)"
        peers = sorted(judged(r.stats) / base for r in result.results if r.case.role == "peer")
        spread = "-" if not peers else f"{fmt_ratio(peers[0])} to {fmt_ratio(peers[-1])}"
        table.append(
            [
                target.label,
                target.baseline,
                budget,
                fmt_ns(measured),
                fmt_ns(base),
                _signed_ns(extra),
                fmt_ratio(ratio),
                verdict,
                spread,
            ]
        )
    return table


TELEMETRY_TARGET_HEADER = [
    "target",
    "judged against",
    "budget",
    "otel-resilience ns (fastest sample)",
    "baseline ns (fastest sample)",
    "difference ns",
    "ours / baseline",
    "met",
    "peers / baseline",
]


TARGET_HEADER = [
    "target",
    "budget ns (reference machine)",
    "budget ns (scaled to here)",
    "otel-resilience ns (fastest sample)",
    "met",
    "best peer ns (fastest sample)",
    "ours / best peer",
]


def _markdown_table(header: list[str], body: list[list[str]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(line) + " |" for line in body),
    ]


def render_markdown(
    results: list[ScenarioResult],
    settings: Settings,
    command: str,
    when: str,
    redis: bench_redis.RedisReport | str | None = None,
) -> str:
    """The generated results section, markers included.

    ``redis`` is the Redis scenarios' report, or why they did not run.
    """
    lines = [BEGIN, "", "## Results", ""]
    lines += [f"Measured on {when} with:", "", "```sh", command, "```", ""]
    lines += [
        f"Each contender: {settings.samples} samples of about "
        f"{settings.sample_seconds * 1000:g} ms after {settings.warmup_rounds} warm-up rounds, "
        "interleaved with the other contenders of its scenario in one process. Times are "
        "median nanoseconds per call, loop overhead included; spread is half the "
        'interquartile range. "vs ours" is the row\'s median over the first '
        "otel-resilience row's; rows in parentheses are reference points, not contenders.",
        "",
        "### Machine and packages",
        "",
    ]
    machine = machine_info()
    lines += _markdown_table(["", ""], [[k, v] for k, v in machine.items()], right_from=2)
    lines.append("")
    versions = package_versions(REPORTED_PACKAGES)
    if isinstance(redis, bench_redis.RedisReport):
        versions["redis-server"] = redis.server_version
    lines += _markdown_table(["package", "version"], [[k, v] for k, v in versions.items()], 2)
    lines += ["", "### Targets", ""]
    factor = scale_factor(results)
    if factor is None:
        lines.append("The wrapt reference row did not run, so budgets are not scaled.")
    else:
        wrapt_ns = factor * REFERENCE_WRAPT_NS
        lines.append(
            "Verdicts compare each row's fastest sample, not its median (see Method). "
            f"Budgets are scaled by the wrapt pass-through row: {fmt_ns(wrapt_ns)} ns here "
            f"against {fmt_ns(REFERENCE_WRAPT_NS)} ns on the reference machine, a factor of "
            f"{factor:.2f}. For rejections the slower of the forced-open and tripped-open "
            'rows is judged. "ours / best peer" below 1 means otel-resilience is faster.'
        )
    lines.append("")
    lines += _markdown_table(TARGET_HEADER, target_rows(results))
    telemetry_rows = telemetry_target_rows(results)
    if telemetry_rows:
        lines += [
            "",
            "Telemetry targets are judged against a row of the same scenario: the "
            "hand-written breaker + retry with the same telemetry, or the same pipeline "
            'with `telemetry=False`. "peers / baseline" is the range of the peer stacks\' '
            "fastest samples over that row's.",
            "",
        ]
        lines += _markdown_table(TELEMETRY_TARGET_HEADER, telemetry_rows, right_from=3)
    for result in results:
        scenario = result.scenario
        lines += ["", f"### {scenario.title}", "", scenario.description, ""]
        if isinstance(redis, bench_redis.RedisReport) and scenario.key in bench_redis.KEYS:
            lines += [bench_redis.count_method(redis), ""]
            table = bench_redis.round_trip_rows(result, redis)
            lines += _markdown_table(bench_redis.ROUND_TRIP_HEADER, table)
        else:
            lines += _markdown_table(HEADER, rows(result))
        notes = [f"- {r.case.name}: {r.case.note}" for r in result.results if r.case.note]
        if notes:
            lines += ["", *notes]
    if isinstance(redis, str):
        lines += ["", f"The Redis scenarios (9 to 12) did not run: {redis}."]
    lines += ["", END]
    return "\n".join(lines)


def rewrite_section(path: Path, section: str) -> None:
    """Replace the generated section of ``path`` (append one if it has no markers)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(BEGIN)
    stop = text.find(END)
    if start == -1 or stop == -1 or stop < start:
        new = text.rstrip("\n") + "\n\n" + section + "\n"
    else:
        new = text[:start] + section + text[stop + len(END) :]
    path.write_text(new, encoding="utf-8")


def _to_json(
    results: list[ScenarioResult],
    settings: Settings,
    command: str,
    when: str,
    redis: bench_redis.RedisReport | None,
) -> str:
    def row(key: str, result: CaseResult) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": result.case.name,
            "role": result.case.role,
            **asdict(result.stats),
        }
        trips = None if redis is None else redis.get(key, result.case.name)
        if trips is not None:
            entry["redis"] = asdict(trips)
        return entry

    payload = {
        "when": when,
        "command": command,
        "settings": asdict(settings),
        "machine": machine_info(),
        "packages": package_versions(REPORTED_PACKAGES),
        "redis_server": None if redis is None else redis.server_version,
        "scale_factor": scale_factor(results),
        "scenarios": [
            {
                "key": r.scenario.key,
                "title": r.scenario.title,
                "async": r.scenario.is_async,
                "results": [row(r.scenario.key, c) for c in r.results],
            }
            for r in results
        ],
    }
    return json.dumps(payload, indent=2)


def _open_redis(
    stack: contextlib.ExitStack, keys: list[str] | None, *, quick: bool
) -> bench_redis.RedisBench | str | None:
    """Start redis-server for the Redis scenarios if they are to run.

    Returns the bench, ``None`` when no Redis scenario is selected, or why they cannot run.
    """
    if not bench_redis.wants_redis(keys):
        return None
    calls = bench_redis.QUICK_ROUND_TRIP_CALLS if quick else bench_redis.ROUND_TRIP_CALLS
    try:
        return stack.enter_context(bench_redis.open_bench(calls=calls))
    except bench_redis.RedisServerMissingError as error:
        return str(error)


def main() -> None:
    """Parse options, run the scenarios, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    parser.add_argument(
        "--write", type=Path, metavar="MARKDOWN", help="rewrite the results section of this file"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also save the raw results")
    args = parser.parse_args()
    scenarios = all_scenarios()
    if args.list:
        for scenario in scenarios:
            print(f"{scenario.key:20} {scenario.title}")
        for key, title in bench_redis.LISTING:
            print(f"{key:20} {title} (starts redis-server)")
        return
    settings = settings_from(args)
    command = "uv run --group bench python " + shlex.join(sys.argv)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    keys: list[str] | None = args.scenario
    redis: bench_redis.RedisReport | str | None = None
    with contextlib.ExitStack() as stack:
        bench = _open_redis(stack, keys, quick=args.quick)
        if isinstance(bench, bench_redis.RedisBench):
            scenarios += bench.scenarios()
        elif isinstance(bench, str):
            redis = bench
            print(f"note: skipping the Redis scenarios (9 to 12): {bench}", file=sys.stderr)
            if keys:
                keys = [key for key in keys if key not in bench_redis.KEYS]
                if not keys:
                    return
        started = perf_counter_ns()
        chosen = select(scenarios, keys)
        parts = run_scenarios(bench_redis.split(chosen), settings, progress_to_stderr)
        results = bench_redis.merge(chosen, parts)
        if isinstance(bench, bench_redis.RedisBench):
            redis = bench.report(results)
        print(f"measured in {(perf_counter_ns() - started) / 1e9:.0f} s", file=sys.stderr)
    redis_results = [r for r in results if r.scenario.key in bench_redis.KEYS]
    if isinstance(redis, bench_redis.RedisReport) and redis_results:
        print(format_text([r for r in results if r.scenario.key not in bench_redis.KEYS]))
        print(bench_redis.format_text(redis_results, redis))
    else:
        print(format_text(results))
    target_table = [TARGET_HEADER, *target_rows(results)]
    if len(target_table) > 1:
        print("\n== Targets (budgets scaled by the wrapt reference row)")
        for line in target_table:
            print("   " + " | ".join(cell.replace("**", "") for cell in line))
    telemetry_table = [TELEMETRY_TARGET_HEADER, *telemetry_target_rows(results)]
    if len(telemetry_table) > 1:
        print("\n== Telemetry targets (judged against a row of the same scenario)")
        for line in telemetry_table:
            print("   " + " | ".join(cell.replace("**", "") for cell in line))
    report = redis if isinstance(redis, bench_redis.RedisReport) else None
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = _to_json(results, settings, command, when, report)
        args.json.write_text(payload + "\n", encoding="utf-8")
    if args.write is not None:
        rewrite_section(args.write, render_markdown(results, settings, command, when, redis))
        print(f"\nwrote the results section of {args.write}")


if __name__ == "__main__":
    main()
