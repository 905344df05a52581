"""Per-sink Prometheus metrics, built on an injected registry (nothing at import time).

Label values are bounded: ``sink`` is a registry name and ``outcome`` one of
:data:`OUTCOMES`, never a Mention id.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES: tuple[str, ...] = ("created", "existing", "dead_letter")
"""``created``: new ticket/alert; ``existing``: already there (idempotency key or ledger);
``dead_letter``: given up after the retry budget or on a non-retryable error."""


@dataclass(frozen=True, slots=True)
class SinkMetrics:
    """The sink metrics; build with :func:`create`."""

    deliveries: Counter
    delivery_seconds: Histogram
    retries: Counter
    breaker_open: Gauge


def create(registry: CollectorRegistry) -> SinkMetrics:
    """Build every sink metric on ``registry``.

    Args:
        registry: Where the metrics are registered (one bundle per registry).

    Raises:
        ValueError: The metrics are already registered on ``registry``.
    """
    return SinkMetrics(
        deliveries=Counter(
            "brandlistener_sink_deliveries_total",
            "Mentions a sink finished with, by sink and outcome (created, existing, dead_letter).",
            ("sink", "outcome"),
            registry=registry,
        ),
        delivery_seconds=Histogram(
            "brandlistener_sink_delivery_seconds",
            "Time from handing a mention to a sink to its final outcome, retries included.",
            ("sink",),
            registry=registry,
        ),
        retries=Counter(
            "brandlistener_sink_retries_total",
            "Delivery attempts that failed and were retried, by sink.",
            ("sink",),
            registry=registry,
        ),
        breaker_open=Gauge(
            "brandlistener_sink_breaker_open",
            "1 while a sink's circuit breaker is open or half-open, else 0.",
            ("sink",),
            registry=registry,
        ),
    )
