"""Reading the ``Retry-After`` header, in both of its forms."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable

__all__ = ["parse_retry_after"]


def parse_retry_after(value: str | None, wall_clock: Callable[[], float]) -> float | None:
    """Return the seconds a ``Retry-After`` header value asks to wait, or ``None``.

    Both forms of RFC 9110, section 10.2.3 are read: delta-seconds (``"120"``) and an
    HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``), the latter relative to the wall clock
    ``wall_clock()`` (seconds since the epoch). A date in the past means ``0.0``; an
    unreadable value means ``None`` (the retry's own backoff then applies). Capping is
    the retry's business (``max_retry_after``).

    Example:
        >>> parse_retry_after("3", lambda: 0.0)
        3.0
        >>> parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", lambda: 4.0)
        6.0
        >>> parse_retry_after("soon", lambda: 0.0) is None
        True
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None  # RFC 9110 dates are GMT; one without a zone is not an HTTP-date
    seconds = when.timestamp() - wall_clock()
    if math.isnan(seconds):
        return None
    return max(seconds, 0.0)
