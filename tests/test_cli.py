"""The ``otel-resilience`` command: the demo runs real traffic and reports what happened."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from otel_resilience.cli import main
from otel_resilience.cli._demo import DemoOptions, DemoReport, run_demo
from otel_resilience.cli._service import SCENARIOS, Schedule

ROOT = Path(__file__).resolve().parent.parent


def test_a_short_outage_run_shows_every_recovery() -> None:
    out = io.StringIO()
    report = run_demo(DemoOptions(duration=4.0, scenario="outage", metrics_port=0, live=False), out)
    text = out.getvalue()
    assert report.retries > 0
    assert report.transitions["closed->open"] > 0
    assert report.fallbacks > 0
    assert report.failovers > 0
    assert report.alerts > 0
    assert report.calls["success"] > 0
    for label in ("retries", "breaker transitions", "fallbacks", "failover", "alerts"):
        assert label in report.summary
    assert report.summary in text
    assert text.rstrip().splitlines()[-1].strip().startswith("metrics")


def test_plain_progress_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    run_demo(DemoOptions(duration=2.5, scenario="rate-limited", metrics_port=0), out)
    text = out.getvalue()
    assert "\x1b[" not in text
    assert "calls: success" in text
    assert "summary:" in text


def test_the_metrics_endpoint_serves_resilience_calls_while_running() -> None:
    out = io.StringIO()
    result: list[DemoReport] = []
    runner = threading.Thread(
        target=lambda: result.append(
            run_demo(DemoOptions(duration=3.0, metrics_port=0, live=False), out)
        )
    )
    runner.start()
    try:
        body = ""
        for _ in range(100):
            header = out.getvalue()
            if "/metrics" in header:
                url = header.split("metrics ", 1)[1].split()[0]
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = response.read().decode()
                if "resilience_calls_total" in body:
                    break
            threading.Event().wait(0.05)
    finally:
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert url.startswith("http://127.0.0.1:")
    assert "resilience_calls_total" in body
    assert result
    assert result[0].metrics_url == url


def test_a_taken_metrics_port_is_reported_and_replaced() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = io.StringIO()
        report = run_demo(
            DemoOptions(duration=1.0, scenario="slow", metrics_port=port, live=False), out
        )
    assert f"metrics port {port} is not available" in out.getvalue()
    assert report.metrics_url is not None
    assert f":{port}/" not in report.metrics_url


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_fills_the_duration_in_order(scenario: str) -> None:
    schedule = Schedule(scenario, 30.0)
    assert schedule.phases[0].start == 0.0
    assert schedule.phases[-1].end == pytest.approx(30.0)
    for before, after in zip(schedule.phases, schedule.phases[1:], strict=False):
        assert before.end == pytest.approx(after.start)
    if scenario != "all":
        assert schedule.at(15.0).name == scenario
    assert schedule.at(99.0).name == "recovery"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--duration", "0"], "DemoOptions.duration must be > 0"),
        (["demo", "--duration", "nan"], "DemoOptions.duration must be finite"),
        (["demo", "--metrics-port", "70000"], "DemoOptions.metrics_port must be <= 65535"),
        (["demo", "--workers", "0"], "DemoOptions.workers must be >= 1"),
        (["demo", "--alertmanager-url", "ftp://x"], "DemoOptions.alertmanager_url"),
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
        [str(script), "demo", "--duration", "2", "--metrics-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "summary:" in completed.stdout
    assert "calls" in completed.stdout


def test_the_readme_has_the_demo_markers() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    begin, end = text.find("<!-- demo:begin -->"), text.find("<!-- demo:end -->")
    assert 0 <= begin < end


def test_render_readme_writes_the_assets_and_the_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- demo:begin -->\nold\n<!-- demo:end -->\n\nafter\n")
    assets = tmp_path / "assets"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/render_readme.py"),
            "--duration",
            "2",
            "--assets",
            str(assets),
            "--readme",
            str(readme),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    summary = (assets / "demo-terminal.txt").read_text()
    assert summary.startswith("summary:")
    svg = (assets / "demo-calls.svg").read_text()
    assert svg.startswith("<svg")
    assert "polyline" in svg
    assert svg.rstrip().endswith("</svg>")
    text = readme.read_text()
    assert "old" not in text
    assert "demo-calls.svg" in text
    assert "after" in text
    assert "retries" in text
