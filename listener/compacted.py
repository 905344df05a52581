"""A compacted Kafka topic mirrored in memory: read whole, caught up on demand, written durably.

The keyed, latest-value-wins topics (the sink ledger, the inbox's action
records) are read the same way: a kafka-python consumer with no group,
assigned every partition and read from the start to the end offsets; read
again incrementally before a decision that needs the newest state
(:meth:`CompactedTopic.catch_up`); written with ``acks=all`` and
idempotence, returning only once Kafka has the record. Each user keeps its
own index of the records (``on_record``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from listener.kafka_admin import COMPACTED, create_topics
from listener.settings import KafkaConnection, kafka_settings_of

OnRecord = Callable[[str, bytes | None], None]
"""Called with each record's key (decoded) and value (None for a tombstone)."""


class CompactedTopic:
    """One compacted topic, mirrored through ``on_record``.

    Args:
        kafka: The cluster (:data:`listener.settings.KafkaConnection`).
        topic: The topic (created compacted if missing).
        on_record: Takes every record read, in offset order per partition.
        partitions: Partitions to create the topic with.
        replication: Replication factor to create it with.
        timeout_s: Longest wait for the topic's metadata and for a write's ack.
        client_id: Kafka client id of the producer.
    """

    def __init__(
        self,
        kafka: KafkaConnection,
        topic: str,
        on_record: OnRecord,
        *,
        partitions: int = 4,
        replication: int = 1,
        timeout_s: float = 30.0,
        client_id: str = "brand-listener",
    ) -> None:
        self.topic = topic
        self._kafka = kafka_settings_of(kafka)
        self._on_record = on_record
        self._partitions = partitions
        self._replication = replication
        self._timeout_s = timeout_s
        self._client_id = client_id
        self._producer: KafkaProducer | None = None
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()  # one kafka-python consumer, never used by two threads

    def start(self) -> None:
        """Create the topic if missing, open the clients and read it whole (blocking)."""
        create_topics(
            self._kafka,
            [self.topic],
            self._partitions,
            replication_factor=self._replication,
            configs=COMPACTED,
        )
        self._producer = KafkaProducer(
            **self._kafka.kafka_python(),
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            client_id=self._client_id,
        )
        self._consumer = KafkaConsumer(
            **self._kafka.kafka_python(),
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        self.catch_up()

    def catch_up(self) -> None:
        """Read what was produced since the last read, up to the end offsets (blocking)."""
        with self._lock:
            consumer = self._consumer
            if consumer is None:
                raise RuntimeError(f"{self.topic}: start() was not called")
            deadline = time.monotonic() + self._timeout_s
            partitions = consumer.partitions_for_topic(self.topic)
            while not partitions and time.monotonic() < deadline:
                time.sleep(0.2)
                partitions = consumer.partitions_for_topic(self.topic)
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions or ())]
            if set(tps) != consumer.assignment():
                consumer.assign(tps)
                consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            while any(consumer.position(tp) < end for tp, end in ends.items()):
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        if record.key is not None:
                            self._on_record(record.key.decode("utf-8", "replace"), record.value)

    def send(self, key: str, value: bytes, topic: str | None = None) -> None:
        """Produce ``value`` under ``key`` (to ``topic``, default this one); return once acked.

        Raises:
            kafka.errors.KafkaError: Kafka did not take the record in time.
        """
        producer = self._producer
        if producer is None:
            raise RuntimeError(f"{self.topic}: start() was not called")
        future = producer.send(topic or self.topic, key=key.encode("utf-8"), value=value)
        future.get(timeout=self._timeout_s)

    def close(self) -> None:
        """Flush and close the clients."""
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
