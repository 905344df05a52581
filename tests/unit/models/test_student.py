"""The opt-in 3-layer student model (models/intent-minilm-l3) through the same runtime."""

from __future__ import annotations

import hashlib
import json

import pytest

from models.runtime import DEFAULT_MODEL_DIR, OnnxIntentClassifier

STUDENT_DIR = DEFAULT_MODEL_DIR.parent / "intent-minilm-l3"

OBVIOUS = [
    ("my order never arrived and support won't answer", "complaint"),
    ("thank you so much, the team was wonderful", "praise"),
    ("what time does the store open on sunday?", "question"),
    ("@Delta do you allow pets in the cabin on international flights?", "question"),
]


@pytest.fixture(scope="module")
def student() -> OnnxIntentClassifier:
    return OnnxIntentClassifier(STUDENT_DIR)


def test_student_loads_with_its_own_name_and_threshold(student: OnnxIntentClassifier) -> None:
    metrics = json.loads((STUDENT_DIR / "metrics.json").read_text(encoding="utf-8"))
    assert student.name == f"intent-minilm-l3@{metrics['version']}"
    assert student.labels == ("complaint", "praise", "question", "other")
    assert student.needs_response_threshold == metrics["thresholds"]["needs_response"]
    assert metrics["layers"] == 3


def test_student_gets_obvious_posts_right(student: OnnxIntentClassifier) -> None:
    preds = student.predict([text for text, _ in OBVIOUS])
    assert [p.label for p in preds] == [label for _, label in OBVIOUS]
    assert [student.needs_response(p) for p in preds] == [True, False, True, True]


def test_student_artefact_hash_matches_metrics_and_card() -> None:
    model = STUDENT_DIR / "model.int8.onnx"
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    metrics = json.loads((STUDENT_DIR / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["artefact"]["sha256"] == digest
    assert metrics["artefact"]["bytes"] == model.stat().st_size < 30_000_000
    assert digest in (DEFAULT_MODEL_DIR / "README.md").read_text(encoding="utf-8")
