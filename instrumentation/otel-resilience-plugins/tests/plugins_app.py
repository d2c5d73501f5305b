"""The application run by ``opentelemetry-instrument python plugins_app.py`` in the tests.

It loads a plugin through entry points and calls it, then calls a function named in the
TOML configuration. Both fail on their first call, so each prints a result only if the
instrumentor, loaded automatically, retried it.
"""

from __future__ import annotations

import importlib.metadata
import sys

import demo_plugin_targets
import demo_plugins

from otel_resilience import ResilientFunction


def main() -> int:
    """Call the flaky plugin and the flaky configured function; print what happened."""
    (entry_point,) = importlib.metadata.entry_points(group="demo.plugins", name="flaky")
    flaky = entry_point.load()
    print(f"plugin wrapped: {isinstance(flaky, ResilientFunction)}")
    try:
        print(f"plugin result: {flaky('auto')}")
    except ConnectionError as exc:
        print(f"plugin error: {exc}")
    print(f"plugin calls: {demo_plugins.calls.get('flaky', 0)}")

    print(f"target wrapped: {isinstance(demo_plugin_targets.charge, ResilientFunction)}")
    try:
        print(f"target result: {demo_plugin_targets.charge(7)}")
    except ConnectionError as exc:
        print(f"target error: {exc}")
    print(f"target calls: {demo_plugin_targets.calls.get('charge', 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
