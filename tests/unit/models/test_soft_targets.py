"""models.soft_targets: the teacher's probabilities per post, written and read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.soft_targets import read_soft_targets, targets_for, text_key, write_soft_targets


def test_written_targets_read_back_by_text_without_storing_the_text(tmp_path: Path) -> None:
    out = tmp_path / "soft.jsonl"
    texts = ["<b>@Acme</b> broke again", "love it", "<b>@Acme</b> broke again"]
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.05, 0.9, 0.0, 0.05], [0.1, 0.1, 0.1, 0.7]])
    written = write_soft_targets(out, texts, probs, np.array([0.8, 0.1, 0.2]))
    assert written == 2  # a repeated text keeps its first target
    assert "broke" not in out.read_text(encoding="utf-8")
    soft = read_soft_targets(out)
    assert soft[text_key("<b>@Acme</b> broke again")] == ((0.7, 0.1, 0.1, 0.1), 0.8)
    assert soft[text_key("love it")][1] == pytest.approx(0.1)


def test_rows_without_a_target_keep_their_gold_label(tmp_path: Path) -> None:
    out = tmp_path / "soft.jsonl"
    write_soft_targets(out, ["known"], np.array([[0.25, 0.25, 0.25, 0.25]]), np.array([0.5]))
    rows = [
        {"text": "known", "label": "praise"},
        {"text": "new correction", "label": "question"},
        {"text": "reply", "label": "complaint", "needs_response": False},
    ]
    probs, nr, missing = targets_for(rows, read_soft_targets(out))
    assert missing == 2
    assert probs.tolist() == [[0.25] * 4, [0, 0, 1, 0], [1, 0, 0, 0]]
    assert nr.tolist() == [0.5, 1.0, 0.0]


def test_shapes_and_distributions_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected probs"):
        write_soft_targets(tmp_path / "a.jsonl", ["x"], np.ones((1, 3)) / 3, np.array([0.1]))
    with pytest.raises(ValueError, match="sum to 1"):
        write_soft_targets(tmp_path / "a.jsonl", ["x"], np.ones((1, 4)), np.array([0.1]))


@pytest.mark.parametrize(
    "entry",
    [
        {"key": "k", "probs": {"complaint": 1.0}, "needs_response": 0.5},
        {"key": "k", "probs": dict.fromkeys(["complaint", "praise", "question", "other"], 0.25)},
        {
            "key": "k",
            "probs": dict.fromkeys(["complaint", "praise", "question", "other"], 1.5),
            "needs_response": 0.5,
        },
    ],
)
def test_a_malformed_line_is_named(tmp_path: Path, entry: dict) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(entry) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1"):
        read_soft_targets(bad)
