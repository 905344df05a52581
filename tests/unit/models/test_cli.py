"""The ``brand-listener classify`` command, run on the shipped ONNX model."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from models import cli

LABELS = {"complaint", "praise", "question", "other"}


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="brand-listener")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_classify_prints_label_and_all_four_scores(capsys: pytest.CaptureFixture[str]) -> None:
    texts = [
        "my order never arrived and support won't answer",
        "thank you so much, the team was wonderful",
    ]
    assert run(["classify", *texts]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, text, label in zip(lines, texts, ("complaint", "praise"), strict=True):
        assert line.split()[0] == label
        assert line.endswith(text)
        for name in LABELS:
            assert f"{name}=" in line


def test_classify_json_is_one_object_per_text(capsys: pytest.CaptureFixture[str]) -> None:
    texts = ["what time does the store open on sunday?", "ok", "thanks!"]
    assert run(["classify", "--json", *texts]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [orjson.loads(line) for line in lines]
    assert [r["text"] for r in records] == texts
    for record in records:
        assert set(record["scores"]) == LABELS
        assert record["label"] == max(record["scores"], key=record["scores"].get)
        assert sum(record["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert record["model"].startswith("intent-minilm@")
    assert records[0]["label"] == "question"


def test_classify_needs_at_least_one_text() -> None:
    with pytest.raises(SystemExit):
        run(["classify"])


def test_missing_model_dir_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["classify", "--model-dir", str(tmp_path), "hello"]) == 2
    assert "model file missing" in capsys.readouterr().err


def test_importing_the_command_does_not_load_onnxruntime() -> None:
    code = "import sys, models.cli; print('onnxruntime' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
