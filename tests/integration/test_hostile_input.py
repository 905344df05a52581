"""Hostile input end to end: ~1,400 bad lines and a 2 MB post lose nothing and stop nothing.

``brand-listener replay`` (a subprocess, as a user runs it) gets a file of
good posts mixed with every kind of bad line: invalid UTF-8, truncated and
non-object JSON, 500-deep nesting, missing/blank/non-string text, bad field
types, and posts over Kafka's record limit. Every line must end either in
``mentions.raw`` or in the dead-letter topic with a reason (a 2 MB post as
``too_large``, cut to fit, its size recorded); the replay exits 0 and goes on
past each; the worker classifies every good post and stays healthy.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson

from integration.helpers import ROOT, Tail, Worker, read_all, running
from listener.dead_letter import MAX_RECORD_BYTES
from listener.topics import TopicNames

GOOD = 60


def bad_lines() -> Iterator[bytes]:
    """Bad lines of every kind, many variants each (1,380 in all)."""
    for n in range(120):
        yield b'{"text": "caf\xe9 ' + str(n).encode() + b'"}'  # latin-1, not UTF-8
        yield b"\xff\xfe\x00" + str(n).encode()  # binary noise
        yield b'{"text": "unterminated ' + str(n).encode()  # truncated JSON
        yield orjson.dumps([{"text": f"in a list {n}"}])  # not an object
        yield str(n).encode()  # a bare number
        yield b"[" * 500 + b"]" * 500  # 500-deep nesting
        yield b'{"a":' * 250 + b"1" + b"}" * 250  # 250-deep objects, no text
        yield orjson.dumps({"text": "   \t\n"})  # blank text
        yield orjson.dumps({"text": n})  # text not a string
        yield orjson.dumps({"text": f"post {n}", "source": ["x"]})  # source not a string
        yield orjson.dumps({"id": f"bad-{n}", "text": None})  # null text
    for n in range(60):
        yield orjson.dumps({"text": f"ok {n}", "created_at": "yesterday-ish"})  # bad date
    for n in range(3):
        big = {"id": f"huge-{n}", "text": "<script>alert(1)</script>" * 80_000}  # ~2 MB
        yield orjson.dumps(big)


def good_lines() -> Iterator[bytes]:
    for n in range(GOOD):
        text = f"@Acme my order {n} never arrived <img src=x onerror=alert({n})> help?"
        yield orjson.dumps({"id": f"good-{n}", "text": text, "author": {"handle": f"u{n}"}})


def test_bad_lines_and_oversized_posts_are_dead_lettered_and_the_run_goes_on(
    kafka_bootstrap: str, topics: TopicNames, group_id: str, tmp_path: Path
) -> None:
    lines = list(bad_lines())
    goods = list(good_lines())
    mixed = [line for pair in zip(lines[: len(goods)], goods, strict=True) for line in pair]
    mixed += lines[len(goods) :]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    replay = subprocess.run(  # noqa: S603 - our own command
        [
            sys.executable,
            "-m",
            "agents.commands.cli",
            "replay",
            str(path),
            "--bootstrap",
            kafka_bootstrap,
            "--topic-prefix",
            topics.prefix,
            "--no-progress",
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert replay.returncode == 0, replay.stderr[-3000:]
    raw = read_all(kafka_bootstrap, topics.raw)
    dead = [orjson.loads(v) for _, v in read_all(kafka_bootstrap, topics.dead_letter)]
    assert len(raw) + len(dead) == len(mixed), "every line ends in one topic or the other"
    assert len(raw) == GOOD, "only the good posts reach mentions.raw"
    assert all(d["stage"] == "replay" and d["reason"] for d in dead)
    reasons = Counter(d["reason"] for d in dead)
    assert reasons["too_large"] == 3 and reasons["decode"] >= 360, reasons
    assert reasons["validation"] >= 60 + 240 and reasons["missing_text"] >= 240, reasons
    for letter in (d for d in dead if d["reason"] == "too_large"):
        assert letter["payload_truncated"] is True
        assert letter["payload_bytes"] > 2_000_000
    assert all(len(orjson.dumps(d)) <= MAX_RECORD_BYTES for d in dead)

    classified = Tail(kafka_bootstrap, topics.classified)
    try:
        with running(Worker(tmp_path, kafka_bootstrap, topics, group_id)) as worker:
            classified.until(lambda: len(set(classified.ids())) >= len(raw), timeout=120)
            assert worker.get("/health")[0] == 200, worker.tail()
        texts = {orjson.loads(v)["id"]: orjson.loads(v)["text"] for _, v in classified.records}
        assert len(texts) == len(raw)
        assert any("<img src=x onerror=" in t for t in texts.values()), "markup kept as text"
    finally:
        classified.close()
