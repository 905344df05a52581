from __future__ import annotations

import pytest
from pydantic import ValidationError

from listener.settings import KafkaSettings, ListenerSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LISTENER_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    kafka = ListenerSettings().kafka
    assert kafka.bootstrap_servers == "127.0.0.1:9092"
    assert kafka.topic_prefix == ""
    assert kafka.topics.raw == "mentions.raw"


def test_flat_and_nested_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTENER_KAFKA_TOPIC_PREFIX", "acme.")
    monkeypatch.setenv("LISTENER_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    kafka = ListenerSettings().kafka
    assert kafka.topic_prefix == "acme."
    assert kafka.topics.dead_letter == "acme.mentions.dead-letter"
    assert kafka.bootstrap_list() == ["k1:9092", "k2:9092"]


def test_frozen() -> None:
    kafka = KafkaSettings()
    with pytest.raises(ValidationError):
        kafka.topic_prefix = "x"  # type: ignore[misc]


def test_override_validates_and_ignores_none() -> None:
    kafka = KafkaSettings(client_id="me")
    changed = kafka.override(bootstrap_servers="h:1", topic_prefix=None)
    assert (changed.bootstrap_servers, changed.topic_prefix, changed.client_id) == ("h:1", "", "me")
    with pytest.raises(ValidationError):
        kafka.override(bootstrap_timeout_s=0)
