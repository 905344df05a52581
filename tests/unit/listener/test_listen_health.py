from __future__ import annotations

import json
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry

from listener.health import Heartbeat, serve
from listener.metrics import create


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_metrics_and_health_are_served_and_health_fails_on_a_stale_heartbeat() -> None:
    registry = CollectorRegistry()
    create(registry).fetched.labels("rss").inc(3)
    clock = Clock()
    heartbeat = Heartbeat(stale_after_s=30, clock=clock)
    server = serve("127.0.0.1", 0, registry, heartbeat)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, body = _get(f"{base}/metrics")
        assert status == 200
        assert b'brandlistener_connector_posts_fetched_total{connector="rss"} 3.0' in body
        for path in ("/health", "/health/live", "/health/ready"):
            assert _get(base + path)[0] == 200
        clock.now += 31
        status, body = _get(f"{base}/health")
        assert status == 503
        assert json.loads(body)["loop_heartbeat_age_s"] == 31.0
        heartbeat.beat()
        assert _get(f"{base}/health")[0] == 200
        assert _get(f"{base}/nope")[0] == 404
    finally:
        server.shutdown()
        server.server_close()
