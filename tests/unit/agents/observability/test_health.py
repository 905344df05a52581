from __future__ import annotations

import asyncio
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from agents.observability.health import Health, register_views
from agents.observability.lag import LagMonitor
from agents.observability.metrics import create


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_lagging_partition_without_progress_fails_liveness_until_it_moves() -> None:
    clock = Clock()
    health = Health(stall_after_s=60, clock=clock)
    health.model_loaded = True
    tp = ("mentions.raw", 0)
    health.observe(tp, committed=10, end=50)
    clock.now += 59
    health.observe(tp, committed=10, end=60)
    assert health.live(None)[0]
    clock.now += 1
    ok, body = health.live(None)
    assert not ok
    assert body["stalled"] == ["mentions.raw[0]: lag 50, no progress for 60s"]
    assert not health.ready(None, rebalanced=True)[0]
    health.observe(tp, committed=11, end=60)  # progress: alive and ready again
    assert health.live(None)[0]
    assert health.ready(None, rebalanced=True)[0]


def test_an_idle_partition_without_lag_is_never_stalled() -> None:
    clock = Clock()
    health = Health(stall_after_s=1, clock=clock)
    health.observe(("t", 0), committed=5, end=5)
    clock.now += 3600
    health.observe(("t", 0), committed=5, end=5)
    assert health.live(None) == (True, {"status": "ok", "stalled": []})
    health.observe(("t", 1), committed=-1, end=0)
    assert health.live(None)[0]


def test_ready_waits_for_model_and_assignment_and_fails_on_crash() -> None:
    health = Health(stall_after_s=60)
    ok, body = health.ready(None, rebalanced=False)
    assert not ok
    assert body["waiting_for"] == ["model", "assignment"]
    health.model_loaded = True
    assert health.ready(None, rebalanced=True)[0]
    ok, body = health.live("RuntimeError('boom')")
    assert not ok
    assert body["crashed"] == "RuntimeError('boom')"


def test_forget_drops_revoked_partitions() -> None:
    clock = Clock()
    health = Health(stall_after_s=1, clock=clock)
    health.observe(("t", 0), committed=1, end=9)
    clock.now += 5
    assert health.stalled()
    health.forget([("t", 1)])
    assert health.stalled() == []


def test_health_views_alias_live_and_report_readiness() -> None:
    app = faust.App("test-health-views", broker="kafka://127.0.0.1:1", store="memory://")
    health = Health(stall_after_s=60)
    register_views(app, health)

    async def call(path: str) -> tuple[int, Any]:
        response = await app.web.views[path].get(None)  # type: ignore[arg-type]
        return response.status, response.body

    assert asyncio.run(call("/health"))[0] == 200
    assert asyncio.run(call("/health/live"))[0] == 200
    status, body = asyncio.run(call("/health/ready"))
    assert status == 503  # no model flag, no rebalance yet
    assert b"assignment" in body


def test_lag_monitor_publishes_lag_and_removes_revoked_partitions() -> None:
    registry = CollectorRegistry()
    metrics = create(registry)
    health = Health(stall_after_s=60)
    app = faust.App("test-lag", broker="kafka://127.0.0.1:1", store="memory://")
    monitor = LagMonitor(app, ["127.0.0.1:1"], "g", metrics, health)
    get = registry.get_sample_value
    monitor.publish({("raw", 0): 5, ("raw", 1): -1}, {("raw", 0): 12, ("raw", 1): 3})
    assert get("brandlistener_consumer_lag", {"topic": "raw", "partition": "0"}) == 7
    assert get("brandlistener_consumer_lag", {"topic": "raw", "partition": "1"}) == 3
    assert get("brandlistener_consumer_committed_offset", {"topic": "raw", "partition": "0"}) == 5
    monitor.publish({("raw", 1): 3}, {("raw", 1): 3})
    assert get("brandlistener_consumer_lag", {"topic": "raw", "partition": "0"}) is None
    assert (
        get("brandlistener_consumer_committed_offset", {"topic": "raw", "partition": "0"}) is None
    )
    assert get("brandlistener_consumer_lag", {"topic": "raw", "partition": "1"}) == 0
