"""The HTTP side every push connector shares: bind, queue what arrived, answer after Kafka.

A push connector (:mod:`~listener.connectors.webhook`,
:mod:`~listener.connectors.meta_webhook`, :mod:`~listener.connectors.discourse_webhook`)
subclasses :class:`PushConnector`, adds its routes in :meth:`PushConnector.routes`,
and for each authentic request calls :meth:`PushConnector.submit` with the
Mentions it parsed (or, to convert them when the runner polls, the raw
``payload``: :meth:`PushConnector.convert`). The
request handler then awaits :meth:`PushConnector.outcome`: the runner's
``delivered`` hook resolves it once Kafka acknowledged the batch (2xx to the
sender) or gave it up (503 + ``Retry-After``, the sender retries), and
``close`` resolves everything still waiting with an error (503 too).

Delivery: at-least-once: nothing is answered 2xx before Kafka acknowledged it.
Cursor: none; progress is each sender's own retry queue.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from listener.brands import BrandMatcher
from listener.connectors.base import BaseConnector, Batch, Skipped
from listener.errors import FatalError
from listener.record import Mention

log = logging.getLogger(__name__)

Outcome = asyncio.Future[BaseException | None]
"""Resolved with None once Kafka acknowledged a delivery, else with why it was not."""


class PushSettings(BaseModel):
    """What every push endpoint is configured with (subclasses add their auth and defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(default=8088, ge=0, le=65535, description="0 = any free port.")
    path: str = "/webhooks/mentions"
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    ack_timeout_s: float = Field(default=25.0, gt=0, description="Kafka ack wait before 503.")
    batch_max: int = Field(default=500, gt=0, description="Most deliveries handed per poll.")
    batch_wait_s: float = Field(default=1.0, gt=0, description="Longest a poll waits.")


@dataclass(slots=True)
class Delivery:
    """One accepted request waiting for Kafka (``future`` is None: nothing waits for it).

    ``payload`` is what :meth:`PushConnector.convert` turns into Mentions when
    the runner polls, for a connector that does not parse them in the request.
    """

    key: str
    mentions: tuple[Mention, ...]
    skipped: tuple[Skipped, ...]
    future: Outcome | None
    payload: Any = None


class PushConnector(BaseConnector):
    """Serves :meth:`routes`; each poll hands the runner what arrived (see module doc)."""

    name: ClassVar[str] = "push"

    def __init__(self, settings: PushSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=0.0)
        self.push_settings = settings
        self.port: int | None = None
        self.closed = False
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._waiting: set[Outcome] = set()
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        """Add the connector's handlers to ``app``."""
        raise NotImplementedError

    async def start(self) -> None:
        """Bind the endpoint (idempotent; ``poll`` calls it).

        Raises:
            FatalError: The address cannot be bound.
        """
        if self._runner is not None or self.closed:
            return
        settings = self.push_settings
        app = web.Application(client_max_size=settings.max_body_bytes)
        self.routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise FatalError(f"{self.name}: cannot listen on port {settings.port}: {exc}") from exc
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("%s: listening on %s:%s%s", self.name, settings.host, self.port, settings.path)

    def submit(
        self,
        key: str,
        mentions: tuple[Mention, ...],
        skipped: tuple[Skipped, ...] = (),
        *,
        payload: Any = None,
    ) -> Outcome | None:
        """Queue one request's Mentions (or its ``payload``) and skipped events for the next poll.

        Returns:
            The future :meth:`outcome` waits on, or None when there are neither
            Mentions nor a payload (skipped events alone are not worth holding
            the sender for).
        """
        future: Outcome | None = None
        if mentions or payload is not None:
            future = asyncio.get_running_loop().create_future()
            self._waiting.add(future)
            future.add_done_callback(self._waiting.discard)
        self._queue.put_nowait(Delivery(key, mentions, skipped, future, payload))
        return future

    async def outcome(self, future: Outcome) -> str | None:
        """Wait for Kafka's answer: None when stored, else the reason to answer 503."""
        try:
            error = await asyncio.wait_for(asyncio.shield(future), self.push_settings.ack_timeout_s)
        except TimeoutError:
            return "not yet acknowledged by Kafka; retry"
        return None if error is None else f"not stored: {type(error).__name__}"

    async def read_body(self, request: web.Request) -> bytes | None:
        """The raw body, or None when it is over ``max_body_bytes`` (answer 413)."""
        limit = self.push_settings.max_body_bytes
        if (request.content_length or 0) > limit:
            return None
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return None

    async def poll(self, cursor: str | None) -> Batch:
        """Wait up to ``batch_wait_s`` for deliveries; hand over what arrived (cursor: None)."""
        await self.start()
        items: list[Delivery] = []
        try:
            items.append(await asyncio.wait_for(self._queue.get(), self.push_settings.batch_wait_s))
        except TimeoutError:
            return Batch(more=True)
        while len(items) < self.push_settings.batch_max and not self._queue.empty():
            items.append(self._queue.get_nowait())
        mentions, skipped = await self.convert(items)
        return Batch(mentions, None, skipped, more=True, token=tuple(items))

    async def convert(
        self, items: list[Delivery]
    ) -> tuple[tuple[Mention, ...], tuple[Skipped, ...]]:
        """The Mentions and skipped events of the deliveries a poll hands over.

        Here: what was submitted. A connector that submits payloads converts them.
        """
        mentions = tuple(m for item in items for m in item.mentions)
        skipped = tuple(s for item in items for s in item.skipped)
        return mentions, skipped

    async def delivered(self, batch: Batch, error: BaseException | None) -> None:
        """Release the waiting requests: 2xx when ``error`` is None, else 503."""
        for item in batch.token or ():
            if item.future is not None and not item.future.done():
                item.future.set_result(error)

    async def close(self) -> None:
        """Stop the endpoint; requests still waiting are answered 503 (the sender retries)."""
        self.closed = True
        stopping = ConnectionAbortedError("listener stopping")
        while not self._queue.empty():
            self._queue.get_nowait()
        for future in list(self._waiting):
            if not future.done():
                future.set_result(stopping)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
