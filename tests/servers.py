"""Real servers for integration tests: find their binaries, start them on loopback, stop them.

Server binaries come from Debian packages (``prometheus-alertmanager``, ``prometheus``,
``redis-server``), which ``.ci/run`` installs. :func:`require_binary` skips a test with a
clear reason when a binary is missing locally, and fails it under CI (``CI=true``), where
a missing binary means a broken set-up rather than a missing optional tool.

Also here: :func:`recording_server`, a loopback HTTP server that records what it is sent
(a webhook receiver for sinks and for Alertmanager itself).

Waits are bounded by a number of polls, never by reading the clock: a server that does not
come up fails the test with its log rather than hanging it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

SEARCH_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
"""Searched after ``PATH``: Debian installs some daemons where a user's PATH may not look."""

ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")
"""Debian's package installs ``/usr/bin/prometheus-alertmanager``; upstream builds ship
``alertmanager``."""

POLL_INTERVAL = 0.05
"""Real seconds between two polls of a starting server (a hand-off, not a timing test)."""

READY_POLLS = 600
"""Polls before a server that is not ready fails the test (about thirty seconds)."""

STOP_TIMEOUT = 10.0
"""Real seconds a terminated server gets to exit before it is killed."""

# Loopback requests must never go through a proxy configured in the environment.
_LOOPBACK: urllib.request.OpenerDirector = urllib.request.build_opener(
    urllib.request.ProxyHandler({})
)


def in_ci() -> bool:
    """Whether the tests run under CI (``CI`` set to ``true``, ``1`` or ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def find_binary(*names: str) -> str | None:
    """Return the path of the first of ``names`` found on ``PATH`` or in :data:`SEARCH_DIRS`."""
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
        for directory in SEARCH_DIRS:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def require_binary(name: str, *alternatives: str, package: str | None = None) -> str:
    """Return the path of ``name`` (or an alternative name); skip, or fail under CI, if absent.

    Args:
        name: the binary's name, as the Debian package installs it.
        alternatives: other names the same server may have (upstream builds).
        package: the Debian package providing it (default: ``name``), for the message.
    """
    path = find_binary(name, *alternatives)
    if path is not None:
        return path
    names = " or ".join((name, *alternatives))
    where = ", ".join(("PATH", *SEARCH_DIRS))
    reason = (
        f"{names} not found in {where}; install the Debian package "
        f"(apt-get install {package or name})"
    )
    if in_ci():
        pytest.fail(f"{reason}: integration servers are required under CI=true", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def eventually(condition: Callable[[], bool], *, polls: int = READY_POLLS) -> bool:
    """Poll ``condition()`` until it holds (return ``True``) or ``polls`` tries fail."""
    tick = threading.Event()
    for _ in range(polls):
        if condition():
            return True
        tick.wait(POLL_INTERVAL)
    return condition()


def poll(condition: Callable[[], bool], *, polls: int = READY_POLLS, what: str) -> None:
    """Return once ``condition()`` holds; fail the test after ``polls`` tries."""
    if not eventually(condition, polls=polls):
        pytest.fail(f"gave up waiting for {what}", pytrace=False)


def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url`` without proxies; return the status and body (also for error statuses)."""
    try:
        with _LOOPBACK.open(url, timeout=timeout) as response:
            status: int = response.status
            return status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


# -- a recording HTTP server ---------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request the recording server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, decoded as JSON."""
        return json.loads(self.body)


@dataclass
class RecordingServer:
    """A loopback HTTP server that records every request and answers with set statuses.

    Answers come from ``statuses`` in order (one per request), then ``status``. A
    redirect status sends ``Location: /redirected``. While ``hold`` is clear, requests
    wait on it before answering (to test client timeouts); it is set at exit.
    """

    port: int = 0
    status: int = 200
    statuses: list[int] = field(default_factory=list)
    answer: bytes = b""
    requests: list[RecordedRequest] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.hold.set()

    def url(self, path: str = "/") -> str:
        """The server's URL for ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far."""
        with self.lock:
            return list(self.requests)

    def wait_for(self, count: int, *, what: str = "requests") -> list[RecordedRequest]:
        """Wait (bounded) until at least ``count`` requests arrived; return them."""
        poll(lambda: len(self.received()) >= count, what=f"{count} {what}")
        return self.received()

    def _record(self, request: RecordedRequest) -> int:
        with self.lock:
            self.requests.append(request)
            return self.statuses.pop(0) if self.statuses else self.status


