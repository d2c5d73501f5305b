"""The public API type-checks under ``mypy --strict``, and keeps types precise enough to fail.

``tests/typing/api.py`` holds typical usages and must pass. The negative cases below must
*fail*: they prove that decorated functions and drivers keep the wrapped function's
types instead of degrading to ``Any`` (against which every assignment would pass).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "tests" / "typing" / "api.py"


def mypy(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_api_usages_pass_mypy_strict() -> None:
    result = mypy(str(API))
    assert result.returncode == 0, result.stdout + result.stderr


PRELUDE = """\
from collections.abc import Iterator
from otel_resilience import Pipeline, Retry, resilient
from otel_resilience.testing import FakeClock

@resilient(clock=FakeClock())
def fetch(key: str) -> int:
    return len(key)

@resilient(clock=FakeClock())
async def afetch(key: str) -> int:
    return len(key)

@resilient(clock=FakeClock())
def numbers() -> Iterator[int]:
    yield 1

def add(a: int, b: int) -> int:
    return a + b

pipeline = Pipeline(clock=FakeClock())
"""

WRONG = [
    pytest.param('wrong: str = fetch("k")', "Incompatible types in assignment", id="result"),
    pytest.param("fetch(1)", 'incompatible type "int"; expected "str"', id="argument"),
    pytest.param('fetch("k", extra=1)', 'Unexpected keyword argument "extra"', id="keyword"),
    pytest.param(
        'async def use() -> None:\n    wrong: str = await afetch("k")',
        "Incompatible types in assignment",
        id="async-result",
    ),
    pytest.param(
        "wrong: Iterator[str] = numbers()", "Incompatible types in assignment", id="generator"
    ),
    pytest.param(
        "wrong: str = pipeline.call(add, 1, 2)",
        "Incompatible types in assignment",
        id="pipeline-call-result",
    ),
    pytest.param('pipeline.call(add, 1, "2")', 'incompatible type "str"', id="pipeline-call-args"),
    pytest.param(
        "wrong: str = Retry().call(add, 1, 2)",
        "Incompatible types in assignment",
        id="retry-call-result",
    ),
    pytest.param("Pipeline(retry=3)", 'incompatible type "int"', id="pipeline-argument"),
]


@pytest.mark.parametrize(("snippet", "expected"), WRONG)
def test_wrong_usages_are_rejected(snippet: str, expected: str, tmp_path: Path) -> None:
    source = tmp_path / "wrong.py"
    source.write_text(PRELUDE + textwrap.dedent(snippet) + "\n", encoding="utf-8")
    result = mypy(str(source))
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout, result.stdout
    # The error is on the snippet's lines, not in the prelude.
    prelude_lines = PRELUDE.count("\n")
    lines = [int(line.split(":")[1]) for line in result.stdout.splitlines() if ": error:" in line]
    assert lines
    assert all(line > prelude_lines for line in lines), result.stdout


def test_the_prelude_alone_passes(tmp_path: Path) -> None:
    source = tmp_path / "prelude.py"
    source.write_text(PRELUDE, encoding="utf-8")
    result = mypy(str(source))
    assert result.returncode == 0, result.stdout + result.stderr
