"""``opentelemetry-instrument`` loads the plugins instrumentor on its own and it wraps calls."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PLUGIN_DIST = TESTS / "plugin_dist"
APP = TESTS / "plugins_app.py"
INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"


def _environment(config: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(
        {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_RESILIENCE_PLUGIN_GROUPS": "demo.plugins",
            "OTEL_RESILIENCE_CONFIG": str(config),
            "PYTHONPATH": os.pathsep.join(
                [str(PLUGIN_DIST), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
    )
    return env


def _run(command: list[str], config: Path, cwd: Path) -> dict[str, str]:
    completed = subprocess.run(
        command,
        env=_environment(config),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = dict(line.split(": ", 1) for line in completed.stdout.splitlines() if ": " in line)
    assert lines, f"no output; stderr:\n{completed.stderr}"
    return lines


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "resilience.toml"
    path.write_text(
        '[[wrap]]\ntarget = "demo_plugin_targets:charge"\nname = "billing.charge"\n'
        "max_attempts = 3\ntimeout = 30.0\n",
        encoding="utf-8",
    )
    return path


def test_opentelemetry_instrument_loads_the_instrumentor(config: Path, tmp_path: Path) -> None:
    assert INSTRUMENT.is_file(), (
        f"{INSTRUMENT} is missing: is opentelemetry-instrumentation installed?"
    )
    output = _run([str(INSTRUMENT), sys.executable, str(APP)], config, tmp_path)
    assert output["plugin wrapped"] == "True"
    assert output["plugin result"] == "flaky:auto"  # only a retry gets here
    assert output["plugin calls"] == "2"
    assert output["target wrapped"] == "True"
    assert output["target result"] == "charged 7"
    assert output["target calls"] == "2"


def test_without_the_instrumentation_nothing_is_retried(config: Path, tmp_path: Path) -> None:
    # The same application and environment without opentelemetry-instrument: the control.
    output = _run([sys.executable, str(APP)], config, tmp_path)
    assert output["plugin wrapped"] == "False"
    assert output["plugin error"] == "flaky: the first call fails"
    assert output["plugin calls"] == "1"
    assert output["target wrapped"] == "False"
    assert "target error" in output


def test_the_disabled_list_switches_it_off(config: Path, tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(INSTRUMENT), sys.executable, str(APP)],
        env={
            **_environment(config),
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "otel_resilience_plugins",
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "plugin wrapped: False" in completed.stdout
