from __future__ import annotations

import argparse
import io
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from listener import replay
from listener.errors import SkippableError
from listener.record import Mention
from listener.replay import ReplayStats, parse_line, replay_file, stable_native_id


def _line(**obj: Any) -> bytes:
    return orjson.dumps(obj)


def test_minimal_line_gets_defaults() -> None:
    before = datetime.now(UTC)
    m = parse_line(_line(text="@Flyaway any news on FA 212?"), 7)
    assert m.source == "replay"
    assert m.id == f"replay:{stable_native_id('replay', 7, '@Flyaway any news on FA 212?')}"
    assert before <= m.created_at <= datetime.now(UTC)
    assert m.author.handle is None
    assert m.brands == ()


def test_default_source_is_configurable_and_line_source_wins() -> None:
    assert parse_line(_line(text="hi"), 1, default_source="demo").source == "demo"
    m = parse_line(_line(text="hi", source="mastodon"), 1, default_source="demo")
    assert m.source == "mastodon"
    assert m.id.startswith("mastodon:")


def test_full_line() -> None:
    raw = _line(
        id="post-41",
        source="reddit",
        text="Quillbank app logged me out again",
        author={"id": "t2_9", "handle": "u/ledger", "name": "Led", "followers": 40, "url": "x"},
        created_at="2026-05-02T08:15:00+02:00",
        url="https://reddit.example/r/banking/41",
        lang="en",
        brands=["Quillbank"],
        reply_to_id="reddit:post-40",
        reply_to_author="QuillbankHelp",
        thread_id="reddit:post-1",
        label="complaint",  # unknown keys are ignored
    )
    m = parse_line(raw, 3)
    assert m.id == "reddit:post-41"
    assert m.author.followers == 40 and m.author.handle == "u/ledger"
    assert m.created_at == datetime(2026, 5, 2, 6, 15, tzinfo=UTC)
    assert m.brands == ("Quillbank",)
    assert m.reply_to_author is not None and m.reply_to_author.handle == "QuillbankHelp"
    assert (m.url, m.lang, m.reply_to_id, m.thread_id) == (
        "https://reddit.example/r/banking/41",
        "en",
        "reddit:post-40",
        "reddit:post-1",
    )


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        (1767261600, datetime(2026, 1, 1, 10, 0, tzinfo=UTC)),
        (1767261600.5, datetime(2026, 1, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2026-01-01T10:00:00Z", datetime(2026, 1, 1, 10, 0, tzinfo=UTC)),
        ("2026-01-01T10:00:00", datetime(2026, 1, 1, 10, 0, tzinfo=UTC)),  # naive -> UTC
    ],
)
def test_created_at_forms(created_at: object, expected: datetime) -> None:
    assert parse_line(_line(text="t", created_at=created_at), 1).created_at == expected


def test_author_string_is_a_handle_and_brands_string_is_one_brand() -> None:
    m = parse_line(_line(text="t", author="jo.bsky.social", brands="Nimbus Mobile"), 1)
    assert m.author.handle == "jo.bsky.social"
    assert m.brands == ("Nimbus Mobile",)


def test_ids() -> None:
    assert parse_line(_line(text="t", id=4021, source="hackernews"), 1).id == "hackernews:4021"
    # a dumped Mention's id is not double-prefixed
    assert parse_line(_line(text="t", id="rss:abc", source="rss"), 1).id == "rss:abc"


def test_missing_ids_are_stable_and_distinct() -> None:
    a1 = parse_line(_line(text="same text"), 1)
    a2 = parse_line(_line(text="same text"), 1)
    b = parse_line(_line(text="same text"), 2)
    c = parse_line(_line(text="same text", source="rss"), 1)
    assert a1.id == a2.id
    assert len({a1.id, b.id, c.id.split(":", 1)[1]}) == 3
    assert stable_native_id("replay", 1, "x") == stable_native_id("replay", 1, "x")
    assert len(stable_native_id("replay", 1, "x")) == 20


