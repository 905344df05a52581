"""Per-key state of the stateful agents, kept in changelog-backed Faust tables.

Author vetting, copy-paste dedup and spike detection each keep state per key
(an author, a copy text, a brand and label). Each lives in a Faust table whose
every write is also produced to the table's compacted changelog topic
(``<app id>-<table>-changelog``): a restarted worker, or the worker that takes
over a partition after a rebalance, rebuilds the table from the changelog
before its agents run again. With N workers each key lives on exactly one of
them, because the stream an agent reads is keyed by the same key as its table.

**How keys meet their state.** The tables are created with
``use_partitioner=True``: a write goes to the changelog partition the
producer's partitioner picks for the key (murmur2, as for any keyed record),
not to the partition of the event being processed. The agents' input topics
are keyed the same way by the same producer, so key ``k`` is in partition
``murmur2(k) % n`` of both the input topic and the changelog, and Faust's
assignor gives both to the same worker (topics of equal partition counts are
co-partitioned). This is what lets an agent process a batch of events from
several partitions (``take_events``) and write its table from that batch:
with the default (the current event's partition) every write of a batch would
land in the partition of the batch's last event.

Values are JSON (orjson) bytes; :class:`JsonState` is the view the pure state
classes use, over a Faust table in the worker or a dict in unit tests.
Expired keys are swept by the agent that owns them: :func:`owned_by` tells
whether this worker's assignment holds a key's partition (a table may also hold
keys of partitions it no longer owns after a rebalance; deleting those would
write tombstones over another worker's state).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import faust
import orjson
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TableT

log = logging.getLogger(__name__)

Owned = Callable[[bytes], bool]
"""Whether a key's partition is assigned to this worker."""

_PARTITIONER = DefaultPartitioner()


def state_table(app: faust.App, name: str, partitions: int, what: str) -> TableT[bytes, bytes]:
    """A ``bytes -> bytes`` table partitioned by key, with a changelog (see the module doc).

    Args:
        app: The worker's app.
        name: Table name (its changelog is ``<app id>-<name>-changelog``).
        partitions: Partitions of the changelog: those of the agent's input topic.
        what: What the table holds (its help text).
    """
    return app.Table(
        name,
        default=None,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        use_partitioner=True,
        help=what,
    )


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the producer's default partitioner picks for ``key`` (murmur2)."""
    every = list(range(partitions))
    return int(_PARTITIONER(key, every, every))


def owned_by(app: faust.App, topic: str, partitions: int, fresh_s: float = 1.0) -> Owned:
    """A predicate: is ``key``'s partition of ``topic`` assigned to this worker right now?

    The assignment is read once per ``fresh_s`` (a sweep asks for every key of a
    table in one synchronous pass), not once per key.
    """
    mine: set[int] = set()
    read_at = float("-inf")

    def owned(key: bytes) -> bool:
        nonlocal mine, read_at
        if time.monotonic() - read_at >= fresh_s:
            mine = {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
            read_at = time.monotonic()
        return partition_for(key, partitions) in mine

    return owned


def everything(key: bytes) -> bool:
    """The :data:`Owned` of a single process (unit tests, ``rules test``): every key is ours."""
    return True


class JsonState:
    """``str -> JSON value`` over a ``bytes -> bytes`` mapping (a Faust table or a dict).

    Args:
        store: The backing mapping; a new dict when None.
    """

    def __init__(self, store: MutableMapping[bytes, bytes] | None = None) -> None:
        self.store: MutableMapping[bytes, bytes] = {} if store is None else store

    def __len__(self) -> int:
        return len(self.store)

    def get(self, key: str) -> Any:
        """The value under ``key``, or None."""
        raw = self.store.get(key.encode())
        return None if raw is None else orjson.loads(raw)

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``key``."""
        self.store[key.encode()] = orjson.dumps(value)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self.store.pop(key.encode(), None)

    def items(self, owned: Owned = everything) -> Iterator[tuple[str, Any]]:
        """``(key, value)`` of the keys this worker owns (a snapshot: deleting is safe)."""
        for key, raw in list(self.store.items()):
            if raw is not None and owned(key):
                yield key.decode(), orjson.loads(raw)

    def sweep(self, expired: Callable[[Any], bool], owned: Owned = everything) -> int:
        """Delete the owned keys whose value is ``expired``; return how many went."""
        gone = [key for key, value in self.items(owned) if expired(value)]
        for key in gone:
            self.delete(key)
        return len(gone)


class Sweeper:
    """Runs a table's sweep at most every ``every_s``, from the agent that writes the table.

    Args:
        table: The table's name (for the log).
        sweep: Deletes the expired entries this worker owns; returns how many.
        every_s: Least time between two sweeps.
    """

    def __init__(self, table: str, sweep: Callable[[], int], every_s: float = 60.0) -> None:
        self.table = table
        self._sweep = sweep
        self._every_s = every_s
        self._last = time.monotonic()

    def maybe_sweep(self) -> None:
        """Sweep if it is due; never raises (a failed sweep is retried the next time)."""
        if time.monotonic() - self._last < self._every_s:
            return
        self._last = time.monotonic()
        try:
            if gone := self._sweep():
                log.info("%s: swept %d expired entries", self.table, gone)
        except Exception:  # noqa: BLE001 - the state stays; the next sweep tries again
            log.exception("%s: sweeping expired entries failed", self.table)
