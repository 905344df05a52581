"""Writes inbox action records: read the item's state, :func:`~agents.queue.actions.apply`, produce.

:class:`ActionWriter` is the one writer of ``mentions.inbox-actions`` for every
process that acts on queue items (the helpdesk sync-back in the worker, the
inbox web server, commands). It keeps the topic mirrored in memory (a
kafka-python consumer with no group, read from the start at :meth:`start`) and,
before each action, reads what other writers produced since (incremental, to
the end offsets), so :func:`apply` sees the item's latest state. The new state
is produced keyed by the Mention id with ``acks=all`` and idempotence on, and
:meth:`ActionWriter.act` returns only after Kafka acknowledged it.

Two writers acting on the same item at the same instant can still race (the
topic has no compare-and-set): the later record wins, as two clicks in two
browsers would. Actions are serialised within one writer.

Unit tests use :class:`MemoryActionWriter` (same interface, a dict).
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from agents.commands.ack import ack_value
from agents.queue.actions import Action, ActionRefused, ItemState, Role, apply, decode_state
from listener.compacted import CompactedTopic
from listener.settings import KafkaConnection

log = logging.getLogger(__name__)


class MemoryActionWriter:
    """The action writer without Kafka (unit tests): states in a dict, records in a list."""

    def __init__(self) -> None:
        self.states: dict[str, ItemState] = {}
        self.records: list[tuple[str, ItemState]] = []
        self.acks: list[tuple[str, bytes]] = []

    def state(self, mention_id: str) -> ItemState | None:
        """The item's latest known state, or None if no action was recorded."""
        return self.states.get(mention_id)

    async def act(self, mention_id: str, action: Action, role: Role = "agent") -> ItemState:
        """Apply ``action`` to the item's state and record the result.

        Raises:
            ActionRefused: :func:`apply` refused the action.
        """
        state = apply(self.states.get(mention_id) or ItemState(id=mention_id), action, role)
        self.states[mention_id] = state
        self.records.append((mention_id, state))
        return state

    async def ack(self, mention_id: str, at: float, by: str | None = None) -> None:
        """Record an acknowledgement (the ``mentions.acks`` value) of ``mention_id``."""
        self.acks.append((mention_id, ack_value(at, by)))


class ActionWriter:
    """Reads and writes the compacted ``mentions.inbox-actions`` topic.

    Args:
        kafka: The cluster (:data:`listener.settings.KafkaConnection`).
        topic: The inbox-actions topic (:attr:`listener.topics.TopicNames.inbox_actions`).
        partitions: Partitions to create the topic with if it is missing.
        replication: Replication factor to create it with.
        timeout_s: How long to wait for the broker's acknowledgement of a record.
        acks_topic: Where :meth:`ack` writes (``mentions.acks``); None: :meth:`ack` refuses.
    """

    def __init__(
        self,
        kafka: KafkaConnection,
        topic: str,
        partitions: int = 4,
        replication: int = 1,
        timeout_s: float = 30.0,
        acks_topic: str | None = None,
    ) -> None:
        self._acks_topic = acks_topic
        self._topic = topic
        self._states: dict[str, ItemState] = {}
        self._mirror = CompactedTopic(
            kafka,
            topic,
            self._take,
            partitions=partitions,
            replication=replication,
            timeout_s=timeout_s,
            client_id="brand-listener-actions",
        )
        self._act_lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._states)

    def start(self) -> None:
        """Create the topic if missing (compacted), then read it whole (blocking)."""
        self._mirror.start()
        log.info("inbox actions %s: %d items loaded", self._topic, len(self._states))

    def catch_up_blocking(self) -> None:
        """Read what was produced to the topic since the last read, up to its end offsets."""
        self._mirror.catch_up()

    def _take(self, mention_id: str, value: bytes | None) -> None:
        if value is None:
            self._states.pop(mention_id, None)
            return
        try:
            self._states[mention_id] = decode_state(value)
        except ValidationError as exc:
            log.warning("inbox actions: unreadable state for %r skipped: %s", mention_id, exc)

    def state(self, mention_id: str) -> ItemState | None:
        """The item's state as last read (call :meth:`catch_up_blocking` for the newest)."""
        return self._states.get(mention_id)

    async def act(self, mention_id: str, action: Action, role: Role = "agent") -> ItemState:
        """Apply ``action`` to the item's latest state and produce the result; durable on return.

        Args:
            mention_id: The queue item.
            action: What was done, by whom.
            role: The actor's role (a lead may take over and reassign).

        Returns:
            The item's new state.

        Raises:
            ActionRefused: :func:`apply` refused the action (nothing is written).
            kafka.errors.KafkaError: Kafka did not take the record.
        """
        async with self._act_lock:
            await asyncio.to_thread(self.catch_up_blocking)
            current = self._states.get(mention_id) or ItemState(id=mention_id)
            state = apply(current, action, role)
            await asyncio.to_thread(self._mirror.send, mention_id, state.encode())
            self._states[mention_id] = state
            return state

    async def ack(self, mention_id: str, at: float, by: str | None = None) -> None:
        """Acknowledge ``mention_id`` on ``mentions.acks`` (stops its SLA clock); durable on return.

        The value is :func:`agents.commands.ack.ack_value`'s, as ``brand-listener ack`` writes.

        Raises:
            kafka.errors.KafkaError: Kafka did not take the record.
        """
        if self._acks_topic is None:
            raise RuntimeError("this ActionWriter has no acks topic")
        await asyncio.to_thread(self._mirror.send, mention_id, ack_value(at, by), self._acks_topic)

    def close(self) -> None:
        """Flush and close the Kafka clients."""
        self._mirror.close()


__all__ = ["ActionRefused", "ActionWriter", "MemoryActionWriter"]
