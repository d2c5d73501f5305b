"""The ``otel-resilience`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from otel_resilience.cli._demo import DemoOptions, add_arguments, run_demo

__all__ = ["console_main", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``otel-resilience`` command."""
    parser = argparse.ArgumentParser(
        prog="otel-resilience",
        description="OpenTelemetry-native resilience toolkit.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="drive a simulated flaky dependency through a breaker + retry pipeline"
    )
    add_arguments(demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        try:
            run_demo(
                DemoOptions(calls=args.calls, seed=args.seed, interval=args.interval), sys.stdout
            )
        except ValueError as exc:
            print(f"otel-resilience: {exc}", file=sys.stderr)
            return 2
    return 0


def console_main() -> None:
    """Entry point of the ``otel-resilience`` console script."""
    sys.exit(main())
