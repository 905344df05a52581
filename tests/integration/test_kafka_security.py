"""Kafka with TLS and SASL/SCRAM: replay -> worker -> the queue, every client over SASL_SSL.

The suite's broker gets no security; this module starts its own with an extra
SASL_SSL listener: a throwaway CA and broker certificate made with keytool,
and a SCRAM-SHA-512 user created by Kafka's storage tool at format time
(``listener/kafka_local.py``). Clients are given only the SASL_SSL address
(``localhost:<port>``, the name on the certificate), so the broker's metadata
points them at that listener alone: the worker (Faust/aiokafka, its admin,
delivery and lag clients) and ``replay`` (kafka-python) must speak SASL_SSL
or fail. A wrong password, or a CA the client does not trust, must stop
``replay`` and the worker at once with a message that names the cause.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from integration.helpers import ROOT, Worker, make_posts, needing_response
from listener.kafka_local import KafkaBroker, SaslSslListener, free_ports, throwaway_tls
from listener.settings import KafkaSettings
from listener.topics import TopicNames

USER, PASSWORD = "brand-listener", "scram-secret-0f9a"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSettings]:
    """A broker with a SASL_SSL listener, and the client settings that reach it."""
    tmp = tmp_path_factory.mktemp("sasl-ssl")
    tls = throwaway_tls(tmp / "pki")
    port, controller, secure = free_ports(3)
    listener = SaslSslListener(secure, tls, ((USER, PASSWORD),))
    broker = KafkaBroker(tmp / "kafka", port=port, controller_port=controller, sasl_ssl=listener)
    broker.start(die_with_parent=True)
    try:
        yield KafkaSettings(
            bootstrap_servers=f"localhost:{secure}",
            topic_prefix="sec.",
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=USER,
            sasl_password=PASSWORD,
            ssl_cafile=tls.ca_file,
        )
    finally:
        broker.stop()


def environment(prefix: str, kafka: KafkaSettings) -> dict[str, str]:
    """``kafka`` as the nested environment variables of one process's settings root."""
    assert kafka.sasl_password is not None and kafka.ssl_cafile is not None
    return {
        f"{prefix}_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        f"{prefix}_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        f"{prefix}_KAFKA__SECURITY_PROTOCOL": kafka.security_protocol,
        f"{prefix}_KAFKA__SASL_MECHANISM": kafka.sasl_mechanism,
        f"{prefix}_KAFKA__SASL_USERNAME": str(kafka.sasl_username),
        f"{prefix}_KAFKA__SASL_PASSWORD": kafka.sasl_password.get_secret_value(),
        f"{prefix}_KAFKA__SSL_CAFILE": str(kafka.ssl_cafile),
    }


def replay(
    path: Path, kafka: KafkaSettings, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``brand-listener replay FILE`` with the settings in its environment only."""
    env = {**os.environ, **environment("LISTENER", kafka)}
    command = [sys.executable, "-m", "agents.commands.cli", "replay", str(path), "--no-progress"]
    return subprocess.run(  # noqa: S603 - our own CLI
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def ids_in(kafka: KafkaSettings, topic: str, want: int, timeout: float = 90) -> set[str]:
    """Mention ids in ``topic``, read over the secured listener until ``want`` or the timeout."""
    consumer = KafkaConsumer(enable_auto_commit=False, **kafka.kafka_python())
    found: set[str] = set()
    try:
        deadline = time.monotonic() + timeout
        while len(found) < want and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.5)
                continue
            tps = [TopicPartition(topic, p) for p in partitions]
            if set(tps) != consumer.assignment():
                consumer.assign(tps)
                consumer.seek_to_beginning(*tps)
            for records in consumer.poll(timeout_ms=500).values():
                found.update(str(orjson.loads(r.value)["id"]) for r in records)
        return found
    finally:
        consumer.close()


def test_replay_worker_and_queue_work_over_sasl_ssl(
    secured: KafkaSettings,
    classifier,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    posts = make_posts("sec", 30)
    path = tmp_path / "posts.jsonl"
    path.write_bytes(b"".join(orjson.dumps(p.model_dump(mode="json")) + b"\n" for p in posts))
    topics = TopicNames(prefix=secured.topic_prefix)
    worker = Worker(tmp_path, secured.bootstrap_servers, topics, "sec-workers")
    worker.env.update(environment("AGENTS", secured))
    worker.start()
    try:
        done = replay(path, secured)
        assert done.returncode == 0, done.stderr
        assert "30" in done.stdout  # the summary counts the posts it sent
        classified = ids_in(secured, topics.classified, len(posts))
        assert classified == {p.id for p in posts}
        expected = needing_response(classifier, posts)
        assert expected, "the sample has posts that need a response"
        assert ids_in(secured, topics.needs_response, len(expected)) == expected
    finally:
        worker.kill()
    assert "(SASL_SSL)" in worker.tail(200), "the worker says how it connects"


def test_a_wrong_password_stops_replay_and_the_worker_at_once(
    secured: KafkaSettings, tmp_path: Path
) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(orjson.dumps(make_posts("bad", 1)[0].model_dump(mode="json")) + b"\n")
    wrong = secured.override(sasl_password="not-the-password")

    started = time.monotonic()
    done = replay(path, wrong)
    assert done.returncode != 0
    assert time.monotonic() - started < 30, "fails fast, not after retrying"
    assert f"refused user '{USER}' (SCRAM-SHA-512)" in done.stderr, done.stderr
    assert "not-the-password" not in done.stderr + done.stdout

    env = {**os.environ, **environment("AGENTS", wrong), "AGENTS_DATA_DIR": str(tmp_path / "d")}
    started = time.monotonic()
    worker = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "agents.worker"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert worker.returncode == 2, worker.stdout + worker.stderr
    assert time.monotonic() - started < 30
    assert f"refused user '{USER}'" in worker.stderr


def test_a_broker_certificate_the_client_does_not_trust_is_named(
    secured: KafkaSettings, tmp_path: Path
) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(orjson.dumps(make_posts("ca", 1)[0].model_dump(mode="json")) + b"\n")
    other_ca = throwaway_tls(tmp_path / "other-pki").ca_file  # a CA that did not sign it
    done = replay(path, secured.override(ssl_cafile=other_ca))
    assert done.returncode != 0
    assert "TLS with Kafka at" in done.stderr and "certificate verify failed" in done.stderr
