"""``brand-listener replay`` against the suite's real Kafka broker."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import orjson
import pytest

from integration.helpers import read_all
from listener import replay
from listener.producer import MentionProducer
from listener.record import Mention, decode_mention
from listener.samples import BRAND_POSTS
from listener.settings import KafkaSettings
from listener.topics import TopicNames


def _args(path: Path, bootstrap: str, topics: TopicNames, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    replay.register_commands(parser.add_subparsers())
    argv = ["replay", str(path), "--bootstrap", bootstrap, "--topic-prefix", topics.prefix]
    return parser.parse_args([*argv, "--no-progress", *extra])


def _post(n: int) -> bytes:
    return orjson.dumps(
        {"id": f"it-{n}", "source": "itest", "text": f"@Flyaway post number {n}", "author": "a"}
    )


def test_valid_lines_reach_raw_keyed_by_id_and_bad_lines_dead_letter(
    tmp_path: Path, kafka_bootstrap: str, topics: TopicNames, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [_post(n) for n in range(1, 11)]
    lines.insert(3, b"{this is not json")  # line 4
    lines.insert(8, b'{"source": "itest", "text": "   "}')  # line 9
    path = tmp_path / "posts.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    assert replay.run_replay(_args(path, kafka_bootstrap, topics)) == 0

    out, err = capsys.readouterr()
    assert "10 produced, 2 dead-lettered" in out
    assert f"{path}:4: decode:" in err and f"{path}:9: missing_text:" in err

    raw = read_all(kafka_bootstrap, topics.raw)
    assert sorted(key for key, _ in raw if key) == sorted(
        f"itest:it-{n}".encode() for n in range(1, 11)
    )
    for key, value in raw:
        mention = decode_mention(value)
        assert isinstance(mention, Mention)
        assert key == mention.id.encode()
        assert mention.text == f"@Flyaway post number {mention.id.rsplit('-', 1)[1]}"
        assert mention.author.handle == "a"

    dead = [orjson.loads(value) for _, value in read_all(kafka_bootstrap, topics.dead_letter)]
    by_line = {d["origin"]["line"]: d for d in dead}
    assert sorted(by_line) == [4, 9]
    assert by_line[4]["reason"] == "decode"
    assert by_line[4]["payload"] == "{this is not json"
    assert by_line[9]["reason"] == "missing_text"
    assert all(d["stage"] == "replay" and d["origin"]["file"] == str(path) for d in dead)


def test_rate_is_honoured(tmp_path: Path, kafka_bootstrap: str, topics: TopicNames) -> None:
    path = tmp_path / "paced.jsonl"
    path.write_bytes(b"\n".join(_post(n) for n in range(100)) + b"\n")
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topics.prefix)
    with MentionProducer(kafka) as producer:
        started = time.perf_counter()
        stats = replay.replay_file(path, producer, rate=200, progress=False)
        producer.flush()
        elapsed = time.perf_counter() - started
    assert stats.produced == 100
    assert 0.45 <= elapsed < 5.0  # 99 intervals of 5 ms = 0.495 s
    assert len(read_all(kafka_bootstrap, topics.raw)) == 100


def test_bundled_sample_stream_replays(kafka_bootstrap: str, topics: TopicNames) -> None:
    args = _args(BRAND_POSTS, kafka_bootstrap, topics, "--limit", "150")
    assert replay.run_replay(args) == 0
    expected = [
        f"{row['source']}:{row['id']}".encode()
        for row in map(orjson.loads, BRAND_POSTS.read_bytes().splitlines()[:150])
    ]
    raw = read_all(kafka_bootstrap, topics.raw)
    assert sorted(key for key, _ in raw if key) == sorted(expected)
    assert read_all(kafka_bootstrap, topics.dead_letter) == []
