"""The ``sinks`` block of the worker settings: validated per sink at start-up."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from agents.commands.worker import register_commands, settings_from_args
from agents.delivery.config import validate_sinks
from agents.settings import AgentSettings
from agents.sinks.pagerduty import PagerDutySettings
from agents.sinks.zendesk import ZendeskSettings
from agents.worker import build_worker

ZENDESK = {"url": "https://acme.zendesk.com", "email": "agent@acme.test", "api_token": "tok"}


def test_blocks_become_each_sinks_settings_model() -> None:
    sinks = validate_sinks({"zendesk": ZENDESK, "pagerduty": {"routing_key": "k"}})
    assert isinstance(sinks["zendesk"], ZendeskSettings)
    assert isinstance(sinks["pagerduty"], PagerDutySettings)
    assert sinks["pagerduty"].priorities == ("P1",)  # type: ignore[attr-defined]
    assert validate_sinks(None) == {}


def test_errors_name_the_sink_and_the_field_and_hide_secrets() -> None:
    with pytest.raises(ValidationError) as info:
        AgentSettings(
            sinks={
                "zendsk": {},
                "zendesk": {**ZENDESK, "url": "ftp://x", "api_token": "s3cret-token"},
                "pagerduty": {},
            }
        )
    text = str(info.value)
    assert "sinks.zendsk: unknown sink" in text
    assert "sinks.zendesk.url:" in text
    assert "sinks.pagerduty.routing_key: Field required" in text
    assert "s3cret-token" not in text
    with pytest.raises(ValidationError, match="mapping"):
        AgentSettings(sinks=["zendesk"])


def test_sinks_from_nested_environment_survive_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTS_SINKS__ZENDESK__URL", "https://acme.zendesk.com")
    monkeypatch.setenv("AGENTS_SINKS__ZENDESK__EMAIL", "agent@acme.test")
    monkeypatch.setenv("AGENTS_SINKS__ZENDESK__API_TOKEN", "zz-secret-zz")
    settings = AgentSettings().override(app_id="x")
    zendesk = settings.sinks["zendesk"]
    assert isinstance(zendesk, ZendeskSettings)
    assert zendesk.api_token == SecretStr("zz-secret-zz")
    assert "zz-secret-zz" not in repr(settings)


def test_config_file_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTS_APP_ID", "from-env")
    config = tmp_path / "worker.yaml"
    config.write_text("app_id: from-file\nsinks:\n  pagerduty:\n    routing_key: k\n")
    parser = argparse.ArgumentParser()
    register_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["worker", "--config", str(config), "--threshold", "0.7"])
    settings = settings_from_args(args)
    assert settings.app_id == "from-file"
    assert settings.model.needs_response_threshold == 0.7
    assert list(settings.sinks) == ["pagerduty"]


def test_worker_attaches_delivery_only_with_sinks(keyword_classifier: type) -> None:
    plain = build_worker(AgentSettings(app_id="t-plain"), keyword_classifier(), CollectorRegistry())
    assert plain.delivery is None
    plain.close()
    settings = AgentSettings(app_id="t-sinks", sinks={"pagerduty": {"routing_key": "k"}})
    pipeline = build_worker(settings, keyword_classifier(), CollectorRegistry())
    assert pipeline.delivery is not None
    assert pipeline.delivery in pipeline.app._children
    pipeline.close()
