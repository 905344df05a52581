from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from listener.settings import KafkaSettings, ListenerSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("LISTENER_", "AGENTS_")):
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


# -- layered loading: flags > YAML > environment > defaults ------------------


def test_load_layers_flags_over_yaml_over_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "listen.yaml"
    config.write_text("kafka:\n  bootstrap_servers: yaml:1\n  topic_prefix: yaml.\n")
    monkeypatch.setenv("LISTENER_KAFKA__TOPIC_PREFIX", "env.")
    monkeypatch.setenv("LISTENER_KAFKA__CLIENT_ID", "from-env")
    settings = ListenerSettings.load(
        config, kafka={"bootstrap_servers": "flag:1", "topic_prefix": None}
    )
    assert settings.kafka.bootstrap_servers == "flag:1"  # flag over YAML
    assert settings.kafka.topic_prefix == "yaml."  # YAML over env; a None flag is no flag
    assert settings.kafka.client_id == "from-env"  # env over default


def test_load_names_a_missing_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        ListenerSettings.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: [1\n")
    with pytest.raises(ValueError, match="not YAML"):
        ListenerSettings.load(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        ListenerSettings.load(bad)


def test_unknown_keys_are_errors_not_silently_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTENER_KAFKA__BOOTSTRAP_SERVER", "typo:1")
    with pytest.raises(ValidationError, match="bootstrap_server"):
        ListenerSettings()


def test_flat_names_of_earlier_releases_still_work_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from agents.settings import AgentSettings

    monkeypatch.setenv("AGENTS_BATCH_SIZE", "32")
    monkeypatch.setenv("AGENTS_KAFKA__TOPIC_PREFIX", "new.")
    monkeypatch.setenv("AGENTS_TOPIC_PREFIX", "old.")  # the nested name wins over the flat one
    config = tmp_path / "worker.yaml"
    config.write_text("model_dir: /models/x\nweb_port: 7000\n")
    with caplog.at_level("WARNING", logger="listener.settings"):
        settings = AgentSettings.load(config)
    assert settings.batching.size == 32
    assert settings.kafka.topic_prefix == "new."
    assert settings.model.dir == Path("/models/x")
    assert settings.health.web_port == 7000
    assert "AGENTS_BATCH_SIZE is deprecated; use AGENTS_BATCHING__SIZE" in caplog.text
    assert "model_dir is deprecated; use " in caplog.text and "model.dir" in caplog.text


# -- security ------------------------------------------------------------------


def _pem(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def test_sasl_needs_user_and_password_and_files_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="needs sasl_username and sasl_password"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="u")
    with pytest.raises(ValidationError, match="ssl_cafile: no such file"):
        KafkaSettings(security_protocol="SSL", ssl_cafile=tmp_path / "nope.pem")
    with pytest.raises(ValidationError, match="go together"):
        KafkaSettings(security_protocol="SSL", ssl_certfile=_pem(tmp_path, "c.pem"))
    with pytest.raises(ValidationError, match="security_protocol"):
        KafkaSettings(security_protocol="TLS")


def test_client_configs_carry_the_security_and_hide_the_password(tmp_path: Path) -> None:
    ca = _pem(tmp_path, "ca.pem")
    kafka = KafkaSettings(
        bootstrap_servers="k1:9093,k2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password="s3cret-value",
        ssl_cafile=ca,
    )
    assert "s3cret-value" not in repr(kafka)
    assert kafka.kafka_python() == {
        "bootstrap_servers": ["k1:9093", "k2:9093"],
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(ca),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret-value",
    }
    plain = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p")
    config = plain.aiokafka()
    assert (config["security_protocol"], config["sasl_mechanism"]) == ("SASL_PLAINTEXT", "PLAIN")
    assert "ssl_context" not in config
    assert KafkaSettings().kafka_python() == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "PLAINTEXT",
    }


def test_the_tls_context_verifies_the_host_unless_told_not_to() -> None:
    import ssl

    verified = KafkaSettings(security_protocol="SSL").ssl_context()
    assert verified is not None
    assert verified.check_hostname and verified.verify_mode == ssl.CERT_REQUIRED
    relaxed = KafkaSettings(security_protocol="SSL", ssl_check_hostname=False).ssl_context()
    assert relaxed is not None and not relaxed.check_hostname
    assert KafkaSettings().ssl_context() is None


def test_faust_gets_the_same_credentials() -> None:
    import faust

    from agents.runtime.app import faust_credentials

    assert faust_credentials(KafkaSettings()) is None
    sasl = faust_credentials(
        KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username="svc",
            sasl_password="pw",
        )
    )
    assert isinstance(sasl, faust.SASLCredentials)
    assert (sasl.username, sasl.password, sasl.mechanism.value) == ("svc", "pw", "SCRAM-SHA-256")
    assert sasl.protocol.value == "SASL_SSL" and sasl.ssl_context is not None
    tls = faust_credentials(KafkaSettings(security_protocol="SSL"))
    assert isinstance(tls, faust.SSLCredentials) and tls.protocol.value == "SSL"
