"""The commit rule of agents/runtime/commits.py, on a consumer with no broker behind it.

Each rule test runs twice: on :class:`ContiguousCommitConsumer` and on stock
Faust's aiokafka consumer, where it is expected to fail (``xfail(strict)``):
that is the evidence that the rule closes a hole Faust 0.15.3 has. The
broker calls (committed offsets, log start, seek, fetch) are small doubles.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable
from typing import Any

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from async_support import sync
from faust.transport.consumer import Consumer as FaustBaseConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ConsumerMessage

from agents.runtime import commits
from agents.runtime.commits import (
    ContiguousCommitConsumer,
    ContiguousCommitTransport,
    contiguous_end,
)

TOPIC = "t.mentions.raw"
RAW = TP(TOPIC, 0)

STOCK = pytest.param(
    faust_aiokafka.Consumer,
    marks=pytest.mark.xfail(strict=True, reason="stock Faust 0.15.3 commits past the hole"),
    id="stock-faust",
)
OURS = pytest.param(ContiguousCommitConsumer, id="contiguous")


class Broker:
    """What the consumer asks the broker, answered from fields."""

    def __init__(self, committed: int | None, log_start: int = 0) -> None:
        self.committed = committed
        self.log_start = log_start
        self.seeks: list[tuple[TP, int]] = []
        self.fetches: list[dict[TP, list[ConsumerRecord[bytes, bytes]]]] = []


def make_consumer(cls: type[faust_aiokafka.Consumer], broker: Broker) -> Any:
    """A consumer of ``cls`` whose broker calls go to ``broker``; one partition assigned."""
    app = faust.App(f"commit-test-{id(broker)}", broker="kafka://127.0.0.1:1", store="memory://")
    transport = ContiguousCommitTransport(app.conf.broker_consumer, app)

    async def noop(*args: Any) -> None:
        return None

    consumer = cls(
        transport,
        callback=noop,
        on_partitions_revoked=noop,
        on_partitions_assigned=noop,
    )
    app.topics._acking_topics.add(TOPIC)  # what subscribing an agent with acks does

    async def seek_to_committed() -> dict[TP, int | None]:
        return {RAW: broker.committed}

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        return {tp: broker.log_start for tp in tps}

    async def _seek(tp: TP, offset: int) -> None:
        broker.seeks.append((tp, offset))

    async def _getmany(active: set[TP] | None, timeout: float) -> dict[TP, list[Any]]:
        return broker.fetches.pop(0) if broker.fetches else {}

    consumer.seek_to_committed = seek_to_committed
    consumer.earliest_offsets = earliest_offsets
    consumer._seek = _seek
    consumer._thread.getmany = _getmany
    consumer.assignment = lambda: {RAW}
    consumer.highwater = lambda tp: 10_000
    return consumer


def record(offset: int) -> ConsumerRecord[bytes, bytes]:
    """An aiokafka record of RAW at ``offset``."""
    return ConsumerRecord(
        topic=TOPIC,
        partition=0,
        offset=offset,
        timestamp=1_700_000_000_000,
        timestamp_type=0,
        key=b"k",
        value=b"v",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=1,
        headers=(),
    )


def _message(offset: int) -> ConsumerMessage:
    return ConsumerMessage(TOPIC, 0, offset, 0.0, 0, [], b"k", b"v", None, 1, 1, RAW)


def ack_all(consumer: Any, offsets: Iterable[int]) -> None:
    """Ack each offset as an agent's stream does once the record's output is durable."""
    for offset in offsets:
        m = _message(offset)
        consumer.track_message(m)
        if hasattr(consumer, "mark_delivered"):  # ours; stock Faust has no such step
            consumer.mark_delivered([m])
        consumer.ack(m)


def skip(consumer: Any, offsets: Iterable[int], readers: int = 1) -> list[ConsumerMessage]:
    """What Faust's stream does with a record it skips (an earlier generation, flow paused).

    ``Stream._py_aiter`` acks it through ``Event.ack`` -> ``Message.ack``,
    around any ``Stream.ack`` override, without processing it.
    """
    messages = []
    for offset in offsets:
        m = _message(offset)
        m.incref(readers)
        consumer.track_message(m)
        m.ack(consumer, n=readers)
        messages.append(m)
    return messages


def committable(consumer: Any) -> dict[TP, int]:
    """What the next commit would send (Faust's own selection of offsets)."""
    pending = list(consumer._filter_tps_with_pending_acks())
    return dict(consumer._filter_committable_offsets(pending))


@pytest.mark.parametrize("cls", [OURS, STOCK])
@sync
async def test_a_faked_gap_before_the_base_commits_nothing(cls: type) -> None:
    """Records fetched before the seek make Faust record a gap; it is not an ack."""
    consumer = make_consumer(cls, Broker(committed=100))
    await consumer.perform_seek()
    # The drain loop saw a stale record at 150 with its read offset at 100.
    await consumer._add_gap(RAW, 101, 150)
    ack_all(consumer, range(150, 161))
    assert committable(consumer) == {}


@pytest.mark.parametrize("cls", [OURS, STOCK])
@sync
async def test_a_hole_at_the_head_commits_nothing(cls: type) -> None:
    """Offset 100 (the committed one, next to read) never acked: nothing moves."""
    consumer = make_consumer(cls, Broker(committed=100))
    await consumer.perform_seek()
    ack_all(consumer, range(101, 111))
    assert committable(consumer) == {}
    ack_all(consumer, [100])
    assert committable(consumer) == {RAW: 111}


@pytest.mark.parametrize("cls", [OURS, STOCK])
@sync
async def test_no_committed_offset_commits_nothing_until_the_base_is_acked(cls: type) -> None:
    """Never committed: the base is the log start (40); acks from 45 on wait for 40-44."""
    consumer = make_consumer(cls, Broker(committed=None, log_start=40))
    await consumer.perform_seek()
    ack_all(consumer, range(45, 51))
    assert committable(consumer) == {}
    ack_all(consumer, range(40, 45))
    assert committable(consumer) == {RAW: 51}


@pytest.mark.parametrize("cls", [OURS, STOCK])
@sync
async def test_revocation_keeps_the_guard(cls: type) -> None:
    """Acks arriving after a revocation (batches in flight) do not commit past the base."""
    consumer = make_consumer(cls, Broker(committed=100))
    await consumer.perform_seek()
    ack_all(consumer, range(100, 105))
    await consumer.on_partitions_revoked({RAW})
    ack_all(consumer, range(110, 121))
    assert committable(consumer) == {RAW: 105}


@pytest.mark.parametrize("cls", [OURS, STOCK])
@sync
async def test_records_faust_skips_without_processing_are_not_acked(cls: type) -> None:
    """A rebalance leaves fetched records of the old generation queued; Faust skips and acks them.

    Contiguous with the processed run, stock Faust commits past them: posts
    no agent saw (the loss the chaos suite found when workers scale 1 -> 3 -> 1).
    """
    consumer = make_consumer(cls, Broker(committed=100))
    await consumer.perform_seek()
    ack_all(consumer, range(100, 110))
    skip(consumer, range(110, 120))
    assert committable(consumer) == {RAW: 110}


@sync
async def test_a_record_two_agents_read_is_acked_only_once_both_delivered_it() -> None:
    """``mentions.classified`` feeds two agents; one skipping a record keeps it uncommitted."""
    consumer = make_consumer(ContiguousCommitConsumer, Broker(committed=100))
    consumer.app.topics._topic_name_index[TOPIC].update({"route", "spikes"})
    await consumer.perform_seek()
    (m,) = skip(consumer, [100], readers=2)  # neither delivered it
    assert committable(consumer) == {}
    m = _message(100)
    m.incref(2)
    consumer.track_message(m)
    consumer.mark_delivered([m])  # the route agent delivered it ...
    m.ack(consumer)
    m.ack(consumer)  # ... and the spike agent skipped it
    assert committable(consumer) == {}
    assert consumer.refused_acks == 2
    again = _message(100)
    again.incref(2)
    consumer.track_message(again)
    for _ in range(2):
        consumer.mark_delivered([again])
        again.ack(consumer)
    assert committable(consumer) == {RAW: 101}


@pytest.mark.parametrize("cls", [OURS, STOCK])
@sync
async def test_stream_partitions_get_no_records_until_their_seek_completes(cls: type) -> None:
    """Records fetched between assignment and the seek are not handed over; after it, in order."""
    broker = Broker(committed=100)
    consumer = make_consumer(cls, broker)
    consumer._set_active_tps({RAW})
    broker.fetches.append({RAW: [record(o) for o in range(180, 184)]})  # before the seek
    before = [m.offset async for _, m in consumer.getmany(timeout=0.01)]
    assert before == []
    await consumer.perform_seek()
    broker.fetches.append({RAW: [record(o) for o in range(100, 104)]})
    after = [m.offset async for _, m in consumer.getmany(timeout=0.01)]
    assert after == [100, 101, 102, 103]


@sync
async def test_records_ahead_of_the_expected_offset_seek_back_instead_of_skipping() -> None:
    """A stale batch after the seek (offsets ahead) is dropped and the partition re-read."""
    broker = Broker(committed=100)
    consumer = make_consumer(ContiguousCommitConsumer, broker)
    consumer._set_active_tps({RAW})
    await consumer.perform_seek()
    broker.fetches.append({RAW: [record(o) for o in range(300, 303)]})
    assert [m.offset async for _, m in consumer.getmany(timeout=0.01)] == []
    assert broker.seeks[-1] == (RAW, 100)
    broker.fetches.append({RAW: [record(o) for o in (100, 101)]})
    assert [m.offset async for _, m in consumer.getmany(timeout=0.01)] == [100, 101]


@sync
async def test_a_record_dropped_after_hand_over_is_read_again_and_only_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """104 reached no agent (Faust dropped it) while 105-109 were acked: read again from 104.

    Only 104 is handed over again; 105-109 are acked already. Then the commit moves on.
    """
    monkeypatch.setattr(commits, "HOLE_REREAD_AFTER_S", 0.0)
    broker = Broker(committed=100)
    consumer = make_consumer(ContiguousCommitConsumer, broker)
    consumer._set_active_tps({RAW})
    await consumer.perform_seek()
    broker.fetches.append({RAW: [record(o) for o in range(100, 110)]})
    assert [m.offset async for _, m in consumer.getmany(timeout=0.01)] == list(range(100, 110))
    ack_all(consumer, [*range(100, 104), *range(105, 110)])
    assert committable(consumer) == {RAW: 104}
    assert consumer.dropped_hole(RAW) == 104

    assert [m.offset async for _, m in consumer.getmany(timeout=0.01)] == []  # hole noted
    assert broker.seeks == []
    broker.fetches.append({RAW: [record(o) for o in range(104, 112)]})
    again = [m.offset async for _, m in consumer.getmany(timeout=0.01)]
    assert broker.seeks == [(RAW, 104)], "read again from the dropped record"
    assert again == [104, 110, 111], "105-109 are acked already: not handed over twice"
    assert consumer.holes_reread == 1
    ack_all(consumer, [104])
    assert committable(consumer) == {RAW: 110}


@sync
async def test_a_record_not_yet_acked_with_nothing_later_acked_is_left_alone() -> None:
    """104-109 handed over, nothing after 103 acked: waiting in a queue or a batch, not dropped."""
    broker = Broker(committed=100)
    consumer = make_consumer(ContiguousCommitConsumer, broker)
    consumer._set_active_tps({RAW})
    await consumer.perform_seek()
    broker.fetches.append({RAW: [record(o) for o in range(100, 110)]})
    assert len([m async for _, m in consumer.getmany(timeout=0.01)]) == 10
    ack_all(consumer, range(100, 104))
    assert consumer.dropped_hole(RAW) is None
    ack_all(consumer, [105])
    assert consumer.dropped_hole(RAW) == 104


@sync
async def test_records_held_back_before_the_seek_are_fetched_again_when_nothing_follows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """100-102 fetched while the seek waited (held back), then the stream ended: seek back."""
    monkeypatch.setattr(commits, "RESEEK_EVERY_S", 0.0)
    broker = Broker(committed=100)
    consumer = make_consumer(ContiguousCommitConsumer, broker)
    consumer._set_active_tps({RAW})
    broker.fetches.append({RAW: [record(o) for o in range(100, 103)]})  # before the seek
    assert [m async for _, m in consumer.getmany(timeout=0.01)] == []
    await consumer.perform_seek()
    seeks = len(broker.seeks)
    assert [m async for _, m in consumer.getmany(timeout=0.01)] == []  # nothing new: noted
    assert len(broker.seeks) == seeks
    broker.fetches.append({RAW: [record(o) for o in range(100, 103)]})
    again = [m.offset async for _, m in consumer.getmany(timeout=0.01)]
    assert broker.seeks[-1] == (RAW, 100), "sought back to the expected offset"
    assert again == [100, 101, 102]
    broker.fetches.append({RAW: []})
    assert [m async for _, m in consumer.getmany(timeout=0.01)] == []
    assert broker.seeks[-1] == (RAW, 100) and len(broker.seeks) == seeks + 1, "not again"


@sync
async def test_retention_past_the_committed_offset_raises_the_base_to_the_log_start() -> None:
    """Committed 10 but the log starts at 50: the base is 50, and the fetcher is sought there."""
    broker = Broker(committed=10, log_start=50)
    consumer = make_consumer(ContiguousCommitConsumer, broker)
    await consumer.perform_seek()
    assert consumer.committed_base(RAW) == 50
    assert broker.seeks == [(RAW, 50)]
    ack_all(consumer, range(50, 53))
    assert committable(consumer) == {RAW: 53}


@sync
async def test_a_successful_commit_moves_the_base_and_forgets_the_acks() -> None:
    """After Kafka took offset 105, acks continue from there; a failed commit keeps them."""
    consumer = make_consumer(ContiguousCommitConsumer, Broker(committed=100))
    await consumer.perform_seek()
    results = [False, True]
    sent: list[dict[TP, int]] = []

    async def commit(offsets: dict[TP, int]) -> bool:
        sent.append(dict(offsets))
        return results.pop(0)

    async def flush() -> None:
        return None

    consumer._commit = commit
    consumer.app.producer.flush = flush
    ack_all(consumer, range(100, 105))
    assert not await consumer.commit()
    assert committable(consumer) == {RAW: 105}  # the failed commit lost nothing
    assert await consumer.commit()
    assert consumer.committed_base(RAW) == 105
    assert committable(consumer) == {}
    ack_all(consumer, range(105, 107))
    assert committable(consumer) == {RAW: 107}
    assert sent == [{RAW: 105}, {RAW: 105}]


@sync
async def test_wait_empty_waits_for_batches_in_flight_not_for_cleared_events() -> None:
    """An event cleared from a queue is never acked; the stop does not wait for it."""
    consumer = make_consumer(ContiguousCommitConsumer, Broker(committed=0))
    await consumer.perform_seek()
    cleared = _message(0)
    consumer.track_message(cleared)  # handed to a stream, then cleared: never acked
    finished = asyncio.Event()

    async def batch() -> None:
        with consumer.in_flight.track():
            await asyncio.sleep(0.05)
            ack_all(consumer, [1])
        finished.set()

    commits: list[int] = []

    async def commit_and_end_transactions() -> None:
        commits.append(1)

    consumer.commit_and_end_transactions = commit_and_end_transactions
    task = asyncio.ensure_future(batch())
    await asyncio.sleep(0)
    await asyncio.wait_for(consumer.wait_empty(), timeout=5)
    assert finished.is_set() and commits == [1]
    assert set(consumer.unacked) == {cleared}
    await task


def test_contiguous_end() -> None:
    """The first offset from the base that is not done."""
    assert contiguous_end(5, set()) == 5
    assert contiguous_end(5, {5, 6, 8}) == 7


@pytest.mark.parametrize("name", ContiguousCommitConsumer.PRIVATE_HOOKS)
def test_the_overridden_private_faust_methods_still_exist_with_our_signatures(name: str) -> None:
    """Fails first if a Faust upgrade renames or reshapes a method the rule overrides."""
    theirs = getattr(FaustBaseConsumer, name, None) or getattr(faust_aiokafka.Consumer, name)
    ours = getattr(ContiguousCommitConsumer, name)
    assert list(inspect.signature(theirs).parameters) == list(inspect.signature(ours).parameters)
