"""Every ```python block of the README and docs/ runs, and every docstring example passes."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import sys
import types
from pathlib import Path

import pytest

import otel_resilience

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_documents_exist() -> None:
    assert (ROOT / "README.md").is_file()
    assert len(DOCUMENTS) > 1


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_python_blocks_run(document: Path) -> None:
    blocks = _BLOCK.findall(document.read_text(encoding="utf-8"))
    if document.name != "benchmarks.md":
        assert blocks, f"{document.name} has no ```python example"
    # A real module, so that dataclasses and pickling defined in an example can find it;
    # compiled without this file's __future__ imports, as a reader's script would be.
    module = types.ModuleType(f"docs_{document.stem.replace('-', '_')}")
    sys.modules[module.__name__] = module
    try:
        for index, block in enumerate(blocks):
            code = compile(block, f"{document.name}[block {index}]", "exec", dont_inherit=True)
            exec(code, module.__dict__)
    finally:
        del sys.modules[module.__name__]


def _modules() -> list[str]:
    names = [otel_resilience.__name__]
    for info in pkgutil.walk_packages(otel_resilience.__path__, prefix="otel_resilience."):
        if ".cli.__main__" not in info.name:
            names.append(info.name)
    return names


@pytest.mark.parametrize("module_name", _modules())
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, raise_on_error=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
