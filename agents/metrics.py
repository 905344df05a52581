"""Every Prometheus metric the worker exposes, built on an injected registry, and its views.

Nothing is created at import time: :func:`create` builds the bundle on the
registry it is given (the default registry in production, a fresh
``CollectorRegistry()`` in each test). Label values are bounded: stage names,
the four intent labels, priorities and reason codes, never ids or handles.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from listener.record import Mention

LATENCY_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""Seconds, from 10 ms to 5 min: a queue backlog shows up in the upper buckets."""

BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

STAGE_PREVIOUS: dict[str, str] = {"classified": "ingested", "routed": "classified"}
"""For each stage whose latency is measured, the stage it is measured from."""


@dataclass(frozen=True, slots=True)
class AgentMetrics:
    """The worker's metrics; build with :func:`create`."""

    mentions_processed: Counter
    end_to_end_latency: Histogram
    stage_latency: Histogram
    classifier_batch_size: Histogram
    classifier_batch_seconds: Histogram
    dead_letter: Counter
    needs_response: Counter

    def observe_stage(self, mention: Mention, stage: str) -> None:
        """Count ``mention`` as done with ``stage`` and observe that stage's latency.

        Args:
            mention: The record, already stamped with ``stage``.
            stage: ``"classified"`` or ``"routed"``.
        """
        label = mention.classification.label if mention.classification else "none"
        self.mentions_processed.labels(stage=stage, label=label).inc()
        times = mention.stage_times
        done = times.get(stage)
        if done is None:
            return
        start = times.get(STAGE_PREVIOUS.get(stage, ""))
        if start is not None:
            self.stage_latency.labels(stage=stage).observe(max(0.0, done - start))
        if stage == "routed":
            ingested = times.get("ingested", mention.ingested_at.timestamp())
            self.end_to_end_latency.observe(max(0.0, done - ingested))


def create(registry: CollectorRegistry) -> AgentMetrics:
    """Build every worker metric on ``registry``.

    Args:
        registry: Where the metrics are registered (one bundle per registry).

    Raises:
        ValueError: The metrics are already registered on ``registry``.
    """
    return AgentMetrics(
        mentions_processed=Counter(
            "brandlistener_mentions_processed_total",
            "Mentions a stage finished with and handed on, by stage and intent label.",
            ("stage", "label"),
            registry=registry,
        ),
        end_to_end_latency=Histogram(
            "brandlistener_end_to_end_latency_seconds",
            "Time from ingestion to routing decision.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        stage_latency=Histogram(
            "brandlistener_stage_latency_seconds",
            "Time from the previous stage (ingested->classified, classified->routed).",
            ("stage",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        classifier_batch_size=Histogram(
            "brandlistener_classifier_batch_size",
            "Posts per classifier call.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        ),
        classifier_batch_seconds=Histogram(
            "brandlistener_classifier_batch_seconds",
            "Wall time of one classifier call (off the event loop).",
            registry=registry,
        ),
        dead_letter=Counter(
            "brandlistener_dead_letter_total",
            "Events sent to the dead-letter topic, by stage and reason.",
            ("stage", "reason"),
            registry=registry,
        ),
        needs_response=Counter(
            "brandlistener_needs_response_total",
            "Mentions queued for a human response, by priority and intent label.",
            ("priority", "label"),
            registry=registry,
        ),
    )


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def register_views(app: faust.App, registry: CollectorRegistry) -> None:
    """Serve ``GET /metrics`` (Prometheus text) and ``GET /health`` on the Faust web server."""

    class MetricsView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            body, content_type = render(registry)
            return self.bytes(body, headers={"Content-Type": content_type})

    class HealthView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            crashed = self.app.crash_reason is not None
            status = 503 if crashed else 200
            return self.json({"status": "crashed" if crashed else "ok"}, status=status)

    app.page("/metrics", name="brandlistener_metrics")(MetricsView)
    app.page("/health", name="brandlistener_health")(HealthView)
