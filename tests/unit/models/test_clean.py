"""models.clean.drop_disputed: label-noise cleaning of training rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from models.clean import drop_disputed

LABELS = ("complaint", "praise", "question", "other")

# A stand-in scorer: fixed probabilities per text (unit test double).
SCORES = {
    "lost my bag again": [0.90, 0.02, 0.05, 0.03],
    "thanks! just not that long a wait :)": [0.50, 0.45, 0.02, 0.03],
    "booked first class, the other airline's was garbage": [0.80, 0.02, 0.03, 0.15],
    "what time do you open?": [0.05, 0.01, 0.90, 0.04],
}


def score(texts: Sequence[str], kinds: Sequence[str]) -> np.ndarray:
    assert len(kinds) == len(texts)  # each post's kind goes with it
    return np.array([SCORES[t] for t in texts])


ROWS = [
    {"text": "lost my bag again", "label": "complaint", "source": "airline"},
    {"text": "thanks! just not that long a wait :)", "label": "complaint", "source": "airline"},
    {
        "text": "booked first class, the other airline's was garbage",
        "label": "praise",
        "source": "airline",
    },
    {"text": "what time do you open?", "label": "other", "source": "sanders"},
]


def test_rows_whose_gold_label_is_disputed_are_dropped_and_counted() -> None:
    kept, dropped = drop_disputed(ROWS, score, LABELS, below=0.05)
    assert [r["text"] for r in kept] == [ROWS[0]["text"], ROWS[1]["text"]]
    assert dropped == {("airline", "praise"): 1, ("sanders", "other"): 1}


def test_the_threshold_is_strict_below() -> None:
    kept, dropped = drop_disputed(ROWS, score, LABELS, below=0.04)
    # "what time do you open?" has exactly 0.04 on its gold label "other": kept.
    assert ROWS[3] in kept
    assert dropped == {("airline", "praise"): 1}


def test_zero_keeps_everything_and_empty_input_is_fine() -> None:
    kept, dropped = drop_disputed(ROWS, score, LABELS, below=0.0)
    assert kept == ROWS and not dropped
    assert drop_disputed([], score, LABELS, below=0.5) == ([], {})


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="below"):
        drop_disputed(ROWS, score, LABELS, below=1.0)
    with pytest.raises(ValueError, match="unknown"):
        drop_disputed([{"text": "lost my bag again", "label": "rant"}], score, LABELS, 0.1)
    with pytest.raises(ValueError, match="shape"):
        drop_disputed(ROWS, lambda texts, kinds: np.zeros((1, 4)), LABELS, 0.1)
