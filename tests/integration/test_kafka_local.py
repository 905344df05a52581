"""The local Kafka tooling against real brokers: round trip, persistence, clear errors."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from listener.kafka_admin import create_topics
from listener.kafka_local import KafkaBroker, KafkaLocalError, free_ports
from listener.topics import TopicNames


def produce(bootstrap: str, topic: str, *records: tuple[bytes, bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def consume(
    bootstrap: str, topic: str, group_id: str | None, count: int
) -> list[tuple[bytes, bytes]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    got: list[tuple[bytes, bytes]] = []
    try:
        for message in consumer:
            got.append((message.key, message.value))
            if len(got) >= count:
                break
        if group_id is not None:
            consumer.commit()
    finally:
        consumer.close()
    return got


def test_round_trip_on_session_broker(
    kafka_bootstrap: str, topics: TopicNames, group_id: str
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = {t["name"]: t for t in admin.describe_topics(list(topics.all()))}
    finally:
        admin.close()
    assert set(described) == set(topics.all())
    assert all(len(t["partitions"]) == 4 for t in described.values())

    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(5)]
    produce(kafka_bootstrap, topics.raw, *records)
    assert sorted(consume(kafka_bootstrap, topics.raw, group_id, len(records))) == records


def test_create_topics_is_idempotent(kafka_bootstrap: str, topics: TopicNames) -> None:
    extra = f"{topics.prefix}extra"
    assert create_topics(kafka_bootstrap, [topics.raw, extra], partitions=2) == [extra]
    assert create_topics(kafka_bootstrap, [topics.raw, extra], partitions=2) == []


def test_restart_keeps_topics_and_messages(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    broker = KafkaBroker(tmp_path / "kafka", port=port, controller_port=controller_port)
    try:
        broker.start(die_with_parent=True)
        cluster_id = (broker.log_dir / "meta.properties").read_text()
        create_topics(broker.bootstrap, ["persisted"], partitions=1)
        produce(broker.bootstrap, "persisted", (b"k", b"survives a restart"))
        assert broker.stop()
        assert not broker.is_running() and not broker.pid_file.exists()

        broker.start(die_with_parent=True)
        assert (broker.log_dir / "meta.properties").read_text() == cluster_id  # not reformatted
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            assert "persisted" in admin.list_topics()
        finally:
            admin.close()
        assert consume(broker.bootstrap, "persisted", None, 1) == [(b"k", b"survives a restart")]
    finally:
        broker.stop()
    assert "Kafka Server started" in broker.log_file.read_text()


@pytest.mark.parametrize("which", ["port", "controller_port"])
def test_start_names_the_port_already_taken(tmp_path: Path, which: str) -> None:
    port, controller_port = free_ports(2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port if which == "port" else controller_port))
        holder.listen()
        broker = KafkaBroker(tmp_path / "kafka", port=port, controller_port=controller_port)
        with pytest.raises(KafkaLocalError) as excinfo:
            broker.start()
    taken = port if which == "port" else controller_port
    assert f"127.0.0.1:{taken} is already in use" in str(excinfo.value)
    assert not broker.is_running()


def test_broker_that_dies_while_starting_shows_its_log(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    broker = KafkaBroker(tmp_path / "kafka", port=port, controller_port=controller_port)
    assert broker.format()
    assert not broker.format()  # already formatted: left alone
    meta = broker.log_dir / "meta.properties"
    meta.write_text(re.sub(r"node\.id=1", "node.id=2", meta.read_text()))  # data of another node
    with pytest.raises(KafkaLocalError, match="exited with code 1") as excinfo:
        broker.start(die_with_parent=True)
    assert "Stored node id 2 doesn't match" in str(excinfo.value)
    assert not broker.is_running() and not broker.pid_file.exists()
