"""The ``route_mentions`` and ``dedup_copies`` agents: mentions.classified -> rules -> the queue.

``route_mentions`` reads the classified topic (keyed by author) and, before
the rules, adds the author vetting signals from the author's window in the
``author-vetting`` table (``agents/pipeline/vetting.py``). Every mention gets a routing
decision (:func:`agents.pipeline.rules.route`) and the ``routed`` stage time; the rest
are only counted. Those that need a response go to the copy-text repartition
topic, keyed by their copy key, where ``dedup_copies`` keeps copy-paste copies
of a queued post out of the queue with the ``copy-campaigns`` table
(``agents/pipeline/dedup.py``): it produces the first post of a text to the human queue
keyed by ``Mention.id`` and, for each copy, the original again under its own
key with the copy count (one update per original per batch, the latest
count). With dedup off (``dedup_window_s: 0``) the route agent produces to the
queue directly. Both tables are changelog-backed (``agents/pipeline/tables.py``), so
their state survives restarts and is whole per key with any number of workers.

Delivery is at-least-once by the same rule as the classify agent (see
``agents/pipeline/classify.py``): a batch's input events are acked only after Kafka has
acknowledged every record produced for them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta

import faust
from faust.types import EventT, StreamT

from agents.observability.metrics import AgentMetrics
from agents.pipeline.dedup import CopyDedup
from agents.pipeline.rules import RULES, SLA, Rule, route
from agents.pipeline.tables import Sweeper
from agents.pipeline.vetting import AuthorVetter
from agents.runtime.app import Failure, Outgoing, Outputs, event_origin, event_value
from agents.runtime.batches import run_batches
from listener.record import Mention, Routing, decode_mention, encode_mention, routing_label
from listener.topics import TopicNames

log = logging.getLogger(__name__)

STAGE = "route"
DEDUP_STAGE = "dedup"


class RouteStage:
    """Routes one batch of classified events and hands the queue items to :class:`Outputs`.

    Args:
        outputs: Where queue items and dead letters go.
        metrics: The worker's metrics.
        topics: Topic names.
        threshold: Minimum confidence for a complaint or question to need a response.
        rules: The rule table (the built-in one, or a deployment's rules file).
        sla: Time to first response by priority.
        vetter: Adds ``signals["vetting"]`` before the rules run (see
            ``agents/pipeline/vetting.py``).
        dedup: With ``dedup_topic``: the posts that need a response go to that
            repartition topic keyed by :meth:`CopyDedup.key`, for :class:`DedupStage`,
            instead of straight to the queue.
        dedup_topic: The copy-text repartition topic.
    """

    def __init__(
        self,
        outputs: Outputs,
        metrics: AgentMetrics,
        topics: TopicNames,
        threshold: float,
        rules: tuple[Rule, ...] = RULES,
        sla: Mapping[str, timedelta] = SLA,
        vetter: AuthorVetter | None = None,
        dedup: CopyDedup | None = None,
        dedup_topic: str | None = None,
    ) -> None:
        self.vetter = vetter
        self._dedup = dedup if dedup_topic else None
        self._dedup_topic = dedup_topic
        self._outputs = outputs
        self._metrics = metrics
        self._topics = topics
        self._threshold = threshold
        self._rules = rules
        self._sla = sla

    @property
    def outputs(self) -> Outputs:
        """Where this stage's records and dead letters go."""
        return self._outputs

    def decide(self, mention: Mention) -> Routing:
        """The routing decision for one classified mention (see :func:`route`)."""
        return route(mention, self._threshold, self._rules, self._sla)

    async def process(self, events: Sequence[EventT]) -> None:
        """Decode, vet, route and produce ``events``; returns once Kafka has them all."""
        failures: list[Failure] = []
        outgoing: list[Outgoing] = []
        done: list[Mention] = []
        for event in events:
            try:
                mention = decode_mention(event_value(event))
                if self.vetter is not None:
                    mention = self.vetter.annotate(mention)
                routed = mention.with_stage("routed", routing=self.decide(mention))
                if routed.routing is not None and routed.routing.needs_response:
                    outgoing.append(self._queue_record(routed, event))
                done.append(routed)
            except Exception as exc:  # noqa: BLE001 - one bad event is dead-lettered
                failures.append(Failure.of(event, exc))
        delivered = iter(await self._outputs.deliver(STAGE, outgoing, failures))
        for mention in done:
            queued = mention.routing is not None and mention.routing.needs_response
            if queued and not next(delivered):
                continue  # dead-lettered
            self._metrics.observe_stage(mention, "routed")
            if queued and self._dedup is None:
                count_queued(self._metrics, mention)

    def _queue_record(self, mention: Mention, event: EventT) -> Outgoing:
        if self._dedup is not None and self._dedup_topic is not None:
            key = self._dedup.key(mention) or mention.id
            return Outgoing(
                self._dedup_topic, key.encode(), encode_mention(mention), event_origin(event)
            )
        return queue_record(self._topics, mention, event)


class DedupStage:
    """Collapses copy-paste copies of queued posts and produces the rest to the queue.

    Reads the copy-text repartition topic (keyed by :meth:`CopyDedup.key`). The
    first post of a text in the window is queued; a copy is not, and the
    original is produced again under its own key with the new count (one
    update per original per batch: the latest count goes last).

    Args:
        dedup: The copy dedup, over the ``copy-campaigns`` table in the worker.
        outputs: Where queue items and dead letters go.
        metrics: The worker's metrics.
        topics: Topic names.
    """

    def __init__(
        self, dedup: CopyDedup, outputs: Outputs, metrics: AgentMetrics, topics: TopicNames
    ) -> None:
        self.dedup = dedup
        self._outputs = outputs
        self._metrics = metrics
        self._topics = topics

    @property
    def outputs(self) -> Outputs:
        """Where this stage's records and dead letters go."""
        return self._outputs

    async def process(self, events: Sequence[EventT]) -> None:
        """Check ``events`` against the campaigns; produce the queue items and count updates."""
        failures: list[Failure] = []
        outgoing: list[Outgoing] = []
        queued: list[Mention] = []
        updates: dict[str, Outgoing] = {}
        for event in events:
            try:
                verdict = self.dedup.check(decode_mention(event_value(event)))
                if verdict.original is not None:
                    self._metrics.duplicates.labels(label=_label(verdict.mention)).inc()
                    updates[verdict.original.id] = queue_record(
                        self._topics, verdict.original, event
                    )
                if verdict.queue:
                    outgoing.append(queue_record(self._topics, verdict.mention, event))
                    queued.append(verdict.mention)
            except Exception as exc:  # noqa: BLE001 - one bad event is dead-lettered
                failures.append(Failure.of(event, exc))
        # Count updates go last: same key, same partition, so the latest count is last.
        delivered = await self._outputs.deliver(
            DEDUP_STAGE, outgoing + list(updates.values()), failures
        )
        now = time.time()
        for mention, ok in zip(queued, delivered[: len(queued)], strict=True):
            if ok:
                routed = mention.stage_times.get("routed")
                if routed is not None:
                    self._metrics.stage_latency.labels(stage="queued").observe(
                        max(0.0, now - routed)
                    )
                count_queued(self._metrics, mention)


def queue_record(topics: TopicNames, mention: Mention, event: EventT) -> Outgoing:
    """``mention`` as a record of the human queue, keyed by its id."""
    return Outgoing(
        topics.needs_response, mention.id.encode(), encode_mention(mention), event_origin(event)
    )


def count_queued(metrics: AgentMetrics, mention: Mention) -> None:
    """Count one item that reached the queue (``brandlistener_needs_response_total``)."""
    routing, classification = mention.routing, mention.classification
    if routing is None or classification is None:  # pragma: no cover - set by the route stage
        return
    metrics.needs_response.labels(
        priority=routing.priority or "none",
        team=routing.team or "none",
        label=routing_label(classification),
    ).inc()


def _label(mention: Mention) -> str:
    return mention.classification.label if mention.classification else "none"


def register(
    app: faust.App,
    source: faust.TopicT,
    stage: RouteStage | DedupStage,
    *,
    name: str,
    batch_size: int,
    batch_window_s: float,
    sweeper: Sweeper | None = None,
) -> faust.types.AgentT:
    """Add a batch agent running ``stage`` on ``source`` (``route_mentions`` or ``dedup_copies``).

    ``sweeper``, if given, runs between batches (the agent is the only writer of its table).
    """
    stage_name = STAGE if isinstance(stage, RouteStage) else DEDUP_STAGE

    async def agent(stream: StreamT) -> None:
        await run_batches(
            stream,
            stage=stage_name,
            process=stage.process,
            dead_letter=stage.outputs.dead_letter_batch,
            batch_size=batch_size,
            within_s=batch_window_s,
            after=sweeper.maybe_sweep if sweeper is not None else None,
        )

    return app.agent(source, name=name)(agent)
