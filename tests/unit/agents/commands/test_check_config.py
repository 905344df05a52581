"""``--version``, ``worker --check-config`` and ``listen --check-config``: validate, print, exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.commands.cli import main

ROOT = Path(__file__).resolve().parents[4]


def test_version_names_the_package_and_the_bundled_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("brand-listener ") and "(model intent-minilm@" in out


def test_worker_check_config_accepts_the_example_and_refuses_bad_blocks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = ROOT / "deploy" / "worker.example.yaml"
    assert main(["worker", "--check-config", "--config", str(example)]) == 0
    assert capsys.readouterr().out.startswith("valid: app ")
    bad = tmp_path / "worker.yaml"
    bad.write_text('sinks:\n  zendesk: {url: "javascript:alert(1)"}\n')
    assert main(["worker", "--check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "sinks.zendesk.url" in err and "sinks.zendesk.api_token" in err
    rules = tmp_path / "rules.yaml"
    rules.write_text("oops: [\n")
    assert main(["worker", "--check-config", "--rules", str(rules)]) == 2
    assert "cannot read routing rules" in capsys.readouterr().err


def test_listen_check_config_builds_every_connector_without_running_any(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = ROOT / "deploy" / "listen.example.yaml"
    assert main(["listen", "--check-config", "--config", str(example)]) == 0
    assert "valid; connectors:" in capsys.readouterr().out
    bad = tmp_path / "listen.yaml"
    bad.write_text("brands: [{name: acme, keywords: [acme]}]\nconnectors:\n  nosuch: {}\n")
    assert main(["listen", "--check-config", "--config", str(bad)]) == 2
    assert "unknown connector 'nosuch'" in capsys.readouterr().err
