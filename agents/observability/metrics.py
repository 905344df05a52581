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
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from listener.record import LABELS, Mention

LATENCY_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
"""Seconds, from 10 ms to 5 min: a queue backlog shows up in the upper buckets."""

BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

STAGE_PREVIOUS: dict[str, str] = {"classified": "ingested", "routed": "classified"}
"""For each stage whose latency is measured, the stage it is measured from."""

QUEUE_BUCKETS: tuple[float, ...] = (
    10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 172800.0,
)  # fmt: skip
"""Seconds an item waits for a human, from 10 s to 2 days (the SLAs are 1 h, 4 h, 24 h)."""

OTHER = "other"
"""The label value every source or brand beyond a :class:`LabelCap` is counted under."""


class LabelCap:
    """Keeps a label's values bounded: the first ``limit`` distinct values, then :data:`OTHER`.

    Sources are a handful of connector names and brands are the configured ones,
    so the cap is a guard against a misconfiguration, not a sampling scheme.

    Args:
        limit: How many distinct values get their own series.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        """``value`` itself while under the cap (or already seen), else :data:`OTHER`."""
        if value in self._seen:
            return value
        if len(self._seen) < self._limit:
            self._seen.add(value)
            return value
        return OTHER


@dataclass(frozen=True, slots=True)
class AgentMetrics:
    """The worker's metrics; build with :func:`create`."""

    mentions_processed: Counter
    end_to_end_latency: Histogram
    stage_latency: Histogram
    classifier_batch_size: Histogram
    classifier_batch_seconds: Histogram
    classifier_info: Gauge
    dead_letter: Counter
    needs_response: Counter
    created_to_routed: Histogram
    by_source: Counter
    by_brand: Counter
    consumer_lag: Gauge
    consumer_committed: Gauge
    queue_depth: Gauge
    sla_overdue: Gauge
    sla_breaches: Counter
    time_in_queue: Histogram
    spike_alerts: Counter
    duplicates: Counter
    own_account_posts: Counter
    label_corrections: Counter
    sources: LabelCap
    brands: LabelCap

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
            self.created_to_routed.observe(max(0.0, done - mention.created_at.timestamp()))
            self.by_source.labels(source=self.sources(mention.source), label=label).inc()
            for brand in mention.brands or (OTHER,):
                self.by_brand.labels(brand=self.brands(brand), label=label).inc()
            for brand in mention.own_account_of:
                self.own_account_posts.labels(
                    brand=self.brands(brand), source=self.sources(mention.source)
                ).inc()

    def count_correction(self, old_label: str, new_label: str, source: str | None) -> None:
        """Count one label correction, by the model's label, the right one and the source.

        A label outside the four intents counts as ``unknown``, and so does a
        correction that does not name its post's source.
        """
        self.label_corrections.labels(
            old_label=_intent(old_label),
            new_label=_intent(new_label),
            source=self.sources(source or "unknown"),
        ).inc()


def _intent(label: str) -> str:
    return label if label in LABELS else "unknown"


def create(
    registry: CollectorRegistry, *, source_limit: int = 16, brand_limit: int = 20
) -> AgentMetrics:
    """Build every worker metric on ``registry``.

    Args:
        registry: Where the metrics are registered (one bundle per registry).
        source_limit: Distinct ``source`` label values before :data:`OTHER`.
        brand_limit: Distinct ``brand`` label values before :data:`OTHER`.

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
        classifier_info=Gauge(
            "brandlistener_classifier_info",
            "Always 1: the worker's intent model, where it runs (cpu/cuda) and its parallel runs.",
            ("model", "provider", "parallel_runs"),
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
            "Mentions queued for a human response, by priority, team and intent label.",
            ("priority", "team", "label"),
            registry=registry,
        ),
        created_to_routed=Histogram(
            "brandlistener_created_to_routed_seconds",
            "Time from the post's created_at (source clock) to the routing decision.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        by_source=Counter(
            "brandlistener_routed_by_source_total",
            "Routed mentions by source connector and intent label.",
            ("source", "label"),
            registry=registry,
        ),
        by_brand=Counter(
            "brandlistener_routed_by_brand_total",
            "Routed mentions by matched brand and intent label (one count per brand).",
            ("brand", "label"),
            registry=registry,
        ),
        consumer_lag=Gauge(
            "brandlistener_consumer_lag",
            "Log end offset minus the worker group's committed offset, per assigned partition.",
            ("topic", "partition"),
            registry=registry,
        ),
        consumer_committed=Gauge(
            "brandlistener_consumer_committed_offset",
            "The worker group's committed offset per assigned partition (progress: its changes).",
            ("topic", "partition"),
            registry=registry,
        ),
        queue_depth=Gauge(
            "brandlistener_queue_depth",
            "Needs-response items not yet acknowledged, by priority and team.",
            ("priority", "team"),
            registry=registry,
        ),
        sla_overdue=Gauge(
            "brandlistener_sla_overdue",
            "Unacknowledged needs-response items past their SLA due time, by priority and team.",
            ("priority", "team"),
            registry=registry,
        ),
        sla_breaches=Counter(
            "brandlistener_sla_breaches_total",
            "Needs-response items seen unacknowledged past their SLA due time, by priority, team.",
            ("priority", "team"),
            registry=registry,
        ),
        time_in_queue=Histogram(
            "brandlistener_time_in_queue_seconds",
            "Time from the routing decision to the acknowledgement, by priority and team.",
            ("priority", "team"),
            buckets=QUEUE_BUCKETS,
            registry=registry,
        ),
        spike_alerts=Counter(
            "brandlistener_spike_alerts_total",
            "Spike alerts raised, by brand (the configured ones, else 'other') and intent label.",
            ("brand", "label"),
            registry=registry,
        ),
        duplicates=Counter(
            "brandlistener_duplicates_total",
            "Copy-paste copies of a queued post kept out of the queue, by intent label.",
            ("label",),
            registry=registry,
        ),
        own_account_posts=Counter(
            "brandlistener_own_account_posts_total",
            "Routed posts by one of the brand's own accounts (never queued), by brand and source.",
            ("brand", "source"),
            registry=registry,
        ),
        label_corrections=Counter(
            "brandlistener_label_corrections_total",
            "Label corrections by support staff read from mentions.corrections, by the model's "
            "label, the corrected one ('unknown': no model label was known) and the post's source.",
            ("old_label", "new_label", "source"),
            registry=registry,
        ),
        sources=LabelCap(source_limit),
        brands=LabelCap(brand_limit),
    )


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def register_views(app: faust.App, registry: CollectorRegistry) -> None:
    """Serve ``GET /metrics`` (Prometheus text) on the Faust web server.

    The health views are in :mod:`agents.observability.health`.
    """

    class MetricsView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            body, content_type = render(registry)
            return self.bytes(body, headers={"Content-Type": content_type})

    app.page("/metrics", name="brandlistener_metrics")(MetricsView)
