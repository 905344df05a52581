"""The worker: build the pipeline (app, agents, views, delivery) and run it.

:func:`build_worker` wires everything explicitly (no autodiscovery, no
module-level app), so tests can build several pipelines in one process.
:func:`run_worker` creates the topics, then runs Faust's ``Worker``
(:class:`~agents.runtime.faust_worker.QuietWorker`), whose SIGTERM/SIGINT
handlers stop the app gracefully. The command line is
:mod:`agents.commands.worker`; ``python -m agents.worker`` runs it.
"""

from __future__ import annotations

import functools
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import AgentT
from prometheus_client import REGISTRY, CollectorRegistry

from agents.delivery import service as delivery_service
from agents.observability import observe
from agents.observability.metrics import AgentMetrics, create, register_views
from agents.pipeline import classify, detect, route
from agents.pipeline.dedup import CopyDedup
from agents.pipeline.rules import RULES, SLA
from agents.pipeline.rules_file import RuleTable, load_rules
from agents.pipeline.spikes import SpikeDetector
from agents.pipeline.tables import JsonState, Sweeper, owned_by, state_table
from agents.pipeline.vetting import AuthorVetter, VettingSettings, register_spam_marks
from agents.queue import corrections
from agents.runtime import recovery_watchdog
from agents.runtime.app import (
    Outputs,
    PipelineTopics,
    SendFn,
    bind_topics,
    create_app,
    declare_outputs,
    kafka_sender,
)
from agents.runtime.faust_worker import QuietWorker
from agents.runtime.shutdown import ShutdownDeadline
from agents.settings import AgentSettings, ModelSettings
from listener.kafka_admin import check_security
from listener.logs import logging_config
from models.interface import IntentClassifier

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A built worker: the app and everything attached to it."""

    app: faust.App
    topics: PipelineTopics
    metrics: AgentMetrics
    classify_agent: AgentT
    route_agent: AgentT
    executor: ThreadPoolExecutor
    delivery: delivery_service.DeliveryService | None = None
    spikes: detect.SpikeStage | None = None

    def close(self) -> None:
        """Release the classifier thread (after the app has stopped)."""
        self.executor.shutdown(wait=True, cancel_futures=True)


def build_worker(
    settings: AgentSettings,
    classifier: IntentClassifier,
    registry: CollectorRegistry,
    *,
    send: SendFn | None = None,
) -> Pipeline:
    """Build the app with the classify and route agents, metrics, web views and delivery.

    Delivery to the sinks (:mod:`agents.delivery.service`) is attached only
    when ``settings.sinks`` has at least one block.

    Args:
        settings: Worker settings.
        classifier: The intent model.
        registry: Where the metrics are registered (a fresh one per pipeline in tests).
        send: How records are produced; defaults to the app's Kafka topics. Unit
            tests pass an in-memory recorder.
    """
    app = create_app(settings)
    names = settings.topics
    topics = bind_topics(app, names, settings.kafka.topic_partitions)
    declare_outputs(app, topics)
    metrics = create(registry)
    metrics.classifier_info.labels(
        model=classifier.name,
        provider=classifier_device(classifier),
        parallel_runs=str(getattr(classifier, "parallel_runs", 1)),
    ).set(1)
    outputs = Outputs(send or kafka_sender(topics), names, metrics)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classifier")
    classify_agent = classify.register(
        app,
        topics.raw,
        classify.ClassifyStage(
            classifier,
            outputs,
            metrics,
            executor,
            names,
            settings.model.needs_response_threshold_by_source,
        ),
        batch_size=settings.batching.size,
        batch_window_s=settings.batching.window_s,
    )
    route_agent = _register_routing(app, settings, topics, outputs, metrics)
    spikes = _register_spikes(app, settings, topics, outputs, metrics)
    register_views(app, registry)
    health_state = observe.attach(app, settings, metrics, outputs)
    watchdog = recovery_watchdog.register(
        app,
        registry,
        interval_s=min(5.0, settings.health.recovery_stall_after_s / 4),
        stall_after_s=settings.health.recovery_stall_after_s,
        max_restarts=settings.health.recovery_restarts,
    )
    health_state.stall_checks.append(lambda: watchdog.stalled)
    corrections.register(
        app, metrics, names, settings.kafka.topic_partitions, outputs.dead_letter_batch
    )
    delivery = delivery_service.register(app, settings, registry)
    return Pipeline(app, topics, metrics, classify_agent, route_agent, executor, delivery, spikes)


def _register_routing(
    app: faust.App,
    settings: AgentSettings,
    topics: PipelineTopics,
    outputs: Outputs,
    metrics: AgentMetrics,
) -> AgentT:
    """Add ``route_mentions`` (with the vetting table) and ``dedup_copies`` (with its table)."""
    names, partitions = settings.topics, settings.kafka.topic_partitions
    batch_size, batch_window_s = settings.batching.size, settings.batching.window_s
    vetter = dedup = None
    if settings.vetting_window_s:
        table = state_table(app, "author-vetting", partitions, "author -> recent posts' facts")
        vetting = VettingSettings(window_s=settings.vetting_window_s)
        marks = state_table(app, "spam-authors", partitions, "author -> marked as spam by")
        vetter = AuthorVetter(vetting, state=JsonState(table), marked=JsonState(marks))
        register_spam_marks(app, names.spam_authors, vetter, partitions, outputs.dead_letter_batch)
    if settings.dedup_window_s:
        table = state_table(app, "copy-campaigns", partitions, "copy text -> first post, count")
        dedup = CopyDedup(settings.dedup_window_s, state=JsonState(table))
    copy_topic = topics.by_copy_text.get_topic_name()
    stage = route.RouteStage(
        outputs,
        metrics,
        names,
        settings.model.needs_response_threshold,
        *routing_rules(settings),
        vetter=vetter,
        dedup=dedup,
        dedup_topic=copy_topic if dedup else None,
    )
    sweep_vetting = None
    if vetter is not None:
        vetting_owned = owned_by(app, names.classified, partitions)
        sweep_vetting = Sweeper("author-vetting", functools.partial(vetter.sweep, vetting_owned))
    route_agent = route.register(
        app,
        topics.classified,
        stage,
        name="route_mentions",
        batch_size=batch_size,
        batch_window_s=batch_window_s,
        sweeper=sweep_vetting,
    )
    if dedup is not None:
        route.register(
            app,
            topics.by_copy_text,
            route.DedupStage(dedup, outputs, metrics, names),
            name="dedup_copies",
            batch_size=batch_size,
            batch_window_s=batch_window_s,
            sweeper=Sweeper(
                "copy-campaigns",
                functools.partial(dedup.sweep, owned_by(app, copy_topic, partitions)),
            ),
        )
    return route_agent


def _register_spikes(
    app: faust.App,
    settings: AgentSettings,
    topics: PipelineTopics,
    outputs: Outputs,
    metrics: AgentMetrics,
) -> detect.SpikeStage | None:
    """Add the spike agents and the ``spike-series`` table, unless spikes are off."""
    if not settings.spikes.enabled:
        return None
    partitions = settings.kafka.topic_partitions
    table = state_table(app, "spike-series", partitions, "brand|label -> windows, incident")
    detector = SpikeDetector(settings.spikes.detector(), state=JsonState(table))
    forward = detect.SpikeForward(detector.watches, outputs, topics.by_brand_label.get_topic_name())
    stage = detect.SpikeStage(detector, outputs, metrics, settings.topics, settings.spikes.brands)
    detect.register(
        app,
        topics.classified,
        topics.by_brand_label,
        forward,
        stage,
        batch_size=settings.batching.size,
        batch_window_s=settings.batching.window_s,
        partitions=partitions,
    )
    return stage


def ensure_topics(settings: AgentSettings, pipeline: Pipeline) -> None:
    """Create the pipeline's topics that do not exist yet, before the consumer subscribes.

    Faust declares the topics it consumes while it subscribes; a topic created
    then is missing from the first assignment ("Ignoring missing topic") and its
    partitions stay unassigned until the next rebalance. Creating every topic
    first (the app's repartition topics on a first start, in particular) avoids that.
    """
    from listener.kafka_admin import COMPACTED, create_topics, partition_counts

    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python's admin is chatty at INFO
    names = [*pipeline.topics.by_name(), settings.topics.acks]
    created = create_topics(
        settings.kafka,
        names,
        settings.kafka.topic_partitions,
        replication_factor=settings.kafka.topic_replication,
    )
    # The tables' changelogs too: a table written before its changelog shows in the
    # consumer's metadata raises PartitionsMismatch (seen on a first start).
    changelogs = [table.changelog_topic.get_topic_name() for table in pipeline.app.tables.values()]
    changelogs.append(settings.topics.spam_authors)  # keyed by author, latest mark wins
    created += create_topics(
        settings.kafka,
        changelogs,
        settings.kafka.topic_partitions,
        replication_factor=settings.kafka.topic_replication,
        configs=COMPACTED,
    )
    # compacted: not created with the defaults above
    corrections.ensure_topic(
        settings.kafka,
        settings.topics,
        settings.kafka.topic_partitions,
        settings.kafka.topic_replication,
    )
    if created:
        log.info("created topics: %s", ", ".join(created))
    keyed = [
        settings.topics.classified,
        settings.topics.spam_authors,
        *(t.get_topic_name() for t in stateful_inputs(pipeline)),
    ]
    wrong = {
        name: count
        for name, count in partition_counts(settings.kafka, keyed).items()
        if count != settings.kafka.topic_partitions
    }
    if wrong:
        raise SystemExit(
            f"topics {wrong} do not have "
            f"AGENTS_KAFKA__TOPIC_PARTITIONS={settings.kafka.topic_partitions} "
            "partitions: the agents' tables are partitioned like their input topics, so the "
            "counts must be equal (set AGENTS_KAFKA__TOPIC_PARTITIONS to the topics' count, or "
            "recreate the topics)"
        )


def stateful_inputs(pipeline: Pipeline) -> tuple[faust.TopicT, ...]:
    """The repartition topics whose records meet their table's key (agents/pipeline/tables.py)."""
    return (pipeline.topics.by_copy_text, pipeline.topics.by_brand_label)


def routing_rules(settings: AgentSettings) -> RuleTable:
    """The rule table and SLA: ``settings.rules_file`` if set, else the built-in ones.

    Raises:
        RulesError: The rules file is unreadable or invalid (the worker does not start).
    """
    if settings.rules_file is None:
        return RULES, dict(SLA)
    return load_rules(settings.rules_file)


def load_classifier(settings: AgentSettings) -> IntentClassifier:
    """The ONNX intent classifier from ``settings.model.dir`` (imported lazily: it is heavy)."""
    from models.runtime import OnnxIntentClassifier

    options: dict[str, Any] = {
        "provider": settings.model.provider,
        "threads": settings.model.threads,
        "threads_per_run": settings.model.threads_per_run,
        "spinning": settings.model.spinning,
    }
    if settings.model.batch_size is not None:
        options["batch_size"] = settings.model.batch_size
    if settings.model.needs_response_decision_threshold is not None:
        options["needs_response_threshold"] = settings.model.needs_response_decision_threshold
    return OnnxIntentClassifier(settings.model.dir, **options)


def classifier_device(classifier: IntentClassifier) -> str:
    """Where the classifier runs (``cpu``/``cuda``; ``unknown`` for one that does not say)."""
    return str(getattr(classifier, "provider", "unknown"))


def decision(classifier: IntentClassifier, model: ModelSettings) -> str:
    """How needs_response is decided, for the start-up log line."""
    threshold = getattr(classifier, "needs_response_threshold", None)
    if threshold is None:
        return (
            f"top-label confidence >= {model.needs_response_threshold:.2f} "
            "(the model has no calibrated threshold)"
        )
    by_source = model.needs_response_threshold_by_source
    sources = ", ".join(f"{s} {t:.4f}" for s, t in sorted(by_source.items()))
    per_source = f"; per source: {sources}" if sources else ""
    whose = (
        "the model's, calibrated"
        if model.needs_response_decision_threshold is None
        else "model.needs_response_decision_threshold"
    )
    return f"score >= {threshold:.4f} ({whose}){per_source}"


def run_worker(settings: AgentSettings) -> int:
    """Run the worker until SIGTERM/SIGINT; returns the exit code."""
    check_security(settings.kafka, settings.kafka.bootstrap_timeout_s)  # before the slow parts
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    classifier = load_classifier(settings)
    pipeline = build_worker(settings, classifier, REGISTRY)
    ensure_topics(settings, pipeline)
    deadline = ShutdownDeadline(settings.shutdown_timeout_s)
    worker = QuietWorker(
        pipeline.app,
        shutdown_deadline=deadline,
        loglevel=settings.loglevel,
        logging_config=logging_config(settings.log_format, settings.loglevel),
        quiet=True,
    )
    log.info(
        "worker %s: %s -> %s -> %s on %s (%s), model %s on %s, needs_response %s, "
        "batch %d/%.3fs, web :%d",
        settings.app_id,
        settings.topics.raw,
        settings.topics.classified,
        settings.topics.needs_response,
        settings.kafka.bootstrap_servers,
        settings.kafka.security_protocol,
        classifier.name,
        classifier_device(classifier),
        decision(classifier, settings.model),
        settings.batching.size,
        settings.batching.window_s,
        settings.health.web_port,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        pipeline.close()
        deadline.cancel()
    return 0  # pragma: no cover - execute_from_commandline always raises SystemExit


if __name__ == "__main__":
    from agents.commands.worker import main

    sys.exit(main())
