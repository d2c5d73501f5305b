"""Run a short demo and render the README's demo assets.

Writes ``docs/assets/demo-terminal.txt`` (the demo's final summary) and
``docs/assets/demo-calls.svg`` (call outcomes per second over the run, drawn by hand), then
rewrites the README section between ``<!-- demo:begin -->`` and ``<!-- demo:end -->``.

Usage: ``uv run python scripts/render_readme.py [--duration 20] [--scenario all]``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from xml.sax.saxutils import escape

from otel_resilience.cli._demo import OUTCOMES, DemoOptions, DemoReport, run_demo

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- demo:begin -->"
END = "<!-- demo:end -->"
WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 130, 36, 40
COLOURS = {
    "success": "#2e7d32",
    "fallback": "#f9a825",
    "rejected": "#6a1b9a",
    "failure": "#c62828",
    "timeout": "#1565c0",
}


def _rates(report: DemoReport) -> list[tuple[float, dict[str, float]]]:
    """Calls per second by outcome between consecutive samples."""
    points: list[tuple[float, dict[str, float]]] = []
    for (t0, before), (t1, after) in zip(report.timeline, report.timeline[1:], strict=False):
        span = t1 - t0
        if span <= 0:
            continue
        points.append((t1, {o: (after[o] - before[o]) / span for o in OUTCOMES}))
    return points


def render_svg(report: DemoReport, title: str) -> str:
    """Return an SVG line chart of call outcomes per second over the run."""
    points = _rates(report)
    end = max((t for t, _ in points), default=1.0) or 1.0
    peak = max((v for _, rates in points for v in rates.values()), default=1.0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + plot_w * t / end

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / peak)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="20" font-size="14">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" '
        'stroke="#444"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#444"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end">{peak:.0f}/s</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h + 4}" text-anchor="end">0</text>',
        f'<text x="{LEFT + plot_w}" y="{TOP + plot_h + 18}" text-anchor="end">{end:.0f} s</text>',
        f'<text x="{LEFT}" y="{TOP + plot_h + 18}">0 s</text>',
    ]
    for index, outcome in enumerate(OUTCOMES):
        colour = COLOURS[outcome]
        coords = " ".join(f"{x(t):.1f},{y(rates[outcome]):.1f}" for t, rates in points)
        if coords:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>'
            )
        legend_y = TOP + 16 * index + 8
        parts.append(
            f'<rect x="{LEFT + plot_w + 16}" y="{legend_y - 9}" width="10" height="10" '
            f'fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{LEFT + plot_w + 32}" y="{legend_y}">{outcome} '
            f"{report.calls[outcome]}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def readme_section(report: DemoReport, assets: Path, readme: Path, command: str) -> str:
    """Return the README section (markers excluded) showing the demo."""
    relative = Path(os.path.relpath(assets, readme.parent)).as_posix()
    return (
        "\n## The demo\n\n"
        f"`{command}` starts a flaky HTTP service on loopback and drives traffic through the "
        "httpx transport (retries, breaker per authority, failover to a secondary), a "
        "`@resilient` function and a function patched with `wrap`, with the error-recovery "
        "orchestrator on. Metrics are served on http://127.0.0.1:9464/metrics. Call "
        "outcomes over a run:\n\n"
        f"![Call outcomes per second during the demo]({relative}/demo-calls.svg)\n\n"
        "Its closing summary:\n\n"
        f"```text\n{report.summary}\n```\n"
    )


def replace_section(text: str, section: str) -> str:
    """Put ``section`` between the markers of ``text`` (appending them if absent)."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        return f"{text.rstrip()}\n\n{BEGIN}{section}{END}\n"
    return text[: begin + len(BEGIN)] + section + text[end:]


def main(argv: list[str] | None = None) -> int:
    """Run the demo and write the assets and the README section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--scenario", default="all")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--assets", type=Path, default=ROOT / "docs" / "assets")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    options = DemoOptions(
        duration=args.duration,
        scenario=args.scenario,
        seed=args.seed,
        metrics_port=0,
        live=False,
    )
    report = run_demo(options, io.StringIO())
    args.assets.mkdir(parents=True, exist_ok=True)
    (args.assets / "demo-terminal.txt").write_text(report.summary + "\n", encoding="utf-8")
    title = f"otel-resilience demo: call outcomes per second (scenario {args.scenario})"
    (args.assets / "demo-calls.svg").write_text(render_svg(report, title), encoding="utf-8")
    section = readme_section(report, args.assets, args.readme, "uv run otel-resilience demo")
    readme = args.readme.read_text(encoding="utf-8")
    args.readme.write_text(replace_section(readme, section), encoding="utf-8")
    print(report.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
