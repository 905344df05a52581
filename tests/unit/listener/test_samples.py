from __future__ import annotations

import re
from collections import Counter
from typing import Any

import orjson
import pytest

from listener.record import LABELS, Mention
from listener.replay import parse_line
from listener.samples import BRAND_POST_LABELS, BRAND_POSTS

SOURCES = {"bluesky", "mastodon", "hackernews", "reddit", "rss"}


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in BRAND_POSTS.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def mentions() -> list[Mention]:
    lines = BRAND_POSTS.read_bytes().splitlines()
    return [parse_line(line, n) for n, line in enumerate(lines, start=1)]


@pytest.fixture(scope="module")
def labels() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in BRAND_POST_LABELS.read_bytes().splitlines():
        rec = orjson.loads(line)
        assert rec["id"] not in out, f"duplicate label for {rec['id']}"
        out[rec["id"]] = rec
    return out


def test_every_line_is_a_valid_mention(rows: list[dict[str, Any]], mentions: list[Mention]) -> None:
    assert len(mentions) >= 600
    for row, m in zip(rows, mentions, strict=True):
        assert row["source"] in SOURCES
        assert m.id == f"{row['source']}:{row['id']}"  # every line carries its own id
        assert m.author.handle and m.author.followers is not None
        assert m.brands and m.lang and m.url and m.url.startswith("https://")
        assert "label" not in row  # the model decides


def test_ids_are_unique_and_threads_point_backwards(mentions: list[Mention]) -> None:
    seen: set[str] = set()
    for m in mentions:
        assert m.id not in seen
        if m.reply_to_id is not None:
            assert m.reply_to_id in seen
            assert m.thread_id in seen
        seen.add(m.id)


def test_timestamps_span_one_day_in_order(mentions: list[Mention]) -> None:
    times = [m.created_at for m in mentions]
    assert times == sorted(times)
    assert 20 * 3600 < (times[-1] - times[0]).total_seconds() < 24 * 3600


def _normalised(text: str, brands: set[str]) -> str:
    for word in sorted(brands, key=len, reverse=True):
        text = re.sub(re.escape(word), "X", text, flags=re.IGNORECASE)
    return re.sub(r"\W+", " ", text.lower()).strip()


def test_no_two_posts_alike_modulo_brand(mentions: list[Mention]) -> None:
    names = {b for m in mentions for b in m.brands}
    names |= {b.replace(" ", "") for b in names} | {b.split()[0] for b in names}
    counts = Counter(_normalised(m.text, names) for m in mentions)
    assert [t for t, n in counts.items() if n > 1] == []


def test_varied_stream(mentions: list[Mention]) -> None:
    assert len({b for m in mentions for b in m.brands}) >= 8
    assert {m.source for m in mentions} == SOURCES
    assert sum(m.lang != "en" for m in mentions) >= 5
    assert sum(m.reply_to_id is not None for m in mentions) >= 50
    lengths = sorted(len(m.text) for m in mentions)
    assert lengths[0] < 20 and lengths[-1] > 200


def test_labels_cover_the_english_posts(
    mentions: list[Mention], labels: dict[str, dict[str, Any]]
) -> None:
    ids = {m.id for m in mentions}
    assert set(labels) <= ids
    english = [m for m in mentions if m.lang == "en"]
    assert len(labels) >= 0.95 * len(english)
    assert all(m.id not in labels for m in mentions if m.lang != "en")


def test_label_mix_is_roughly_as_intended(labels: dict[str, dict[str, Any]]) -> None:
    counts = Counter(rec["label"] for rec in labels.values())
    assert set(counts) == set(LABELS)
    share = {label: counts[label] / len(labels) for label in LABELS}
    assert 0.28 <= share["complaint"] <= 0.42
    assert 0.15 <= share["question"] <= 0.25
    assert 0.15 <= share["praise"] <= 0.25
    assert 0.20 <= share["other"] <= 0.32


def test_needs_response_only_for_complaints_and_questions(
    labels: dict[str, dict[str, Any]],
) -> None:
    for rec in labels.values():
        if rec["label"] in ("praise", "other"):
            assert rec["needs_response"] is False, rec
    assert sum(rec["needs_response"] for rec in labels.values()) > 0.4 * len(labels)
