"""The ``otel-resilience`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from otel_resilience.cli._demo import add_arguments, options_from_args, run_demo

__all__ = ["console_main", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``otel-resilience`` command."""
    parser = argparse.ArgumentParser(
        prog="otel-resilience",
        description="OpenTelemetry-native resilience toolkit.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="drive real HTTP traffic at a flaky service through every protection"
    )
    add_arguments(demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        try:
            options = options_from_args(args)
        except (TypeError, ValueError) as exc:
            print(f"otel-resilience: {exc}", file=sys.stderr)
            return 2
        try:
            run_demo(options, sys.stdout)
        except RuntimeError as exc:
            print(f"otel-resilience: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return 0


def console_main() -> None:
    """Entry point of the ``otel-resilience`` console script."""
    sys.exit(main())
