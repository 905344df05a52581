"""models/training_data: the project's own labelled posts are valid training rows.

They join a training run as ``--data`` files, so every row must load, carry a
label and needs_response the guideline allows, say its post kind, and be training
only; and none may repeat a post the project evaluates on (the demo's sample stream
here; the shared dev sets where that folder is present).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from models.data import load_folder, needs_response_target
from models.evaluation import LABELS
from models.post_kind import POST_KINDS, post_kind_of_row

REPO = Path(__file__).resolve().parents[3]
WRITTEN = REPO / "models" / "training_data"
SAMPLES = REPO / "listener" / "samples" / "brand_posts.jsonl"
SHARED = REPO.parent / "shared" / "data"


def normalised(text: str) -> str:
    """Lower-cased, punctuation removed, spaces collapsed: the shared data's own overlap rule."""
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


def rows() -> list[dict[str, Any]]:
    """Every written row, read by the loader training uses (all of them are training rows)."""
    return load_folder(WRITTEN).train


def test_every_row_is_a_training_row_with_a_guideline_label_and_kind() -> None:
    corpus = load_folder(WRITTEN)
    assert corpus.dev == {}
    lines = [line for path in WRITTEN.glob("*.jsonl") for line in path.read_text().splitlines()]
    assert len(corpus.train) == len([line for line in lines if line]) > 0
    for row in corpus.train:
        assert row["set"].startswith("training_data/")
        assert row["source"] == "written_cases"
        assert row["label"] in LABELS
        assert isinstance(row["needs_response"], bool)
        # The guideline: praise and other never need a response.
        assert not row["needs_response"] or needs_response_target({"label": row["label"]})
        assert row["post_kind"] in POST_KINDS
        assert post_kind_of_row(row) == row["post_kind"]
        assert row["case"] and row["brand"]


def test_no_post_is_written_twice() -> None:
    texts = [normalised(str(row["text"])) for row in rows()]
    assert len(set(texts)) == len(texts)


def test_no_post_repeats_the_demo_sample_stream() -> None:
    lines = SAMPLES.read_text(encoding="utf-8").splitlines()
    samples = {normalised(json.loads(line)["text"]) for line in lines if line}
    assert samples
    assert not {normalised(str(row["text"])) for row in rows()} & samples


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside this checkout")
def test_no_post_repeats_a_shared_labelled_post() -> None:
    shared: set[str] = set()
    for path in [*SHARED.glob("intent/*.jsonl"), *SHARED.glob("intent-v2/*.jsonl")]:
        shared |= {normalised(json.loads(line)["text"]) for line in path.open() if line.strip()}
    assert shared
    assert not {normalised(str(row["text"])) for row in rows()} & shared
