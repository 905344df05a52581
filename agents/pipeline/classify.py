"""The ``classify_mentions`` agent: mentions.raw -> intent classifier -> mentions.classified.

The classified topic is keyed by the author (:func:`listener.record.classified_key`),
not by Mention id: the route agent keeps each author's vetting window in a
table keyed the same way, so an author's posts and state meet on one worker.

Delivery: at-least-once. :meth:`ClassifyStage.process` returns only once Kafka
has acknowledged every classified record and dead letter of the batch
(:meth:`~agents.runtime.app.Outputs.deliver`); :func:`agents.runtime.batches.run_batches` acks
the batch only then, and :mod:`agents.runtime.commits` commits only contiguous acked
offsets. If Kafka refuses even the dead letters, ``deliver`` keeps retrying:
the agent stalls (backpressure) rather than ack what it could not deliver. A
crash (kill -9) loses nothing: un-committed offsets are read again, and
duplicates are absorbed downstream by ``Mention.id``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor

import faust
from faust.types import EventT, StreamT

from agents.observability.metrics import AgentMetrics
from agents.runtime.app import Failure, Outgoing, Outputs, event_origin, event_value
from agents.runtime.batches import run_batches
from listener.record import (
    LABELS,
    Classification,
    Mention,
    classified_key,
    decode_mention,
    encode_mention,
)
from listener.topics import TopicNames
from models.interface import IntentClassifier, Prediction
from models.post_kind import post_kind_of_mention

log = logging.getLogger(__name__)

STAGE = "classify"


class ClassifyStage:
    """Classifies one batch of raw events and hands the results to :class:`Outputs`.

    Args:
        classifier: The intent model; ``predict`` runs on ``executor``.
        outputs: Where classified mentions and dead letters go.
        metrics: The worker's metrics.
        executor: Runs inference off the event loop (one thread: the model
            parallelises internally).
        topics: Topic names.
        thresholds_by_source: Source -> needs_response threshold replacing the
            model's for that source's posts (:func:`decided_at`).
    """

    def __init__(
        self,
        classifier: IntentClassifier,
        outputs: Outputs,
        metrics: AgentMetrics,
        executor: Executor,
        topics: TopicNames,
        thresholds_by_source: Mapping[str, float] | None = None,
    ) -> None:
        self._classifier = classifier
        self._outputs = outputs
        self._metrics = metrics
        self._executor = executor
        self._topics = topics
        self._thresholds = dict(thresholds_by_source or {})

    @property
    def outputs(self) -> Outputs:
        """Where this stage's records and dead letters go."""
        return self._outputs

    async def process(self, events: Sequence[EventT]) -> None:
        """Decode, classify and produce ``events``; returns once Kafka has them all."""
        failures: list[Failure] = []
        decoded: list[tuple[EventT, Mention]] = []
        for event in events:
            try:
                decoded.append((event, decode_mention(event_value(event))))
            except Exception as exc:  # noqa: BLE001 - one bad event is dead-lettered
                failures.append(Failure.of(event, exc))
        outgoing: list[Outgoing] = []
        classified: list[Mention] = []
        if decoded:
            predictions = await self._predict(
                [m.text for _, m in decoded], [post_kind(m) for _, m in decoded], decoded, failures
            )
            for (event, mention), prediction in zip(decoded, predictions, strict=False):
                try:
                    done = self._classified(mention, prediction)
                    outgoing.append(
                        Outgoing(
                            self._topics.classified,
                            classified_key(mention),
                            encode_mention(done),
                            event_origin(event),
                        )
                    )
                    classified.append(done)
                except Exception as exc:  # noqa: BLE001 - one bad event is dead-lettered
                    failures.append(Failure.of(event, exc, reason="classification"))
        delivered = await self._outputs.deliver(STAGE, outgoing, failures)
        for mention, ok in zip(classified, delivered, strict=True):
            if ok:
                self._metrics.observe_stage(mention, "classified")

    async def _predict(
        self,
        texts: list[str],
        kinds: list[str],
        decoded: list[tuple[EventT, Mention]],
        failures: list[Failure],
    ) -> list[Prediction]:
        """Run the model on ``texts`` off the loop; on failure dead-letter the whole batch."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            predictions = await loop.run_in_executor(
                self._executor, functools.partial(self._classifier.predict, texts, kinds)
            )
            if len(predictions) != len(texts):
                raise RuntimeError(
                    f"classifier returned {len(predictions)} predictions for {len(texts)} texts"
                )
        except Exception as exc:  # noqa: BLE001 - the batch is dead-lettered, the agent goes on
            log.exception("classifier failed on a batch of %d", len(texts))
            failures.extend(Failure.of(event, exc, reason="classification") for event, _ in decoded)
            return []
        self._metrics.classifier_batch_seconds.observe(time.perf_counter() - started)
        self._metrics.classifier_batch_size.observe(len(texts))
        return predictions

    def _classified(self, mention: Mention, prediction: Prediction) -> Mention:
        decided = decided_at(prediction, self._thresholds.get(mention.source))
        classification = classification_of(decided, self._classifier.name)
        return mention.with_stage("classified", classification=classification)


def decided_at(prediction: Prediction, threshold: float | None) -> Prediction:
    """``prediction`` with its needs_response decision taken at ``threshold`` instead.

    A source's own threshold (``model.needs_response_threshold_by_source``)
    replaces the model's calibrated one; a prediction without a calibrated
    decision, or without a score, is left as it is (the router then uses its
    confidence fallback), and so is every prediction when ``threshold`` is None.
    """
    if threshold is None or prediction.needs_response is None:
        return prediction
    if prediction.needs_response_score is None:
        return prediction
    return prediction._replace(needs_response=prediction.needs_response_score >= threshold)


def post_kind(mention: Mention) -> str:
    """Where ``mention`` sits in its thread, as the model reads it (``models/post_kind.py``).

    ``reply_to_brand`` when it answers one of the brand's own posts (the listener's
    ``signals["reply_to_own_account"]``), ``comment`` when it answers any other post,
    ``review`` for a review source's post, ``post`` for a thread opener of a source
    that reports replies, else ``unknown``. A model trained without a kind reads it
    as unknown.
    """
    return post_kind_of_mention(
        mention.source,
        mention.reply_to_id,
        replies_to_brand=bool(mention.signals.get("reply_to_own_account")),
    )


def classification_of(prediction: Prediction, model: str) -> Classification:
    """The record's :class:`~listener.record.Classification` of one prediction.

    Carries the model's calibrated needs_response decision and score when the
    prediction has them (the router prefers them to its confidence threshold).

    Args:
        prediction: One post's prediction.
        model: ``name@version`` of the classifier.

    Raises:
        pydantic.ValidationError: The prediction lacks a label's score or has an
            unknown label.
    """
    score = prediction.needs_response_score
    return Classification.model_validate(
        {
            "label": prediction.label,
            "scores": {label: float(prediction.scores[label]) for label in LABELS},
            "model": model,
            "needs_response": prediction.needs_response,
            # float32 sums may overshoot 1.0 by an ulp or two
            "needs_response_score": None if score is None else min(1.0, max(0.0, float(score))),
        }
    )


def register(
    app: faust.App,
    source: faust.TopicT,
    stage: ClassifyStage,
    *,
    batch_size: int,
    batch_window_s: float,
) -> faust.types.AgentT:
    """Add the ``classify_mentions`` agent to ``app``, reading ``source`` in batches."""

    async def classify_mentions(stream: StreamT) -> None:
        await run_batches(
            stream,
            stage=STAGE,
            process=stage.process,
            dead_letter=stage.outputs.dead_letter_batch,
            batch_size=batch_size,
            within_s=batch_window_s,
        )

    return app.agent(source, name="classify_mentions")(classify_mentions)
