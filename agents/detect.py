"""The ``detect_spikes`` agent: mentions.classified -> spike detector -> mentions.alerts.

A second agent on the classified topic (beside ``route_mentions``; Faust fans
each event out to both and commits an offset once both have acked it), so
routing never waits on spike state and the detector never changes a routing
decision. Each alert is produced to ``mentions.alerts`` keyed by its stable
id (``spike:<brand>:<label>:<window start>``) before the batch is acked; the
alert sinks read it from there (:mod:`agents.sinks.alerting`). A timer closes
ended windows, so quiet windows count as zeros in the baseline.

Scale-out: mentions are keyed by id, so with N workers each detector sees
about 1/N of a brand's posts. The shape of a spike is the same, but
``min_count`` applies per worker (a burst needs about N x ``min_count`` posts
to alert). Two workers firing for the same incident in the same window
produce the same alert id, which the ledger and PagerDuty's ``dedup_key``
collapse into one page. A record that fails to decode is skipped here: the
route agent dead-letters it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

import faust
import orjson
from faust.types import EventT, StreamT

from agents.app import Outgoing, Outputs, event_origin, event_value
from agents.metrics import OTHER, AgentMetrics
from agents.spikes import SpikeAlert, SpikeDetector
from listener.record import decode_mention
from listener.topics import TopicNames

log = logging.getLogger(__name__)

STAGE = "spikes"


class SpikeStage:
    """Feeds classified mentions to the detector and produces the alerts it raises.

    Args:
        detector: The spike detector (its own clock).
        outputs: Where alerts (and undeliverable alerts, as dead letters) go.
        metrics: The worker's metrics (``spike_alerts``).
        topics: Topic names.
        brands: The configured brands, the metric's brand label values; empty
            means the metrics' own cap on distinct brands.
    """

    def __init__(
        self,
        detector: SpikeDetector,
        outputs: Outputs,
        metrics: AgentMetrics,
        topics: TopicNames,
        brands: Sequence[str] = (),
    ) -> None:
        self.detector = detector
        self._outputs = outputs
        self._metrics = metrics
        self._topics = topics
        self._brands = frozenset(b.lower() for b in brands)

    async def process(self, events: Sequence[EventT]) -> list[SpikeAlert]:
        """Count ``events``; produce their alerts and return those Kafka acknowledged."""
        alerts: list[SpikeAlert] = []
        outgoing: list[Outgoing] = []
        for event in events:
            try:
                mention = decode_mention(event_value(event))
            except Exception as exc:  # noqa: BLE001 - the route agent dead-letters it
                log.debug("spikes: skipping undecodable event: %r", exc)
                continue
            for alert in self.detector.observe(mention):
                log.warning("spike alert %s: %d mentions", alert.id, alert.count)
                value = orjson.dumps(alert.record())
                outgoing.append(
                    Outgoing(self._topics.alerts, alert.id.encode(), value, event_origin(event))
                )
                alerts.append(alert)
        if not outgoing:
            return []
        delivered = await self._outputs.deliver(STAGE, outgoing, [])
        sent = [alert for alert, ok in zip(alerts, delivered, strict=True) if ok]
        for alert in sent:
            self._metrics.spike_alerts.labels(
                brand=self._brand(alert.brand), label=alert.label
            ).inc()
        return sent

    def _brand(self, brand: str) -> str:
        if self._brands:
            return brand if brand in self._brands else OTHER
        return self._metrics.brands(brand)

    async def tick(self) -> None:
        """Close the windows that have ended (run by a timer)."""
        self.detector.tick()


def register(
    app: faust.App,
    source: faust.TopicT,
    stage: SpikeStage,
    *,
    batch_size: int,
    batch_window_s: float,
    tick_s: float,
) -> faust.types.AgentT:
    """Add the ``detect_spikes`` agent and its window-closing timer to ``app``."""

    async def detect_spikes(stream: StreamT) -> None:
        async for events in cast(faust.Stream, stream).take_events(
            batch_size, within=batch_window_s
        ):
            try:
                await stage.process(events)
            except Exception:  # noqa: BLE001 - never crash the agent; routing is unaffected
                log.exception("spike batch of %d failed unexpectedly", len(events))

    app.timer(tick_s, name="close_spike_windows")(stage.tick)
    return app.agent(source, name="detect_spikes")(detect_spikes)
