"""The ``route_mentions`` agent: mentions.classified -> rules -> mentions.needs-response.

Before the rules, the author vetting signals are added (``agents/vetting.py``);
after them, copy-paste copies of a queued post are kept out of the queue
(``agents/dedup.py``) and the queued original is produced again under its own
key with the copy count (one update per original per batch, the latest
count). Every mention gets a routing decision (:func:`agents.rules.route`) and the
``routed`` stage time; those that need a response are produced to the human
queue keyed by ``Mention.id``, the rest are only counted. Delivery is
at-least-once by the same rule as the classify agent (see
``agents/classify.py``): a batch's input events are acked only after Kafka has
acknowledged every record produced for them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import cast

import faust
from faust.types import EventT, StreamT

from agents.app import Failure, Outgoing, Outputs, event_origin, event_value
from agents.dedup import CopyDedup
from agents.metrics import AgentMetrics
from agents.rules import RULES, SLA, Rule, route
from agents.vetting import AuthorVetter
from listener.record import Mention, Routing, decode_mention, encode_mention
from listener.topics import TopicNames

log = logging.getLogger(__name__)

STAGE = "route"


class RouteStage:
    """Routes one batch of classified events and hands the queue items to :class:`Outputs`.

    Args:
        outputs: Where queue items and dead letters go.
        metrics: The worker's metrics.
        topics: Topic names.
        threshold: Minimum confidence for a complaint or question to need a response.
        rules: The rule table (the built-in one, or a deployment's rules file).
        sla: Time to first response by priority.
        vetter: Adds ``signals["vetting"]`` before the rules run (see ``agents/vetting.py``).
        dedup: Keeps copy-paste copies of a queued post out of the queue (``agents/dedup.py``).
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
    ) -> None:
        self._vetter = vetter
        self._dedup = dedup
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
        """The routing decision for one classified mention (see :func:`agents.rules.route`)."""
        return route(mention, self._threshold, self._rules, self._sla)

    async def process(self, events: Sequence[EventT]) -> None:
        """Decode, route and produce ``events``; returns once Kafka has them all."""
        failures: list[Failure] = []
        outgoing: list[Outgoing] = []
        queued: list[Mention] = []
        passed: list[Mention] = []
        updates: dict[str, Outgoing] = {}
        for event in events:
            try:
                mention = decode_mention(event_value(event))
                if self._vetter is not None:
                    mention = self._vetter.annotate(mention)
                routed = mention.with_stage("routed", routing=self.decide(mention))
                queue = routed.routing is not None and routed.routing.needs_response
                if queue and self._dedup is not None:
                    verdict = self._dedup.check(routed)
                    routed, queue = verdict.mention, verdict.queue
                    if verdict.original is not None:
                        self._metrics.duplicates.labels(label=_label(routed)).inc()
                        updates[verdict.original.id] = self._queue_record(verdict.original, event)
                if queue:
                    outgoing.append(self._queue_record(routed, event))
                    queued.append(routed)
                else:
                    passed.append(routed)
            except Exception as exc:  # noqa: BLE001 - one bad event is dead-lettered
                failures.append(Failure.of(event, exc))
        # Count updates go last: same key, same partition, so the latest count is last.
        counts = list(updates.values())
        delivered = await self._outputs.deliver(STAGE, outgoing + counts, failures)
        for mention in passed:
            self._metrics.observe_stage(mention, "routed")
        for mention, ok in zip(queued, delivered[: len(queued)], strict=True):
            if ok:
                self._metrics.observe_stage(mention, "routed")
                self._count_queued(mention)

    def _queue_record(self, mention: Mention, event: EventT) -> Outgoing:
        return Outgoing(
            self._topics.needs_response,
            mention.id.encode(),
            encode_mention(mention),
            event_origin(event),
        )

    def _count_queued(self, mention: Mention) -> None:
        routing, classification = mention.routing, mention.classification
        if routing is None or classification is None:  # pragma: no cover - set above
            return
        self._metrics.needs_response.labels(
            priority=routing.priority or "none",
            team=routing.team or "none",
            label=classification.label,
        ).inc()


def _label(mention: Mention) -> str:
    return mention.classification.label if mention.classification else "none"


def register(
    app: faust.App,
    source: faust.TopicT,
    stage: RouteStage,
    *,
    batch_size: int,
    batch_window_s: float,
) -> faust.types.AgentT:
    """Add the ``route_mentions`` agent to ``app``, reading ``source`` in batches."""

    async def route_mentions(stream: StreamT) -> None:
        # StreamT (the interface) does not declare take_events; Faust passes a Stream.
        async for events in cast(faust.Stream, stream).take_events(
            batch_size, within=batch_window_s
        ):
            # Events are acked by take_events when this body returns (see agents/classify.py).
            try:
                await stage.process(events)
            except Exception as exc:  # noqa: BLE001 - last resort: never crash the agent
                log.exception("route batch of %d failed unexpectedly", len(events))
                await stage.outputs.dead_letter_batch(STAGE, events, exc)

    return app.agent(source, name="route_mentions")(route_mentions)
