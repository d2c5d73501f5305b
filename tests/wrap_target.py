"""A small module that tests/test_wrap.py patches with ``wrap`` and restores with ``unwrap``.

It keeps call counters so a test can tell whether a call reached the original.
"""

from __future__ import annotations

from collections.abc import Iterator

calls: list[str] = []
"""Every call that reached an original function, by name."""

failures_left = 0
"""How many of the next calls to :func:`fetch` raise ``ConnectionError``."""


def fetch(key: str) -> str:
    """Return ``key`` upper-cased, failing while ``failures_left`` is positive."""
    global failures_left  # noqa: PLW0603 - module state is what patching tests observe
    calls.append("fetch")
    if failures_left > 0:
        failures_left -= 1
        raise ConnectionError(f"fetch {key!r} failed")
    return key.upper()


async def afetch(key: str) -> str:
    """The async twin of :func:`fetch`."""
    return fetch(key)


def stream(limit: int) -> Iterator[int]:
    """Yield ``0 .. limit - 1``."""
    calls.append("stream")
    yield from range(limit)


class Client:
    """A class whose methods of every kind get patched."""

    def __init__(self, base: int) -> None:
        self.base = base

    def add(self, x: int) -> int:
        """Add ``x`` to the base."""
        calls.append("add")
        return self.base + x

    @classmethod
    def create(cls, base: int) -> Client:
        """Build a client."""
        calls.append("create")
        return cls(base)

    @staticmethod
    def double(x: int) -> int:
        """Double ``x``."""
        calls.append("double")
        return 2 * x


class SubClient(Client):
    """Inherits every method of :class:`Client`."""


value = 42
"""Not callable: wrapping it is an error."""
