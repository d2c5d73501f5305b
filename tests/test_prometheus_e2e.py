"""The dashboards and alert rules against a real Prometheus scraping the running demo.

A real Prometheus on loopback scrapes the running ``otel-resilience demo`` every second:
real HTTP traffic through its httpx client, decorated and wrapped functions, a bulkhead,
the orchestrator with a failing second alert sink and an audit event bus that drops. It
loads the shipped alert rules, plus ``for: 0s`` copies of them, and sends its alerts to a
real Alertmanager. Then every panel query of every dashboard must return data, every
metric name under grafana/ must be scraped, and the copies of the alerts the demo makes
true must reach Alertmanager.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import servers
    import test_grafana as grafana
else:
    # tests/ is not a package for the type checker: imported by name at run time.
    servers = importlib.import_module("tests.servers")
    grafana = importlib.import_module("tests.test_grafana")

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ALERT_RULES = GRAFANA / "prometheus" / "alerts.yml"

RATE_INTERVAL = "30s"
"""What ``$__rate_interval`` becomes: several 1s scrapes, yet soon filled."""

DEMO_DURATION = "120"
"""Seconds the demo is asked to run: longer than these tests, which stop it."""

DEMO_METRICS_URL = re.compile(r"metrics (http://\S+/metrics)")
"""Where the demo's header says it serves its metrics."""

URL_LINES = 10
"""Lines of output read, at most, to find the metrics URL."""

DEMO_PIPELINES = ("httpx", "pricing", "recommendations", "reports", "quotes", "ledger")
"""The demo's pipelines: its httpx client, decorated functions, a wrapped function."""

DEMO_BREAKERS = ("pricing", "recommendations", "reports", "ledger")
"""The demo's breakers besides the httpx client's (named after an authority)."""

HELD_OPEN = "ledger"
"""The demo's breaker that stays open through the first part of a run."""

IMMEDIATE_SUFFIX = "Now"
"""Suffix of the ``for: 0s`` copies of the shipped alerts."""

FIRING = (
    "ResilienceCircuitBreakerOpenTooLong",
    "ResilienceRetryExhaustion",
    "ResilienceCriticalErrors",
    "ResilienceAlertDeliveryFailing",
)
"""The shipped alerts whose conditions the demo makes true (the scrape is up)."""

# -- the demo process ------------------------------------------------------------------------


def _start(
    command: list[str], log_path: Path, url_pattern: re.Pattern[str]
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``command``; return it and the metrics URL read from the start of its output."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
        )
    assert process.stdout is not None
    url = None
    # The URL is in the first lines; a process that dies ends the output early.
    for _ in range(URL_LINES):
        line = process.stdout.readline().decode()
        found = url_pattern.search(line)
        if found is not None:
            url = found.group(1)
            break
        if not line:
            break
    if url is None:
        servers.stop_process(process)
        process.stdout.close()
        log_text = log_path.read_text(encoding="utf-8", errors="replace")
        pytest.fail(f"{command[2:]} did not serve metrics:\n{log_text}", pytrace=False)
    return process, url


@contextlib.contextmanager
def _running(command: list[str], log_path: Path, url_pattern: re.Pattern[str]) -> Iterator[str]:
    process, url = _start(command, log_path, url_pattern)
    assert process.stdout is not None
    # The demo keeps printing progress: drain it so a full pipe never blocks it.
    drain = threading.Thread(target=process.stdout.read, daemon=True)
    drain.start()
    try:
        yield url
        assert process.poll() is None, log_path.read_text(encoding="utf-8", errors="replace")
    finally:
        servers.stop_process(process)
        drain.join()
        process.stdout.close()


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The metrics URL of a running ``otel-resilience demo``."""
    log_path = tmp_path_factory.mktemp("demo") / "demo.log"
    command = [
        sys.executable,
        "-m",
        "otel_resilience.cli",
        "demo",
        "--duration",
        DEMO_DURATION,
        "--metrics-port",
        "0",
        "--no-live",
    ]
    with _running(command, log_path, DEMO_METRICS_URL) as url:
        yield url


def immediate_rules(text: str) -> str:
    """The shipped rules as a new group whose alerts fire at once (``for: 0s``)."""
    text = re.sub(r"^(\s*-\s*name:\s*)(\S+)", r"\1\2-immediate", text, flags=re.MULTILINE)
    text = re.sub(r"^(\s*-\s*alert:\s*\S+)", rf"\1{IMMEDIATE_SUFFIX}", text, flags=re.MULTILINE)
    return re.sub(r"^(\s*)for:\s*\S+", r"\1for: 0s", text, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def prometheus(
    demo_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.Prometheus]:
    tmp_path = tmp_path_factory.mktemp("prometheus")
    with servers.alertmanager(tmp_path) as am:
        immediate = tmp_path / "immediate.yml"
        immediate.write_text(immediate_rules(ALERT_RULES.read_text(encoding="utf-8")))
        with servers.prometheus(
            tmp_path,
            targets=[_instance(demo_url)],
            rule_files=[ALERT_RULES, immediate],
            alertmanager_url=am.base_url,
        ) as server:
            server.alertmanager = am
            servers.poll(
                lambda: _has_rates(server, _instance(demo_url)),
                what=f"two scrapes of resilience metrics\n{server.log()}",
            )
            yield server


def _instance(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def _has_rates(server: servers.Prometheus, instance: str) -> bool:
    # A rate needs two samples in its range: the first scrapes are in.
    return bool(server.query(f'rate(resilience_calls_total{{instance="{instance}"}}[10s])'))


# -- the dashboards' queries -------------------------------------------------------------------


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries() -> list[tuple[str, str, str]]:
    """Every (dashboard uid, panel title, PromQL expression) of every dashboard."""
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in _panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((dashboard["uid"], panel["title"], target["expr"]))
    return found


def substitute(expr: str) -> str:
    """Replace Grafana's template variables with values that fit this run."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    expr = expr.replace("$__range", "5m")
    expr = expr.replace("$client", "httpx")
    # Every other variable is a multi-value label filter: "all". ($1 is a regex group.)
    return re.sub(r"\$\{?([A-Za-z_]\w*)(?::\w+)?\}?", ".*", expr)


