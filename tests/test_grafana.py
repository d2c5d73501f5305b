"""The Grafana dashboards and provisioning under grafana/: structure and metric names.

Every dashboard is Grafana 10+ JSON with a stable uid, a ``datasource`` variable instead
of ``__inputs``, ``$__rate_interval`` in every range function and a link to traces; every
metric name used in a dashboard or an alert rule is one that otel-resilience emits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_resilience.telemetry import names

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ALERT_RULES = GRAFANA / "prometheus" / "alerts.yml"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMETHEUS_METRICS = frozenset({"up", "target_info"})
"""Series that Prometheus (``up``) or the exporter (``target_info``) add to ours."""

EXPECTED_UIDS = {
    "otel-resilience-overview",
    "otel-resilience-breakers",
    "otel-resilience-retries",
    "otel-resilience-recovery",
    "otel-resilience-http",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"\{[^{}]*\}")
_LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b")
_RANGE_FUNCTION = re.compile(
    r"\b(rate|irate|increase|delta|idelta|changes|resets|\w+_over_time)\s*\(", re.IGNORECASE
)
_RULE_EXPR = re.compile(r"^\s*expr:\s*(.+)$", re.MULTILINE)
_ALERT_NAME = re.compile(r"^\s*-\s*alert:\s*(\S+)\s*$", re.MULTILINE)


def emitted_names() -> frozenset[str]:
    """Every series name the Prometheus exporter writes for names.METRICS."""
    found: set[str] = set()
    for metric in names.METRICS:
        if metric.kind == "histogram":
            found.update(metric.prometheus + suffix for suffix in HISTOGRAM_SUFFIXES)
        else:
            found.add(metric.prometheus)
    return frozenset(found)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label names and strings left out)."""
    stripped = _STRING.sub('""', expr)
    stripped = _SELECTOR.sub(" ", stripped)
    stripped = _LABEL_LIST.sub(" ", stripped)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)
    found = set()
    for match in _IDENTIFIER.finditer(stripped):
        rest = stripped[match.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        name = match.group()
        if name.startswith("resilience_") or name in PROMETHEUS_METRICS:
            found.add(name)
    return found


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def load(path: Path) -> dict[str, Any]:
    """A dashboard's JSON model."""
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dashboard


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: panels, annotations, variable queries."""
    exprs = [
        target["expr"]
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    exprs += [
        annotation["expr"]
        for annotation in dashboard.get("annotations", {}).get("list", [])
        if annotation.get("expr")
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["definition"])
            assert match, variable["definition"]
            exprs.append(match.group(1))
    return exprs


def rule_exprs() -> list[str]:
    """Every expression of the shipped alert rules (one line each)."""
    return _RULE_EXPR.findall(ALERT_RULES.read_text(encoding="utf-8"))


def alert_names(text: str) -> list[str]:
    """The alert names a rules file defines."""
    return _ALERT_NAME.findall(text)


# -- the helpers themselves ------------------------------------------------------------------


def test_metric_names_skips_labels_strings_and_functions() -> None:
    expr = (
        "label_replace(sum by (resilience_circuit_breaker_state) (rate(resilience_calls_total"
        '{resilience_pipeline=~"resilience_x"}[5m])), "a", "$1", "resilience_outcome", "(.*)")'
        " / on (resilience_pipeline) resilience_circuit_breaker_state or up"
    )
    assert metric_names(expr) == {
        "resilience_calls_total",
        "resilience_circuit_breaker_state",
        "up",
    }


def test_emitted_names_follow_the_exporter() -> None:
    found = emitted_names()
    assert "resilience_calls_total" in found
    assert "resilience_call_duration_seconds_bucket" in found
    assert "resilience_circuit_breaker_state" in found
    assert "resilience_call_duration_seconds" not in found


# -- dashboards ------------------------------------------------------------------------------


def test_every_dashboard_is_there() -> None:
    assert {load(path)["uid"] for path in DASHBOARDS} == EXPECTED_UIDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_dashboard_is_portable_grafana_json(path: Path) -> None:
    dashboard = load(path)
    assert "__inputs" not in dashboard
    assert "__requires" not in dashboard
    assert dashboard["schemaVersion"] >= 36  # Grafana 9.3+; 39 is Grafana 10.4/11
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert dashboard.get("id") is None
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in _panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["title"]
        assert panel.get("description"), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_panels_link_to_traces(path: Path) -> None:
    for panel in _panels(load(path)["panels"]):
        if panel["type"] == "row":
            continue
        links = panel["fieldConfig"]["defaults"].get("links", [])
        assert any("/explore" in link["url"] and "jaeger" in link["url"] for link in links), panel[
            "title"
        ]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_range_functions_use_rate_interval(path: Path) -> None:
    dashboard = load(path)
    panel_exprs = [
        target["expr"]
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if not target.get("instant")
    ]
    for expr in panel_exprs:
        ranges = re.findall(r"\[([^\]]+)\]", expr)
        if _RANGE_FUNCTION.search(expr):
            assert ranges, expr
        assert all(window == "$__rate_interval" for window in ranges), expr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_dashboard_reads_only_emitted_metrics(path: Path) -> None:
    allowed = emitted_names() | PROMETHEUS_METRICS
    used = set().union(*(metric_names(expr) for expr in dashboard_exprs(load(path))))
    assert used, path
    assert used <= allowed, sorted(used - allowed)


def test_dashboards_cover_every_metric() -> None:
    used: set[str] = set()
    for path in DASHBOARDS:
        for expr in dashboard_exprs(load(path)):
            used |= metric_names(expr)
    bases = {
        next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name)
        for name in used
    }
    missing = [metric.name for metric in names.METRICS if metric.prometheus not in bases]
    assert not missing


# -- alert rules and provisioning -------------------------------------------------------------


def test_rules_read_only_emitted_metrics() -> None:
    allowed = emitted_names() | PROMETHEUS_METRICS
    exprs = rule_exprs()
    assert len(exprs) == len(alert_names(ALERT_RULES.read_text(encoding="utf-8")))
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert used <= allowed, sorted(used - allowed)
    assert "resilience_circuit_breaker_state" in used


def test_datasources_are_provisioned_with_fixed_uids() -> None:
    text = (GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text("utf-8")
    assert re.search(
        r"uid: prometheus\n\s+type: prometheus\n[^-]*url: http://prometheus:9090", text
    )
    assert re.search(r"uid: jaeger\n\s+type: jaeger\n[^-]*url: http://jaeger:16686", text)


def test_dashboards_are_provisioned_from_files() -> None:
    text = (GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text("utf-8")
    assert "type: file" in text
    compose = (GRAFANA / "compose.yaml").read_text("utf-8")
    path = re.search(r"path: (\S+)", text)
    assert path
    assert f"./dashboards:{path.group(1)}:ro" in compose
    assert "./provisioning:/etc/grafana/provisioning:ro" in compose
    for service in ("prometheus:", "grafana:", "jaeger:"):
        assert f"\n  {service}\n" in compose
    assert "4318:4318" in compose
