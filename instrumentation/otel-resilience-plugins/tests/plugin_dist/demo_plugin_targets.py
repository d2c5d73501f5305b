"""Functions named by the tests' TOML configuration (``[[wrap]] target = ...``)."""

from __future__ import annotations

import threading

calls: dict[str, int] = {}
_lock = threading.Lock()


def _count(name: str) -> int:
    with _lock:
        calls[name] = calls.get(name, 0) + 1
        return calls[name]


def reset() -> None:
    """Forget every call."""
    with _lock:
        calls.clear()


def charge(amount: int) -> str:
    """Fail on the first call, then charge."""
    if _count("charge") == 1:
        raise ConnectionError("charge: the payment service dropped the connection")
    return f"charged {amount}"


class Ledger:
    """A class whose method is patched by ``target = "demo_plugin_targets:Ledger.record"``."""

    def record(self, entry: str) -> str:
        """Fail on the first call, then record."""
        if _count("record") == 1:
            raise ConnectionError("record: the ledger is busy")
        return f"recorded {entry}"
