"""The shipped Prometheus configuration and alert rules, checked by the real promtool.

``promtool test rules`` runs grafana/prometheus/alerts_test.yml, which must exercise every
alert of alerts.yml (both when it fires and when it stays quiet).
"""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import servers
else:
    # tests/ is not a package for the type checker: imported by name at run time.
    servers = importlib.import_module("tests.servers")

pytestmark = pytest.mark.integration

PROMETHEUS_DIR = Path(__file__).resolve().parent.parent / "grafana" / "prometheus"
ALERT_NAME = re.compile(r"^\s*-\s*alert:\s*(\S+)\s*$", re.MULTILINE)
TESTED_ALERT = re.compile(r"^\s*alertname:\s*(\S+)\s*$", re.MULTILINE)
PROMTOOL_TIMEOUT = 60.0


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = servers.require_binary("promtool", package="prometheus")
    return subprocess.run(
        [binary, *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert_ok(result)
    assert "1 rule files found" in result.stdout + result.stderr


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert_ok(result)


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert_ok(result)
    assert "SUCCESS" in result.stdout + result.stderr


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    # The unit tests can fail: the same file with one expected label changed does.
    text = (PROMETHEUS_DIR / "alerts_test.yml").read_text(encoding="utf-8")
    text = text.replace("resilience_circuit_breaker: payments", "resilience_circuit_breaker: x", 1)
    text = text.replace("  - alerts.yml", f"  - {PROMETHEUS_DIR / 'alerts.yml'}", 1)
    broken = tmp_path / "alerts_test.yml"
    broken.write_text(text, encoding="utf-8")
    result = promtool("test", "rules", str(broken))
    assert result.returncode != 0, result.stdout
    assert "ResilienceCircuitBreakerOpenTooLong" in result.stdout + result.stderr


def test_every_alert_has_unit_tests() -> None:
    alerts = ALERT_NAME.findall((PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8"))
    tested = TESTED_ALERT.findall((PROMETHEUS_DIR / "alerts_test.yml").read_text("utf-8"))
    assert len(alerts) == len(set(alerts)) >= 5
    assert set(alerts) <= set(tested), sorted(set(alerts) - set(tested))
    assert set(tested) <= set(alerts), sorted(set(tested) - set(alerts))
