"""Real Apache Kafka broker fixtures, started once per test session and shared by every suite.

The broker is the project's own tooling (:mod:`listener.kafka_local`): official jars from
Maven Central, single-node KRaft, on free loopback ports, in a temporary data directory.
It is never skipped: if it cannot start, the tests that need it error with the reason.

Fixtures other tests use:
    kafka_bootstrap: ``"127.0.0.1:<port>"`` of the session broker.
    kafka_broker: the :class:`~listener.kafka_local.KafkaBroker` itself.
    topics: a :class:`~listener.topics.TopicNames` with a unique prefix, its five topics created.
    group_id: a unique consumer group id.
"""

from __future__ import annotations

import atexit
import uuid
from collections.abc import Iterator

import pytest

from listener.kafka_admin import create_topics
from listener.kafka_local import KafkaBroker, KafkaLocalError, free_ports
from listener.topics import TopicNames

TOPIC_PARTITIONS = 4


def start_broker(tmp_path_factory: pytest.TempPathFactory, name: str = "kafka") -> KafkaBroker:
    """Start a broker on fresh free ports; a few tries, as another process may grab a port."""
    error: KafkaLocalError | None = None
    for _ in range(3):
        port, controller_port = free_ports(2)
        broker = KafkaBroker(
            tmp_path_factory.mktemp(name), port=port, controller_port=controller_port
        )
        atexit.register(broker.stop)  # also stops it if pytest exits without finalizers
        try:
            # die_with_parent: the kernel stops the JVM even if pytest itself is killed.
            broker.start(timeout=120, die_with_parent=True)
            return broker
        except KafkaLocalError as exc:
            atexit.unregister(broker.stop)
            if "already in use" not in str(exc):
                raise
            error = exc
    assert error is not None
    raise error


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = start_broker(tmp_path_factory)
    try:
        yield broker
    finally:
        broker.stop()
        atexit.unregister(broker.stop)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def topics(kafka_bootstrap: str) -> TopicNames:
    names = TopicNames(prefix=f"t{uuid.uuid4().hex[:8]}.")
    create_topics(kafka_bootstrap, names.all(), partitions=TOPIC_PARTITIONS)
    return names


@pytest.fixture
def group_id() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"
