"""Attach the worker's operational views to an app: consumer lag, the SLA clock, health.

One call from :func:`agents.worker.build_worker` wires :mod:`agents.observability.lag`,
:mod:`agents.queue.sla` and :mod:`agents.observability.health` onto the app; each module documents
what it measures.
"""

from __future__ import annotations

import faust

from agents.observability import health, lag
from agents.observability.metrics import AgentMetrics
from agents.queue import sla
from agents.runtime.app import Outputs
from agents.settings import AgentSettings


def attach(
    app: faust.App, settings: AgentSettings, metrics: AgentMetrics, outputs: Outputs
) -> health.Health:
    """Register the lag monitor, the queue/SLA tracker and the health views on ``app``.

    The classifier is loaded before the pipeline is built, so the returned
    :class:`~agents.observability.health.Health` starts with ``model_loaded`` set.

    Args:
        app: The worker's Faust app.
        settings: Worker settings (stall threshold, reading interval, topics).
        metrics: The worker's metrics.
        outputs: Where the queue tracker's dead letters go.

    Returns:
        The health state the views report.
    """
    state = health.Health(settings.health.stall_after_s)
    state.model_loaded = True
    monitor = lag.LagMonitor(app, settings.kafka, settings.app_id, metrics, state)
    lag.register(app, monitor, settings.health.lag_interval_s)
    sla.register(
        app,
        metrics,
        outputs,
        settings.topics,
        settings.kafka.topic_partitions,
        settings.health.lag_interval_s,
    )
    health.register_views(app, state)
    return state
