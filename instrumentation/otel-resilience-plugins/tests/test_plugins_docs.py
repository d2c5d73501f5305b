"""The README's ```python blocks run, and the package's docstring examples pass."""

from __future__ import annotations

import doctest
import re
import sys
import types
from pathlib import Path

import otel_resilience_plugins
import pytest
from otel_resilience_plugins import _config, _instrumentor

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_readme_python_blocks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OTEL_RESILIENCE_CONFIG", "OTEL_RESILIENCE_PLUGIN_GROUPS"):
        monkeypatch.delenv(variable, raising=False)
    blocks = _BLOCK.findall(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python example"
    module = types.ModuleType("docs_plugins_readme")
    sys.modules[module.__name__] = module
    try:
        for index, block in enumerate(blocks):
            code = compile(block, f"README.md[block {index}]", "exec", dont_inherit=True)
            exec(code, module.__dict__)
    finally:
        del sys.modules[module.__name__]


@pytest.mark.parametrize("module", [otel_resilience_plugins, _config, _instrumentor])
def test_docstring_examples(module: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OTEL_RESILIENCE_CONFIG", "OTEL_RESILIENCE_PLUGIN_GROUPS"):
        monkeypatch.delenv(variable, raising=False)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, raise_on_error=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module.__name__}"
    if module is not otel_resilience_plugins:
        assert result.attempted > 0, f"{module.__name__} has no docstring example"


def test_public_names_are_documented() -> None:
    for name in otel_resilience_plugins.__all__:
        value = getattr(otel_resilience_plugins, name)
        if isinstance(value, type) or callable(value):
            assert value.__doc__, f"{name} has no docstring"
    assert otel_resilience_plugins.__all__ == sorted(otel_resilience_plugins.__all__)
