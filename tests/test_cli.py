"""The ``otel-resilience`` command: the demo tells a true story, and the script runs."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from otel_resilience.cli import main
from otel_resilience.cli._demo import DemoOptions, run_demo
from otel_resilience.testing import FakeClock


def test_demo_story_on_a_fake_clock() -> None:
    out = io.StringIO()
    outcomes = run_demo(DemoOptions(calls=60, seed=2, interval=0.05), out, clock=FakeClock())
    text = out.getvalue()
    assert sum(outcomes.values()) == 60
    # The outage opens the breaker, calls are then refused without reaching the
    # dependency, and the breaker closes again once the dependency recovers.
    assert "closed -> open (failure_threshold)" in text
    assert "open -> half_open (open_timeout)" in text
    assert "half_open -> closed (trial_success)" in text
    assert outcomes["rejected"] > 0
    assert outcomes["ok after retry"] > 0
    assert outcomes["ok"] > outcomes["rejected"]
    assert "summary" in text
    assert text.rstrip().splitlines()[-1].strip().startswith("transitions")


def test_demo_is_reproducible_for_a_seed() -> None:
    first, second = io.StringIO(), io.StringIO()
    run_demo(DemoOptions(calls=30, seed=3, interval=0.05), first, clock=FakeClock())
    run_demo(DemoOptions(calls=30, seed=3, interval=0.05), second, clock=FakeClock())
    assert first.getvalue() == second.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--calls", "0"], "--calls must be >= 1"),
        (["demo", "--interval", "-1"], "--interval"),
    ],
)
def test_bad_flags_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_console_script_runs_the_demo() -> None:
    script = Path(sys.executable).parent / "otel-resilience"
    assert script.exists(), "the otel-resilience console script is not installed"
    completed = subprocess.run(
        [str(script), "demo", "--calls", "6", "--interval", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "summary" in completed.stdout
    assert completed.stdout.count("call ") >= 6
