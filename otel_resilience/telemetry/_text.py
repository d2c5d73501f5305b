"""Exception text that is safe to copy into telemetry: bounded, and never raising."""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_TEXT_BYTES", "error_message", "truncate"]

DEFAULT_MAX_TEXT_BYTES = 1024
"""Exception messages copied into span events are cut to this many UTF-8 bytes."""

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
