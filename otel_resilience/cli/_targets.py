"""Plain functions the demo protects: one decorated in place, one patched with ``wrap``.

They call the demo service with a bare httpx client and turn what goes wrong into
exceptions the pipelines and the orchestrator understand: a dropped connection becomes
a :class:`ServiceUnreachableError` (a ``ConnectionError``, classified HIGH), a bad status a
:class:`ServiceStatusError` carrying ``Retry-After``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_resilience.timeout import remaining

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT",
    "ServiceStatusError",
    "ServiceUnreachableError",
    "get_json",
    "recommend",
]

DEFAULT_REQUEST_TIMEOUT = 1.0
"""Seconds a request may take when no pipeline timeout applies."""


class ServiceUnreachableError(ConnectionError):
    """The service dropped the connection or could not be reached."""


class ServiceStatusError(Exception):
    """The service answered with an error status.

    Attributes:
        status: the HTTP status code.
        retry_after: seconds the service asked to wait (``Retry-After``), or ``None``.
    """

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


def get_json(client: httpx.Client, url: str) -> object:
    """GET ``url`` within the pipeline's remaining time; raise on failure."""
    import httpx  # noqa: PLC0415 - httpx is an optional dependency of the demo only

    left = remaining()
    timeout = DEFAULT_REQUEST_TIMEOUT if left is None else max(min(left, 1.0), 0.001)
    try:
        response = client.get(url, timeout=timeout)
    except httpx.TimeoutException:
        raise
    except httpx.TransportError as error:
        raise ServiceUnreachableError(str(error) or type(error).__name__) from error
    if response.status_code >= 400:
        header = response.headers.get("retry-after")
        retry_after = float(header) if header is not None and header.isdigit() else None
        raise ServiceStatusError(response.status_code, retry_after)
    return response.json()


def recommend(client: httpx.Client, base_url: str) -> object:
    """Fetch recommendations; the demo protects it with ``otel_resilience.wrap``."""
    return get_json(client, f"{base_url}/recommendations")