def _handler(server: RecordingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status = server._record(
                RecordedRequest(self.command, self.path, dict(self.headers.items()), body)
            )
            server.hold.wait(30.0)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/redirected")
            self.send_header("Content-Length", str(len(server.answer)))
            self.end_headers()
            self.wfile.write(server.answer)

        do_GET = _serve
        do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def recording_server(status: int = 200) -> Iterator[RecordingServer]:
    """Run a :class:`RecordingServer` on 127.0.0.1 for the ``with`` block."""
    recorder = RecordingServer(status=status)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    httpd.daemon_threads = True
    recorder.port = httpd.server_address[1]
    # A short poll interval: shutdown() waits for the serving loop's next poll.
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": POLL_INTERVAL},
        name="recording-server",
        daemon=True,
    )
    thread.start()
    try:
        yield recorder
    finally:
        recorder.hold.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(STOP_TIMEOUT)


# -- Alertmanager ----------------------------------------------------------------------------


@dataclass
class Alertmanager:
    """A running Alertmanager started by :func:`alertmanager`."""

    binary: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        """Alertmanager's URL, e.g. ``http://127.0.0.1:43117``."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """Alertmanager's output so far (for failure messages)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get_json(self, path: str) -> Any:
        """GET ``path`` from the API and decode the JSON answer (200 expected)."""
        status, body = http_get(self.base_url + path)
        assert status == 200, (status, body[:500])
        return json.loads(body)

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (``GET /api/v2/alerts``: active, not resolved)."""
        alerts: list[dict[str, Any]] = self.get_json("/api/v2/alerts")
        return alerts

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of Alertmanager's own ``/metrics`` (0 when absent)."""
        status, body = http_get(self.base_url + "/metrics")
        assert status == 200, status
        wanted = [f'{key}="{value}"' for key, value in labels.items()]
        for line in body.decode("utf-8").splitlines():
            metric, _, value = line.rpartition(" ")
            if metric.split("{", 1)[0] != name:
                continue
            if all(pair in metric for pair in wanted):
                return float(value)
        return 0.0


def _alertmanager_config(webhook_url: str | None) -> str:
    # Quick grouping so that a webhook receiver hears of an alert within a second or two.
    receiver = "'null'" if webhook_url is None else "webhook"  # quoted: YAML's null
    lines = [
        "route:",
        f"  receiver: {receiver}",
        "  group_by: [alertname, component, error_type]",
        "  group_wait: 100ms",
        "  group_interval: 1s",
        "  repeat_interval: 1h",
        "receivers:",
        "  - name: 'null'",
    ]
    if webhook_url is not None:
        lines += [
            "  - name: webhook",
            "    webhook_configs:",
            f"      - url: {json.dumps(webhook_url)}",
            "        send_resolved: true",
        ]
    return "\n".join(lines) + "\n"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


class _Server(Protocol):
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str: ...

    def log(self) -> str: ...


def _ready(server: _Server) -> bool:
    if server.process.poll() is not None:
        return True  # exited: stop polling, the caller reports it
    try:
        status, _ = http_get(server.base_url + "/-/ready", timeout=1.0)
    except OSError:
        return False
    return status == 200


S = TypeVar("S", bound=_Server)


@contextmanager
def _serve(
    tmp_path: Path,
    label: str,
    argv: Callable[[int], list[str]],
    handle: Callable[[int, subprocess.Popen[bytes], Path], S],
) -> Iterator[S]:
    """Start a server binary on a free loopback port, wait for /-/ready, stop it after.

    A port found free can be taken before the server binds it: a few ports are tried.
    """
    failures: list[str] = []
    for attempt in range(3):
        port = free_port()
        log_path = tmp_path / f"{label.lower()}-{attempt}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv(port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        server = handle(port, process, log_path)
        try:
            ready = eventually(functools.partial(_ready, server))
        except BaseException:
            _stop(process)
            raise
        if process.poll() is not None:
            failures.append(server.log())
            if "address already in use" in failures[-1]:
                continue
            break
        if not ready:
            _stop(process)
            pytest.fail(f"{label} never became ready:\n{server.log()}", pytrace=False)
        try:
            yield server
        finally:
            _stop(process)
        return
    pytest.fail(f"{label} did not start:\n" + "\n---\n".join(failures), pytrace=False)


