from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
from prometheus_client import CollectorRegistry

from agents.observability.metrics import create
from agents.queue.sla import ACK_RETENTION_S, QueueTracker
from listener.record import Mention, Routing, encode_mention
from listener.topics import TopicNames

TOPICS = TopicNames()
NOW = 10_000.0


def _queued(native_id: str, due_in_s: float, priority: str = "P2") -> tuple[bytes, bytes]:
    created = datetime.fromtimestamp(NOW - 100, UTC)
    mention = Mention.create(source="hn", native_id=native_id, text="broken", created_at=created)
    routing = Routing(
        needs_response=True,
        priority=priority,  # type: ignore[arg-type]
        team="support",
        sla_due_at=datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=due_in_s),
    )
    routed = mention.with_stage("routed", at=NOW - 50, routing=routing)
    return routed.id.encode(), encode_mention(routed)


def _tracker(
    clock: Callable[[], float] = lambda: NOW, purge_interval_s: float = 3600.0
) -> tuple[QueueTracker, dict[bytes, bytes], CollectorRegistry]:
    registry = CollectorRegistry()
    table: dict[bytes, bytes] = {}
    tracker = QueueTracker(
        table, create(registry), TOPICS, clock=clock, purge_interval_s=purge_interval_s
    )
    return tracker, table, registry


