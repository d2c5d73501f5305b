"""Exception text that is safe to copy into telemetry: bounded, and never raising."""

from __future__ import annotations

import traceback

__all__ = [
    "DEFAULT_MAX_STACKTRACE_BYTES",
    "DEFAULT_MAX_TEXT_BYTES",
    "error_message",
    "stacktrace",
    "truncate",
]

DEFAULT_MAX_TEXT_BYTES = 1024
"""Exception messages copied into span events are cut to this many UTF-8 bytes."""

DEFAULT_MAX_STACKTRACE_BYTES = 8192
"""A recorded stack trace keeps its last this many UTF-8 bytes (the innermost frames)."""

_ELLIPSIS = "..."


def truncate(text: str, limit: int = DEFAULT_MAX_TEXT_BYTES) -> str:
    """Return ``text`` cut to at most ``limit`` UTF-8 bytes (a cut is marked ``...``)."""
    if len(text) * 4 <= limit:  # cheap early exit: even 4-byte characters would fit
        return text
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    keep = max(limit - len(_ELLIPSIS), 0)
    # errors="ignore" drops a multi-byte character that the cut split in two.
    return encoded[:keep].decode("utf-8", "ignore") + _ELLIPSIS


def error_message(error: BaseException, limit: int = DEFAULT_MAX_TEXT_BYTES) -> str:
    """Return ``str(error)`` truncated; a ``__str__`` that raises gives a placeholder."""
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break telemetry
        return f"<unprintable {type(error).__qualname__}>"
    return truncate(text, limit)


def stacktrace(error: BaseException, limit: int = DEFAULT_MAX_STACKTRACE_BYTES) -> str:
    """The formatted traceback of ``error``, cut from the front to ``limit`` bytes.

    The innermost frames, at the end, are kept. A ``__str__`` that raises is replaced by a
    placeholder line instead of breaking the formatting.
    """
    try:
        text = "".join(traceback.format_exception(error))
    except Exception:  # noqa: BLE001 - e.g. a __str__ that raises
        frames = "".join(traceback.format_tb(error.__traceback__))
        text = f"Traceback (most recent call last):\n{frames}{error_message(error)}\n"
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    keep = max(limit - len(_ELLIPSIS), 0)
    return _ELLIPSIS + encoded[len(encoded) - keep :].decode("utf-8", "ignore")
