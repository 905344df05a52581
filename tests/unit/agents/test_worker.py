from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agents.commands.worker import register_commands, settings_from_args
from agents.settings import AgentSettings
from agents.worker import build_worker


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["worker", *argv])


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTS_BOOTSTRAP_SERVERS", "env-broker:9092")
    monkeypatch.setenv("AGENTS_NEEDS_RESPONSE_THRESHOLD", "0.7")
    monkeypatch.setenv("AGENTS_BATCH_SIZE", "32")
    args = _parse(
        [
            "--bootstrap",
            "flag-broker:9093",
            "--threshold",
            "0.6",
            "--model-dir",
            "/m",
            "--topic-prefix",
            "acme.",
            "--data-dir",
            "/d",
        ]
    )
    settings = settings_from_args(args)
    assert settings.kafka.bootstrap_servers == "flag-broker:9093"
    assert settings.model.needs_response_threshold == 0.6
    assert settings.batching.size == 32  # from the environment
    assert settings.model.dir == Path("/m")
    assert settings.data_dir == Path("/d")
    assert settings.topics.raw == "acme.mentions.raw"
    assert callable(args.func)


def test_settings_defaults_and_validation() -> None:
    settings = AgentSettings()
    assert (settings.app_id, settings.health.web_port, settings.kafka.topic_partitions) == (
        "brand-listener",
        6066,
        4,
    )
    assert settings.model.needs_response_threshold == 0.5
    with pytest.raises(ValueError):
        settings.override(model={"needs_response_threshold": 1.5})
    split = AgentSettings(kafka={"bootstrap_servers": "a:1, b:2 ,"}).kafka.bootstrap_list()
    assert split == ["a:1", "b:2"]
    with pytest.raises(ValueError, match="extra"):
        AgentSettings(kafka={"bootstrap_server": "typo:1"})


def test_the_worker_says_which_model_runs_where() -> None:
    from models.runtime import OnnxIntentClassifier

    registry = CollectorRegistry()
    classifier = OnnxIntentClassifier(threads=2, provider="cpu")
    build_worker(AgentSettings(app_id="t-info"), classifier, registry)
    labels = {"model": classifier.name, "provider": "cpu", "parallel_runs": "2"}
    assert registry.get_sample_value("brandlistener_classifier_info", labels) == 1
    assert classifier.name.startswith("intent-minilm@")


def test_a_decision_threshold_replaces_the_models_own_everywhere_it_is_loaded() -> None:
    from agents.worker import decision, load_classifier

    shipped = load_classifier(AgentSettings())
    calibrated = shipped.needs_response_threshold
    assert calibrated is not None
    assert decision(shipped, AgentSettings().model).endswith("(the model's, calibrated)")
    settings = AgentSettings(model={"needs_response_decision_threshold": 0.95})
    stricter = load_classifier(settings)  # what the worker and `rules test` load
    assert stricter.needs_response_threshold == 0.95 != calibrated
    text = "the app keeps crashing since the update, support never replies"
    (before,), (after,) = shipped.predict([text]), stricter.predict([text])
    assert before.needs_response_score == pytest.approx(after.needs_response_score)
    assert calibrated <= before.needs_response_score < 0.95
    assert (before.needs_response, after.needs_response) == (True, False)
    line = decision(stricter, settings.model)
    assert line == "score >= 0.9500 (model.needs_response_decision_threshold)"
    with pytest.raises(ValueError):
        AgentSettings(model={"needs_response_decision_threshold": 1.2})
