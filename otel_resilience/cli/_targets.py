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
    "CorruptedResponseError",
    "ServiceStatusError",
    "ServiceUnreachableError",
    "get_json",
    "ledger",
    "quote",
    "recommend",
    "report",
]

DEFAULT_REQUEST_TIMEOUT = 1.0
"""Seconds a request may take when no pipeline timeout applies."""


class ServiceUnreachableError(ConnectionError):
    """The service dropped the connection or could not be reached."""


class CorruptedResponseError(ValueError):
    """The service answered 200 with a body that is not valid JSON."""


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


def get_json(client: httpx.Client, url: str, *, timeout: float | None = None) -> object:
    """GET ``url``; raise on failure.

    Args:
        client: the bare httpx client.
        url: what to fetch.
        timeout: a fixed request timeout in seconds; by default the pipeline's remaining
            time (capped at :data:`DEFAULT_REQUEST_TIMEOUT`).
    """
    import httpx  # noqa: PLC0415 - httpx is an optional dependency of the demo only

    if timeout is None:
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
    try:
        return response.json()
    except ValueError as error:
        raise CorruptedResponseError(f"corrupted response from {url}") from error


def recommend(client: httpx.Client, base_url: str) -> object:
    """Fetch recommendations; the demo protects it with ``otel_resilience.wrap``."""
    return get_json(client, f"{base_url}/recommendations")


def report(client: httpx.Client, base_url: str, item: int) -> object:
    """Fetch a report from the degraded batch endpoint (slow, sometimes corrupted).

    It ignores the pipeline's deadline, as legacy code does: a slow answer returns late
    and the pipeline's attempt timeout counts it.
    """
    return get_json(client, f"{base_url}/reports/{item}", timeout=DEFAULT_REQUEST_TIMEOUT)


def quote(client: httpx.Client, base_url: str, item: int) -> object:
    """Fetch a quote from a legacy endpoint that refuses most requests."""
    return get_json(client, f"{base_url}/quotes/{item}")


def ledger(client: httpx.Client, base_url: str, item: int) -> object:
    """Post-check an entry against the ledger, which is down for the first part of a run."""
    return get_json(client, f"{base_url}/ledger/{item}")
