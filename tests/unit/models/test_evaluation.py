"""Metrics, labelled-file loading and the needs_response rule (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.evaluation import (
    binary_report,
    classification_report,
    load_labelled,
    needs_response,
    needs_response_score,
    pick_threshold,
    thresholds_by_source,
)

SCORES = {"complaint": 0.3, "praise": 0.05, "question": 0.25, "other": 0.4}


def test_needs_response_by_top_label_and_by_threshold() -> None:
    assert needs_response_score(SCORES) == pytest.approx(0.55)
    assert needs_response(SCORES, None) is False  # top label is "other"
    assert needs_response(SCORES, 0.5) is True
    assert needs_response(SCORES, 0.6) is False


def test_binary_report_matches_hand_counts() -> None:
    report = binary_report([True, True, False, False], [True, False, True, False])
    assert report == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert binary_report([False], [False])["precision"] == 0.0


def test_classification_report_macro_over_present_labels() -> None:
    gold = ["complaint", "complaint", "praise", "other"]
    pred = ["complaint", "question", "praise", "praise"]
    report = classification_report(gold, pred)
    assert report["per_class"]["complaint"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": 0.6667,
        "support": 2,
    }
    # question has no gold posts: left out of the macro average
    expected = (0.6667 + 0.6667 + 0.0) / 3
    assert report["macro_f1"] == pytest.approx(expected, abs=1e-4)
    assert report["accuracy"] == 0.5
    assert report["needs_response"]["recall"] == 1.0
    assert report["confusion"]["rows_gold"][0] == [1, 0, 1, 0]


def test_pick_threshold_keeps_the_recall() -> None:
    gold = [True] * 20 + [False] * 20
    score = [0.9] * 18 + [0.3, 0.2] + [0.25] * 10 + [0.1] * 10
    picked = pick_threshold(gold, score, min_recall=0.95)
    assert picked["recall"] >= 0.95
    assert picked["threshold"] == pytest.approx(0.3)
    assert picked["precision"] == pytest.approx(19 / 19)


def test_thresholds_by_source_pick_each_sources_own() -> None:
    # "new" scores every post high: the model's 0.5 queues all of it; its own pick keeps
    # recall 0.9 and drops the posts needing no answer. "few" has too few positives.
    sources = ["known"] * 40 + ["new"] * 40 + ["few"] * 4
    gold = [True] * 20 + [False] * 20 + [True] * 20 + [False] * 20 + [True, False] * 2
    score = [0.9] * 20 + [0.1] * 20 + [0.95] * 20 + [0.8] * 20 + [0.7, 0.2] * 2
    out = thresholds_by_source(sources, gold, score, 0.5, min_recall=0.9, min_positives=15)
    assert list(out) == ["few", "known", "new"]
    assert out["new"]["posts"] == 40 and out["new"]["need_answer"] == 20
    assert out["new"]["at_model_threshold"]["precision"] == 0.5
    assert out["new"]["picked"] == {"threshold": 0.95, "precision": 1.0, "recall": 1.0}
    assert out["known"]["at_model_threshold"]["precision"] == 1.0
    assert out["few"]["picked"] is None
    assert "at_model_threshold" not in thresholds_by_source(sources, gold, score, None)["new"]


def test_load_labelled_joins_posts_with_a_labels_file(tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    labels = tmp_path / "labels.jsonl"
    posts.write_text(
        "\n".join(
            json.dumps(p)
            for p in (
                {"id": "1", "source": "bluesky", "text": "a"},
                {"id": "2", "source": "reddit", "text": "b"},
                {"id": "3", "source": "reddit", "text": "c"},
            )
        )
    )
    labels.write_text(
        json.dumps({"id": "bluesky:1", "label": "praise", "needs_response": False})
        + "\n"
        + json.dumps({"id": "reddit:3", "label": "question", "needs_response": True})
    )
    rows = load_labelled(posts, labels)
    assert [(r["text"], r["label"], r["needs_response"]) for r in rows] == [
        ("a", "praise", False),
        ("c", "question", True),
    ]


def test_load_labelled_rejects_unknown_labels(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "x", "label": "angry"}) + "\n")
    with pytest.raises(ValueError, match="label"):
        load_labelled(path)
