"""A scripted HTTP server on loopback for the httpx tests (imported by file path)."""

from __future__ import annotations

import socket
import struct
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Hang", "Reply", "Reset", "ScriptedServer", "Seen", "serve"]

HANG_LIMIT = 10.0
"""A hung request gives up after this long, so a failed test never leaks a thread."""


@dataclass(frozen=True)
class Reply:
    """Answer with this status, body and headers."""

    status: int = 200
    body: bytes = b"ok"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reset:
    """Close the connection without a response (an RST, as a crashed server would)."""


@dataclass(frozen=True)
class Hang:
    """Wait until the server's ``release`` event is set, then answer 200."""


Action = Reply | Reset | Hang


@dataclass(frozen=True)
class Seen:
    """A request the server received."""

    method: str
    path: str
    host: str


class ScriptedServer(ThreadingHTTPServer):
    """Answers each request with the next scripted action, then with ``default``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: deque[Action] = deque()
        self.default: Action = Reply()
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The server's base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def push(self, *actions: Action) -> None:
        """Script the next responses, in order."""
        with self._lock:
            self.script.extend(actions)

    def next_action(self, seen: Seen) -> Action:
        """Record ``seen`` and return what to do with it."""
        with self._lock:
            self.seen.append(seen)
            return self.script.popleft() if self.script else self.default

    @property
    def count(self) -> int:
        """How many requests arrived."""
        with self._lock:
            return len(self.seen)


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        seen = Seen(self.command, self.path, self.headers.get("Host", ""))
        action = self.server.next_action(seen)
        if isinstance(action, Reset):
            # Linger 0: close() sends an RST instead of a clean FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if isinstance(action, Hang):
            self.server.release.wait(HANG_LIMIT)
            action = Reply()
        try:
            self.send_response(action.status)
            for name, value in action.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(action.body)))
            self.end_headers()
            self.wfile.write(action.body)
        except OSError:
            pass  # the client gave up (a timeout test): nothing to answer

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@contextmanager
def serve() -> Iterator[ScriptedServer]:
    """Run a :class:`ScriptedServer` in a thread for the duration of the block."""
    server = ScriptedServer()
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="loopback-http", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5.0)