@pytest.mark.parametrize(
    ("raw", "reason", "fragment"),
    [
        (b"this is not json", "decode", "JSON"),
        (b'{"text": "cut off', "decode", "JSON"),
        (b'{"text": "caf\xe9"}', "decode", "JSON"),  # not UTF-8
        (b"[1, 2]", "not_object", "list"),
        (b'"just a string"', "not_object", "str"),
        (b"{}", "missing_text", "text"),
        (b'{"text": ""}', "missing_text", "text"),
        (b'{"text": "  \\n "}', "missing_text", "text"),
        (b'{"text": null}', "missing_text", "text"),
        (b'{"text": 42}', "validation", "text"),
        (b'{"text": "t", "source": 3}', "validation", "source"),
        (b'{"text": "t", "source": "Blue Sky"}', "validation", "source"),
        (b'{"text": "t", "id": ""}', "validation", "id"),
        (b'{"text": "t", "id": [1]}', "validation", "id"),
        (b'{"text": "t", "author": 5}', "validation", "author"),
        (b'{"text": "t", "author": {"followers": -2}}', "validation", "author.followers"),
        (b'{"text": "t", "author": {"followers": "lots"}}', "validation", "author.followers"),
        (b'{"text": "t", "reply_to_author": 5}', "validation", "reply_to_author"),
        (b'{"text": "t", "created_at": "yesterday"}', "validation", "created_at"),
        (b'{"text": "t", "created_at": true}', "validation", "created_at"),
        (b'{"text": "t", "created_at": 1e20}', "validation", "created_at"),
        (b'{"text": "t", "url": 7}', "validation", "url"),
        (b'{"text": "t", "brands": [1]}', "validation", "brands"),
    ],
)
def test_malformed_lines_have_a_reason(raw: bytes, reason: str, fragment: str) -> None:
    with pytest.raises(SkippableError) as info:
        parse_line(raw, 9)
    assert info.value.reason == reason
    assert fragment in str(info.value)


class _Recorder:
    def __init__(self) -> None:
        self.mentions: list[Mention] = []
        self.dead: list[tuple[bytes | str | None, dict[str, Any]]] = []

    def send_mention(self, mention: Mention, *, stage: str = "produce") -> bool:
        self.mentions.append(mention)
        return True

    def send_dead_letter(
        self,
        payload: bytes | str | None,
        *,
        stage: str,
        reason: str,
        error: str,
        origin: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> None:
        self.dead.append((payload, {"stage": stage, "reason": reason, "origin": origin}))


def _write(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "posts.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_replay_file_routes_good_and_bad_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [_line(text="one"), b"oops", b"", b"   ", _line(text="two", id="b"), b'{"text": ""}'],
    )
    target, err = _Recorder(), io.StringIO()
    stats = replay_file(path, target, progress=False, err=err)
    assert [m.text for m in target.mentions] == ["one", "two"]
    assert [(p, d["reason"], d["origin"]) for p, d in target.dead] == [
        (b"oops", "decode", {"file": str(path), "line": 2}),
        (b'{"text": ""}', "missing_text", {"file": str(path), "line": 6}),
    ]
    assert all(d["stage"] == "replay" for _, d in target.dead)
    assert (stats.produced, stats.dead_lettered) == (2, 2)
    report = err.getvalue().splitlines()
    assert report[0].startswith(f"{path}:2: decode: ")
    assert report[1].startswith(f"{path}:6: missing_text: ")
    assert len(report) == 2  # no progress bar output


def test_replaying_twice_gives_the_same_ids(tmp_path: Path) -> None:
    path = _write(tmp_path, [_line(text=f"post {i}") for i in range(5)])
    first, second = _Recorder(), _Recorder()
    replay_file(path, first, progress=False, err=io.StringIO())
    replay_file(path, second, progress=False, err=io.StringIO())
    assert [m.id for m in first.mentions] == [m.id for m in second.mentions]
    assert len({m.id for m in first.mentions}) == 5


def test_limit_counts_non_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, [_line(text="a"), b"", b"bad", _line(text="c"), _line(text="d")])
    target = _Recorder()
    stats = replay_file(path, target, limit=3, progress=False, err=io.StringIO())
    assert (stats.produced, stats.dead_lettered) == (2, 1)
    assert replay.count_lines(path) == 4
    assert replay.count_lines(path, limit=3) == 3