def _closed(table: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The table without its closed markers (what is still open or waiting for its item)."""
    return {k: v for k, v in table.items() if not orjson.loads(v).get("closed")}


def test_queue_depth_overdue_and_breaches_are_counted_once() -> None:
    tracker, table, registry = _tracker()
    get = registry.get_sample_value
    labels = {"priority": "P2", "team": "support"}
    for native_id, due_in in (("late", -1.0), ("early", 3600.0)):
        key, value = _queued(native_id, due_in)
        tracker.on_record(TOPICS.needs_response, key, value, 0, NOW - 50)
        tracker.on_record(TOPICS.needs_response, key, value, 0, NOW - 40)  # redelivery
    other_key, other_value = _queued("elsewhere", -10.0)
    tracker.on_record(TOPICS.needs_response, other_key, other_value, 3, NOW)
    tracker.refresh([0])
    tracker.refresh([0])
    assert len(table) == 3
    assert get("brandlistener_queue_depth", labels) == 2  # partition 3 is not ours
    assert get("brandlistener_sla_overdue", labels) == 1
    assert get("brandlistener_sla_breaches_total", labels) == 1


def test_ack_closes_the_item_and_observes_time_in_queue() -> None:
    tracker, table, registry = _tracker()
    get = registry.get_sample_value
    labels = {"priority": "P1", "team": "support"}
    key, value = _queued("a", -1.0, priority="P1")
    tracker.on_record(TOPICS.needs_response, key, value, 0, NOW)
    tracker.refresh([0])
    ack = orjson.dumps({"acked_at": NOW + 250})
    tracker.on_record(TOPICS.acks, key, ack, 0, NOW + 300)
    tracker.refresh([0])
    assert orjson.loads(table[key]) == {"acked_at": NOW + 250, "p": 0, "closed": True}
    assert get("brandlistener_time_in_queue_seconds_sum", labels) == 300  # from routed
    assert get("brandlistener_queue_depth", labels) == 0
    assert get("brandlistener_sla_overdue", labels) == 0
    assert get("brandlistener_sla_breaches_total", labels) == 1


def test_an_ack_before_its_item_closes_it_on_arrival() -> None:
    tracker, table, registry = _tracker()
    key, value = _queued("b", 60.0, priority="P3")
    tracker.on_record(TOPICS.acks, key, None, 1, NOW + 10)  # no body: record timestamp
    tracker.on_record(TOPICS.needs_response, key, value, 1, NOW)
    tracker.refresh([1])
    labels = {"priority": "P3", "team": "support"}
    assert _closed(table) == {}
    assert registry.get_sample_value("brandlistener_time_in_queue_seconds_count", labels) == 1
    assert registry.get_sample_value("brandlistener_time_in_queue_seconds_sum", labels) == 60


def test_records_without_key_or_that_do_not_decode_are_ignored() -> None:
    tracker, table, _ = _tracker()
    tracker.on_record(TOPICS.needs_response, None, b"{}", 0, NOW)
    tracker.on_record(TOPICS.needs_response, b"hn:1", b"not json", 0, NOW)
    tracker.on_record(TOPICS.acks, b"hn:2", b"not json either", 0, NOW)
    tracker.refresh([0])
    assert list(table) == [b"hn:2"]  # an ack marker, waiting for its item


def _count_update(value: bytes, count: int) -> bytes:
    """The original as the route stage re-produces it with a copy count (pipeline/dedup.py)."""
    mention = Mention.model_validate_json(value)
    signals = {**mention.signals, "duplicates": {"of": mention.id, "count": count}}
    return encode_mention(mention.model_copy(update={"signals": signals}))


def test_a_copy_count_update_keeps_the_item_and_never_reopens_an_acked_one() -> None:
    tracker, table, registry = _tracker()
    key, value = _queued("campaign", 600.0)
    tracker.on_record(TOPICS.needs_response, key, value, 0, NOW - 50)
    before = table[key]
    tracker.on_record(TOPICS.needs_response, key, _count_update(value, 2), 0, NOW)
    assert table[key] == before, "the queue time and due time are the original's"
    tracker.on_record(TOPICS.acks, key, orjson.dumps({"acked_at": NOW + 10}), 0, NOW + 10)
    tracker.on_record(TOPICS.needs_response, key, _count_update(value, 3), 0, NOW + 20)
    tracker.refresh([0])
    assert _closed(table) == {}
    assert registry.get_sample_value("brandlistener_time_in_queue_seconds_count", {
        "priority": "P2", "team": "support"}) == 1  # fmt: skip


def test_a_queue_record_redelivered_after_its_ack_does_not_reopen_it() -> None:
    """At-least-once: a restart or rebalance replays the queue record after the ack."""
    now = [NOW]
    tracker, table, registry = _tracker(clock=lambda: now[0])
    get = registry.get_sample_value
    labels = {"priority": "P1", "team": "support"}
    key, value = _queued("answered", 30.0, priority="P1")
    tracker.on_record(TOPICS.needs_response, key, value, 0, NOW - 50)
    tracker.refresh([0])
    assert get("brandlistener_queue_depth", labels) == 1
    tracker.on_record(TOPICS.acks, key, orjson.dumps({"acked_at": NOW + 10}), 0, NOW + 10)
    now[0] = NOW + 3600  # long past the item's due time
    tracker.on_record(TOPICS.needs_response, key, value, 0, NOW - 50)  # redelivered
    tracker.refresh([0])
    assert _closed(table) == {}
    assert get("brandlistener_queue_depth", labels) == 0
    assert get("brandlistener_sla_overdue", labels) == 0
    assert not get("brandlistener_sla_breaches_total", labels)  # never counted
    tracker.on_record(TOPICS.acks, key, None, 0, now[0])  # the ack redelivered too
    assert get("brandlistener_time_in_queue_seconds_count", labels) == 1
    assert get("brandlistener_time_in_queue_seconds_sum", labels) == 60  # the first ack's


def test_markers_expire_after_the_retention_in_the_partition_being_processed() -> None:
    now = [NOW]
    tracker, table, registry = _tracker(clock=lambda: now[0], purge_interval_s=60.0)
    closed, closed_value = _queued("closed", -1.0)
    tracker.on_record(TOPICS.needs_response, closed, closed_value, 0, NOW - 50)
    tracker.on_record(TOPICS.acks, closed, None, 0, NOW)
    tracker.on_record(TOPICS.acks, b"hn:orphan", None, 0, NOW)  # its item never comes
    tracker.on_record(TOPICS.acks, b"hn:other", None, 1, NOW)  # partition 1
    still_open, open_value = _queued("open", 3600.0)
    tracker.on_record(TOPICS.needs_response, still_open, open_value, 0, NOW)

    now[0] = NOW + ACK_RETENTION_S - 1  # not yet expired
    tracker.on_record(TOPICS.needs_response, b"hn:x", b"junk", 0, now[0])
    assert set(table) == {closed, b"hn:orphan", b"hn:other", still_open}

    now[0] = NOW + ACK_RETENTION_S + 1  # expired, but the last purge was under 60 s ago
    tracker.on_record(TOPICS.needs_response, b"hn:x", b"junk", 0, now[0])
    assert len(table) == 4

    now[0] += 60  # a record of partition 0 purges partition 0's markers only
    tracker.on_record(TOPICS.needs_response, b"hn:x", b"junk", 0, now[0])
    assert set(table) == {b"hn:other", still_open}
    tracker.on_record(TOPICS.acks, None, None, 1, now[0])
    assert set(table) == {still_open}, "an open item is never purged"
    tracker.refresh([0])
    labels = {"priority": "P2", "team": "support"}
    assert registry.get_sample_value("brandlistener_queue_depth", labels) == 1
