"""Discourse's signed webhooks: an endpoint a forum pushes ``post_created`` events to.

Docs: https://meta.discourse.org/t/setting-up-webhooks/49045 . In the forum's
Admin > API > Webhooks: payload URL ``http(s)://<listener><path>``, content type
``application/json``, a secret, and the "Post Event" type.
Auth: ``X-Discourse-Event-Signature: sha256=<hex HMAC-SHA256 of the raw body keyed
with the secret>``, compared in constant time; missing or wrong: 401.
Events: ``X-Discourse-Event: post_created`` with ``{"post": {...}}`` (the same post
fields as the JSON API) becomes a Mention ``discourse_webhook:<post id>``; any
other event (``ping`` when the hook is saved, ``post_edited``, ...) is answered 200
``{"ignored": ...}`` and dropped. A body that is not a post: 400, and the body goes
to the dead-letter topic. Over ``max_body_bytes``: 413.
Delivery: at-least-once: 200 ``{"accepted": true}`` only after the runner reports
the Kafka acknowledgement; not acknowledged in ``ack_timeout_s`` or stopping: 503
with ``Retry-After`` (Discourse marks the delivery failed and can redeliver it).
Threads: as for :mod:`listener.connectors.discourse` (thread = the topic's first
post, parent from ``reply_to_post_number``): parents are resolved from the posts
pushed earlier and, when ``base_url`` is set, ``/posts/by_number`` (with the
optional API key); a parent that cannot be found is left out (the post still goes).
Rate limits: none applied here. Cursor: none (push).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import BaseConnector, Batch, Skipped
from listener.connectors.discourse import DiscourseApi
from listener.errors import FatalError, MentionError

log = logging.getLogger(__name__)


class DiscourseWebhookSettings(BaseModel):
    """The ``connectors.discourse_webhook`` config block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(default=8089, ge=0, le=65535, description="0 = any free port.")
    path: str = "/webhooks/discourse"
    secret: SecretStr = Field(description="The webhook's secret (Admin > API > Webhooks).")
    base_url: str | None = Field(default=None, description="For URLs and parent lookups.")
    api_key: SecretStr | None = None
    api_username: str = "system"
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    ack_timeout_s: float = Field(default=25.0, gt=0, description="Kafka ack wait before 503.")
    batch_max: int = Field(default=500, gt=0)
    batch_wait_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, description="Per parent lookup.")


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Discourse-Event-Signature`` value of ``body`` (also used by tests)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass(slots=True)
class _Delivery:
    post: Any
    skipped: Skipped | None
    future: asyncio.Future[BaseException | None] | None


class DiscourseWebhookConnector(BaseConnector):
    """Serves the webhook endpoint; each poll hands the runner what arrived."""

    name: ClassVar[str] = "discourse_webhook"
    settings_model: ClassVar[type[BaseModel]] = DiscourseWebhookSettings

    def __init__(self, settings: DiscourseWebhookSettings, brands: BrandMatcher) -> None:
        super().__init__(brands, poll_interval_s=0.0)
        self.settings = settings
        self.key = settings.secret.get_secret_value().encode()
        if not self.key:
            raise FatalError("discourse_webhook: the secret is empty")
        self.api = DiscourseApi(
            self.name, settings.base_url or "", settings.api_key, settings.api_username,
            settings.timeout_s,
        )  # fmt: skip
        self.port: int | None = None
        self.closed = False
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind the endpoint (idempotent; ``poll`` calls it).

        Raises:
            FatalError: The address cannot be bound.
        """
        if self._runner is not None or self.closed:
            return
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post(self.settings.path, self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.settings.host, self.settings.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise FatalError(f"discourse_webhook: cannot listen: {exc}") from exc
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def poll(self, cursor: str | None) -> Batch:
        """Wait up to ``batch_wait_s`` for deliveries; hand over what arrived."""
        await self.start()
        try:
            items = [await asyncio.wait_for(self._queue.get(), self.settings.batch_wait_s)]
        except TimeoutError:
            return Batch(more=True)
        while len(items) < self.settings.batch_max and not self._queue.empty():
            items.append(self._queue.get_nowait())
        posts = [item.post for item in items if item.future is not None]
        mentions, skipped = await self._convert(posts)
        skipped += [item.skipped for item in items if item.skipped is not None]
        return Batch(tuple(mentions), None, tuple(skipped), more=True, token=tuple(items))

    async def _convert(self, posts: list[Any]) -> tuple[list[Any], list[Skipped]]:
        try:
            return await self.api.convert(posts)
        except MentionError as exc:  # a lookup failed: parents from what was pushed only
            log.warning("discourse_webhook: parent lookup failed: %s", exc)
        self.api.lookups = False
        try:
            return await self.api.convert(posts)
        finally:
            self.api.lookups = bool(self.settings.base_url)

    async def delivered(self, batch: Batch, error: BaseException | None) -> None:
        """Answer the waiting requests: 200 when ``error`` is None, else 503."""
        for item in batch.token or ():
            if item.future is not None and not item.future.done():
                item.future.set_result(error)

    async def close(self) -> None:
        """Stop the endpoint; requests still waiting are answered 503."""
        self.closed = True
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item.future is not None and not item.future.done():
                item.future.set_result(ConnectionAbortedError("listener stopping"))
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.api.close()

    async def _handle(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > self.settings.max_body_bytes:
            return _answer(413, error=f"body over {self.settings.max_body_bytes} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answer(413, error=f"body over {self.settings.max_body_bytes} bytes")
        offered = request.headers.get("X-Discourse-Event-Signature", "").encode()
        if not hmac.compare_digest(offered, signature(self.key, body).encode()):
            return _answer(401, error="bad or missing X-Discourse-Event-Signature")
        event = request.headers.get("X-Discourse-Event", "")
        if event != "post_created":
            return _answer(200, ignored=event or "no X-Discourse-Event")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        post = payload.get("post") if isinstance(payload, dict) else None
        if not isinstance(post, dict):
            text = body.decode("utf-8", "replace")
            skip = Skipped("validation", "discourse_webhook: no 'post' object in the body", text)
            self._queue.put_nowait(_Delivery(None, skip, None))
            return _answer(400, error="expected a JSON object with a 'post' object")
        if self.closed:
            return _answer(503, error="listener stopping", retry_after=5)
        future: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Delivery(post, None, future))
        try:
            error = await asyncio.wait_for(asyncio.shield(future), self.settings.ack_timeout_s)
        except TimeoutError:
            return _answer(503, error="not yet acknowledged by Kafka; retry", retry_after=5)
        if error is not None:
            return _answer(503, error=f"not stored: {type(error).__name__}", retry_after=5)
        return _answer(200, accepted=True, id=post.get("id"))


def _answer(status: int, retry_after: int | None = None, **body: Any) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response(body, status=status, headers=headers)
