from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry

from listener.brands import BrandMatcher, BrandSettings
from listener.connectors.base import BaseConnector, Batch, Skipped
from listener.cursors import CursorStore
from listener.errors import FatalError, RetryableError
from listener.metrics import create
from listener.producer import MentionProducer
from listener.record import Mention, decode_mention
from listener.runner import RecentIds, Runner
from listener.settings import KafkaSettings

MATCHER = BrandMatcher([BrandSettings(name="acme", keywords=("acme",))])


class Future:
    def add_errback(self, *args: Any) -> None:
        pass


class FakeClient:
    def __init__(self, fail_flushes: int = 0) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.pending: list[tuple[str, bytes]] = []
        self.fail_flushes = fail_flushes

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future:
        assert value is not None
        self.pending.append((topic, value))
        return Future()

    def flush(self, timeout: float | None = None) -> None:
        from kafka.errors import KafkaTimeoutError

        if self.fail_flushes:
            self.fail_flushes -= 1
            self.pending.clear()
            raise KafkaTimeoutError("broker down")
        self.sent.extend(self.pending)
        self.pending.clear()

    def close(self, timeout: float | None = None) -> None:
        pass


def mention(n: int, text: str = "acme rocks") -> Mention:
    return Mention.create(
        source="fake", native_id=str(n), text=text, created_at=datetime(2024, 1, 1, tzinfo=UTC)
    )


class Scripted(BaseConnector):
    """Replays a script of poll results (Batch or exception), then stops the runner."""

    name: ClassVar[str] = "fake"

    def __init__(self, script: list[Batch | BaseException], runner: list[Runner]) -> None:
        super().__init__(MATCHER, poll_interval_s=0)
        self.script = script
        self.cursors_seen: list[str | None] = []
        self.delivered_batches: list[tuple[Batch, BaseException | None]] = []
        self.closed = 0
        self.runner = runner

    async def poll(self, cursor: str | None) -> Batch:
        self.cursors_seen.append(cursor)
        if not self.script:
            self.runner[0].stop()
            await asyncio.sleep(10)
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    async def delivered(self, batch: Batch, error: BaseException | None) -> None:
        self.delivered_batches.append((batch, error))

    async def close(self) -> None:
        self.closed += 1


def make(
    tmp_path: Path,
    script: list[Batch | BaseException],
    client: FakeClient,
    matcher: BrandMatcher = MATCHER,
) -> tuple[Runner, Scripted, CollectorRegistry]:
    holder: list[Runner] = []
    conn = Scripted(script, holder)
    registry = CollectorRegistry()
    runner = Runner(
        [conn],
        matcher,
        lambda: MentionProducer(KafkaSettings(), client=client),
        CursorStore(tmp_path),
        create(registry),
        backoff_base_s=0.001,
        backoff_max_s=0.01,
    )
    holder.append(runner)
    return runner, conn, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, {"connector": "fake", **labels}) or 0.0


def test_matches_dedups_produces_then_saves_cursor(tmp_path: Path) -> None:
    client = FakeClient()
    script: list[Batch | BaseException] = [
        Batch((mention(1), mention(2, "nothing"), mention(1)), cursor="c1", more=True),
        Batch((mention(1), mention(3)), cursor="c2", skipped=(Skipped("decode", "bad", b"x"),)),
    ]
    runner, conn, registry = make(tmp_path, script, client)
    assert asyncio.run(runner.run()) == {"fake": None}
    raw = [decode_mention(v) for t, v in client.sent if t == "mentions.raw"]
    assert [m.id for m in raw] == ["fake:1", "fake:3"]
    assert raw[0].brands == ("acme",) and raw[0].signals["matched_terms"] == {"acme": ["acme"]}
    assert [t for t, _ in client.sent].count("mentions.dead-letter") == 1
    assert CursorStore(tmp_path).load("fake") == "c2"
    assert conn.cursors_seen == [None, "c1", "c2"] and conn.closed == 1
    assert value(registry, "brandlistener_connector_posts_fetched_total") == 5
    assert value(registry, "brandlistener_connector_posts_produced_total") == 2
    assert value(registry, "brandlistener_connector_errors_total", kind="skipped") == 1
    assert value(registry, "brandlistener_connector_cursor_lag_seconds") > 0


def test_retryable_backs_off_and_produce_failure_keeps_cursor(tmp_path: Path) -> None:
    client = FakeClient(fail_flushes=2)
    script: list[Batch | BaseException] = [
        RetryableError("429", after=0.01),
        Batch((mention(1),), cursor="c1"),
    ]
    runner, conn, registry = make(tmp_path, script, client)
    CursorStore(tmp_path).save("fake", "c0")
    asyncio.run(runner.run())
    assert [decode_mention(v).id for _, v in client.sent] == ["fake:1"]
    assert conn.cursors_seen[:2] == ["c0", "c0"]
    assert value(registry, "brandlistener_connector_errors_total", kind="produce") == 2
    assert value(registry, "brandlistener_connector_reconnects_total") == 3
    assert CursorStore(tmp_path).load("fake") == "c1"


def test_fatal_stops_only_that_connector(tmp_path: Path) -> None:
    runner, conn, registry = make(tmp_path, [FatalError("401 bad token")], FakeClient())
    assert asyncio.run(runner.run()) == {"fake": "401 bad token"}
    assert conn.closed == 1
    assert value(registry, "brandlistener_connector_errors_total", kind="fatal") == 1


def test_recent_ids_bounded() -> None:
    recent = RecentIds(2)
    for key in "abc":
        recent.add(key)
    assert "a" not in recent and "b" in recent and "c" in recent


def test_cursor_store_atomic_roundtrip(tmp_path: Path) -> None:
    store = CursorStore(tmp_path / "c")
    assert store.load("x") is None
    store.save("x", "123")
    assert store.load("x") == "123" and not list((tmp_path / "c").glob("*.tmp"))
    store.path("y").write_text("{torn")
    with pytest.raises(FatalError, match="unreadable"):
        store.load("y")


def test_own_account_posts_and_replies_to_them_are_produced_marked(tmp_path: Path) -> None:
    from listener.own_accounts import OwnAccountSettings
    from listener.record import Author

    own = OwnAccountSettings(other={"fake": ("AcmeCare",)})
    matcher = BrandMatcher([BrandSettings(name="acme", keywords=("acme",), own_accounts=own)])
    brand = Mention.create(
        source="fake", native_id="b", text="Sorry! DM us?", author=Author(handle="@acmecare")
    )
    follow_up = Mention.create(
        source="fake", native_id="f", text="it's been 8 days", reply_to_id="fake:b"
    )
    stray = mention(9, "nothing to do with anyone")
    client = FakeClient()
    runner, _, _ = make(tmp_path, [Batch((brand, follow_up, stray), cursor="c1")], client, matcher)
    asyncio.run(runner.run())
    raw = {m.id: m for m in (decode_mention(v) for t, v in client.sent if t == "mentions.raw")}
    assert set(raw) == {"fake:b", "fake:f"}
    assert raw["fake:b"].own_account_of == ("acme",)
    assert raw["fake:f"].own_account_of == ()
    assert raw["fake:f"].signals["reply_to_own_account"] == ["acme"]
