"""The process-wide testing switch read by retries (set by ``testing.set_testing``).

A flag, not a registry: the one kind of global the design allows.
"""

from __future__ import annotations

__all__ = ["TEST_MODE"]


class _TestMode:
    __slots__ = ("attempts", "enabled")

    def __init__(self) -> None:
        self.enabled = False
        self.attempts = 1


TEST_MODE = _TestMode()
