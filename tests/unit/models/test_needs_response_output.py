"""A model with its own needs_response output: the runtime's labels, scores and decision."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
from tiny_onnx import ROW  # noqa: E402
from tiny_onnx import token_count_model as tiny_model  # noqa: E402

from models.runtime import DEFAULT_MODEL_DIR, OnnxIntentClassifier  # noqa: E402

LABELS = ("complaint", "praise", "question", "other")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    tiny_model(tmp_path / "model.int8.onnx")
    shutil.copy(DEFAULT_MODEL_DIR / "tokenizer.json", tmp_path / "tokenizer.json")
    outputs = [*LABELS, "needs_response"]
    config = {
        "id2label": {str(i): name for i, name in enumerate(outputs)},
        "label2id": {name: i for i, name in enumerate(outputs)},
        "pad_token_id": 0,
    }
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    metrics = {"model": "tiny", "version": "0.0.1", "thresholds": {"needs_response": 0.9}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return tmp_path


def test_the_output_is_not_a_label_and_its_sigmoid_is_the_score(model_dir: Path) -> None:
    clf = OnnxIntentClassifier(model_dir, provider="cpu", threads=1)
    assert clf.labels == LABELS
    assert clf.has_needs_response_output
    texts = ["ok", "my parcel never arrived and nobody answers the phone at all"]
    probs, need = clf.predict_scores(texts)
    assert probs.shape == (2, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    tokens = [len(clf._tokenizer.encode(t).ids) for t in texts]
    logits = np.array(tokens, dtype=np.float32)[:, None] * ROW
    np.testing.assert_allclose(need, 1 / (1 + np.exp(-logits[:, 4])), rtol=1e-5)
    preds = clf.predict(texts)
    for pred, score in zip(preds, need, strict=True):
        assert set(pred.scores) == set(LABELS)
        assert pred.needs_response_score == pytest.approx(float(score), rel=1e-6)
        assert pred.needs_response is (float(score) >= 0.9)
        assert clf.needs_response(pred) is pred.needs_response
    # the decision follows the output, not P(complaint) + P(question)
    short, long = preds
    assert short.needs_response is False and long.needs_response is True


def test_a_four_label_model_scores_complaint_plus_question() -> None:
    # the 3-layer student (1.2.0) has the four label outputs only
    clf = OnnxIntentClassifier(DEFAULT_MODEL_DIR.parent / "intent-minilm-l3", provider="cpu")
    assert not clf.has_needs_response_output
    probs, need = clf.predict_scores(["where is my parcel?"])
    assert need[0] == pytest.approx(probs[0, 0] + probs[0, 2], rel=1e-6)
    (pred,) = clf.predict(["where is my parcel?"])
    assert pred.needs_response_score == pytest.approx(float(need[0]), rel=1e-6)


def test_truncation_follows_the_model_folders_tokenizer(model_dir: Path) -> None:
    # the tiny graph's logits scale with the tokens it sees: they show where the runtime cut
    text = " ".join(["parcel"] * 300)
    path = model_dir / "tokenizer.json"
    for length in (40, 128):
        tokenizer = json.loads(path.read_text(encoding="utf-8"))
        tokenizer["truncation"]["max_length"] = length
        path.write_text(json.dumps(tokenizer), encoding="utf-8")
        clf = OnnxIntentClassifier(model_dir, provider="cpu", threads=1)
        assert clf.max_length == length
        _, need = clf.predict_scores([text])
        assert need[0] == pytest.approx(1 / (1 + np.exp(-length * ROW[0, 4])), rel=1e-5)
    # an explicit max_length still wins over the file
    forced = OnnxIntentClassifier(model_dir, provider="cpu", threads=1, max_length=32)
    _, need = forced.predict_scores([text])
    assert need[0] == pytest.approx(1 / (1 + np.exp(-32 * ROW[0, 4])), rel=1e-5)
    # a tokenizer.json without truncation is cut at 64
    tokenizer = json.loads(path.read_text(encoding="utf-8"))
    tokenizer["truncation"] = None
    path.write_text(json.dumps(tokenizer), encoding="utf-8")
    assert OnnxIntentClassifier(model_dir, provider="cpu", threads=1).max_length == 64
