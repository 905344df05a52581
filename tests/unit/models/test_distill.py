"""Teacher soft labels for distillation, from one model or an averaged ensemble.

Needs torch (the ``train`` extra, ``make train-env``): skipped in the runtime-only
environment. Run with ``.venv-train/bin/python -m pytest tests/unit/models/test_distill.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs torch (make train-env)")

from models.distill import teacher_probs  # noqa: E402
from models.runtime import DEFAULT_MODEL_DIR, OnnxIntentClassifier  # noqa: E402

STUDENT_DIR = DEFAULT_MODEL_DIR.parent / "intent-minilm-l3"
ROWS = [
    {"text": "my order never arrived and support won't answer"},
    {"text": "thank you so much, the team was wonderful"},
    {"text": "what time does the store open on sunday?"},
    {"text": "watching the match tonight"},
]


def probs_in(model_dir: Path, labels: Sequence[str]) -> np.ndarray:
    model = OnnxIntentClassifier(model_dir, provider="cpu")
    probs = model.predict_proba([row["text"] for row in ROWS])
    return probs[:, [model.labels.index(label) for label in labels]]


def test_one_teacher_gives_its_probabilities_in_the_students_label_order() -> None:
    labels = ("other", "question", "praise", "complaint")  # not the model's order
    got = teacher_probs(ROWS, [DEFAULT_MODEL_DIR], labels)
    assert got.shape == (4, 4)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, probs_in(DEFAULT_MODEL_DIR, labels), atol=1e-6)
    assert got[0].argmax() == labels.index("complaint")


def test_an_ensemble_averages_its_teachers() -> None:
    labels = ("complaint", "praise", "question", "other")
    got = teacher_probs(ROWS, [DEFAULT_MODEL_DIR, STUDENT_DIR], labels)
    one, two = probs_in(DEFAULT_MODEL_DIR, labels), probs_in(STUDENT_DIR, labels)
    assert np.abs(one - two).max() > 1e-3  # two different teachers, or the mean proves nothing
    np.testing.assert_allclose(got, (one + two) / 2, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_no_teacher_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one teacher"):
        teacher_probs(ROWS, [], ("complaint", "praise", "question", "other"))