QUERIES = dashboard_queries()


def test_dashboards_have_queries() -> None:
    assert len(QUERIES) >= 20


@pytest.mark.parametrize(
    ("uid", "title", "expr"), QUERIES, ids=[f"{uid}:{title}" for uid, title, _ in QUERIES]
)
def test_every_panel_query_returns_data(
    prometheus: servers.Prometheus, uid: str, title: str, expr: str
) -> None:
    query = substitute(expr)
    # Some series (a timeout, a transition) appear only once the demo's traffic has made
    # them: wait for them within the poll bound rather than judging the first scrape.
    servers.poll(
        lambda: bool(prometheus.query(query)),
        what=f"{uid} / {title}: data for {query}\n{prometheus.log()}",
    )


def test_the_running_demo_is_scraped(prometheus: servers.Prometheus, demo_url: str) -> None:
    instance = _instance(demo_url)

    def pipelines() -> set[str]:
        query = f'sum by (resilience_pipeline) (resilience_calls_total{{instance="{instance}"}})'
        return {found["metric"]["resilience_pipeline"] for found in prometheus.query(query)}

    servers.poll(
        lambda: set(DEMO_PIPELINES) <= pipelines(),
        what=f"calls of {DEMO_PIPELINES} from the demo, got {pipelines()}",
    )
    breakers = prometheus.query(f'resilience_circuit_breaker_state{{instance="{instance}"}}')
    assert set(DEMO_BREAKERS) <= {
        found["metric"]["resilience_circuit_breaker"] for found in breakers
    }
    # The client panels select the httpx client by name: the demo's client has data there.
    client = f'resilience_calls_total{{instance="{instance}",resilience_pipeline="httpx"}}'
    assert prometheus.query(client)


def test_every_metric_name_under_grafana_is_scraped(prometheus: servers.Prometheus) -> None:
    used = set()
    for path in DASHBOARDS:
        for expr in grafana.dashboard_exprs(grafana.load(path)):
            used |= grafana.metric_names(expr)
    for expr in grafana.rule_exprs():
        used |= grafana.metric_names(expr)
    scraped = set(prometheus.get_json("/api/v1/label/__name__/values")["data"])
    assert len(used) > 20
    assert used <= scraped, sorted(used - scraped)


def _rules(prometheus: servers.Prometheus) -> list[dict[str, Any]]:
    groups = prometheus.get_json("/api/v1/rules")["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_shipped_rules_are_loaded_and_healthy(prometheus: servers.Prometheus) -> None:
    shipped = set(grafana.alert_names(ALERT_RULES.read_text(encoding="utf-8")))
    assert shipped <= {rule["name"] for rule in _rules(prometheus)}
    servers.poll(
        lambda: all(rule.get("health") == "ok" for rule in _rules(prometheus)),
        what=f"every rule evaluated without error: {_rules(prometheus)}",
    )


@pytest.mark.parametrize("alert", FIRING)
def test_alerts_reach_alertmanager(prometheus: servers.Prometheus, alert: str) -> None:
    am = prometheus.alertmanager
    assert am is not None
    name = alert + IMMEDIATE_SUFFIX

    def breakers() -> set[str]:
        return {
            str(found["labels"].get("resilience_circuit_breaker"))
            for found in am.alerts()
            if found["labels"].get("alertname") == name
        }

    def received() -> bool:
        if alert == "ResilienceCircuitBreakerOpenTooLong":
            return HELD_OPEN in breakers()
        return bool(breakers())

    servers.poll(received, what=f"{name} in Alertmanager\n{prometheus.log()}")
    if alert == "ResilienceCircuitBreakerOpenTooLong":
        # The demo's own breakers, or its httpx client's per authority ("httpx <authority>"
        # for the primary, the authority alone for a failover target).
        assert all(
            breaker in DEMO_BREAKERS or breaker.startswith(("httpx ", "http://"))
            for breaker in breakers()
        ), breakers()


def test_shipped_alerts_wait_for_their_duration(prometheus: servers.Prometheus) -> None:
    # The originals (for: 5m, 2m) are pending, not firing, a few seconds in.
    states = {rule["name"]: rule.get("state") for rule in _rules(prometheus)}
    assert states["ResilienceCircuitBreakerOpenTooLong"] == "pending"
    assert states["ResilienceMetricsDown"] == "inactive"
