"""Where a post sits in its thread: from labelled rows, from Mentions, and in the runtime."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.post_kind import (
    POST_KINDS,
    model_input,
    model_texts,
    post_kind_of_mention,
    post_kind_of_row,
    row_kinds,
    with_kind_dropped,
)

# Notes and fields as ../shared/data/intent-v2 writes them.
ROWS = [
    ({"note": "tweet mentioning Microsoft; thread position unknown"}, "unknown"),
    ({"note": "tweet about an internet provider (cox); thread position unknown"}, "unknown"),
    # talk between users
    (
        {"note": "Reddit comment in r/UPS (reply inside a thread, not addressed to the brand)"},
        "comment",
    ),
    ({"note": "Reddit post in r/dhl (opens a thread)"}, "post"),
    ({"note": "Trustpilot review of pet insurer figo (1 star)"}, "review"),
    ({"platform": "bluesky", "thread": "opens"}, "post"),
    ({"platform": "mastodon", "thread": "reply", "case": "advice_to_user"}, "comment"),
    ({"platform": "bluesky", "thread": "reply", "case": "thanks_still_broken"}, "reply_to_brand"),
    ({"platform": "review", "thread": "opens"}, "review"),
    ({"platform": "review", "thread": "reply", "case": "brand_agent_reply"}, "comment"),
    ({"post_kind": "review", "note": "Reddit comment in r/UPS"}, "review"),  # its own field wins
    ({"post_kind": "sideways", "thread": "opens"}, "post"),  # not a kind: ignored
    ({"source": "airline"}, "unknown"),  # the old tweet sets say nothing
    ({"id": "3mgy", "source": "bluesky"}, "post"),  # a Mention-shaped row (listener/samples)
    ({"id": "3mgy", "source": "bluesky", "reply_to_id": "bluesky:3mgx"}, "comment"),
    (
        {
            "id": "3mgz",
            "source": "bluesky",
            "reply_to_id": "bluesky:3mgx",
            "signals": {"reply_to_own_account": ["Acme"]},
        },
        "reply_to_brand",
    ),
    ({"id": "9", "source": "rss"}, "unknown"),
]


@pytest.mark.parametrize(("fields", "kind"), ROWS)
def test_a_rows_kind_comes_from_its_fields_or_its_note(fields: dict[str, str], kind: str) -> None:
    assert post_kind_of_row({"text": "t", "label": "other", **fields}) == kind


def tweet(text: str, brand: str = "tweet about an internet provider (tizeti)") -> dict[str, str]:
    return {"text": text, "label": "complaint", "note": f"{brand}; thread position unknown"}


@pytest.mark.parametrize(
    ("row", "kind"),
    [
        (tweet("@Peterhenryok @tizeti i hope you have been refunded?"), "comment"),  # a user
        (tweet("@tizeti poor service like always"), "unknown"),  # the brand, by name
        (tweet("@wifisupport1 @tizeti fix the internet"), "unknown"),  # a company's account
        (tweet("Tizeti is down again, third time this week"), "unknown"),  # answers no one
        (
            tweet(
                "@Spectranet_NG have you fixed up?",
                "tweet about an internet provider (sprectranet)",
            ),
            "unknown",
        ),
        (tweet("@EAHelp half my team is gone from my club", "tweet mentioning FIFA"), "unknown"),
        (
            tweet("@JamesLantern2 Spectranet?", "tweet about an internet provider (sprectranet)"),
            "comment",
        ),
        (tweet("@CSGO when is the next major?", "tweet mentioning CS-GO"), "unknown"),
        (tweet("@PlayStation i love it", "tweet mentioning PlayStation5(PS5)"), "unknown"),
        # a tweet of no stated brand answers whoever its handle is, unless a company's
        (tweet("@someone ugh", "tweet"), "comment"),
    ],
)
def test_a_tweet_that_answers_someone_other_than_the_brand_is_a_reply(
    row: dict[str, str], kind: str
) -> None:
    assert post_kind_of_row(row) == kind


@pytest.mark.parametrize(
    ("source", "reply_to_id", "to_brand", "kind"),
    [
        ("bluesky", None, False, "post"),
        ("reddit", "reddit:t1_abc", False, "comment"),
        ("reddit", "reddit:t1_abc", True, "reply_to_brand"),
        ("x", None, False, "post"),
        ("trustpilot", None, False, "review"),
        ("googleplay", "googleplay:r1", False, "comment"),  # the brand's answer to a review
        ("rss", None, False, "unknown"),
        ("webhook", None, False, "unknown"),  # a sender that gave no thread fields
        ("webhook", "webhook:forum/12", True, "reply_to_brand"),
    ],
)
def test_a_mentions_kind_comes_from_its_source_and_parent(
    source: str, reply_to_id: str | None, to_brand: bool, kind: str
) -> None:
    assert post_kind_of_mention(source, reply_to_id, replies_to_brand=to_brand) == kind


def test_the_model_reads_the_kind_in_brackets_before_the_text() -> None:
    assert model_input("where is my parcel?", "reply_to_brand") == (
        "[reply to brand] where is my parcel?"
    )
    # unknown (or no kind at all) adds nothing: the bare text, as the old tweets trained
    assert model_input("<b>hi</b>", None) == "<b>hi</b>"
    assert model_input("<b>hi</b>", "unknown") == "<b>hi</b>"
    assert model_input("same here", "comment") == "[comment] same here"
    kinds = "review, post, reply_to_brand, comment, unknown"
    with pytest.raises(ValueError, match=f"not one of {kinds}"):
        model_input("x", "reply_to_user")


def test_hiding_kinds_is_fixed_by_the_text_and_close_to_the_rate() -> None:
    texts = [f"post number {i}" for i in range(4000)]
    hidden = [with_kind_dropped(t, "post", 0.2) for t in texts]
    assert hidden == [with_kind_dropped(t, "post", 0.2) for t in texts]  # same on a rerun
    assert set(hidden) == {"post", "unknown"}
    assert 0.17 < hidden.count("unknown") / len(texts) < 0.23
    assert all(with_kind_dropped(t, "post", 0.0) == "post" for t in texts)
    assert with_kind_dropped("anything", "unknown", 0.9) == "unknown"


def test_model_texts_prefix_only_when_asked() -> None:
    rows = [
        {"text": "lost my parcel", "note": "Reddit post in r/UPS"},
        {"text": "love it", "platform": "review", "thread": "opens"},
    ]
    assert model_texts(rows, None) == ["lost my parcel", "love it"]
    assert model_texts(rows, row_kinds(rows)) == ["[post] lost my parcel", "[review] love it"]


pytest.importorskip("onnx")
from tiny_onnx import ROW, token_count_model  # noqa: E402

from models.runtime import DEFAULT_MODEL_DIR, OnnxIntentClassifier  # noqa: E402

LABELS = ("complaint", "praise", "question", "other")


def model_folder(path: Path, input_prefix: str | None, post_kinds: list[str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    token_count_model(path / "model.int8.onnx")
    shutil.copy(DEFAULT_MODEL_DIR / "tokenizer.json", path / "tokenizer.json")
    outputs = [*LABELS, "needs_response"]
    config: dict[str, object] = {
        "id2label": {str(i): name for i, name in enumerate(outputs)},
        "pad_token_id": 0,
    }
    if input_prefix is not None:
        config["input_prefix"] = input_prefix
    if post_kinds is not None:
        config["post_kinds"] = post_kinds
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (path / "metrics.json").write_text(json.dumps({"version": "0.0.1"}), encoding="utf-8")
    return path


def fed_tokens(clf: OnnxIntentClassifier, need: np.ndarray) -> list[int]:
    """Token counts the model saw, read back from its needs_response output."""
    logit = np.log(need / (1 - need))
    return [round(float(x) / float(ROW[0, 4])) for x in logit]


def test_a_post_kind_model_is_fed_the_kind_before_the_text(tmp_path: Path) -> None:
    clf = OnnxIntentClassifier(model_folder(tmp_path, "post_kind"), provider="cpu", threads=1)
    assert clf.reads_post_kind
    texts = ["my parcel is lost", "same", "ok"]
    _, need = clf.predict_scores(texts, ["reply_to_brand", None, "review"])
    expected = [
        len(clf._tokenizer.encode(model_input(t, k)).ids)
        for t, k in zip(texts, ["reply_to_brand", "unknown", "review"], strict=True)
    ]
    assert expected[0] == len(clf._tokenizer.encode("my parcel is lost").ids) + 5
    assert fed_tokens(clf, need) == expected
    # no kinds at all: every post is unknown, fed as its bare text
    _, need = clf.predict_scores(texts)
    assert fed_tokens(clf, need) == [len(clf._tokenizer.encode(t).ids) for t in texts]
    with pytest.raises(ValueError, match="2 kinds for 3 texts"):
        clf.predict(texts, ["review", "post"])
    with pytest.raises(ValueError, match="not one of"):
        clf.predict(["x"], ["reply_to_user"])


def test_a_model_reads_only_the_kinds_it_was_trained_with(tmp_path: Path) -> None:
    texts = ["same, mine is stuck too", "still broken"]
    kinds = ["comment", "reply_to_brand"]
    # config.json without post_kinds: trained before "comment" existed (2.2.0)
    before = OnnxIntentClassifier(
        model_folder(tmp_path / "before", "post_kind"), provider="cpu", threads=1
    )
    assert "comment" not in before.post_kinds
    _, need = before.predict_scores(texts, kinds)
    assert fed_tokens(before, need) == [
        len(before._tokenizer.encode(texts[0]).ids),  # read bare, as it trained on such posts
        len(before._tokenizer.encode(model_input(texts[1], "reply_to_brand")).ids),
    ]
    after = OnnxIntentClassifier(
        model_folder(tmp_path / "after", "post_kind", ["post", "comment", "unknown"]),
        provider="cpu",
        threads=1,
    )
    _, need = after.predict_scores(texts, kinds)
    assert fed_tokens(after, need) == [
        len(after._tokenizer.encode(model_input(texts[0], "comment")).ids),
        len(after._tokenizer.encode(texts[1]).ids),  # reply_to_brand: not among its kinds
    ]
    assert fed_tokens(after, need)[0] == len(after._tokenizer.encode(texts[0]).ids) + 3


def test_other_models_ignore_kinds(tmp_path: Path) -> None:
    clf = OnnxIntentClassifier(model_folder(tmp_path, None), provider="cpu", threads=1)
    assert not clf.reads_post_kind
    _, with_kinds = clf.predict_scores(["my parcel is lost"], ["reply_to_brand"])
    _, without = clf.predict_scores(["my parcel is lost"])
    assert fed_tokens(clf, with_kinds) == fed_tokens(clf, without)
    assert fed_tokens(clf, without) == [len(clf._tokenizer.encode("my parcel is lost").ids)]


def test_a_model_with_an_input_prefix_this_runtime_does_not_know_is_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="input_prefix 'thread_summary'"):
        OnnxIntentClassifier(model_folder(tmp_path, "thread_summary"), provider="cpu")


def test_every_kind_is_a_word_the_tokenizer_keeps_whole() -> None:
    clf = OnnxIntentClassifier(DEFAULT_MODEL_DIR, provider="cpu", threads=1)
    for kind in POST_KINDS:
        tokens = clf._tokenizer.encode(model_input("x", kind)).tokens
        if kind == "unknown":
            assert tokens == ["[CLS]", "x", "[SEP]"]
            continue
        words = kind.split("_")
        assert tokens[1 : len(words) + 3] == ["[", *words, "]"]


def test_the_source_lists_follow_the_connectors_thread_table() -> None:
    from models.post_kind import REVIEW_SOURCES, THREADED_SOURCES

    readme = Path(__file__).resolve().parents[3] / "listener" / "connectors" / "README.md"
    table = readme.read_text(encoding="utf-8").split("## Threads", 1)[1].split("\n\n")[2]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    assert len(rows) > 10
    for names, reply_to in rows:
        for name in re.findall(r"`([a-z_]+)`", names):  # "`meta_webhook`, `meta_graph` (...)"
            if name == "webhook":
                continue  # its sender says, or not: a post without reply_to_id is unknown
            if name in ("appstore", "googleplay", "trustpilot", "yelp"):
                assert name in REVIEW_SOURCES
            elif reply_to.strip() == "none":
                assert name not in THREADED_SOURCES, name  # rss: a post is not known to open
            else:
                assert name in THREADED_SOURCES, name
