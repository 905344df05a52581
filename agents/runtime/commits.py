"""The offset-commit rule: a committed offset never passes a post no agent finished.

Faust 0.15.3 can commit past posts nobody processed when a worker takes
partitions over (every start, every rebalance). Its recovery resumes the
stream partitions before it seeks them to their committed offsets, so records
fetched before the seek reach the agents after it; its drain loop then sees a
read offset jump and records the skipped offsets as a *gap*, which its commit
counts as acknowledged; and its revocation drops the committed offset (the
only guard against a hole at the head) before the revocation commit.

:class:`ContiguousCommitConsumer` replaces that bookkeeping on the topics the
agents read (acks enabled; table changelogs keep Faust's own):

* **Base.** When a partition is seeked (:meth:`perform_seek`), its *base* is
  the group's committed offset, raised to the log start offset where
  retention deleted records before anyone read them (logged, with the count),
  or the log start where the group never committed. The fetcher is sought to
  the base explicitly. Until then the partition has no base: nothing of it
  is committed and nothing of it is handed to the agents.
* **Delivery in order.** Records reach the agents only as the contiguous run
  from the base: a record behind the next expected offset was already handed
  over since the last seek (dropped, as Faust's read offset does); one ahead
  of it was fetched before a seek or behind a pause, and the partition is
  sought back to the expected offset (at most once a second). The project's
  topics have no holes (no compaction, no transactions), so a hole that keeps
  coming back is a real one: the partition stalls, lag grows, the lag alert
  fires, and the log says where; nothing is skipped.
* **Records lost on the way.** A record handed to the agents can still be
  dropped inside Faust before an agent sees it (its flow suspended mid
  hand-over, a stream skipping it as out of date) and is then never acked.
  Agents process each partition in order, so a record still unacked while
  later ones of its partition are acked was dropped (or its batch could not
  even be dead-lettered). After
  :data:`HOLE_REREAD_AFTER_S` the partition is read again from that record;
  records already acked are not handed over a second time. Logged as a
  warning with the offset. (Seen in the chaos suite about once in 25 runs,
  always the first record after a worker's seek. A dropped record with no
  later one acked waits for the partition's next post, or shows as lag.)
* **Acks.** An ack counts only for a record every agent reading its topic
  marked delivered (:meth:`ContiguousCommitConsumer.mark_delivered`, called
  by :class:`agents.runtime.batches.AckAfterDeliveryStream` once the record's
  output is in Kafka). Faust's stream acks records it *skips* without
  processing them (read in an earlier rebalance generation, or while the
  flow was paused for a rebalance: ``Stream._py_aiter``, "to not increase
  the lag"), straight through ``Event.ack``; those acks are refused here,
  so the next seek or the next owner reads the records again.
* **Commit.** The offset committed advances only over the contiguous run of
  acknowledged offsets that starts at the base. Gaps never count as acked;
  the base survives revocation, so the revocation commit is guarded too; a
  failed commit keeps the acks for the next try.
* **Stop.** :meth:`wait_empty` (stop and rebalance) waits for the batches the
  agents are processing (:class:`InFlightBatches`), not for events Faust
  cleared from the stream queues: those are never acked, so Faust's own wait
  could hang until the shutdown deadline. Cleared events are simply not
  committed; the next owner reads them again.

Installed by :func:`agents.runtime.app.create_app` through ``App.transport``.
Overrides private Faust methods: pinned to faust-streaming 0.15.3 in
pyproject.toml, and ``tests/unit/agents/runtime/test_commits.py`` checks their
signatures so an upgrade that changes them fails there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, ClassVar

from faust.transport.consumer import RecordMap
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

log = logging.getLogger(__name__)

RESEEK_EVERY_S = 1.0
"""Fewest seconds between two seeks of one partition back to its expected offset."""

STALL_WARNING_AFTER = 5
"""Seeks back to the same offset before the log calls the partition stalled."""

HOLE_REREAD_AFTER_S = 5.0
"""Seconds a record may stay unacked behind acked ones of its partition before it is read again."""

TRACE_COMMITS = os.environ.get("BRAND_LISTENER_TRACE_COMMITS") == "1"
"""Log every commit of a guarded partition at INFO (the chaos suite sets it, to find a loss)."""


class InFlightBatches:
    """Counts the batches the agents are processing, so a stop can wait for exactly those."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Mark one batch as being processed for the duration of the block."""
        self.count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for no batch in flight; return whether none is."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return self.count == 0


