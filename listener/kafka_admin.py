"""Kafka administration for every process: create topics, count partitions (kafka-python).

The one home of topic creation: the worker (its topics before it subscribes),
the corrections commands, the sink ledger and the local-broker tooling
(``listener/kafka_local.py``, dev only) all call :func:`create_topics`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from listener.settings import KafkaConnection, kafka_settings_of

COMPACTED: dict[str, str] = {"cleanup.policy": "compact"}
"""Topic config of the keyed, latest-value-wins topics (corrections, sink ledger)."""


def admin_client(kafka: KafkaConnection, timeout_ms: int, client_id: str = "brand-listener") -> Any:
    """A kafka-python admin client with one timeout for bootstrap and requests."""
    from kafka import KafkaAdminClient  # imported late: heavy

    timeouts = {"request_timeout_ms": timeout_ms, "bootstrap_timeout_ms": timeout_ms}
    connection = kafka_settings_of(kafka).kafka_python()
    return KafkaAdminClient(client_id=client_id, **connection, **timeouts)


def create_topics(
    kafka: KafkaConnection,
    names: Iterable[str],
    partitions: int = 4,
    *,
    replication_factor: int = 1,
    configs: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> list[str]:
    r"""Create topics, leaving existing ones as they are; wait until each partition has a leader.

    Args:
        kafka: The cluster: the process's Kafka settings, or bootstrap ``host:port``\(s).
        names: Topic names.
        partitions: Partitions for each new topic.
        replication_factor: Replicas per partition (1 on the local broker).
        configs: Topic-level configs, e.g. :data:`COMPACTED`.
        timeout: Seconds to wait for the broker.

    Returns:
        The names that were created by this call.

    Raises:
        kafka.errors.KafkaError: The broker refused a topic for another reason than that it exists.
    """
    from kafka.errors import TopicAlreadyExistsError

    wanted = list(dict.fromkeys(names))
    spec = {"num_partitions": partitions, "replication_factor": replication_factor}
    ms = int(timeout * 1000)
    created = []
    admin = admin_client(kafka, ms)
    try:
        for name in wanted:  # one request each: an existing topic fails only its own request
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics({name: {**spec, "configs": dict(configs or {})}}, timeout_ms=ms)
                created.append(name)
        admin.wait_for_topics(wanted, timeout_ms=ms)
        return created
    finally:
        admin.close()


def partition_counts(kafka: KafkaConnection, names: Iterable[str]) -> dict[str, int]:
    """The number of partitions of each topic (0 for a missing one)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        client_id="brand-listener-admin",
        enable_auto_commit=False,
        **kafka_settings_of(kafka).kafka_python(),
    )
    try:
        return {name: len(consumer.partitions_for_topic(name) or ()) for name in names}
    finally:
        consumer.close()
