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

import hashlib
import hmac
import json
import logging
from typing import Any, ClassVar

from aiohttp import web
from pydantic import BaseModel, Field, SecretStr

from listener.brands import BrandMatcher
from listener.connectors.base import Skipped
from listener.connectors.discourse import DiscourseApi
from listener.connectors.push import Delivery, PushConnector, PushSettings
from listener.errors import FatalError, MentionError
from listener.record import Mention

log = logging.getLogger(__name__)


class DiscourseWebhookSettings(PushSettings):
    """The ``connectors.discourse_webhook`` config block."""

    port: int = Field(default=8089, ge=0, le=65535, description="0 = any free port.")
    path: str = "/webhooks/discourse"
    secret: SecretStr = Field(description="The webhook's secret (Admin > API > Webhooks).")
    base_url: str | None = Field(default=None, description="For URLs and parent lookups.")
    api_key: SecretStr | None = None
    api_username: str = "system"
    timeout_s: float = Field(default=10.0, gt=0, description="Per parent lookup.")


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Discourse-Event-Signature`` value of ``body`` (also used by tests)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class DiscourseWebhookConnector(PushConnector):
    """Serves the webhook endpoint; each poll hands the runner what arrived."""

    name: ClassVar[str] = "discourse_webhook"
    settings_model: ClassVar[type[BaseModel]] = DiscourseWebhookSettings

    def __init__(self, settings: DiscourseWebhookSettings, brands: BrandMatcher) -> None:
        super().__init__(settings, brands)
        self.settings = settings
        self.key = settings.secret.get_secret_value().encode()
        if not self.key:
            raise FatalError("discourse_webhook: the secret is empty")
        self.api = DiscourseApi(
            self.name, settings.base_url or "", settings.api_key, settings.api_username,
            settings.timeout_s,
        )  # fmt: skip

    def routes(self, app: web.Application) -> None:
        """``POST <path>``."""
        app.router.add_post(self.settings.path, self._handle)

    async def convert(
        self, items: list[Delivery]
    ) -> tuple[tuple[Mention, ...], tuple[Skipped, ...]]:
        """The pushed posts as Mentions (parents looked up as needed), and the skipped events."""
        posts = [item.payload for item in items if item.payload is not None]
        mentions, skipped = await self._convert_posts(posts)
        skipped += [s for item in items for s in item.skipped]
        return tuple(mentions), tuple(skipped)

    async def _convert_posts(self, posts: list[Any]) -> tuple[list[Any], list[Skipped]]:
        try:
            return await self.api.convert(posts)
        except MentionError as exc:  # a lookup failed: parents from what was pushed only
            log.warning("discourse_webhook: parent lookup failed: %s", exc)
        self.api.lookups = False
        try:
            return await self.api.convert(posts)
        finally:
            self.api.lookups = bool(self.settings.base_url)

    async def close(self) -> None:
        """Stop the endpoint (see :meth:`PushConnector.close`) and the parent lookups' session."""
        await super().close()
        await self.api.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await self.read_body(request)
        if body is None:
            return _answer(413, error=f"body over {self.settings.max_body_bytes} bytes")
        offered = request.headers.get("X-Discourse-Event-Signature", "").encode()
        if not hmac.compare_digest(offered, signature(self.key, body).encode()):
            return _answer(401, error="bad or missing X-Discourse-Event-Signature")
        event = request.headers.get("X-Discourse-Event", "")
        if event != "post_created":
            return _answer(200, ignored=event or "no X-Discourse-Event")
        key = request.headers.get("X-Discourse-Event-Id", "")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        post = payload.get("post") if isinstance(payload, dict) else None
        if not isinstance(post, dict):
            text = body.decode("utf-8", "replace")
            skip = Skipped("validation", "discourse_webhook: no 'post' object in the body", text)
            self.submit(key, (), (skip,))
            return _answer(400, error="expected a JSON object with a 'post' object")
        if self.closed:
            return _answer(503, error="listener stopping", retry_after=5)
        future = self.submit(key, (), payload=post)
        failed = None if future is None else await self.outcome(future)
        if failed is not None:
            return _answer(503, error=failed, retry_after=5)
        return _answer(200, accepted=True, id=post.get("id"))


def _answer(status: int, retry_after: int | None = None, **body: Any) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response(body, status=status, headers=headers)
