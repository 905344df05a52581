"""The listen process's Prometheus metrics, one frozen bundle built by :func:`create`.

Labels are bounded: ``connector`` (a registry name) and ``kind`` (an error kind
or skip reason). Nothing is created at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge


@dataclass(frozen=True, slots=True)
class ListenerMetrics:
    """Every metric ``brand-listener listen`` exposes."""

    fetched: Counter
    matched: Counter
    produced: Counter
    errors: Counter
    reconnects: Counter
    cursor_lag: Gauge
    paused: Gauge
    quota_used: Gauge


def create(registry: CollectorRegistry | None = None) -> ListenerMetrics:
    """Build the bundle on ``registry`` (the default registry when None)."""
    reg = REGISTRY if registry is None else registry
    by_connector = ("connector",)
    return ListenerMetrics(
        fetched=Counter(
            "brandlistener_connector_posts_fetched_total",
            "Posts a connector fetched (before brand matching and dedup).",
            by_connector,
            registry=reg,
        ),
        matched=Counter(
            "brandlistener_connector_posts_matched_total",
            "Posts that matched at least one brand (after dedup).",
            by_connector,
            registry=reg,
        ),
        produced=Counter(
            "brandlistener_connector_posts_produced_total",
            "Matched posts acknowledged by Kafka on mentions.raw.",
            by_connector,
            registry=reg,
        ),
        errors=Counter(
            "brandlistener_connector_errors_total",
            "Connector errors by kind (retryable, fatal, produce, or a skip reason).",
            ("connector", "kind"),
            registry=reg,
        ),
        reconnects=Counter(
            "brandlistener_connector_reconnects_total",
            "Times a connector was polled again after a retryable failure.",
            by_connector,
            registry=reg,
        ),
        cursor_lag=Gauge(
            "brandlistener_connector_cursor_lag_seconds",
            "Now minus the newest created_at in the last produced batch.",
            by_connector,
            registry=reg,
        ),
        paused=Gauge(
            "brandlistener_connector_paused",
            "1 while a connector holds off by itself (reason: e.g. spend_guard:day), else 0.",
            ["connector", "reason"],
            registry=reg,
        ),
        quota_used=Gauge(
            "brandlistener_connector_quota_used_units",
            "Units of a source's own API quota used in its current window (e.g. YouTube today).",
            by_connector,
            registry=reg,
        ),
    )
