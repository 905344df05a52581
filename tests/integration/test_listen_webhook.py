"""Signed webhook POST -> ``listen`` -> real Kafka: 200 only once produced; bad signature -> 401."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry

from listener.connectors.webhook import decode_secret, sign
from listener.kafka_local import free_ports
from listener.listen import listen, load_settings
from listener.record import Mention, decode_mention
from listener.topics import TopicNames

pytestmark = pytest.mark.timeout(120)
SECRET = "whsec_" + base64.b64encode(b"integration-secret-0123456789abc").decode()


def signed(body: bytes, msg_id: str, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": sign(decode_secret(secret), msg_id, ts, body),
        "content-type": "application/json",
    }


def post_body(pid: str, text: str) -> bytes:
    return orjson.dumps({"type": "mention.created", "data": {"id": pid, "text": text}})


def read_all(bootstrap: str, topic: str, group_id: str) -> list[Mention]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
    )
    try:
        return [decode_mention(r.value) for r in consumer]
    finally:
        consumer.close()


def test_signed_post_is_in_raw_before_the_200_and_forgeries_are_401(
    tmp_path: Path, kafka_bootstrap: str, topics: TopicNames, group_id: str
) -> None:
    (port,) = free_ports(1)
    config = tmp_path / "listen.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"cursor_dir": str(tmp_path / "cursors"), "metrics_port": None},
                "brands": [{"name": "acme", "keywords": ["acme"]}],
                "connectors": {"webhook": {"host": "127.0.0.1", "port": port, "secrets": [SECRET]}},
            }
        )
    )
    settings = load_settings(config, bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix)
    url = f"http://127.0.0.1:{port}/webhooks/mentions"

    async def go() -> tuple[int, list[int], int]:
        task = asyncio.create_task(listen(settings, registry_=CollectorRegistry()))
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(100):  # the endpoint binds on the runner's first poll
                    try:
                        async with session.post(url, data=b"{}") as r:
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
                forged = post_body("forged", "acme forged complaint")
                wrong = "whsec_" + base64.b64encode(b"w" * 32).decode()
                async with session.post(url, data=forged, headers=signed(forged, "m0", wrong)) as r:
                    forged_status = r.status
                good = post_body("p1", "Acme, my order never arrived")
                statuses = []
                for _ in range(2):  # the second is the sender's retry: idempotent 200
                    async with session.post(url, data=good, headers=signed(good, "m1")) as r:
                        statuses.append(r.status)
                # Kafka acknowledged before the 200: the record is there right away.
                here = await asyncio.to_thread(read_all, kafka_bootstrap, topics.raw, group_id)
                assert [m.id for m in here] == ["webhook:p1"]
                assert here[0].brands == ("acme",)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            status = await asyncio.wait_for(task, 30)
        return forged_status, statuses, status

    forged_status, statuses, exit_status = asyncio.run(go())
    assert forged_status == 401
    assert statuses == [200, 200]
    assert exit_status == 0