@contextmanager
def alertmanager(tmp_path: Path, *, webhook_url: str | None = None) -> Iterator[Alertmanager]:
    """Start the real Alertmanager on 127.0.0.1 for the ``with`` block; stop it after.

    The configuration routes every alert to a ``null`` receiver, or, with
    ``webhook_url``, to a webhook receiver at that URL (resolved notifications included).
    Clustering is off, storage is in ``tmp_path``. Skips (fails under CI) without the
    binary; fails with Alertmanager's log if it does not become ready.
    """
    binary = require_binary(*ALERTMANAGER_BINARIES, package="prometheus-alertmanager")
    config = tmp_path / "alertmanager.yml"
    config.write_text(_alertmanager_config(webhook_url), encoding="utf-8")
    storage = tmp_path / "alertmanager-data"
    storage.mkdir(exist_ok=True)
    with _serve(
        tmp_path,
        "Alertmanager",
        lambda port: [
            binary,
            f"--config.file={config}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=info",
        ],
        lambda port, process, log_path: Alertmanager(
            binary=binary, port=port, process=process, log_path=log_path
        ),
    ) as server:
        yield server


# -- Prometheus ------------------------------------------------------------------------------

PROMETHEUS_BINARIES = ("prometheus",)
"""Debian's ``prometheus`` package and upstream builds both install ``prometheus``."""

