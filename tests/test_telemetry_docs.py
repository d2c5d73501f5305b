"""docs/telemetry.md documents exactly what otel_resilience.telemetry.names defines.

(Its ```python example is run by test_docs_examples, with every other document's.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_resilience.telemetry import names

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "telemetry.md"
METRICS_HEADER = [
    "OpenTelemetry name",
    "Instrument",
    "Unit",
    "Attributes",
    "Prometheus name",
    "Meaning",
]
ATTRIBUTES_HEADER = ["Attribute", "Where", "Meaning"]
EVENTS_HEADER = ["Event", "On which span", "Attributes"]
NO_UNIT = "(none)"
_CODE = re.compile(r"`([^`]*)`")


@dataclass(frozen=True)
class DocumentedMetric:
    name: str
    kind: str
    unit: str
    attributes: tuple[str, ...]
    prometheus: str
    description: str


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table(header: list[str]) -> list[list[str]]:
    """The rows of the Markdown table whose header row is ``header``."""
    lines = DOCUMENT.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.startswith("|") and cells(line) == header:
            rows = []
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(cells(row))
            assert all(len(row) == len(header) for row in rows), header
            return rows
    pytest.fail(f"no table with header {header} in {DOCUMENT.name}")


def code(cell: str) -> str:
    """The single code span a cell must be."""
    found = _CODE.fullmatch(cell)
    assert found, f"expected one `code` span, got {cell!r}"
    return found.group(1)


def parse_metric(row: list[str]) -> DocumentedMetric:
    name, instrument, unit, attributes, prometheus, meaning = row
    return DocumentedMetric(
        name=code(name),
        kind=instrument.replace(" ", "_"),
        unit="" if unit == NO_UNIT else code(unit),
        attributes=tuple(_CODE.findall(attributes)),
        prometheus=_CODE.findall(prometheus)[0],
        description=meaning,
    )


def test_metrics_table_is_names_metrics() -> None:
    documented = [parse_metric(row) for row in table(METRICS_HEADER)]
    expected = [
        DocumentedMetric(
            name=metric.name,
            kind=metric.kind,
            unit=metric.unit,
            attributes=metric.attributes,
            prometheus=metric.prometheus,
            description=metric.description,
        )
        for metric in names.METRICS
    ]
    assert documented == expected


def test_histograms_list_their_prometheus_series() -> None:
    for row in table(METRICS_HEADER):
        metric = parse_metric(row)
        if metric.kind == "histogram":
            assert _CODE.findall(row[4])[1:] == ["_bucket", "_sum", "_count"], metric.name


def test_attributes_table_is_every_attr_constant() -> None:
    documented = [code(row[0]) for row in table(ATTRIBUTES_HEADER)]
    constants = {
        value for key, value in vars(names).items() if key.startswith("ATTR_") and key.isupper()
    }
    assert len(documented) == len(set(documented)), "an attribute is listed twice"
    assert set(documented) == constants


def test_events_table_is_every_event_constant() -> None:
    documented = {code(row[0]) for row in table(EVENTS_HEADER)}
    constants = {
        value for key, value in vars(names).items() if key.startswith("EVENT_") and key.isupper()
    }
    assert documented == constants | {"exception"}


def test_event_attributes_are_documented_attributes() -> None:
    known = {code(row[0]) for row in table(ATTRIBUTES_HEADER)}
    for row in table(EVENTS_HEADER):
        listed = set(_CODE.findall(row[2]))
        # Backticked values (states, reasons, error classes) are allowed beside attributes.
        attributes = {item for item in listed if "." in item}
        assert attributes <= known, row[0]


def test_histogram_buckets_are_described() -> None:
    text = DOCUMENT.read_text(encoding="utf-8")
    assert f"{names.DURATION_BUCKETS[0] * 1000:g} ms to {names.DURATION_BUCKETS[-1]:g} s" in text
    assert "names.DURATION_BUCKETS" in text
