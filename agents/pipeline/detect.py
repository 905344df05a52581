"""The spike agents: mentions.classified -> by brand and label -> spike detector -> mentions.alerts.

``forward_spike_mentions`` is a second agent on the classified topic (beside
``route_mentions``; Faust fans each event out to both and commits an offset
once both have acked it), so routing never waits on spike state. It re-keys
the watched mentions (complaints by default) by ``brand|label`` onto the
app's brand-label repartition topic; ``detect_spikes`` reads that topic and
keeps each key's windows in the changelog-backed ``spike-series`` table
(``agents/pipeline/spikes.py``, ``agents/pipeline/tables.py``). So with N workers each brand's
counts are whole on one worker (``min_count`` means what it says), and a
restart or rebalance keeps the baseline and the "already alerted" state.

Each alert is produced to ``mentions.alerts`` keyed by its stable id
(``spike:<brand>:<label>:<window start>``) before the batch is acked, and so
is the same id with ``"status": "resolved"`` when the incident ends; the
alert sinks read it from there (:mod:`agents.delivery.alerts`), and the ledger
and PagerDuty's ``dedup_key`` absorb a redelivered alert. A record that fails
to decode is dead-lettered by each stage that reads it, with the stage's name.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import faust
import orjson
from faust.types import EventT, StreamT

from agents.observability.metrics import OTHER, AgentMetrics
from agents.pipeline.spikes import SpikeAlert, SpikeDetector, series_key
from agents.pipeline.tables import Sweeper, owned_by
from agents.runtime.app import Failure, Outgoing, Outputs, event_origin, event_value
from agents.runtime.batches import run_batches
from listener.topics import TopicNames

log = logging.getLogger(__name__)

STAGE = "spikes"
FORWARD_STAGE = "spike-forward"


class SpikeForward:
    """Re-keys the watched classified mentions by ``brand|label`` for :class:`SpikeStage`.

    A mention of two brands is forwarded twice; a post by a brand's own
    account is not forwarded (its replies are not customers). Only the fields the detector
    uses travel (id, text, brand, label), read with orjson, not the model.

    Args:
        watches: Whether a label is counted (the detector's).
        outputs: Where the forwarded records go.
        topic: The brand-label repartition topic.
    """

    def __init__(self, watches: Callable[[str], bool], outputs: Outputs, topic: str) -> None:
        self._watches = watches
        self._outputs = outputs
        self._topic = topic

    async def process(self, events: Sequence[EventT]) -> int:
        """Forward the watched mentions of ``events``; return how many records Kafka took.

        An event that cannot be read is dead-lettered (stage ``spike-forward``;
        the route agent dead-letters the same record under its own stage).
        """
        outgoing: list[Outgoing] = []
        failures: list[Failure] = []
        for event in events:
            try:
                record = orjson.loads(event_value(event))
                label = record["classification"]["label"]
                if not self._watches(label) or record.get("own_account_of"):
                    continue  # unwatched label, or the brand's own post (never a customer)
                for brand in record.get("brands") or ("unknown",):
                    key = series_key(str(brand), label)
                    value = {
                        "brand": brand,
                        "label": label,
                        "id": record["id"],
                        "text": record["text"],
                    }
                    outgoing.append(
                        Outgoing(
                            self._topic, key.encode(), orjson.dumps(value), event_origin(event)
                        )
                    )
            except Exception as exc:  # noqa: BLE001 - one bad event is dead-lettered
                failures.append(Failure.of(event, exc))
        if not outgoing and not failures:
            return 0
        return sum(await self._outputs.deliver(FORWARD_STAGE, outgoing, failures))


class SpikeStage:
    """Counts the forwarded mentions in the detector and produces the alerts it raises.

    Args:
        detector: The spike detector (its own clock), over the ``spike-series`` table.
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

    @property
    def outputs(self) -> Outputs:
        """Where this stage's alerts and dead letters go."""
        return self._outputs

    async def process(self, events: Sequence[EventT]) -> list[SpikeAlert]:
        """Count ``events``; produce their alerts and return those Kafka acknowledged."""
        alerts: list[SpikeAlert] = []
        resolved: list[Outgoing] = []  # spikes that ended ("status": "resolved" on the alert id)
        outgoing: list[Outgoing] = []
        failures: list[Failure] = []
        for event in events:
            try:
                r = orjson.loads(event_value(event))
                ended, alert = self.detector.step(str(r["brand"]), r["label"], r["id"], r["text"])
            except Exception as exc:  # noqa: BLE001 - one bad event is dead-lettered
                failures.append(Failure.of(event, exc))
                continue
            if ended is not None:
                log.warning("spike %s ended: %d mentions in a window", ended.id, ended.count)
                value = orjson.dumps(ended.record())
                resolved.append(
                    Outgoing(self._topics.alerts, ended.id.encode(), value, event_origin(event))
                )
            if alert is not None:
                log.warning("spike alert %s: %d mentions", alert.id, alert.count)
                value = orjson.dumps(alert.record())
                outgoing.append(
                    Outgoing(self._topics.alerts, alert.id.encode(), value, event_origin(event))
                )
                alerts.append(alert)
        if not outgoing and not failures and not resolved:
            return []
        delivered = await self._outputs.deliver(STAGE, [*outgoing, *resolved], failures)
        sent = [alert for alert, ok in zip(alerts, delivered, strict=False) if ok]
        for alert in sent:
            self._metrics.spike_alerts.labels(
                brand=self._brand(alert.brand), label=alert.label
            ).inc()
        return sent

    def _brand(self, brand: str) -> str:
        if self._brands:
            return brand if brand in self._brands else OTHER
        return self._metrics.brands(brand)


def register(
    app: faust.App,
    classified: faust.TopicT,
    by_brand_label: faust.TopicT,
    forward: SpikeForward,
    stage: SpikeStage,
    *,
    batch_size: int,
    batch_window_s: float,
    partitions: int,
) -> faust.types.AgentT:
    """Add the ``forward_spike_mentions`` and ``detect_spikes`` agents to ``app``."""

    def batches(
        process: Callable[[Sequence[EventT]], Awaitable[object]],
        stage_name: str,
        after: Callable[[], None] | None = None,
    ) -> Callable[[StreamT], Awaitable[None]]:
        async def agent(stream: StreamT) -> None:
            await run_batches(
                stream,
                stage=stage_name,
                process=process,
                dead_letter=stage.outputs.dead_letter_batch,
                batch_size=batch_size,
                within_s=batch_window_s,
                after=after,
            )

        return agent

    owned = owned_by(app, by_brand_label.get_topic_name(), partitions)
    sweeper = Sweeper("spike-series", lambda: stage.detector.sweep(owned))
    app.agent(classified, name="forward_spike_mentions")(batches(forward.process, FORWARD_STAGE))
    detect = batches(stage.process, STAGE, sweeper.maybe_sweep)
    return app.agent(by_brand_label, name="detect_spikes")(detect)
