"""The shipped worker config example is valid as it stands."""

from __future__ import annotations

from pathlib import Path

from agents.settings import AgentSettings

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "worker.example.yaml"


def test_worker_example_config_validates_with_its_sinks() -> None:
    settings = AgentSettings.load(EXAMPLE)
    assert settings.kafka.security_protocol == "PLAINTEXT"
    assert settings.batching.size == 512
    assert set(settings.sinks) == {"zendesk", "pagerduty", "slack"}
    assert settings.rules_file == Path("deploy/rules.example.yaml")
    assert settings.spikes.brands == ("acme",)
    assert "change-me" not in repr(settings.sinks["zendesk"])  # tokens are SecretStr
    assert settings.sync.enabled() == ["zendesk", "pagerduty"]
    assert "change-me" not in repr(settings.sync)