def contiguous_end(base: int, done: set[int]) -> int:
    """The first offset from ``base`` on that is not in ``done``."""
    end = base
    while end in done:
        end += 1
    return end


class ContiguousCommitConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with the commit rule of this module's docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = InFlightBatches()
        self._base: dict[TP, int] = {}
        self._expected: dict[TP, int] = {}
        self._done: dict[TP, set[int]] = {}
        self._reseeks: dict[TP, tuple[int, int, float]] = {}
        self._holes: dict[TP, tuple[int, float]] = {}
        self._fetched_max: dict[TP, int] = {}
        self._stuck: dict[TP, tuple[int, float]] = {}
        self.holes_reread = 0
        """Records read again because they were dropped before any agent acked them."""
        self._deliveries: weakref.WeakKeyDictionary[Message, int] = weakref.WeakKeyDictionary()
        self.refused_acks = 0
        """Acks refused because an agent never marked the record delivered (Faust's skips)."""

    def guards(self, tp: TP) -> bool:
        """Whether ``tp`` follows this rule (a topic the agents read with acks)."""
        return self.app.topics.acks_enabled_for(tp.topic)

    def committed_base(self, tp: TP) -> int | None:
        """The offset the next commit of ``tp`` starts from (None until it is seeked)."""
        return self._base.get(tp)

    # -- rebalance and seek -------------------------------------------------

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Forget the bases until :meth:`perform_seek` reads them again.

        (Revocation keeps them: Faust commits after it revokes, and that commit
        must start at the base like any other.)
        """
        for tp in set(self._base) | set(self._expected) | set(self._done):
            self._base.pop(tp, None)
            self._expected.pop(tp, None)
            if tp not in assigned:
                self._done.pop(tp, None)
                self._fetched_max.pop(tp, None)
        await super().on_partitions_assigned(assigned, generation_id)

    async def perform_seek(self) -> None:
        """Seek every assigned partition to its base; then hand it to the agents from there."""
        committed = await self.seek_to_committed()
        guarded = [tp for tp in committed if self.guards(tp)]
        starts = await self.earliest_offsets(*guarded) if guarded else {}
        for raw_tp, offset in committed.items():
            tp = TP(raw_tp.topic, raw_tp.partition)
            if not self.guards(tp):
                # Faust's own handling (table changelogs).
                self._read_offset[tp] = offset if offset is not None and offset >= 0 else None
                if offset:
                    self._committed_offset[tp] = offset
                continue
            start = int(starts.get(raw_tp, starts.get(tp, 0)) or 0)
            base = start if offset is None or offset < 0 else offset
            if base < start:
                log.error(
                    "%s[%d]: retention deleted offsets %d-%d before the group read them: "
                    "%d posts were never processed; continuing from %d",
                    *(tp.topic, tp.partition, base, start - 1, start - base, start),
                )
                base = start
            if base != offset or base == 0:
                # aiokafka seeks only to committed offsets > 0; be explicit elsewhere.
                await self._seek(raw_tp, base)
            self._set_base(tp, base)
        if guarded:
            log.info(
                "reading from: %s",
                ", ".join(
                    f"{tp.topic}[{tp.partition}]@{self._base[TP(tp.topic, tp.partition)]}"
                    for tp in sorted(guarded)
                ),
            )

    def _set_base(self, tp: TP, base: int) -> None:
        self._base[tp] = base
        self._expected[tp] = base
        self._read_offset[tp] = base or None
        self._committed_offset[tp] = base
        done = self._done.get(tp)
        if done:
            done.difference_update([o for o in done if o < base])
        self._reseeks.pop(tp, None)
        self._holes.pop(tp, None)

    async def seek(self, partition: TP, offset: int) -> None:
        """Seek ``partition``; the agents get its records from ``offset`` on."""
        await super().seek(partition, offset)
        tp = TP(partition.topic, partition.partition)
        if self.guards(tp) and tp in self._base:
            self._expected[tp] = offset

    # -- delivery -----------------------------------------------------------

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> RecordMap:
        # Faust passes its live set of active partitions; aiokafka reads it when
        # it drains, and an empty set there means "every partition". A copy.
        if active_partitions is not None:
            if not active_partitions:
                await asyncio.sleep(min(timeout, 0.1))
                return {}
            active_partitions = set(active_partitions)
        return await super()._getmany(active_partitions, timeout)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Faust's fetch, passing on each guarded partition's records in offset order only."""
        await self._reread_dropped()
        async for tp, message in super().getmany(timeout):
            if not self.guards(tp):
                yield tp, message
                continue
            if message.offset > self._fetched_max.get(tp, -1):
                self._fetched_max[tp] = message.offset
            expected = self._expected.get(tp)
            if expected is None or message.offset < expected:
                continue  # not seeked yet (the seek re-reads it), or already handed over
            if message.offset > expected:
                await self._reseek(tp, expected, message.offset)
                continue
            self._expected[tp] = expected + 1
            if message.offset in self._done.get(tp, ()):
                continue  # read again after a hole, but already acked: not twice
            yield tp, message

    def dropped_hole(self, tp: TP) -> int | None:
        """The first unacked offset of ``tp`` if it was handed over and later ones were acked.

        Agents take a partition's records in order, so it was dropped. (A record
        merely waiting is never flagged: under a backlog records wait in the
        stream queues for seconds, with nothing after them acked either.)
        """
        base, expected = self._base.get(tp), self._expected.get(tp)
        done = self._done.get(tp)
        if base is None or expected is None or not done:
            return None
        hole = contiguous_end(base, done)
        return hole if hole < expected and max(done) > hole else None

    async def _reread_dropped(self) -> None:
        now = time.monotonic()
        await self._refetch_held_back(now)
        for tp in list(self._expected):
            hole = self.dropped_hole(tp)
            if hole is None:
                self._holes.pop(tp, None)
                continue
            seen, since = self._holes.get(tp, (None, now))
            if seen != hole:
                self._holes[tp] = (hole, now)
            elif now - since >= HOLE_REREAD_AFTER_S:
                self._holes.pop(tp, None)
                self.holes_reread += 1
                log.warning(
                    "%s[%d]: offset %d was handed to the agents but never acked while later "
                    "ones were (dropped on the way); reading it again",
                    *(tp.topic, tp.partition, hole),
                )
                await self.seek(tp, hole)

    async def _refetch_held_back(self, now: float) -> None:
        """Seek back where records at or after the expected offset were fetched but held back.

        Records fetched before a partition's seek are held back (the seek reads
        them again), and so are records ahead of a hole. Normally the next
        record fetched shows the gap (:meth:`_reseek`); when the stream has
        ended there is no next record, so a partition whose expected offset
        stays behind what was fetched for :data:`RESEEK_EVERY_S` x 3 is sought
        back to it.
        """
        for tp, expected in list(self._expected.items()):
            if self._fetched_max.get(tp, -1) < expected:
                self._stuck.pop(tp, None)
                continue
            seen, since = self._stuck.get(tp, (None, now))
            if seen != expected:
                self._stuck[tp] = (expected, now)
            elif now - since >= 3 * RESEEK_EVERY_S:
                self._stuck.pop(tp, None)
                self._fetched_max[tp] = expected - 1
                log.info(
                    "%s[%d]: records from offset %d were fetched but held back; reading again",
                    *(tp.topic, tp.partition, expected),
                )
                await self.seek(tp, expected)

    async def _reseek(self, tp: TP, expected: int, got: int) -> None:
        now = time.monotonic()
        offset, times, last = self._reseeks.get(tp, (-1, 0, float("-inf")))
        if now - last < RESEEK_EVERY_S:
            return
        times = times + 1 if offset == expected else 1
        self._reseeks[tp] = (expected, times, now)
        if times >= STALL_WARNING_AFTER:
            log.warning(
                "%s[%d] stalled at offset %d: the next record Kafka returns is %d (%d tries). "
                "Offsets are never skipped; is the topic compacted or written in transactions?",
                *(tp.topic, tp.partition, expected, got, times),
            )
        else:
            log.info(
                "%s[%d]: got offset %d, expected %d (fetched before a seek or pause): "
                "reading again from %d",
                *(tp.topic, tp.partition, got, expected, expected),
            )
        await self.seek(tp, expected)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        if self.guards(tp):
            return  # a gap is never an acknowledgement here
        await super()._add_gap(tp, offset_from, offset_to)

    # -- acks and commits ---------------------------------------------------

    def mark_delivered(self, messages: Iterable[Message]) -> None:
        """One agent made the output of ``messages`` durable (a stream calls this once each)."""
        with ack_lock:
            for message in messages:
                self._deliveries[message] = self._deliveries.get(message, 0) + 1

    def _readers(self, topic: str) -> int:
        # The channels (agents) the conductor hands each record of ``topic`` to.
        conductor: Any = self.app.topics
        return len(conductor._topic_name_index.get(topic, ())) or 1

    def ack(self, message: Message) -> bool:
        """Record that ``message``'s output is durable (its offset may be committed).

        Refused (False, nothing recorded) unless every agent reading the
        topic marked it delivered: Faust also acks the records it skips.
        """
        tp = message.tp
        if not self.guards(tp):
            return super().ack(message)
        with ack_lock:
            if message.acked:
                return False
            if self._deliveries.get(message, 0) < self._readers(tp.topic):
                self.refused_acks += 1
                log.debug("%s[%d]@%d: ack of a record never delivered refused", *tp, message.offset)
                return False
            self._deliveries.pop(message, None)
            message.acked = True
            self._unacked_messages.discard(message)
            base = self._base.get(tp)
            if base is None or message.offset >= base:
                self._done.setdefault(tp, set()).add(message.offset)
            self._n_acked += 1
            notify(self._waiting_for_ack)
            return True

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        theirs = super()._filter_tps_with_pending_acks(topics)
        mine = (
            tp
            for tp, done in self._done.items()
            if done and (topics is None or tp in topics or tp.topic in topics)
        )
        seen: set[TP] = set()
        for tp in (*theirs, *mine):
            if tp not in seen:
                seen.add(tp)
                yield tp

    def _new_offset(self, tp: TP) -> int | None:
        if not self.guards(tp):
            return super()._new_offset(tp)
        base = self._base.get(tp)
        done = self._done.get(tp)
        if base is None or not done:
            return None
        end = contiguous_end(base, done)
        return end if end > base else None

    def _should_commit(self, tp: TP, offset: int) -> bool:
        if not self.guards(tp):
            return super()._should_commit(tp, offset)
        base = self._base.get(tp)
        return base is not None and offset > base

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        assignment = self.assignment()
        did_commit = await super()._commit_offsets(offsets, start_new_transaction)
        if did_commit:
            if TRACE_COMMITS:
                summary = ", ".join(f"{t.topic}[{t.partition}]@{n}" for t, n in offsets.items())
                log.info("committed %s", summary)
            for tp, offset in offsets.items():
                if self.guards(tp) and tp in assignment and tp in self._base:
                    self._base[tp] = offset
                    done = self._done.get(tp, set())
                    done.difference_update(range(min(done, default=offset), offset))
        return bool(did_commit)

    # -- stop ---------------------------------------------------------------

    async def wait_empty(self) -> None:
        """Wait for the batches in flight (not for cleared events), then commit."""
        while not self.should_stop and self.in_flight.count:
            await self.in_flight.wait_idle(timeout=1.0)
        await self.commit_and_end_transactions()

    PRIVATE_HOOKS: ClassVar[tuple[str, ...]] = (
        "_getmany",
        "_add_gap",
        "_filter_tps_with_pending_acks",
        "_new_offset",
        "_should_commit",
        "_commit_offsets",
    )
    """Faust's private methods overridden here (their signatures are checked by a test)."""


class ContiguousCommitTransport(faust_aiokafka.Transport):
    """The aiokafka transport, with :class:`ContiguousCommitConsumer` as its consumer."""

    Consumer: ClassVar[type[faust_aiokafka.Consumer]] = ContiguousCommitConsumer


def in_flight_of(app: Any) -> InFlightBatches | None:
    """The app's :class:`InFlightBatches` (None where its consumer is not ours: unit tests)."""
    return getattr(app.consumer, "in_flight", None)


def install(app: Any) -> None:
    """Make ``app`` use :class:`ContiguousCommitTransport` (before its consumer exists)."""
    app.transport = ContiguousCommitTransport(app.conf.broker_consumer, app)