def test_summary_line() -> None:
    stats = ReplayStats(produced=98, dead_lettered=2, elapsed=0.5)
    assert stats.rate == 200.0
    assert stats.summary("f.jsonl") == (
        "replayed f.jsonl: 98 produced, 2 dead-lettered in 0.50 s (200.0 posts/s)"
    )
    assert ReplayStats().rate == 0.0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    replay.register_commands(parser.add_subparsers())
    return parser.parse_args(argv)


def test_command_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTENER_KAFKA__BOOTSTRAP_SERVERS", "env-host:9092")
    monkeypatch.setenv("LISTENER_KAFKA__TOPIC_PREFIX", "env.")
    args = _parse(["replay", "f.jsonl", "--bootstrap", "flag-host:1", "--connect-timeout", "2"])
    kafka = replay.kafka_settings_from_args(args)
    assert kafka.bootstrap_servers == "flag-host:1"
    assert kafka.topic_prefix == "env."
    assert kafka.bootstrap_timeout_s == 2.0
    assert args.func is replay.run_replay


@pytest.mark.parametrize("flag", ["--rate", "--limit"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_rate_and_limit_must_be_positive(flag: str, value: str) -> None:
    with pytest.raises(SystemExit):
        _parse(["replay", "f.jsonl", flag, value])


def test_missing_file_exits_1_before_touching_kafka(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parse(["replay", str(tmp_path / "nope.jsonl"), "--bootstrap", "127.0.0.1:1"])
    assert replay.run_replay(args) == replay.EXIT_FILE
    assert "nope.jsonl: no such file" in capsys.readouterr().err


def test_unreachable_kafka_exits_3_quickly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, [_line(text="a")])
    # port 1 on loopback: refused at once; the bounded bootstrap timeout ends the wait.
    args = _parse(["replay", str(path), "--bootstrap", "127.0.0.1:1", "--connect-timeout", "0.5"])
    assert replay.run_replay(args) == replay.EXIT_KAFKA
    err = capsys.readouterr().err
    assert "Kafka unreachable" in err and "127.0.0.1:1" in err


def test_own_account_of_can_be_given_on_the_line() -> None:
    assert parse_line(_line(text="sorry!", own_account_of="acme"), 1).own_account_of == ("acme",)
    assert parse_line(_line(text="hi", own_account_of=["a", "b"]), 1).own_account_of == ("a", "b")
    with pytest.raises(SkippableError, match="own_account_of"):
        parse_line(_line(text="hi", own_account_of=7), 1)


def test_replay_with_brands_marks_own_accounts_in_file_order(tmp_path: Path) -> None:
    from listener.samples import BRAND_POSTS, BRANDS

    target = _Recorder()
    stats = replay_file(
        BRAND_POSTS, target, progress=False, err=io.StringIO(), brands=replay.load_brands(BRANDS)
    )
    own = [m for m in target.mentions if m.own_account_of]
    # Every verified author of the sample stream is one of its brand's own accounts.
    assert {m.id for m in own} == {m.id for m in target.mentions if m.author.verified}
    assert stats.own_accounts == len(own) == 58
    assert all(m.own_account_of == m.brands for m in own)
    replies = [m for m in target.mentions if m.signals.get("reply_to_own_account")]
    assert len(replies) > 40
    assert "(58 by brands' own accounts)" in stats.summary("f")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("brands: []\n", "expected a 'brands' list"),
        ("[1\n", "cannot read brands"),
        ("brands:\n  - name: acme\n    own_accounts: {mastodon: [acme]}\n", "brands[0]"),
        ("brands:\n  - name: acme\n", "nothing to match"),
    ],
)
def test_bad_brands_file(tmp_path: Path, text: str, message: str) -> None:
    from listener.errors import FatalError

    path = tmp_path / "brands.yaml"
    path.write_text(text)
    with pytest.raises(FatalError, match=re.escape(message)):
        replay.load_brands(path)
