"""models.data: several data folders, dev sets by name, per-source and borderline weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.data import (
    fold_of,
    item_weight,
    load_corpus,
    load_folder,
    needs_response_target,
    parse_fold,
    parse_weights,
    weigh,
)


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def row(text: str, label: str, source: str, **extra: Any) -> dict[str, Any]:
    return {"text": text, "label": label, "source": source, **extra}


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    old = tmp_path / "intent"
    write(old / "train.jsonl", [row("bag lost", "complaint", "airline"), row("hi", "other", "x")])
    write(old / "dev.jsonl", [row("thanks!", "praise", "airline")])
    new = tmp_path / "intent-v2"
    write(
        new / "real.jsonl",
        [
            row("down again", "complaint", "isp_tweets", split="train", borderline=True),
            row("meh", "other", "twitter2020", split="dev", borderline=False),
            row("rant", "complaint", "reddit_shipping", split="train", needs_response=False),
        ],
    )
    write(new / "synthetic.jsonl", [row("how do I", "question", "synthetic", split="dev")])
    return old, new


def test_both_layouts_give_train_rows_and_named_dev_sets(folders: tuple[Path, Path]) -> None:
    old, new = folders
    corpus = load_corpus([old, new])
    assert [r["text"] for r in corpus.train] == ["bag lost", "hi", "down again", "rant"]
    assert list(corpus.dev) == ["intent", "intent-v2/real", "intent-v2/synthetic"]
    assert [r["set"] for r in corpus.train] == ["intent"] * 2 + ["intent-v2/real"] * 2
    assert corpus.dev["intent-v2/synthetic"][0]["text"] == "how do I"
    assert [r["text"] for r in corpus.dev_rows()] == ["thanks!", "meh", "how do I"]


def test_a_folder_with_only_dev_is_read(tmp_path: Path) -> None:
    write(tmp_path / "d" / "dev.jsonl", [row("x", "other", "s")])
    corpus = load_folder(tmp_path / "d")
    assert corpus.train == [] and list(corpus.dev) == ["d"]


def test_a_single_file_joins_as_training_rows(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    corrections = tmp_path / "corrections.jsonl"
    write(corrections, [row("love it", "praise", "corrections", split="train")])
    corpus = load_corpus([folders[0], corrections])
    assert corpus.train[-1]["text"] == "love it" and corpus.train[-1]["set"] == "corrections"
    assert list(corpus.dev) == ["intent"]


def test_bad_split_and_duplicate_dev_names_are_refused(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    write(tmp_path / "bad" / "a.jsonl", [row("x", "other", "s", split="test")])
    with pytest.raises(ValueError, match="split"):
        load_folder(tmp_path / "bad")
    old, _ = folders
    with pytest.raises(ValueError, match="named twice"):
        load_corpus([old, old])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        load_folder(tmp_path / "empty")


def test_needs_response_is_the_rows_own_else_from_the_label() -> None:
    assert needs_response_target(row("rant", "complaint", "reddit", needs_response=False)) is False
    assert needs_response_target(row("thx", "praise", "x", needs_response=True)) is True
    assert needs_response_target(row("lost", "complaint", "airline")) is True
    assert needs_response_target(row("how?", "question", "airline")) is True
    assert needs_response_target(row("yay", "praise", "airline")) is False


def test_parse_weights() -> None:
    assert parse_weights(["airline=0.5", "intent-v2/real=2"]) == {
        "airline": 0.5,
        "intent-v2/real": 2.0,
    }
    for bad in ("airline", "=1", "airline=x", "airline=-1"):
        with pytest.raises(ValueError):
            parse_weights([bad])


def test_item_weight_source_wins_over_set_and_borderline_multiplies() -> None:
    r = {"source": "isp_tweets", "set": "intent-v2/real", "borderline": True}
    assert item_weight(r, {}) == 1.0
    assert item_weight(r, {"intent-v2/real": 2.0}) == 2.0
    assert item_weight(r, {"intent-v2/real": 2.0, "isp_tweets": 3.0}) == 3.0
    assert item_weight(r, {"intent-v2/real": 2.0}, borderline_weight=0.5) == 1.0
    assert item_weight({**r, "borderline": False}, {}, borderline_weight=0.5) == 1.0


def test_weigh_drops_zero_weights_and_refuses_unknown_names(folders: tuple[Path, Path]) -> None:
    corpus = load_corpus(list(folders))
    rows, weights = weigh(corpus.train, {"airline": 0.0, "intent-v2/real": 2.0}, 0.5)
    assert [r["text"] for r in rows] == ["hi", "down again", "rant"]
    assert weights == [1.0, 1.0, 2.0]
    rows, weights = weigh(corpus.train, {}, borderline_weight=0.0)
    assert "down again" not in [r["text"] for r in rows]
    with pytest.raises(ValueError, match="unknown"):
        weigh(corpus.train, {"airlines": 0.5})


def test_folds_follow_the_text_alone_and_split_posts_about_evenly() -> None:
    texts = [f"post number {i} about @Brand" for i in range(2000)]
    first = [fold_of(t, 2) for t in texts]
    assert first == [fold_of(t, 2) for t in reversed(texts)][::-1]  # order does not matter
    assert 900 < first.count(0) < 1100
    three = [fold_of(t, 3) for t in texts]
    assert set(three) == {0, 1, 2}
    # the same text in another row (another source, another label) is in the same fold
    assert fold_of("Thanks @Brand!", 5) == fold_of("Thanks @Brand!", 5)
    with pytest.raises(ValueError, match=">= 2"):
        fold_of("x", 1)


@pytest.mark.parametrize("spec", ["2/2", "0/1", "-1/2", "a/b", "1", "1/2/3", ""])
def test_parse_fold_refuses_folds_outside_their_count(spec: str) -> None:
    with pytest.raises(ValueError, match="K/N"):
        parse_fold(spec)


def test_parse_fold_reads_fold_and_count() -> None:
    assert parse_fold("0/2") == (0, 2)
    assert parse_fold(" 4/5 ") == (4, 5)
