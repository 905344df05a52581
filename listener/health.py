"""The listen process's HTTP endpoint: ``/metrics`` (Prometheus text) and ``/health``.

A stdlib ``ThreadingHTTPServer`` on a daemon thread (what
``prometheus_client.start_http_server`` does too), plus a health check: the
asyncio loop stamps a :class:`Heartbeat` every second, and ``/health`` (alias
``/health/live``) answers 503 once the stamp is older than ``stale_after_s`` (a
blocked or dead event loop: no connector can make progress). A connector that
is alive but stuck shows in ``brandlistener_connector_cursor_lag_seconds`` and
``brandlistener_connector_errors_total`` instead, per connector.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Heartbeat:
    """The last time the event loop ran :meth:`beat`.

    Args:
        stale_after_s: Age of the last beat after which the process is not live.
        clock: Monotonic seconds (injected in tests).
    """

    def __init__(self, stale_after_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.stale_after_s = stale_after_s
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        """Stamp now."""
        self._last = self._clock()

    def check(self) -> tuple[bool, dict[str, Any]]:
        """``(live, body)``: live while the last beat is younger than ``stale_after_s``."""
        age = self._clock() - self._last
        ok = age < self.stale_after_s
        return ok, {"status": "ok" if ok else "fail", "loop_heartbeat_age_s": round(age, 1)}

    async def run(self, interval_s: float = 1.0) -> None:
        """Beat every ``interval_s`` until cancelled."""
        while True:
            self.beat()
            await asyncio.sleep(interval_s)


def serve(
    host: str, port: int, registry: CollectorRegistry, heartbeat: Heartbeat
) -> http.server.ThreadingHTTPServer:
    """Start serving ``/metrics`` and ``/health`` on a daemon thread; returns the server.

    Args:
        host: Bind address.
        port: Port (0 picks a free one; see ``server.server_address``).
        registry: What ``/metrics`` exposes.
        heartbeat: What ``/health`` reports.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/health", "/health/live", "/health/ready"):
                ok, body = heartbeat.check()
                self._answer(200 if ok else 503, json.dumps(body).encode(), "application/json")
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="listen-http", daemon=True).start()
    return server
