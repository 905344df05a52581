"""An in-memory sink for unit tests and local runs: it keeps what it was given."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from agents.sinks.base import DeliveryResult
from listener.record import Mention


class MemorySettings(BaseModel):
    """Settings of the in-memory sink (none needed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class MemorySink:
    """Keeps delivered mentions in a dict keyed by Mention id.

    Auth: none. Rate limits: none. Idempotency: keyed by ``Mention.id``, so a
    repeated id is reported as existing. Delivery guarantee: while the process
    lives only. ``failures`` lets a test script errors: each call pops the next
    exception and raises it, until the iterator is exhausted.

    Args:
        settings: The (empty) settings.
        failures: Exceptions to raise on the first calls, in order.
    """

    name: ClassVar[str] = "memory"
    uses_ledger: ClassVar[bool] = False
    settings_model: ClassVar[type[BaseModel]] = MemorySettings

    def __init__(
        self, settings: MemorySettings | None = None, failures: Iterator[Exception] | None = None
    ) -> None:
        self.settings = settings or MemorySettings()
        self.delivered: dict[str, Mention] = {}
        self.calls = 0
        self.closed = False
        self._failures = failures

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Keep ``mention`` (or raise the next scripted failure)."""
        self.calls += 1
        if self._failures is not None:
            failure = next(self._failures, None)
            if failure is not None:
                raise failure
        created = mention.id not in self.delivered
        self.delivered.setdefault(mention.id, mention)
        return DeliveryResult(external_id=f"memory-{mention.id}", created=created)

    def accepts(self, mention: Mention) -> bool:
        """Every mention."""
        return True

    async def close(self) -> None:
        """Nothing to release."""
        self.closed = True
