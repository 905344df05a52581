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


def test_classify_file_keeps_fields_and_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"id": i, "text": text, "author": {"handle": f"u{i}"}}
        for i, text in enumerate(
            [
                "my order never arrived and support won't answer",
                "what time does the store open on sunday?",
                "thank you so much, the team was wonderful",
            ]
            * 400  # more than one chunk
        )
    ]
    src = tmp_path / "posts.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n\n")
    dst = tmp_path / "out.jsonl"
    assert run(["classify", "--input", str(src), "--output", str(dst)]) == 0
    out = [orjson.loads(line) for line in dst.read_bytes().splitlines()]
    assert len(out) == len(rows)
    for row, got in zip(rows, out, strict=True):
        assert {k: got[k] for k in row} == row
        assert set(got["scores"]) == LABELS
        assert got["label"] == max(got["scores"], key=got["scores"].get)
        assert isinstance(got["needs_response"], bool)
    assert [o["label"] for o in out[:3]] == ["complaint", "question", "praise"]
    assert [o["needs_response"] for o in out[:3]] == [True, True, False]
    assert "post" in capsys.readouterr().err  # the progress bar


def test_classify_file_keeps_an_inputs_own_label_renamed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"text": "my order never arrived and support won't answer", "label": "other", "id": 1},
        {"text": "thank you so much, the team was wonderful", "id": 2},
    ]
    src = tmp_path / "labelled.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    dst = tmp_path / "out.jsonl"
    assert run(["classify", "--input", str(src), "--output", str(dst), "--no-progress"]) == 0
    out = [orjson.loads(line) for line in dst.read_bytes().splitlines()]
    assert out[0]["input_label"] == "other"  # the gold label is not lost
    assert out[0]["label"] == "complaint"
    assert out[0]["id"] == 1
    assert "input_label" not in out[1] and out[1]["label"] == "praise"
    assert 'input "label" kept as "input_label"' in capsys.readouterr().err


def test_classify_file_reports_a_line_without_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "posts.jsonl"
    src.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    assert run(["classify", "--input", str(src), "--output", str(tmp_path / "o")]) == 2
    assert "line 2" in capsys.readouterr().err


def test_classify_wants_texts_or_input_not_both(tmp_path: Path) -> None:
    assert run(["classify"]) == 2
    assert run(["classify", "--input", str(tmp_path / "x.jsonl"), "hello"]) == 2


def test_eval_prints_per_class_and_needs_response(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "labelled.jsonl"
    rows = [
        {"text": "my order never arrived and support won't answer", "label": "complaint"},
        {"text": "what time does the store open on sunday?", "label": "question"},
        {"text": "thank you so much, the team was wonderful", "label": "praise"},
    ]
    src.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    assert run(["eval", "--input", str(src), "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["n"] == 3
    assert report["macro_f1"] == 1.0
    assert report["needs_response"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "support": 2,
    }
    assert run(["eval", "--input", str(src)]) == 0
    text = capsys.readouterr().out
    assert "macro-F1 1.0000" in text
    assert "needs_response precision" in text


def test_eval_by_source_prints_each_sources_threshold_as_worker_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = Path(__file__).resolve().parents[3] / "listener" / "samples"
    argv = ["eval", "--input", str(samples / "brand_posts.jsonl"), "--by-source"]
    argv += ["--labels", str(samples / "brand_posts.labels.jsonl")]
    assert run([*argv, "--json"]) == 0
    by_source = orjson.loads(capsys.readouterr().out)["by_source"]
    assert sum(row["posts"] for row in by_source.values()) == 718
    bluesky = by_source["bluesky"]
    assert bluesky["picked"]["recall"] >= 0.9
    assert 0 < bluesky["picked"]["threshold"] < 1
    assert 0 <= bluesky["at_model_threshold"]["precision"] <= 1
    assert run(argv) == 0
    text = capsys.readouterr().out
    assert "needs_response by source" in text
    yaml_part = text.split("worker.yaml, to use the picked thresholds:\n", 1)[1]
    assert yaml_part.startswith("model:\n  needs_response_threshold_by_source:\n")
    assert f"    bluesky: {bluesky['picked']['threshold']}" in yaml_part.splitlines()


def test_eval_on_the_bundled_samples_joins_the_labels_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    samples = Path(__file__).resolve().parents[3] / "listener" / "samples"
    argv = ["eval", "--input", str(samples / "brand_posts.jsonl"), "--json"]
    argv += ["--labels", str(samples / "brand_posts.labels.jsonl")]
    assert run(argv) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["n"] == 718
    assert report["needs_response"]["support"] == 361
    assert report["macro_f1"] > 0.5  # out of domain; the card has the figure


def test_classify_tells_the_model_where_the_texts_sit(capsys: pytest.CaptureFixture[str]) -> None:
    text = "I've DMed twice already today and no reply"
    assert run(["classify", "--json", text]) == 0
    plain = orjson.loads(capsys.readouterr().out)
    assert run(["classify", "--json", "--post-kind", "reply_to_brand", text]) == 0
    to_brand = orjson.loads(capsys.readouterr().out)
    assert to_brand["scores"] != plain["scores"]
    with pytest.raises(SystemExit):
        run(["classify", "--post-kind", "reply", text])  # not a kind the model knows
