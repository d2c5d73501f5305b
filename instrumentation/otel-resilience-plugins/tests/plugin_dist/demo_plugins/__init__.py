"""A tiny plugin distribution for the tests; its entry points are in the dist-info beside it.

Each plugin counts its calls in :data:`calls`, so a test can tell how often it really ran.
"""

from __future__ import annotations

import threading

calls: dict[str, int] = {}
_lock = threading.Lock()

SETTINGS = {"colour": "blue"}
"""Not callable: loaded as it is."""


def _count(name: str) -> int:
    with _lock:
        calls[name] = calls.get(name, 0) + 1
        return calls[name]


def reset() -> None:
    """Forget every call."""
    with _lock:
        calls.clear()


def flaky(value: str) -> str:
    """Fail on the first call, succeed afterwards."""
    if _count("flaky") == 1:
        raise ConnectionError("flaky: the first call fails")
    return f"flaky:{value}"


def broken() -> str:
    """Always fail."""
    _count("broken")
    raise ConnectionError("broken: always fails")


def healthy(value: str) -> str:
    """Always succeed."""
    _count("healthy")
    return f"healthy:{value}"


async def async_flaky(value: str) -> str:
    """The async twin of :func:`flaky`."""
    if _count("async_flaky") == 1:
        raise ConnectionError("async_flaky: the first call fails")
    return f"async_flaky:{value}"


class Greeter:
    """A class plugin whose constructor and ``greet`` each fail on their first call."""

    def __init__(self, greeting: str = "hello") -> None:
        if _count("Greeter") == 1:
            raise ConnectionError("Greeter: the first construction fails")
        self.greeting = greeting

    def greet(self, name: str) -> str:
        """Fail on the first call, then greet."""
        if _count("greet") == 1:
            raise ConnectionError("greet: the first call fails")
        return f"{self.greeting} {name}"

    def shout(self, name: str) -> str:
        """Always fail (and is not among the protected methods in the tests)."""
        _count("shout")
        raise ConnectionError(f"shout: cannot shout at {name}")


class Slotted:
    """A class plugin whose instances have no ``__dict__``."""

    __slots__ = ()

    def greet(self, name: str) -> str:
        """Greet."""
        return f"hi {name}"
