"""``opentelemetry-instrument`` loads the resilient httpx instrumentor by itself."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

APP = textwrap.dedent(
    """
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    seen = []


    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            status = 503 if len(seen) == 1 else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass


    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    with httpx.Client() as client:
        response = client.get(f"http://127.0.0.1:{server.server_address[1]}/ping")
        print("transport", type(client._transport).__name__)
    print("status", response.status_code)
    print("requests", len(seen))
    server.shutdown()
    server.server_close()
    """
)


def test_opentelemetry_instrument_loads_the_instrumentor(tmp_path: Path) -> None:
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    if not launcher.exists():
        pytest.fail(f"{launcher} is missing: opentelemetry-distro is a dev dependency")
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "OTEL_RESILIENCE_"))
    }
    env.update(
        {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_RESILIENCE_HTTPX_MAX_ATTEMPTS": "3",
            "OTEL_RESILIENCE_HTTPX_ATTEMPT_TIMEOUT": "5",
            "NO_PROXY": "127.0.0.1",
        }
    )
    done = subprocess.run(
        [str(launcher), sys.executable, str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert lines["transport"] == "ResilientTransport"
    assert lines["status"] == "200"
    assert lines["requests"] == "2"  # the 503 was retried
