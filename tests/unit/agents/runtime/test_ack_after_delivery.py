"""AckAfterDeliveryStream on a real Faust stream: only delivered events are ever acked.

Faust's stream skips an event read in an earlier rebalance generation. Its
pure-Python iterator (``Stream._py_aiter``, used where the Cython extension
is missing) then acks it through ``Event.ack``, around ``Stream.ack``; the
app's :class:`ContiguousCommitConsumer` must refuse that ack, or the commit
passes a post no agent processed. The Cython iterator does not ack it. Both
are run here.
"""

from __future__ import annotations

from typing import Any

import faust
import faust.streams
import pytest
from async_support import sync
from faust.types import TP, ConsumerMessage

from agents.runtime.batches import AckAfterDeliveryStream
from agents.runtime.commits import ContiguousCommitConsumer, ContiguousCommitTransport

TOPIC = "t.mentions.raw"
RAW = TP(TOPIC, 0)


def app_with_our_consumer() -> tuple[faust.App, Any]:
    app = faust.App(
        "ack-after-delivery-test",
        broker="kafka://127.0.0.1:1",
        store="memory://",
        Stream=AckAfterDeliveryStream,
    )
    transport = ContiguousCommitTransport(app.conf.broker_consumer, app)

    async def noop(*args: Any) -> None:
        return None

    consumer = ContiguousCommitConsumer(
        transport, callback=noop, on_partitions_revoked=noop, on_partitions_assigned=noop
    )
    app.consumer = consumer
    app.topics._acking_topics.add(TOPIC)
    consumer._set_base(RAW, 100)  # what perform_seek does for a committed offset of 100
    app.flow_control.resume()
    return app, consumer


def event(app: faust.App, offset: int, generation_id: int) -> faust.Event:
    message = ConsumerMessage(
        TOPIC, 0, offset, 0.0, 0, [], b"k", b"v", None, 1, 1, RAW, generation_id=generation_id
    )
    message.incref()
    return faust.Event(app, b"k", b"v", {}, message)


def committable(consumer: Any) -> dict[TP, int]:
    pending = list(consumer._filter_tps_with_pending_acks())
    return dict(consumer._filter_committable_offsets(pending))


@pytest.fixture(params=["cython", "pure-python"])
def iterator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which of Faust's stream iterators runs (Faust picks Cython when it is built)."""
    if request.param == "cython" and faust.streams._CStreamIterator is None:
        pytest.skip("faust-streaming built without its Cython extension")
    if request.param == "pure-python":
        monkeypatch.setattr(faust.streams, "_CStreamIterator", None)
    return str(request.param)


@sync
async def test_an_event_faust_skips_is_not_acked_and_a_delivered_one_is(iterator: str) -> None:
    app, consumer = app_with_our_consumer()
    channel = app.channel()
    stream = app.stream(channel).noack()  # acked by hand, as run_events does
    assert isinstance(stream, AckAfterDeliveryStream)
    now = app.consumer_generation_id
    first, stale, second = event(app, 100, now), event(app, 101, now - 1), event(app, 102, now)
    for e in (first, stale, second):
        await channel.put(e)

    seen = []
    async for _value in stream:
        current = stream.current_event
        assert current is not None
        seen.append(current.message.offset)
        stream.mark_delivered([current])
        await stream.ack(current)
        if len(seen) == 2:
            break

    assert seen == [100, 102], "Faust skipped the event of the earlier generation"
    if iterator == "pure-python":
        assert stale.message.refcount == 0, "... and acked it (Event.ack) on its way out"
        assert consumer.refused_acks == 1, "the consumer refused that ack"
    assert committable(consumer) == {RAW: 101}, "the commit stops at the skipped post"


@sync
async def test_an_event_never_marked_delivered_is_not_acked_by_the_stream() -> None:
    app, consumer = app_with_our_consumer()
    stream = app.stream(app.channel())
    unmarked = event(app, 100, app.consumer_generation_id)
    assert await stream.ack(unmarked) is False
    assert committable(consumer) == {}
    stream.mark_delivered([unmarked])
    assert await stream.ack(unmarked) is True
    assert committable(consumer) == {RAW: 101}