PROMETHEUS_INTERVAL = "1s"
"""Scrape and rule-evaluation interval of a test Prometheus: data within a second or two."""


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` (kill it if it does not exit in time) and reap it."""
    _stop(process)


@dataclass
class Prometheus:
    """A running Prometheus started by :func:`prometheus`."""

    binary: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    alertmanager: Alertmanager | None = None

    @property
    def base_url(self) -> str:
        """Prometheus's URL, e.g. ``http://127.0.0.1:43117``."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """Prometheus's output so far (for failure messages)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get_json(self, path: str) -> Any:
        """GET ``path`` from the API and decode the JSON answer (200 expected)."""
        status, body = http_get(self.base_url + path)
        assert status == 200, (path, status, body[:500])
        return json.loads(body)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query (``/api/v1/query``); fails on a query error."""
        answer = self.get_json("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result


def prometheus_config(
    targets: Sequence[str], rule_files: Sequence[Path], alertmanager_url: str | None
) -> str:
    """A Prometheus configuration: scrape ``targets`` every second, evaluate ``rule_files``."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": PROMETHEUS_INTERVAL,
            "scrape_timeout": PROMETHEUS_INTERVAL,
            "evaluation_interval": PROMETHEUS_INTERVAL,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": "otel-resilience", "static_configs": [{"targets": list(targets)}]}
        ],
    }
    if alertmanager_url is not None:
        netloc = urllib.parse.urlsplit(alertmanager_url).netloc
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [netloc]}]}]}
    # JSON is YAML: no YAML library needed to write it.
    return json.dumps(config, indent=2) + "\n"


@contextmanager
def prometheus(
    tmp_path: Path,
    *,
    targets: Sequence[str],
    rule_files: Sequence[Path] = (),
    alertmanager_url: str | None = None,
) -> Iterator[Prometheus]:
    """Start the real Prometheus on 127.0.0.1 for the ``with`` block; stop it after.

    It scrapes ``targets`` (``host:port``, path ``/metrics``) and evaluates ``rule_files``
    every second, and sends alerts to ``alertmanager_url`` when given. Storage is in
    ``tmp_path``. Skips (fails under CI) without the binary; fails with Prometheus's log
    if it does not become ready.
    """
    binary = require_binary(*PROMETHEUS_BINARIES, package="prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(targets, rule_files, alertmanager_url), encoding="utf-8")
    storage = tmp_path / "prometheus-data"
    storage.mkdir(exist_ok=True)
    with _serve(
        tmp_path,
        "Prometheus",
        lambda port: [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=info",
        ],
        lambda port, process, log_path: Prometheus(
            binary=binary, port=port, process=process, log_path=log_path
        ),
    ) as server:
        yield server


# -- Redis -----------------------------------------------------------------------------------

REDIS_BINARIES = ("redis-server",)
"""Debian's ``redis-server`` package and upstream builds both install ``redis-server``."""


def _redis_argv(binary: str, port: int, tmp_path: Path) -> list[str]:
    """redis-server's command line: loopback only, no persistence, files in ``tmp_path``."""
    return [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]


def _redis_ping(port: int) -> bool:
    """Whether a Redis on 127.0.0.1:``port`` answers an inline PING with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A running redis-server started by :func:`redis_server`, with fault injection.

    ``kill()`` (SIGKILL), ``pause()``/``resume()`` (SIGSTOP/SIGCONT) and ``restart()``
    (same port, empty data) let tests take Redis away under a client and bring it back.
    """

    binary: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    tmp_path: Path
    paused: bool = False
    starts: int = 1

    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """The server's URL, e.g. ``redis://127.0.0.1:43117/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def ping(self) -> bool:
        """Whether the server answers PING now."""
        return _redis_ping(self.port)

    def kill(self) -> None:
        """SIGKILL the server (as a crash: no shutdown, connections reset) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open and nothing answers (a hang)."""
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT a paused server."""
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def restart(self) -> None:
        """Kill the server and start a new one on the same port, with no data."""
        self.kill()
        self.starts += 1
        self.log_path = self.tmp_path / f"redis-restart-{self.starts}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                _redis_argv(self.binary, self.port, self.tmp_path),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        poll(functools.partial(_redis_up, self), what="redis-server restart")
        if self.process.poll() is not None:
            pytest.fail(f"redis-server did not restart:\n{self.log()}", pytrace=False)

    def stop(self) -> None:
        """Stop the server (resuming it first: a stopped process ignores SIGTERM)."""
        if self.paused and self.process.poll() is None:
            self.resume()
        _stop(self.process)


def _redis_up(server: RedisServer) -> bool:
    # True once it answers, or once it has exited (the caller then reports its log).
    return server.process.poll() is not None or server.ping()


@contextmanager
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """Start a real redis-server on 127.0.0.1 for the ``with`` block; stop it after.

    No persistence (``--save ""``, ``--appendonly no``); its files go to ``tmp_path``.
    Skips (fails under CI) without the binary; fails with the server's log if it does not
    answer PING. A port found free can be taken before the server binds it: a few ports
    are tried.
    """
    binary = require_binary(*REDIS_BINARIES, package="redis-server")
    failures: list[str] = []
    for attempt in range(3):
        port = free_port()
        log_path = tmp_path / f"redis-{attempt}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                _redis_argv(binary, port, tmp_path),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        server = RedisServer(
            binary=binary, port=port, process=process, log_path=log_path, tmp_path=tmp_path
        )
        try:
            ready = eventually(functools.partial(_redis_up, server))
        except BaseException:
            _stop(server.process)
            raise
        if server.process.poll() is not None:
            failures.append(server.log())
            if "address already in use" in failures[-1].lower():
                continue
            break
        if not ready:
            _stop(server.process)
            pytest.fail(f"redis-server never answered PING:\n{server.log()}", pytrace=False)
        try:
            yield server
        finally:
            server.stop()
        return
    pytest.fail("redis-server did not start:\n" + "\n---\n".join(failures), pytrace=False)


def shift_redis_time(client: Any, namespace: str, seconds: float) -> None:
    """Move every time stored under ``namespace`` back by ``seconds``, TTLs included.

    For the Redis state store's scripts, which read the server's clock, this is as if
    ``seconds`` had passed for those keys alone: open periods end, leases and time-window
    buckets age, keys whose TTL runs out are deleted. ``client`` is a synchronous
    ``redis.Redis`` (plain commands only; nothing else may write meanwhile).
    """
    micros = seconds * 1e6
    millis = seconds * 1e3
    for raw in client.scan_iter(match=f"{namespace}:*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "hash":
            for field in ("open_until", "window_head"):
                value = client.hget(key, field)
                if value and float(value) > 0:
                    client.hset(key, field, repr(float(value) - micros))
        elif kind == "zset":
            for member, score in client.zrange(key, 0, -1, withscores=True):
                client.zadd(key, {member: score - micros})
        ttl = client.pttl(key)
        if ttl > 0:
            left = int(ttl - millis)
            if left <= 0:
                client.delete(key)
            else:
                client.pexpire(key, left)
