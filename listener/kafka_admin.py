"""Kafka administration for every process: create topics, count partitions (kafka-python).

The one home of topic creation: the worker (its topics before it subscribes),
the corrections commands, the sink ledger and the local-broker tooling
(``listener/kafka_local.py``, dev only) all call :func:`create_topics`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
from collections.abc import Iterable
from typing import Any

from listener.errors import FatalError
from listener.settings import KafkaConnection, KafkaSettings, kafka_settings_of

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


class KafkaSecurityError(FatalError):
    """Kafka refused the configured TLS or SASL settings: stop with this message, do not retry."""


async def probe_security(kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
    """Fail fast on TLS or SASL settings Kafka refuses; return once a broker accepted them.

    Opens one connection to a bootstrap broker (TLS handshake and SASL login
    only, aiokafka) and closes it. kafka-python's clients report wrong
    credentials only as "unable to bootstrap" after their timeout; this names
    the cause at once. Unreachable brokers are not an error here: the clients
    wait and retry for those as they always did. PLAINTEXT: nothing to check.

    Raises:
        KafkaSecurityError: Wrong SASL credentials or mechanism, or a broker
            certificate that does not verify against ``ssl_cafile`` (or its name).
    """
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

    if kafka.security_protocol == "PLAINTEXT":
        return
    config = kafka.aiokafka()
    config.pop("bootstrap_servers")
    for server in kafka.bootstrap_list():
        host, _, port = server.rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000), **config),
                timeout_s,
            )
        except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
            raise KafkaSecurityError(
                f"Kafka at {server} refused user {kafka.sasl_username!r} "
                f"({kafka.sasl_mechanism}): {exc}; check the kafka block's sasl_username, "
                "sasl_password and sasl_mechanism"
            ) from exc
        except ssl.SSLError as exc:
            detail = exc.reason or str(exc)
            if isinstance(exc, ssl.SSLCertVerificationError):
                detail = f"certificate verify failed: {exc.verify_message}"
            raise KafkaSecurityError(
                f"TLS with Kafka at {server} failed: {detail}; check ssl_cafile (the "
                "CA that signed the broker's certificate) and that the certificate names "
                f"{host!r} (ssl_check_hostname)"
            ) from exc
        except (TimeoutError, OSError, KafkaError):
            continue  # unreachable: try the next one; the clients wait and retry
        conn.close()
        return


def check_security(kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
    """:func:`probe_security` from synchronous code (in a thread of its own under a loop)."""
    if kafka.security_protocol == "PLAINTEXT":
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(probe_security(kafka, timeout_s))
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, probe_security(kafka, timeout_s)).result()
